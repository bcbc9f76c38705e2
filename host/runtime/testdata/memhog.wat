;; memhog: sluice_write_batch grows memory 1 MiB at a time and writes to every 4 KiB of it (so
;; all of it is resident) until memory.grow fails, then traps.
;; Built with: wat2wasm memhog.wat -o memhog.wasm (the test re-assembles and compares when wat2wasm is on PATH)
(module
  (memory (export "memory") 2)
  (data (i32.const 16) "{\"name\":\"memhog\",\"version\":\"0.1.0\",\"abi_version\":\"1.0\",\"description\":\"hand-written test module\",\"capabilities\":[],\"config\":[]}")
  (data (i32.const 1024) "{\"outcome\":\"retry\",\"reason\":\"wat module\"}")
  (data (i32.const 1100) "{\"records\":0,\"bytes\":0}")
  (func (export "sluice_abi_v1_0"))
  ;; A one-slot allocator: every request gets offset 4096 (enough for test documents).
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (select (i32.const 4096) (i32.const 0) (i32.lt_u (local.get $n) (i32.const 60000))))
  (func (export "sluice_describe") (result i64)
    (i64.const 68719476862))  ;; ptr 16, len 126
  (func (export "sluice_validate") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_open") (param i32 i32) (result i64)
    (i64.const 0))
  (func (export "sluice_write_batch") (param i32 i32) (result i64)
    (local $addr i32) (local $end i32) (local $page i32)
    (block $done (loop $grow
      (local.set $page (memory.grow (i32.const 16)))
      (br_if $done (i32.eq (local.get $page) (i32.const -1)))
      ;; write one byte in every 4 KiB of the new megabyte
      (local.set $addr (i32.shl (local.get $page) (i32.const 16)))
      (local.set $end (i32.add (local.get $addr) (i32.const 1048576)))
      (loop $touch
        (i32.store8 (local.get $addr) (i32.const 1))
        (local.set $addr (i32.add (local.get $addr) (i32.const 4096)))
        (br_if $touch (i32.lt_u (local.get $addr) (local.get $end))))
      (br $grow)))
    unreachable)
  (func (export "sluice_finish") (result i64) (i64.const 4724464025623))
  (func (export "sluice_classify") (param i32 i32) (result i64) (i64.const 4398046511145))
  (func (export "sluice_close") (result i64) (i64.const 0))
)
