;; oldsql: declares ABI 1.0 but requests capability sql, a capability of 1.1.
;; Built with: wat2wasm oldsql.wat -o oldsql.wasm (the test re-assembles and compares when wat2wasm is on PATH)
(module
  (memory (export "memory") 2)
  (data (i32.const 16) "{\"name\":\"oldsql\",\"version\":\"0.1.0\",\"abi_version\":\"1.0\",\"description\":\"hand-written test module\",\"capabilities\":[\"sql\"],\"config\":[]}")
  (data (i32.const 1024) "{\"outcome\":\"retry\",\"reason\":\"wat module\"}")
  (data (i32.const 1100) "{\"records\":0,\"bytes\":0}")
  (func (export "sluice_abi_v1_0"))
  ;; A one-slot allocator: every request gets offset 4096 (enough for test documents).
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (select (i32.const 4096) (i32.const 0) (i32.lt_u (local.get $n) (i32.const 60000))))
  (func (export "sluice_describe") (result i64)
    (i64.const 68719476867))  ;; ptr 16, len 131
  (func (export "sluice_validate") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_open") (param i32 i32) (result i64)
    (i64.const 0))
  (func (export "sluice_write_batch") (param i32 i32) (result i64)
    (i64.const 0))
  (func (export "sluice_finish") (result i64) (i64.const 4724464025623))
  (func (export "sluice_classify") (param i32 i32) (result i64) (i64.const 4398046511145))
  (func (export "sluice_close") (result i64) (i64.const 0))
)
