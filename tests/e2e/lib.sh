# Shared helpers of the end-to-end tests (tests/e2e/test_*.sh): a real
# lodestone, real clients (openssl s_client, curl, python3 ssl) and backends
# (lode-backend, openssl s_server, backend_server.py), loopback only.
#
#   source "$(dirname "$0")/lib.sh"
#   e2e_begin NAME [LIMIT_SECONDS]      temp dir $T, cleanup trap, watchdog
#   make_pki [NAMES...]                 test PKI in $PKI (tools/make-test-pki.sh)
#   ocsp_route_config FILE MPORT        + an OCSP-stapled route, trusted CA, /metrics
#   P=$(free_port)                      a TCP port the kernel says is free
#   start_backend NAME PORT [MODE] [--proxy-v2]      lode-backend
#   start_pyserver NAME PORT [ARGS...]  tests/e2e/backend_server.py
#   start_s_server NAME PORT [ARGS...]  openssl s_server
#   start_lodestone CONFIG [ARGS...]    sets LPID, LLOG (its stderr), STATS
#   check / assert_eq / assert_contains / assert_not_contains / assert_match /
#   assert_ge / assert_le: print "PASS name" or "FAIL name: expected ..., saw ..."
#   finish                              the summary; the exit status
#
# Every process a test starts is recorded and ended by PID (TERM, then KILL)
# when the script exits, whatever the reason; the watchdog ends a test that
# runs past its limit. Run a test by hand from the source tree with the
# release build: `bash tests/e2e/test_names.sh` (LODESTONE, LODE_BACKEND,
# LODECTL default to build/release/). E2E_KEEP=1 keeps the temp dir.
# shellcheck disable=SC2034  # variables set here are read by the sourcing tests
set -uo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LODE_SOURCE_DIR:=$(cd "$E2E_DIR/../.." && pwd)}"
: "${LODESTONE:=$LODE_SOURCE_DIR/build/release/lodestone}"
: "${LODE_BACKEND:=$LODE_SOURCE_DIR/build/release/lode-backend}"
: "${LODECTL:=$LODE_SOURCE_DIR/build/release/lodectl}"
NETCLIENT="$E2E_DIR/netclient.py"
PYSERVER="$E2E_DIR/backend_server.py"

PIDS=()
ON_EXIT=()             # commands run at cleanup, after the processes are gone (namespaces, ...)
CHECKS=0
FAILS=0
T=""
WATCHDOG=""
TEST_NAME=""
declare -A PID_OF=()   # name -> pid of the backends and servers started

e2e_begin() {
  TEST_NAME=$1
  local limit=${2:-100}
  for b in "$LODESTONE" "$LODE_BACKEND" "$LODECTL"; do
    [ -x "$b" ] || { echo "FAIL $TEST_NAME: $b is not built"; exit 1; }
  done
  for tool in openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "FAIL $TEST_NAME: $tool is not installed"; exit 1; }
  done
  T=$(mktemp -d "/tmp/lode-e2e-$TEST_NAME.XXXXXX")
  trap e2e_cleanup EXIT
  trap 'echo "FAIL $TEST_NAME: timed out after '"$limit"' s"; FAILS=$((FAILS + 1)); exit 124' TERM
  trap 'exit 130' INT
  # The watchdog: one process (no orphaned sleep), ended by PID at cleanup.
  python3 -c 'import os, signal, sys, time
time.sleep(float(sys.argv[1]))
os.kill(int(sys.argv[2]), signal.SIGTERM)' "$limit" "$$" &
  WATCHDOG=$!
  echo "== $TEST_NAME (temp dir $T, limit ${limit}s)"
}

