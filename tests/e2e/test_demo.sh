#!/usr/bin/env bash
# The README's first command, tools/demo.sh, on the binaries under test
# (DEMO_BIN: no install, no build): each of its two names gets its own
# certificate (verified) and its own backend, an unknown name gets alert
# 112, the demo exits 0 by itself after DEMO_SECONDS; its own checks fail it
# otherwise (exit 1), which this test also sees.
source "$(dirname "$0")/lib.sh"
e2e_begin demo 90

# The demo listens on PORT and starts its backends on PORT+1 and PORT+2.
P=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  c=$(free_port)
  if python3 -c 'import socket, sys
for p in (int(sys.argv[1]) + 1, int(sys.argv[1]) + 2):
    s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()' "$c" 2>/dev/null; then
    P=$c
    break
  fi
done
check "three free ports in a row" test -n "$P"

bin=$(dirname "$LODESTONE")
DEMO_BIN="$bin" DEMO_PORT="$P" DEMO_SECONDS=1 timeout -k 5 60 bash "$LODE_SOURCE_DIR/tools/demo.sh" >"$T/demo.out" 2>&1
rc=$?
cat "$T/demo.out"
assert_eq "the demo's exit status" 0 "$rc"
out=$(cat "$T/demo.out")
assert_contains "a.test reaches senri" "$out" $'\nbackend=senri request="GET / HTTP/1.1"'
assert_contains "b.test reaches asao" "$out" $'\nbackend=asao request="GET / HTTP/1.1"'
assert_contains "a.test's certificate" "$out" "subject=CN = a.test"
assert_contains "b.test's certificate" "$out" "subject=CN = b.test"
assert_eq "both verified" 2 "$(grep -c '^Verify return code: 0 (ok)$' "$T/demo.out")"
assert_contains "an unknown name refused" "$out" "SSL alert number 112"
assert_eq "five connections logged" 5 "$(grep -c '"sni":' "$T/demo.out")"
assert_contains "c.test: no route" "$out" '"sni":"c.test","alpn_offered":"","route":"","match":"none"'
assert_not_contains "no demo failure" "$out" "demo: "
finish
