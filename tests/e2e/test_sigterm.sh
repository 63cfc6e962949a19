#!/usr/bin/env bash
# SIGTERM: Lodestone stops accepting at once (new connections are refused),
# keeps serving the connections it has for up to [timeouts] drain_ms (a
# request on an established keep-alive connection is still answered), cuts
# what is left at the deadline, logs "stopping" ... "stopped" (the last line)
# and exits 0 within drain_ms. Without connections it exits at once, with
# the access lines written to [log] access = FILE before it ends.
source "$(dirname "$0")/lib.sh"
e2e_begin sigterm 60
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA"
write_config() {
  cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$1"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[timeouts]
drain_ms = 3000
TOML
}
# wait_exit PID SECONDS SINCE_MS: the seconds from SINCE_MS to the process's end.
wait_exit() {
  wait_for "$2" bash -c "! kill -0 $1 2>/dev/null"
  python3 -c 'import sys; print(f"{(int(sys.argv[2]) - int(sys.argv[1])) / 1000:.2f}")' "$3" "$(now_ms)"
}

# --- with an established keep-alive connection
write_config "$P"
start_lodestone "$T/lode.toml" --workers 2
NETCLIENT_TIMEOUT=30 netclient keepalive --port "$P" --sni a.test --ca "$PKI/ca.pem" --requests 2 --gap 1.5 --hold 15 \
  >"$T/keepalive.out" 2>&1 &
KA=$!
PIDS+=("$KA")
wait_for 5 grep -q "request=0 ok=yes" "$T/keepalive.out"
t_term=$(now_ms)
kill -TERM "$LPID"
sleep 0.3
out=$(lcurl a.test "$P")
assert_not_contains "while draining: a new connection is not served" "$out" "backend=app"
took=$(wait_exit "$LPID" 8 "$t_term")
if kill -0 "$LPID" 2>/dev/null; then rc="still running"; else wait "$LPID"; rc=$?; fi
echo "   exited after ${took}s"
assert_eq "SIGTERM: exit status 0" 0 "$rc"
assert_ge "SIGTERM: waited for the established connection (drain)" "$took" 2.5
assert_le "SIGTERM: exited within drain_ms (3 s) + 1 s" "$took" 4
wait "$KA"
out=$(cat "$T/keepalive.out"); echo "   keep-alive: $(tr '\n' ' ' <<<"$out")"
assert_contains "while draining: a request on the established connection is answered" "$out" "request=1 ok=yes"
assert_match "the idle connection is ended at the drain deadline" "$out" "server_end=(eof|error)"
assert_contains "log: the stopping event" "$(cat "$LLOG")" '"event":"stopping"'
assert_eq "log: the last line is the stopped event" '{"event":"stopped"}' "$(tail -n 1 "$LLOG")"
assert_contains "log: the connection cut at the deadline says so" "$(grep '"sni":"a.test"' "$LLOG" | tail -n 1)" '"result":"drain_deadline"'

# --- without connections: at once (this instance logs to a file)
P2=$(free_port)
write_config "$P2"
printf '\n[log]\naccess = "%s"\n' "$T/access.log" >>"$T/lode.toml"
start_lodestone "$T/lode.toml" --workers 2
assert_contains "second instance serves" "$(lcurl a.test "$P2")" "backend=app"
t_term=$(now_ms)
kill -TERM "$LPID"
took=$(wait_exit "$LPID" 8 "$t_term")
if kill -0 "$LPID" 2>/dev/null; then rc="still running"; else wait "$LPID"; rc=$?; fi
assert_eq "idle SIGTERM: exit status 0" 0 "$rc"
assert_le "idle SIGTERM: exits within 1.5 s" "$took" 1.5
assert_eq "idle SIGTERM: the last line is the stopped event" '{"event":"stopped"}' "$(tail -n 1 "$LLOG")"
assert_contains "[log] access = FILE: the connection's line is in the file by exit" "$(cat "$T/access.log" 2>&1)" '"sni":"a.test"'
assert_not_contains "[log] access = FILE: no access line on stderr" "$(cat "$LLOG")" '"sni":"a.test"'
check "the port is free again after exit" bash -c "! python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $P2), 1)' 2>/dev/null"
finish
