;; metrics: each sluice_write_batch reports 20 new metric names (m_000, m_001, ... continuing
;; across calls on the same instance), each with value 1.
;; Built with: wat2wasm metrics.wat -o metrics.wasm (the test re-assembles and compares when wat2wasm is on PATH)
(module
  (import "sluice_v1" "metric" (func $metric (param i32 i32 i64) (result i32)))
  (global $next (mut i32) (i32.const 0))
  (data (i32.const 2048) "m_000")
  (memory (export "memory") 2)
  (data (i32.const 16) "{\"name\":\"metrics\",\"version\":\"0.1.0\",\"abi_version\":\"1.0\",\"description\":\"hand-written test module\",\"capabilities\":[],\"config\":[]}")
  (data (i32.const 1024) "{\"outcome\":\"retry\",\"reason\":\"wat module\"}")
  (data (i32.const 1100) "{\"records\":0,\"bytes\":0}")
  (func (export "sluice_abi_v1_0"))
  ;; A one-slot allocator: every request gets offset 4096 (enough for test documents).
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (select (i32.const 4096) (i32.const 0) (i32.lt_u (local.get $n) (i32.const 60000))))
  (func (export "sluice_describe") (result i64)
    (i64.const 68719476863))  ;; ptr 16, len 127
  (func (export "sluice_validate") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_open") (param i32 i32) (result i64)
    (i64.const 0))
  (func (export "sluice_write_batch") (param i32 i32) (result i64)
    (local $i i32) (local $n i32)
    (loop $each
      (local.set $n (global.get $next))
      ;; name "m_" + three decimal digits of $n at 2048
      (i32.store8 (i32.const 2050) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $n) (i32.const 100)) (i32.const 10))))
      (i32.store8 (i32.const 2051) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $n) (i32.const 10)) (i32.const 10))))
      (i32.store8 (i32.const 2052) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (drop (call $metric (i32.const 2048) (i32.const 5) (i64.const 1)))
      (global.set $next (i32.add (local.get $n) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $i) (i32.const 20))))
    (i64.const 0))
  (func (export "sluice_finish") (result i64) (i64.const 4724464025623))
  (func (export "sluice_classify") (param i32 i32) (result i64) (i64.const 4398046511145))
  (func (export "sluice_close") (result i64) (i64.const 0))
)
