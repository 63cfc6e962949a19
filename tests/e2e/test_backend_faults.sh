#!/usr/bin/env bash
# Backends that fail, each with its defined answer, and the worker keeps
# serving: a pool whose only backend is down (connection refused) or silent
# (SYNs unanswered: cut at [timeouts] connect_ms) ends the client's connection
# quickly and counts backend_connect_errors; with one backend down and one up
# every request succeeds through the other (backend_retries) and passive
# health soon stops trying the dead one; a backend that
# resets mid-stream, or is killed with SIGKILL mid-transfer, ends the client's
# connection (reset or close, never a hang), in termination and passthrough.
source "$(dirname "$0")/lib.sh"
e2e_begin backend_faults 90
make_pki down.test half.test slow.test half-slow.test rst.test kill.test passrst.test passdown.test

P=$(free_port); PA=$(free_port); PE=$(free_port); PR=$(free_port); PB=$(free_port); PTR=$(free_port)
DOWN1=$(free_port); DOWN2=$(free_port)   # nothing listens there
start_backend app "$PA"
start_backend echo "$PE" echo
start_pyserver rst "$PR" --plain --mode echo --rst-after 1048576
start_pyserver blackhole "$PB" --plain --mode blackhole
start_pyserver tlsrst "$PTR" --cert "$PKI/passrst.test.pem" --key "$PKI/passrst.test.key" --mode echo --rst-after 1048576
mkdir -p "$T/certs"
cp "$PKI"/*.test.pem "$PKI"/*.test.key "$T/certs/"
{
  cat <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[certificate_dir]]
name = "sites"
path = "certs"

[timeouts]
connect_ms = 1000

[limits]
connect_retries = 2

[[pool]]
name = "down"
backends = ["127.0.0.1:$DOWN1"]

[[pool]]
name = "half"
backends = ["127.0.0.1:$DOWN2", "127.0.0.1:$PA"]

[[pool]]
name = "slow"
backends = ["127.0.0.1:$PB"]

[[pool]]
name = "half-slow"
backends = ["127.0.0.1:$PB", "127.0.0.1:$PA"]

[[pool]]
name = "rst"
backends = ["127.0.0.1:$PR"]

[[pool]]
name = "kill"
backends = ["127.0.0.1:$PE"]

[[pool]]
name = "passrst"
backends = ["127.0.0.1:$PTR"]
TOML
  for r in down half slow half-slow rst kill; do
    printf '\n[[route]]\nname = "%s"\nnames = ["%s.test"]\naction = "terminate"\npool = "%s"\ncertificate = "sites"\n' "$r" "$r" "$r"
  done
  printf '\n[[route]]\nname = "passrst"\nnames = ["passrst.test"]\naction = "passthrough"\npool = "passrst"\n'
  printf '\n[[route]]\nname = "passdown"\nnames = ["passdown.test"]\naction = "passthrough"\npool = "down"\n'
} >"$T/lode.toml"
start_lodestone "$T/lode.toml" --workers 2
fds_before=$(fd_count)
serving() { [[ "$(lcurl half.test "$P")" == *backend=app* ]]; }
elapsed() { python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / 1000:.2f}")' "$1" "$2"; }

# --- backend down (connection refused)
t0=$(now_ms); out=$(lcurl down.test "$P"); t1=$(now_ms)
assert_not_contains "backend down: no answer from a backend" "$out" "backend="
assert_contains "backend down: curl sees the connection end" "$out" "curl: ("
assert_le "backend down: the client knows within 2 s" "$(elapsed "$t0" "$t1")" 2
wait_for 3 grep -q '"route":"down"' "$LLOG"
assert_eq "backend down: the access log's result" "backend_connect:Connection refused" "$(last_log '"route":"down"' | jfield result)"
assert_ge "backend down: backend_connect_errors counted" "$(stats backend_connect_errors)" 1
out=$(netclient request --port "$P" --sni passdown.test --ca "$PKI/ca.pem")
assert_contains "passthrough, backend down: the client's connection ends" "$out" "error="
wait_for 3 grep -q '"route":"passdown"' "$LLOG"
assert_eq "passthrough, backend down: the access log's result" "backend_connect:Connection refused" \
  "$(last_log '"route":"passdown"' | jfield result)"

# --- one backend down, one up: every request succeeds
bad=0
for _ in $(seq 1 12); do [[ "$(lcurl half.test "$P")" == *backend=app* ]] || bad=$((bad + 1)); done
assert_eq "one of two backends down: 12 requests all succeed" 0 "$bad"
assert_ge "one of two backends down: retried on the other (backend_retries)" "$(stats backend_retries)" 1
for _ in $(seq 1 12); do [[ "$(lcurl half.test "$P")" == *backend=app* ]] || bad=$((bad + 1)); done
assert_eq "one of two backends down: 12 more requests all succeed" 0 "$bad"
# Passive health: 3 consecutive failures take a backend out (per worker, 10 s
# cool-down), so 24 requests over 2 workers retry at most 6 times.
assert_le "passive health: the dead backend is taken out (at most 3 retries per worker)" "$(stats backend_retries)" 6

# --- a backend that never answers the SYN: cut at connect_ms (1 s)
t0=$(now_ms); out=$(lcurl slow.test "$P"); t1=$(now_ms)
assert_not_contains "silent backend: no answer" "$out" "backend="
assert_ge "silent backend: not before connect_ms" "$(elapsed "$t0" "$t1")" 0.9
assert_le "silent backend: the client knows within 4 s" "$(elapsed "$t0" "$t1")" 4
wait_for 3 grep -q '"route":"slow"' "$LLOG"
assert_eq "silent backend: the access log's result" "backend_connect:Connection timed out" \
  "$(last_log '"route":"slow"' | jfield result)"
bad=0
for _ in $(seq 1 4); do [[ "$(lcurl half-slow.test "$P")" == *backend=app* ]] || bad=$((bad + 1)); done
assert_eq "one of two backends silent: 4 requests all succeed" 0 "$bad"

# --- a backend that resets mid-stream (after 1 MiB)
out=$(netclient stream --port "$P" --sni rst.test --ca "$PKI/ca.pem" --seconds 20)
echo "   backend RST, terminate: $out"
assert_match "backend RST mid-stream (terminate): the client's connection is reset or closed" "$out" "end=(reset|eof|error)"
wait_for 3 grep -q '"route":"rst"' "$LLOG"
assert_contains "backend RST (terminate): the access log says so" "$(last_log '"route":"rst"' | jfield result)" "Connection reset by peer"
out=$(netclient stream --port "$P" --sni passrst.test --ca "$PKI/ca.pem" --seconds 20)
echo "   backend RST, passthrough: $out"
assert_match "backend RST mid-stream (passthrough): the client's connection is reset or closed" "$out" "end=(reset|eof|error)"
check "still serving after the resets" serving

# --- a backend killed with SIGKILL mid-transfer
rm -f "$T/started"
netclient stream --port "$P" --sni kill.test --ca "$PKI/ca.pem" --seconds 25 --started "$T/started" >"$T/kill.out" &
SC=$!
PIDS+=("$SC")
if wait_for 10 test -f "$T/started"; then
  sleep 0.3
  killed_at=$(python3 -c 'import time; print(f"{time.time():.3f}")')
  kill -KILL "${PID_OF[echo]}"
  { wait "${PID_OF[echo]}"; } 2>/dev/null
  wait "$SC"
  out=$(cat "$T/kill.out"); echo "   backend killed: $out"
  assert_match "backend killed mid-transfer: the client's connection is reset or closed" "$out" "end=(reset|eof|error)"
  ended_at=$(sed -n 's/.*ended_at=\([0-9.]*\).*/\1/p' <<<"$out")
  assert_le "backend killed: the client knows within 3 s" \
    "$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$killed_at" "${ended_at:-1e9}")" 3
else
  fail "backend killed mid-transfer: the stream never started: $(cat "$T/kill.out")"
fi

# --- afterwards
bad=0
for _ in $(seq 1 8); do serving || bad=$((bad + 1)); done
assert_eq "8 requests after all of the above succeed" 0 "$bad"
check "nothing left open (active 0)" wait_stat_eq active 0 8
wait_for 3 fds_back_to "$fds_before"
assert_le "no file descriptor leaked (lodestone had $fds_before at start)" "$(fd_count)" "$fds_before"
finish
