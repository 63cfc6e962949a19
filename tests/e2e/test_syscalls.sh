#!/usr/bin/env bash
# System calls a terminated connection costs the dataplane, counted by
# strace attached to every thread of a running lodestone (one worker) while
# 40 clients each make a full TLS 1.3 handshake and one HTTP request
# through to the backend:
# - no getpid: OpenSSL 3.0 checks for a fork with one per use of its random
#   generators (9 per full handshake); lodestone answers them from memory
#   (dataplane/worker/pid_cache.h), and its start event says so;
# - no getpeername: the client's address comes with the accept;
# - the access log still names each client's own address and port.
# Counts, not times: strace slows the process, not what it calls.
source "$(dirname "$0")/lib.sh"
e2e_begin syscalls 90
command -v strace >/dev/null || { echo "FAIL syscalls: strace missing (tools/install-deps.sh)"; exit 1; }
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
mkdir -p "$T/logs"
printf '\n[log]\naccess = "logs/access.log"\n' >>"$T/lode.toml"
start_lodestone "$T/lode.toml" --workers 1
assert_eq "the start event: getpid answered from memory" "true" \
  "$(grep -F '"event":"start"' "$LLOG" | head -n 1 | jfield getpid_cached)"
check "warm-up connection" bash -c "$(declare -f lcurl); PKI=$PKI; lcurl a.test $P | grep -q backend=app"

strace -c -f -p "$LPID" -o "$T/strace.txt" 2>"$T/strace.err" &
SP=$!
PIDS+=("$SP")
# strace says "Process N attached with K threads" once it holds them all.
check "strace attached" wait_for 10 grep -q attached "$T/strace.err"
sleep 0.3
check "40 connections, a full handshake and a request each" \
  netclient loop --port "$P" --sni a.test --ca "$PKI/ca.pem" --threads 2 --max 40 --seconds 40
sleep 0.3
kill -INT "$SP"
wait_for 10 bash -c "! kill -0 $SP 2>/dev/null"
calls() { awk -v c="$1" '$NF == c {print $4; f=1} END {if (!f) print 0}' "$T/strace.txt"; }
echo "  (strace -c: $(awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ {printf "%s=%s ", $NF, $4}' "$T/strace.txt"))"
check "strace counted the worker's io_uring_enter" [ "$(calls io_uring_enter)" -ge 40 ]
assert_eq "getpid system calls during 40 full handshakes" 0 "$(calls getpid)"
assert_eq "getpeername system calls during 40 connections" 0 "$(calls getpeername)"

check "41 access log lines" wait_for 10 bash -c "[ \$(wc -l <'$T/logs/access.log') -ge 41 ]"
python3 - "$T/logs/access.log" >"$T/clients.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    print(json.loads(line).get("client", ""))
PY
lines=$(wc -l <"$T/clients.txt")
assert_eq "every line names a 127.0.0.1 client with its port" "$lines" "$(grep -cE '^127\.0\.0\.1:[0-9]+$' "$T/clients.txt")"
assert_eq "... each connection its own port" "$lines" "$(sort -u "$T/clients.txt" | wc -l)"
finish