e2e_cleanup() {
  local rc=$?
  trap - EXIT TERM INT
  [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 30); do  # up to 3 s for them to go
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && { echo "note: pid $p ignored SIGTERM, killed"; kill -KILL "$p" 2>/dev/null; }; done
  for p in "${PIDS[@]}" $WATCHDOG; do wait "$p" 2>/dev/null; done
  # Anything still running with this test's temp dir on its command line
  # outlived its recorded PID (a daemon that forked, a server started behind
  # a subshell): said and ended here, so no test leaves a process behind.
  # (The pattern "$T[/]" does not match grep's own command line.)
  if [ -n "$T" ]; then
    local f stray
    for f in $(grep -als -- "$T[/]" /proc/[0-9]*/cmdline); do
      stray=${f#/proc/}
      stray=${stray%/cmdline}
      [ "$stray" = "$$" ] && continue
      echo "note: pid $stray outlived the test, killed: $(tr '\0' ' ' <"$f" 2>/dev/null | cut -c1-200)"
      kill -KILL "$stray" 2>/dev/null
    done
  fi
  local cmd
  for cmd in "${ON_EXIT[@]}"; do eval "$cmd" 2>/dev/null; done
  if [ "$rc" -ne 0 ] || [ "$FAILS" -ne 0 ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] || continue
      echo "---- last lines of $(basename "$f")"
      tail -n 25 "$f" | cut -c1-600
    done
  fi
  if [ -n "$T" ] && [ "${E2E_KEEP:-0}" != 1 ]; then rm -rf "$T"; fi
  [ "$rc" -eq 0 ] && [ "$FAILS" -ne 0 ] && rc=1
  exit "$rc"
}

# ------------------------------------------------------------------ checks
pass() { CHECKS=$((CHECKS + 1)); echo "PASS $*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL $*"; }

check() {  # check NAME COMMAND...: passes when the command succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name: command failed: $*"; fi
}
assert_eq() {  # assert_eq NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected '$2', saw '$3'"; fi
}
assert_contains() {  # assert_contains NAME HAYSTACK NEEDLE
  if [[ "$2" == *"$3"* ]]; then pass "$1"; else fail "$1: expected to see '$3' in: ${2:0:1500}"; fi
}
assert_not_contains() {  # assert_not_contains NAME HAYSTACK NEEDLE
  if [[ "$2" != *"$3"* ]]; then pass "$1"; else fail "$1: did not expect '$3' in: ${2:0:1500}"; fi
}
assert_match() {  # assert_match NAME HAYSTACK ERE
  if [[ "$2" =~ $3 ]]; then pass "$1"; else fail "$1: expected to match /$3/: ${2:0:1500}"; fi
}
assert_ge() {  # assert_ge NAME ACTUAL MIN (numbers, decimals allowed)
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "${2:-nan}" "$3" 2>/dev/null
  then pass "$1"; else fail "$1: expected >= $3, saw '${2}'"; fi
}
assert_le() {  # assert_le NAME ACTUAL MAX
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "${2:-nan}" "$3" 2>/dev/null
  then pass "$1"; else fail "$1: expected <= $3, saw '${2}'"; fi
}
finish() {
  echo "== $TEST_NAME: $((CHECKS - FAILS)) passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
  exit $?
}

# ------------------------------------------------------------------ waiting
# wait_for SECONDS COMMAND...: polls every 0.1 s. COMMAND's arguments are
# expanded once, by the caller: to re-read something on every poll, pass a
# function (e.g. log_count_ge) rather than "$(...)".
wait_for() {
  local end=$(( $(date +%s%N) / 1000000 + ${1%.*} * 1000 )); shift
  while [ $(( $(date +%s%N) / 1000000 )) -lt $end ]; do
    "$@" 2>/dev/null && return 0
    sleep 0.1
  done
  "$@" 2>/dev/null
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A TCP port nobody listens on now (the kernel picks it from its ephemeral
# range; nothing else in these tests binds fixed ports), and none this test
# was given before: two picks made before either is bound can get the same
# port (seen in CI: a backend and lodestone's listener on one port). The
# ports given are kept in $T/ports (each call runs in a subshell).
free_port() {
  python3 - "${T:+$T/ports}" <<'PY'
import socket, sys
path = sys.argv[1]
given = set()
if path:
    try:
        given = set(open(path).read().split())
    except OSError:
        pass
for _ in range(100):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
    s.close()
    if port not in given:
        break
if path:
    with open(path, "a") as f:
        f.write(port + "\n")
print(port)
PY
}

make_pki() {  # make_pki [NAMES...]: $PKI/ca.pem, NAME.pem, NAME.key, ...
  PKI="$T/pki"
  "$LODE_SOURCE_DIR/tools/make-test-pki.sh" "$PKI" "$@" >/dev/null || { echo "FAIL $TEST_NAME: make-test-pki.sh"; exit 1; }
}

# ------------------------------------------------------------------ processes
# start_backend NAME PORT [MODE] [--proxy-v2]: lode-backend on 127.0.0.1:PORT.
# a_test_config FILE PORT BACKEND_PORT: one listener on PORT, a.test
# terminated with make_pki's certificate and relayed to BACKEND_PORT. Callers
# append more sections with `cat >>FILE`.
a_test_config() {
  cat >"$1" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$2"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$3"]

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
TOML
}

# ocsp_route_config FILE METRICS_PORT: appends to FILE (a_test_config's) the
# route ocsp-good.test on certificate "good" (opki/, tools/make-ocsp-pki.sh,
# stapled from a responder the test starts), trusted.pem as [control]
# trusted_ca, state in $T/state, and /metrics on 127.0.0.1:METRICS_PORT.
ocsp_route_config() {
  cat >>"$1" <<TOML

[[certificate]]
name = "good"
cert = "opki/ocsp-good.test.pem"
key = "opki/ocsp-good.test.key"

[[route]]
name = "good"
names = ["ocsp-good.test"]
action = "terminate"
pool = "app"
certificate = "good"

[control]
state_dir = "$T/state"
trusted_ca = "trusted.pem"

[ocsp]
timeout_ms = 1000
startup_wait_ms = 5000

[admin]
metrics = "127.0.0.1:$2"
TOML
}

start_backend() {
  local name=$1 port=$2 mode=${3:-http}; shift 2; [ $# -gt 0 ] && shift
  "$LODE_BACKEND" --listen "127.0.0.1:$port" --name "$name" --mode "$mode" "$@" 2>"$T/backend-$name.log" &
  PIDS+=($!); PID_OF[$name]=$!
  wait_for 5 grep -q "listening" "$T/backend-$name.log" || { echo "FAIL $TEST_NAME: lode-backend $name did not start"; exit 1; }
}

# start_pyserver NAME PORT [ARGS...]: backend_server.py (TLS or --plain).
start_pyserver() {
  local name=$1 port=$2; shift 2
  python3 "$PYSERVER" --listen "127.0.0.1:$port" --name "$name" "$@" 2>"$T/pyserver-$name.log" &
  PIDS+=($!); PID_OF[$name]=$!
  wait_for 5 grep -q "listening" "$T/pyserver-$name.log" || { echo "FAIL $TEST_NAME: backend_server.py $name did not start"; exit 1; }
}

# start_s_server NAME PORT [ARGS...]: openssl s_server on 127.0.0.1:PORT.
start_s_server() {
  local name=$1 port=$2; shift 2
  openssl s_server -accept "127.0.0.1:$port" "$@" >"$T/s_server-$name.log" 2>&1 &
  PIDS+=($!); PID_OF[$name]=$!
  wait_for 5 grep -q "ACCEPT" "$T/s_server-$name.log" || { echo "FAIL $TEST_NAME: s_server $name did not start"; exit 1; }
}

# start_lodestone CONFIG [ARGS...]: runs lodestone in the foreground of a
# background job, stderr in $LLOG, counters in $STATS; waits (10 s at most)
# for its start event.
LCOUNT=0
start_lodestone() {
  local cfg=$1; shift
  LCOUNT=$((LCOUNT + 1))
  LLOG="$T/lodestone-$LCOUNT.log"
  STATS="$T/stats-$LCOUNT.json"
  mkdir -p "$T/run"
  "$LODESTONE" run "$cfg" --stats-file "$STATS" --run-dir "$T/run" "$@" 2>"$LLOG" >"$T/lodestone-$LCOUNT.out" &
  LPID=$!
  PIDS+=("$LPID")
  local end=$(( $(now_ms) + 10000 ))
  while [ "$(now_ms)" -lt $end ]; do
    if grep -q '"event":"start"' "$LLOG"; then
      grep -q "\"pid\":$LPID" "$LLOG" || echo "note: the start event's pid is not $LPID"
      return 0
    fi
    kill -0 "$LPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL $TEST_NAME: lodestone did not start within 10 s (config $cfg):"
  cat "$LLOG"
  exit 1
}

# ------------------------------------------------------------------ reading results
# stats FIELD: the summed counter as of now (waits for the next rewrite of the
# stats file, which lodestone makes every second).
stats() {
  python3 - "$STATS" "$1" <<'PY'
import json, os, sys, time
path, field = sys.argv[1], sys.argv[2]
def mtime():
    try: return os.stat(path).st_mtime_ns
    except OSError: return 0
m0, end = mtime(), time.time() + 3
while mtime() == m0 and time.time() < end: time.sleep(0.05)
for _ in range(20):
    try:
        print(json.load(open(path)).get(field, "missing")); break
    except (OSError, ValueError): time.sleep(0.05)
PY
}
# wait_stat FIELD MIN SECONDS: until the counter reaches MIN.
wait_stat() {
  local end=$(( $(now_ms) + $3 * 1000 )) v
  while [ "$(now_ms)" -lt $end ]; do
    v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2],-1))' "$STATS" "$1" 2>/dev/null)
    [ -n "$v" ] && [ "$v" -ge "$2" ] 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
# wait_stat_eq FIELD VALUE SECONDS: until the counter equals VALUE.
wait_stat_eq() {
  local end=$(( $(now_ms) + $3 * 1000 )) v
  while [ "$(now_ms)" -lt $end ]; do
    v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2],-1))' "$STATS" "$1" 2>/dev/null)
    [ "$v" == "$2" ] && return 0
    sleep 0.2
  done
  echo "  ($1 is $v, not $2)"
  return 1
}
# log_count PATTERN: lines of the lodestone log containing PATTERN (fixed string).
log_count() { grep -cF -- "$1" "$LLOG"; }
# log_count_ge PATTERN N: at least N lines contain PATTERN.
log_count_ge() { [ "$(log_count "$1")" -ge "$2" ]; }
# wait_log_count PATTERN N SECONDS
wait_log_count() { wait_for "$3" log_count_ge "$1" "$2"; }
# last_log PATTERN: the last log line containing PATTERN.
last_log() { grep -F -- "$1" "$LLOG" | tail -n 1; }
# jfield FIELD < LINE: one field of a JSON line ("" when absent)
# (JSON null prints as "", true/false as true/false).
jfield() { python3 -c 'import json,sys
try: v = json.loads(sys.stdin.read()).get(sys.argv[1], "")
except ValueError: v = ""
print("" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$1"; }

# reload: SIGHUP and wait (10 s) for the next "reloaded" or "reload_refused"
# event; prints which one came.
reload() {
  local before_ok before_no
  before_ok=$(log_count '"event":"reloaded"'); before_no=$(log_count '"event":"reload_refused"')
  kill -HUP "$LPID"
  local end=$(( $(now_ms) + 10000 ))
  while [ "$(now_ms)" -lt $end ]; do
    [ "$(log_count '"event":"reloaded"')" -gt "$before_ok" ] && { echo reloaded; return 0; }
    [ "$(log_count '"event":"reload_refused"')" -gt "$before_no" ] && { echo reload_refused; return 0; }
    sleep 0.05
  done
  echo "no_event"
}

# fd_count: open file descriptors of the running lodestone (leak checks).
fd_count() { ls "/proc/$LPID/fd" 2>/dev/null | wc -l; }
# fds_back_to N: at most N open (the workers keep drained passthrough pipes
# for a second after their last use: poll with wait_for 3 fds_back_to N).
fds_back_to() { [ "$(fd_count)" -le "$1" ]; }

# ------------------------------------------------------------------ clients
# lcurl NAME PORT [CURL ARGS...]: https://NAME:PORT/ through 127.0.0.1,
# verified against the test CA.
lcurl() {
  local name=$1 port=$2; shift 2
  timeout 15 curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "$name:$port:127.0.0.1" "$@" "https://$name:$port/" 2>&1
}
# sclient PORT [S_CLIENT ARGS...]: openssl s_client's output (stdin closed).
sclient() {
  local port=$1; shift
  timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$PKI/ca.pem" "$@" </dev/null 2>&1
}
# peer_cert PORT [S_CLIENT ARGS...]: subject and SAN of the certificate served.
peer_cert() {
  sclient "$@" | openssl x509 -noout -subject -ext subjectAltName 2>&1
}
netclient() { timeout "${NETCLIENT_TIMEOUT:-30}" python3 "$NETCLIENT" "$@"; }
