;; A well-behaved plugin written by hand against docs/plugin-abi.md: plugin `good`, one type
;; `good.thing` (`level` 0..10 merged by max, `note`, `peer` a reference to a host). Its answers
;; are constant MessagePack held in data segments; validate refuses any object whose encoding
;; holds the bytes "evil", and logs a line through the one host function.
(module
  (import "mgha_host_v1" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  ;; describe: {name, version, types: [{name, fields}], merge: []}, 158 bytes at 16.
  (data (i32.const 16) "\84\a4name\a4good\a7version\a31.0\a5types\91\82\a4name\aagood.thing\a6fields\93\85\a4name\a5level\a4kind\a3int\a3min\00\a3max\0a\a5merge\a3max\82\a4name\a4note\a4kind\a6string\83\a4name\a4peer\a4kind\a3ref\a5types\91\a4host\a5merge\90")
  ;; {ok: true}, 5 bytes at 1024.
  (data (i32.const 1024) "\81\a2ok\c3")
  ;; {ok: false, errors: [{field: "note", reason: "no evil here"}]}, 45 bytes at 1040.
  (data (i32.const 1040) "\82\a2ok\c2\a6errors\91\82\a5field\a4note\a6reason\acno evil here")
  (data (i32.const 1100) "validated")
  (func (export "mgha_abi_version") (result i32) (i32.const 1))
  ;; One input buffer at a time: every allocation is the same 60 KiB region.
  (func (export "mgha_alloc") (param $len i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $len) (i32.const 61440))
      (then (i32.const 0))
      (else (i32.const 4096))))
  (func (export "mgha_free") (param i32 i32))
  (func (export "mgha_describe") (result i64) (i64.const 0x000000100000009e))
  (func (export "mgha_validate") (param $ptr i32) (param $len i32) (result i64)
    (local $at i32)
    (local $end i32)
    (call $log (i32.const 3) (i32.const 1100) (i32.const 9))
    (local.set $at (local.get $ptr))
    (local.set $end (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 4)))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (local.get $at) (local.get $end)))
        ;; "evil" read as a little-endian i32
        (if (i32.eq (i32.load (local.get $at)) (i32.const 0x6c697665))
          (then (return (i64.const 0x000004100000002d))))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br $scan)))
    (i64.const 0x0000040000000005))
  (func (export "mgha_merge") (param i32 i32) (result i64) (unreachable)))
