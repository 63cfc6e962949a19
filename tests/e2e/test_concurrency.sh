#!/usr/bin/env bash
# 1,000 concurrent TLS connections (python3 asyncio): all complete their
# handshakes and are open in Lodestone at the same time, then each sends one
# request and gets its answer; both workers take a share (SO_REUSEPORT); all
# are closed afterwards (active back to 0, no file descriptor left behind)
# and the worker keeps serving.
# Release build only (ctest registers it there).
source "$(dirname "$0")/lib.sh"
e2e_begin concurrency 100
make_pki a.test

N=${CONCURRENT_N:-1000}
P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
cat >>"$T/lode.toml" <<TOML

[log]
access = "off"
TOML
start_lodestone "$T/lode.toml" --workers 2
lcurl a.test "$P" >/dev/null  # warm: the backend pool's first connection, OpenSSL's lazy state
fds_before=$(fd_count)

NETCLIENT_TIMEOUT=80 netclient concurrent --port "$P" --sni a.test --ca "$PKI/ca.pem" --n "$N" --hold 6 \
  >"$T/concurrent.out" 2>&1 &
CL=$!
PIDS+=("$CL")
check "$N connections open in Lodestone at the same time" wait_stat active "$N" 20
wait "$CL"
out=$(cat "$T/concurrent.out")
echo "   $out"
assert_contains "$N concurrent connections all served" "$out" "ok=$N failed=0"
check "all closed afterwards (active 0)" wait_stat_eq active 0 10
wait_for 3 fds_back_to "$fds_before"
fds_after=$(fd_count)
echo "   lodestone's open fds: $fds_before before, $fds_after after"
assert_le "no file descriptor leaked" "$fds_after" "$fds_before"
per_worker=$(python3 -c 'import json,sys; print(" ".join(str(w["accepted"]) for w in json.load(open(sys.argv[1]))["per_worker"]))' "$STATS")
echo "   accepted per worker: $per_worker"
for a in $per_worker; do assert_ge "each worker took a share of the connections" "$a" 1; done
assert_eq "no connection refused over the limit" 0 "$(stats refused_over_limit)"
assert_eq "no handshake failed" 0 "$(stats handshake_errors)"
assert_contains "still serving afterwards" "$(lcurl a.test "$P")" "backend=app"
finish
