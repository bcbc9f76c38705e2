;; specedge: the SPEC's edge cases, as the host handles them (spec_test.go).
;; Built with: wat2wasm specedge.wat -o specedge.wasm
;; - a start section whose function calls sluice_v1 imports before _initialize: they answer
;;   `internal` (9) and log lines are dropped; _initialize traps unless it ran first and saw 9;
;; - sluice_open logs with the (0, 0) pointer/length pair and returns a packed pointer with
;;   length 0 and a non-zero pointer (an empty success);
;; - sluice_validate fails with an Error whose status and code are JSON numbers;
;; - sluice_write_batch fails with an error of its own (no status); sluice_classify and
;;   sluice_finish return 0 (an empty document);
;; - its manifest has a required field without a default (the conformance suite's message).
(module
  (import "sluice_v1" "log" (func $log (param i32 i32 i32)))
  (import "sluice_v1" "metric" (func $metric (param i32 i32 i64) (result i32)))
  (memory (export "memory") 2)
  (global $started (mut i32) (i32.const 0))
  (global $st (mut i32) (i32.const -1))
  (data (i32.const 8) "x")
  (data (i32.const 16) "{\"name\":\"specedge\",\"version\":\"0.1.0\",\"abi_version\":\"1.0\",\"description\":\"SPEC edge cases\",\"capabilities\":[],\"config\":[{\"name\":\"needed\",\"type\":\"string\",\"required\":true}]}")
  (data (i32.const 512) "{\"error\":{\"message\":\"numeric status\",\"status\":7,\"code\":404}}")
  (data (i32.const 768) "{\"error\":{\"message\":\"own failure\"}}")
  (func $start
    (call $log (i32.const 0) (i32.const 8) (i32.const 1))
    (global.set $st (call $metric (i32.const 8) (i32.const 1) (i64.const 1)))
    (global.set $started (i32.const 1)))
  (start $start)
  (func (export "_initialize")
    (if (i32.ne (global.get $started) (i32.const 1)) (then unreachable))
    (if (i32.ne (global.get $st) (i32.const 9)) (then unreachable)))
  (func (export "sluice_abi_v1_0"))
  (func (export "sluice_alloc") (param $n i32) (result i32)
    (select (i32.const 4096) (i32.const 0) (i32.lt_u (local.get $n) (i32.const 60000))))
  (func (export "sluice_describe") (result i64) (i64.const 68719476904))
  (func (export "sluice_validate") (param i32 i32) (result i64) (i64.const 2199023255612))
  (func (export "sluice_open") (param i32 i32) (result i64)
    (call $log (i32.const 0) (i32.const 0) (i32.const 0))
    (i64.const 53021371269120))
  (func (export "sluice_write_batch") (param i32 i32) (result i64) (i64.const 3298534883363))
  (func (export "sluice_finish") (result i64) (i64.const 0))
  (func (export "sluice_classify") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_close") (result i64) (i64.const 0))
)
