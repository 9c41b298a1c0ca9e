;; delivery-quote: a plugwatch example plugin written directly in the WebAssembly component text format.
;;
;; Hook `order.pricing` (a filter): adds `"delivery":{"fee":F,"eta_minutes":M}` to the order, where F and M
;; come from a hash of the order. It is deliberately slow and flaky, so the demo has something to alert on:
;; about one order in ten takes ~20x longer (a busy loop), about one in thirteen fails with
;; `err("courier service unavailable")`, and about one in ninety-seven traps. Every other hook gets its
;; input back unchanged. `serve --demo` compiles this text at start-up.
(component
  (type $host-t (instance
    (type $level (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level-e (eq $level)))
    (type $log-t (func (param "level" $level-e) (param "message" string)))
    (export "log" (func (type $log-t)))
    (type $opt (option string))
    (type $config-t (func (param "key" string) (result $opt)))
    (export "config" (func (type $config-t)))
  ))
  (import "plugwatch:plugin/host@0.1.0" (instance $host (type $host-t)))
  (alias export $host "log" (func $log))

  ;; Memory and a bump allocator (each instance serves one call, so nothing is ever freed).
  (core module $libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $ret i32) (local $end i32) (local $have i32)
      (local.set $ret (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ret) (local.get $size)))
      (local.set $have (i32.mul (memory.size) (i32.const 65536)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16)))
                          (i32.const -1))
                (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $ret)))
  (core instance $libc (instantiate $libc))
  (core func $log-lowered (canon lower (func $log) (memory (core memory $libc "memory"))))

  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (data (i32.const 100) "order.pricing")                        ;; 13 bytes
    (data (i32.const 120) "courier service unavailable")          ;; 27 bytes
    (data (i32.const 160) "input must be a JSON object")          ;; 27 bytes
    (data (i32.const 200) ",\22delivery\22:{\22fee\22:")          ;; 19 bytes
    (data (i32.const 220) ",\22eta_minutes\22:")                  ;; 15 bytes
    (data (i32.const 240) "}}")                                   ;; 2 bytes
    (data (i32.const 260) "delivery quoted")                      ;; 15 bytes
    (data (i32.const 280) "slow route: recomputing")              ;; 23 bytes

    ;; The return area: result discriminant at 8, pointer at 12, length at 16.
    (func $ok (param i32 i32) (result i32)
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 12) (local.get 0))
      (i32.store (i32.const 16) (local.get 1))
      (i32.const 8))
    (func $err (param i32 i32) (result i32)
      (i32.store8 (i32.const 8) (i32.const 1))
      (i32.store (i32.const 12) (local.get 0))
      (i32.store (i32.const 16) (local.get 1))
      (i32.const 8))

    ;; FNV-1a over [ptr, ptr+len).
    (func $hash (param $ptr i32) (param $len i32) (result i32)
      (local $h i32) (local $i i32)
      (local.set $h (i32.const 0x811c9dc5))
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
                               (i32.const 0x01000193)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (local.get $h))

    ;; Copies len bytes from src to dst; returns dst + len.
    (func $copy (param $dst i32) (param $src i32) (param $len i32) (result i32)
      (memory.copy (local.get $dst) (local.get $src) (local.get $len))
      (i32.add (local.get $dst) (local.get $len)))

    ;; Writes the decimal digits of an unsigned value at dst; returns the end.
    (func $itoa (param $dst i32) (param $value i32) (result i32)
      (local $digits i32) (local $v i32) (local $end i32)
      (local.set $v (local.get $value))
      (local.set $digits (i32.const 1))
      (block $counted (loop $count
        (br_if $counted (i32.lt_u (local.get $v) (i32.const 10)))
        (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (br $count)))
      (local.set $end (i32.add (local.get $dst) (local.get $digits)))
      (local.set $v (local.get $value))
      (loop $write
        (local.set $digits (i32.sub (local.get $digits) (i32.const 1)))
        (i32.store8 (i32.add (local.get $dst) (local.get $digits))
                    (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
        (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
        (br_if $write (local.get $digits)))
      (local.get $end))

    (func $is_pricing (param $hook i32) (param $len i32) (result i32)
      (local $i i32)
      (if (i32.ne (local.get $len) (i32.const 13)) (then (return (i32.const 0))))
      (block $differs (loop $next
        (if (i32.ge_u (local.get $i) (i32.const 13)) (then (return (i32.const 1))))
        (br_if $differs (i32.ne (i32.load8_u (i32.add (local.get $hook) (local.get $i)))
                                (i32.load8_u (i32.add (i32.const 100) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (i32.const 0))

    (func (export "handle") (param $hook i32) (param $hook_len i32) (param $input i32) (param $input_len i32) (result i32)
      (local $h i32) (local $body_len i32) (local $out i32) (local $at i32) (local $spin i32) (local $sink i32)
      (if (i32.eqz (call $is_pricing (local.get $hook) (local.get $hook_len)))
        (then (return (call $ok (local.get $input) (local.get $input_len)))))
      ;; The order must be a JSON object: find its closing brace, ignoring trailing whitespace.
      (local.set $body_len (local.get $input_len))
      (block $found (loop $trim
        (if (i32.eqz (local.get $body_len)) (then (return (call $err (i32.const 160) (i32.const 27)))))
        (local.set $body_len (i32.sub (local.get $body_len) (i32.const 1)))
        (br_if $found (i32.eq (i32.load8_u (i32.add (local.get $input) (local.get $body_len))) (i32.const 125)))
        (br_if $trim (i32.le_u (i32.load8_u (i32.add (local.get $input) (local.get $body_len))) (i32.const 32)))
        (return (call $err (i32.const 160) (i32.const 27)))))
      (if (i32.ne (i32.load8_u (local.get $input)) (i32.const 123))
        (then (return (call $err (i32.const 160) (i32.const 27)))))
      (local.set $h (call $hash (local.get $input) (local.get $input_len)))
      ;; Flaky: the courier service "fails" for about one order in thirteen, and one in ninety-seven traps.
      (if (i32.eqz (i32.rem_u (local.get $h) (i32.const 13)))
        (then (return (call $err (i32.const 120) (i32.const 27)))))
      (if (i32.eqz (i32.rem_u (local.get $h) (i32.const 97)))
        (then unreachable))
      ;; Slow: route computation is a busy loop, twenty times longer for one order in ten.
      (local.set $spin (i32.const 400000))
      (if (i32.eqz (i32.rem_u (i32.shr_u (local.get $h) (i32.const 8)) (i32.const 10)))
        (then
          (local.set $spin (i32.const 8000000))
          (call $log (i32.const 3) (i32.const 280) (i32.const 23))))
      (loop $route
        (local.set $sink (i32.add (i32.mul (local.get $sink) (i32.const 31)) (local.get $spin)))
        (local.set $spin (i32.sub (local.get $spin) (i32.const 1)))
        (br_if $route (local.get $spin)))
      ;; Output: the order up to its closing brace, then the delivery object.
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.add (local.get $body_len) (i32.const 64))))
      (local.set $at (call $copy (local.get $out) (local.get $input) (local.get $body_len)))
      (local.set $at (call $copy (local.get $at) (i32.const 200) (i32.const 19)))
      (local.set $at (call $itoa (local.get $at) (i32.add (i32.const 2500) (i32.mul (i32.rem_u (local.get $h) (i32.const 5)) (i32.const 500)))))
      (local.set $at (call $copy (local.get $at) (i32.const 220) (i32.const 15)))
      (local.set $at (call $itoa (local.get $at) (i32.add (i32.const 20) (i32.rem_u (i32.shr_u (local.get $h) (i32.const 4)) (i32.const 25)))))
      (local.set $at (call $copy (local.get $at) (i32.const 240) (i32.const 2)))
      (call $log (i32.const 2) (i32.const 260) (i32.const 15))
      (drop (local.get $sink))
      (call $ok (local.get $out) (i32.sub (local.get $at) (local.get $out)))))
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "host" (instance (export "log" (func $log-lowered))))))
  (func (export "handle") (param "hook" string) (param "input" (list u8)) (result (result (list u8) (error string)))
    (canon lift (core func $main "handle") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc")))))
