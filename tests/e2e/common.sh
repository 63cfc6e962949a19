# Shared by the end-to-end tests: real Lodestone, real clients (openssl,
# curl, python3 ssl), loopback only. Each test gets a temp dir; every process
# it starts is recorded and ended by PID when it exits.
set -uo pipefail

: "${LODESTONE:?set LODESTONE to the lodestone binary}"
: "${LODE_BACKEND:?set LODE_BACKEND to the lode-backend binary}"
: "${LODE_SOURCE_DIR:?set LODE_SOURCE_DIR to the source tree}"

T=$(mktemp -d /tmp/lode-e2e.XXXXXX)
PIDS=()
FAILS=0
CHECKS=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

pass() { CHECKS=$((CHECKS + 1)); echo "PASS $*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL $*"; }
check() {  # check NAME COMMAND...: passes when the command succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
contains() {  # contains NAME HAYSTACK NEEDLE
  if [[ "$2" == *"$3"* ]]; then pass "$1"; else fail "$1: expected '$3' in: ${2:0:600}"; fi
}
finish() {
  echo "$((CHECKS - FAILS)) passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

# A TCP port nobody listens on now (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pki() { "$LODE_SOURCE_DIR/tools/make-test-pki.sh" "$T/pki" "$@" >/dev/null; }

# start_backend NAME PORT [ARGS...]: lode-backend, waits for it to listen.
start_backend() {
  local name=$1 port=$2; shift 2
  "$LODE_BACKEND" --listen "127.0.0.1:$port" --name "$name" "$@" 2>"$T/backend-$name.log" &
  PIDS+=($!)
  wait_for 5 grep -q listening "$T/backend-$name.log"
}

# start_lodestone CONFIG [ARGS...]: sets LPID and LLOG; waits for the start event.
start_lodestone() {
  local cfg=$1; shift
  LLOG="$T/lodestone.$RANDOM.log"
  "$LODESTONE" run "$cfg" "$@" 2>"$LLOG" &
  LPID=$!
  PIDS+=($LPID)
  if ! wait_for 10 grep -q '"event":"start"' "$LLOG"; then
    echo "lodestone did not start:"; cat "$LLOG"; return 1
  fi
}

wait_for() {  # wait_for SECONDS COMMAND...: polls every 0.1 s
  local deadline=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $deadline ]; do "$@" && return 0; sleep 0.1; done
  "$@"
}

# curl through Lodestone for NAME on PORT, verifying against the test CA.
lcurl() {  # lcurl NAME PORT [curl args...]
  local name=$1 port=$2; shift 2
  timeout 10 curl -sS --cacert "$T/pki/ca.pem" --resolve "$name:$port:127.0.0.1" "$@" "https://$name:$port/"
}

# openssl s_client output for SNI NAME on PORT (stdin closed).
sclient() {  # sclient PORT [s_client args...]
  local port=$1; shift
  timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$T/pki/ca.pem" "$@" </dev/null 2>&1
}
