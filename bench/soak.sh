#!/usr/bin/env bash
# Soak (issue 9): one Lodestone (2 workers) under a bounded mixed load for N
# minutes, while its configuration and certificates change and its backends
# die and come back; then the load stops and Lodestone must return to where
# it started. Loopback only; every process it starts is ended by PID.
#
#   bench/soak.sh [--minutes N] [--sample S] [--out DIR]
#       N: minutes of load (default 30, or $SOAK_MINUTES); S: seconds between
#       samples (default 10, or $SOAK_SAMPLE_S); DIR: where soak.json,
#       table.txt and the lodeload reports go (default /tmp/lode-soak-TIME).
#   LODESTONE, LODECTL, LODE_BACKEND, LODELOAD: the binaries (default
#       build/release/, as tests/e2e/lib.sh).
#   SOAK_RSS_FACTOR (1.25), SOAK_RSS_SLACK_MB (16), SOAK_FD_SLACK (2): the
#       bounds below; SOAK_KILL_S (45): seconds between backend kills (the
#       first after 20 s; none in the last 40 s); SOAK_SKIP_RESTORE=1: a killed
#       backend is not restarted (to see the restore check fail).
#
# The load, each kind a loop of bounded lodeload runs (--duration/--count and
# `timeout`; no run starts after the end of the load):
#   full       handshakes, a.test, 40/s, 256 bytes echoed through pool "app"
#   resumed    handshakes --resume, a.test, 40/s, 64 bytes echoed
#   passthru   handshakes, pt.test (passthrough to a TLS echo backend), 10/s
#   bulk       2 x 20 MB, SHA-256 of what went and came back, bulk.test
#   idle       50 connections held 15 s, bulk.test
# and meanwhile, from the main loop:
#   every 10 s a reload, alternately `lodectl routes reload` and SIGHUP, of a
#     file that toggles one extra route (so each makes a generation);
#   every 30 s `lodectl certs replace a` with a fresh ECDSA P-256 a.test
#     signed by the test intermediate, then checked served (its serial);
#   every SOAK_KILL_S a backend of pool "app" (two lode-backends, tcp health
#     checks every 0.5 s, fall 1, rise 2) is killed (SIGKILL) and restored on
#     the same port: `backends drain`, wait until Lodestone has no connection
#     open to it, SIGKILL, `backends enable` while it is dead (its connects are
#     refused until the health check marks it down: Lodestone's connect retries
#     send those connections to the other backend), wait for "down", 2 s,
#     restart it, wait for "up", and check it gets connections again (from the
#     load, or else from 8 connections of its own, round robin).
# Why drain first: SIGKILL of a backend cuts the connections it holds, and the
# client of such a connection sees its echo cut short: a failure no proxy can
# hide. Draining first makes the expected number of client-visible failures
# exactly zero. If a backend still holds connections after 10 s of drain, it
# is killed anyway and those connections (read from /metrics just before) are
# counted as expected failures and reported.
#
# Every S seconds a row: dataplane and control-plane RSS (VmRSS), the
# dataplane's open fds, open connections (`lodectl status`), handshakes/s
# (difference of the status counter), client errors so far (lodeload reports).
#
# Verdict (exit 1 and the reasons when any fails):
#   - every lodeload run exited 0 with a report, zero errors, bulk digests
#     equal; all five kinds of load ran (handshakes full and resumed, etc.);
#   - every reload and certificate replacement succeeded; each backend
#     killed went down, came back up and got connections again;
#   - the same dataplane and control plane ran throughout;
#   - after the load (settle: up to 60 s for the connections to close, then
#     5 s): open connections 0, fds <= the idle baseline (taken before the
#     load) + SOAK_FD_SLACK, and RSS (each process) <= the baseline taken after
#     the first minute of load x SOAK_RSS_FACTOR + SOAK_RSS_SLACK_MB.
# Why these RSS bounds: the baseline is taken under the full mix, when every
# worker's buffers, OpenSSL's per-thread state and glibc's arenas are warm. A
# leak grows with work (connections, reloads, certificates), and 30 minutes is
# ~30x the work of the warm-up: a leak of even 1 KB per reload or 100 bytes per
# connection (~150,000 connections) passes 25 %. The 16 MB absolute slack is
# for allocator fragmentation on a small baseline (~50 MB): glibc does not give
# freed pages back at once, and a 2-core CI machine schedules unevenly.
set -uo pipefail

MINUTES=${SOAK_MINUTES:-30}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
OUT=${SOAK_OUT:-}
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --sample) SAMPLE_S=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (--minutes N, --sample S, --out DIR)" >&2; exit 2 ;;
  esac
done
[[ $MINUTES =~ ^[0-9]+$ ]] && [ "$MINUTES" -ge 1 ] || { echo "soak.sh: --minutes is a whole number >= 1" >&2; exit 2; }
[[ $SAMPLE_S =~ ^[0-9]+$ ]] && [ "$SAMPLE_S" -ge 1 ] || { echo "soak.sh: --sample is a whole number >= 1" >&2; exit 2; }
RSS_FACTOR=${SOAK_RSS_FACTOR:-1.25}
RSS_SLACK_MB=${SOAK_RSS_SLACK_MB:-16}
FD_SLACK=${SOAK_FD_SLACK:-2}
KILL_S=${SOAK_KILL_S:-45}
LOAD_S=$((MINUTES * 60))
WARMUP_S=60
[ "$LOAD_S" -lt 180 ] && WARMUP_S=$((LOAD_S / 3))

source "$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/lib.sh"
LODELOAD=${LODELOAD:-$(dirname "$LODESTONE")/lodeload}
[ -x "$LODELOAD" ] || { echo "FAIL soak: $LODELOAD is not built"; exit 1; }
# The watchdog: the load, the settle (65 s), the last runs' timeouts, startup.
e2e_begin soak $((LOAD_S + 300))
[ -n "$OUT" ] || OUT=/tmp/lode-soak-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/load" || { echo "FAIL soak: cannot create $OUT"; exit 1; }
echo "   load ${MINUTES} min, a sample every ${SAMPLE_S} s, warm-up ${WARMUP_S} s; results in $OUT"
make_pki a.test bulk.test pt.test

P=$(free_port); MP=$(free_port)
PA1=$(free_port); PA2=$(free_port); PB=$(free_port); PT=$(free_port)
start_backend app1 "$PA1" echo
start_backend app2 "$PA2" echo
start_backend bulk "$PB" echo
start_pyserver pt "$PT" --cert "$PKI/pt.test.pem" --key "$PKI/pt.test.key" --mode echo

CFG="$T/soak.toml"
write_config() {  # write_config EXTRA(0|1): the extra route toggles between reloads
  cat >"$CFG" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA1", "127.0.0.1:$PA2"]
health = { type = "tcp", interval_ms = 500, timeout_ms = 500, rise = 2, fall = 1 }

[[pool]]
name = "bulk"
backends = ["127.0.0.1:$PB"]

[[pool]]
name = "pt"
backends = ["127.0.0.1:$PT"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[certificate]]
name = "bulk"
cert = "pki/bulk.test.pem"
key = "pki/bulk.test.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "bulk"
names = ["bulk.test"]
action = "terminate"
pool = "bulk"
certificate = "bulk"

[[route]]
name = "pt"
names = ["pt.test"]
action = "passthrough"
pool = "pt"

[timeouts]
connect_ms = 3000

[admin]
metrics = "127.0.0.1:$MP"

[log]
access = "access.log"
sample = 0.0
TOML
  if [ "$1" = 1 ]; then
    printf '\n[[route]]\nname = "extra"\nnames = ["extra.test"]\naction = "reject"\n' >>"$CFG"
  fi
}
write_config 0
start_lodestone "$CFG" --workers 2
SOCK="$T/run/admin.sock"
ctl() { timeout 15 "$LODECTL" --socket "$SOCK" "$@"; }
CPID=$(ctl --json status | jfield controlplane_pid)
[ -n "$CPID" ] || { echo "FAIL soak: no controlplane_pid in lodectl status"; exit 1; }
metric() {  # metric SERIES: its value now ("" when absent)
  timeout 10 curl -s "http://127.0.0.1:$MP/metrics" | awk -v s="$1" '$1 == s { print $2; exit }'
}
backend_health() {  # backend_health ADDR: up|down
  ctl --json backends list app | python3 -c 'import json,sys
a = sys.argv[1]
for p in json.load(sys.stdin)["pools"]:
    for b in p["backends"]:
        if b["backend"] == a: print(b["health"])' "$1"
}
health_is() { [ "$(backend_health "$1")" = "$2" ]; }
wait_for 15 health_is "127.0.0.1:$PA1" up && wait_for 15 health_is "127.0.0.1:$PA2" up ||
  { echo "FAIL soak: the app backends are not up"; exit 1; }

# ------------------------------------------------------------------ samples
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
client_errors() {  # errors counted by the finished lodeload runs, plus runs without a report
  python3 - "$OUT/load" <<'PY'
import glob, json, os, sys
n = 0
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    try: n += int(json.load(open(f))["errors"]["total"])
    except (OSError, ValueError, KeyError): pass
for f in glob.glob(os.path.join(sys.argv[1], "*.rc")):
    rc = open(f).read().strip()
    if rc not in ("0", "1"): n += 1     # no report (timeout, crash, bad start)
print(n)
PY
}
SAMPLES="$OUT/samples.tsv"
printf 't_s\tphase\trss_mb\tcp_rss_mb\tfds\topen_conns\thandshakes_per_s\tclient_errors\tgeneration\n' >"$SAMPLES"
T0=$(now_ms); LAST_HS=""; LAST_MS=""
sample() {  # sample PHASE: one row (file and stdout); sets S_RSS S_CP S_FDS S_CONNS
  local st now hs rate gen
  st=$(ctl --json status); now=$(now_ms)
  hs=$(jfield handshakes <<<"$st"); gen=$(jfield generation <<<"$st")
  S_CONNS=$(jfield connections <<<"$st")
  S_RSS=$(rss_mb "$LPID"); S_CP=$(rss_mb "$CPID"); S_FDS=$(fd_count)
  rate=0
  if [ -n "$LAST_HS" ] && [ -n "$hs" ] && [ "$now" -gt "$LAST_MS" ]; then
    rate=$(( (hs - LAST_HS) * 1000 / (now - LAST_MS) ))
  fi
  LAST_HS=$hs; LAST_MS=$now
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $(( (now - T0) / 1000 )) "$1" "${S_RSS:-?}" "${S_CP:-?}" \
    "$S_FDS" "${S_CONNS:-?}" "$rate" "$(client_errors)" "${gen:-?}" | tee -a "$SAMPLES" |
    awk -F'\t' '{ printf "   %6s %-7s %8s %8s %6s %8s %8s %8s %6s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9; fflush() }'
}
echo "   $(printf '%6s %-7s %8s %8s %6s %8s %8s %8s %6s' t_s phase rss_mb cp_mb fds conns hs/s errors gen)"
sample idle
IDLE_FDS=$S_FDS; IDLE_CONNS=$S_CONNS

# ------------------------------------------------------------------ the load
END_MS=$(( $(now_ms) + LOAD_S * 1000 ))
LOAD_PIDS=()
# load_loop NAME CHUNK_S MODE ARGS...: lodeload runs of at most CHUNK_S seconds
# (the time left, when less) until the end; each bounded by `timeout`.
load_loop() {
  local name=$1 chunk=$2 i=0 left d rc; shift 2
  RUN=""
  trap '[ -n "$RUN" ] && kill -TERM "$RUN" 2>/dev/null; exit 143' TERM  # the cleanup ends the run too
  while :; do
    left=$(( (END_MS - $(now_ms)) / 1000 ))
    [ "$left" -ge 2 ] || break
    d=$(( left < chunk ? left : chunk )); i=$((i + 1))
    local args=("$@")
    args=("${args[@]//@D@/$d}")
    timeout -s INT $((d + 60)) "$LODELOAD" "${args[@]}" --connect "127.0.0.1:$P" --ca "$PKI/ca.pem" \
      --timeout-ms 10000 --seed "$i" --quiet >"$OUT/load/$name-$i.json" 2>"$OUT/load/$name-$i.err" &
    RUN=$!
    wait "$RUN"; rc=$?
    echo "$rc" >"$OUT/load/$name-$i.rc"
    [ "$name" = bulk ] && sleep 1   # room for the rest of the mix on a small machine
  done
}
load_loop full 20 handshakes --sni a.test --rate 40 --concurrency 4 --request 256 --duration @D@ &
LOAD_PIDS+=($!)
load_loop resumed 20 handshakes --resume --sni a.test --rate 40 --concurrency 4 --request 64 --duration @D@ &
LOAD_PIDS+=($!)
load_loop passthru 20 handshakes --sni pt.test --rate 10 --concurrency 2 --request 64 --duration @D@ &
LOAD_PIDS+=($!)
load_loop bulk 30 bulk --sni bulk.test --concurrency 2 --bytes 20M &
LOAD_PIDS+=($!)
load_loop idle 15 idle --sni bulk.test --concurrency 50 --hold @D@ &
LOAD_PIDS+=($!)
PIDS+=("${LOAD_PIDS[@]}")

RELOADS=0; RELOADS_FAILED=0; EXTRA=0
do_reload() {
  EXTRA=$((1 - EXTRA)); write_config "$EXTRA"
  if [ $((RELOADS % 2)) = 0 ]; then
    ctl --json routes reload >>"$OUT/reloads.log" 2>&1 || RELOADS_FAILED=$((RELOADS_FAILED + 1))
  else
    [ "$(reload)" = reloaded ] || RELOADS_FAILED=$((RELOADS_FAILED + 1))
  fi
  RELOADS=$((RELOADS + 1))
}
CERTS=0; CERTS_FAILED=0
do_cert() {
  local d="$T/newcert" n=$((CERTS + 1)) serial served
  mkdir -p "$d"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/a-$n.key" 2>/dev/null
  openssl req -new -key "$d/a-$n.key" -subj /CN=a.test -out "$d/a-$n.csr" 2>/dev/null
  openssl x509 -req -in "$d/a-$n.csr" -CA "$PKI/intermediate.pem" -CAkey "$PKI/intermediate.key" \
    -CAserial "$PKI/intermediate.srl" -CAcreateserial -days 30 \
    -extfile <(printf 'subjectAltName=DNS:a.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n') \
    -out "$d/a-$n.leaf.pem" 2>/dev/null
  cat "$d/a-$n.leaf.pem" "$PKI/intermediate.pem" >"$d/a-$n.pem"
  serial=$(openssl x509 -noout -serial <"$d/a-$n.pem" | sed 's/^serial=//')
  CERTS=$n
  if ! ctl --json certs replace a --cert "$d/a-$n.pem" --key "$d/a-$n.key" >>"$OUT/certs.log" 2>&1; then
    CERTS_FAILED=$((CERTS_FAILED + 1)); echo "   certs replace $n refused (see certs.log)"; return
  fi
  served=$(sclient "$P" -servername a.test | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//')
  if [ "$served" != "$serial" ]; then
    CERTS_FAILED=$((CERTS_FAILED + 1)); echo "   certs replace $n: serving serial '$served', not $serial"
  fi
}
KILLS=0; KILLS_FAILED=0; KILLED_OPEN=0
do_kill() {  # the app backends in turn: drain, wait, SIGKILL, enable, down, restart, up
  local name port addr open c0 c1 pid
  if [ $((KILLS % 2)) = 0 ]; then name=app1; port=$PA1; else name=app2; port=$PA2; fi
  addr="127.0.0.1:$port"; KILLS=$((KILLS + 1))
  local series="lodestone_backend_active_connections{pool=\"app\",backend=\"$addr\"}"
  ctl backends drain app "$addr" >>"$OUT/kills.log" 2>&1 || { KILLS_FAILED=$((KILLS_FAILED + 1)); echo "   kill $KILLS: drain refused"; }
  open_is_zero() { [ "$(metric "$series")" = 0 ]; }
  wait_for 10 open_is_zero; sleep 0.5
  open=$(metric "$series"); open=${open:-0}
  [ "$open" -gt 0 ] 2>/dev/null && { KILLED_OPEN=$((KILLED_OPEN + open)); echo "   kill $KILLS: $name killed with $open connections open"; }
  pid=${PID_OF[$name]}
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  local keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done; PIDS=("${keep[@]}")
  ctl backends enable app "$addr" >>"$OUT/kills.log" 2>&1 || { KILLS_FAILED=$((KILLS_FAILED + 1)); echo "   kill $KILLS: enable refused"; }
  if ! wait_for 15 health_is "$addr" down; then KILLS_FAILED=$((KILLS_FAILED + 1)); echo "   kill $KILLS: $name not marked down"; fi
  sleep 2
  c0=$(metric "lodestone_backend_connections_total{pool=\"app\",backend=\"$addr\"}")
  if [ "${SOAK_SKIP_RESTORE:-0}" = 1 ]; then echo "   kill $KILLS: $name not restored (SOAK_SKIP_RESTORE=1)"; else
    "$LODE_BACKEND" --listen "$addr" --name "$name" --mode echo 2>>"$T/backend-$name.log" &
    PIDS+=($!); PID_OF[$name]=$!
  fi
  if ! wait_for 20 health_is "$addr" up; then KILLS_FAILED=$((KILLS_FAILED + 1)); echo "   kill $KILLS: $name not back up"; return; fi
  gets_traffic() { c1=$(metric "lodestone_backend_connections_total{pool=\"app\",backend=\"$addr\"}"); [ "${c1:-0}" -gt "${c0:-0}" ]; }
  if ! wait_for 10 gets_traffic; then
    # The load may be between runs (or over): 8 connections of our own, round
    # robin over two backends up, must reach it.
    timeout 60 "$LODELOAD" handshakes --connect "127.0.0.1:$P" --sni a.test --ca "$PKI/ca.pem" --count 8 \
      --concurrency 1 --request 16 --timeout-ms 10000 --quiet >"$OUT/load/probe-$KILLS.json" 2>/dev/null
    echo $? >"$OUT/load/probe-$KILLS.rc"
    wait_for 5 gets_traffic || { KILLS_FAILED=$((KILLS_FAILED + 1)); echo "   kill $KILLS: $name up but no new connections"; }
  fi
  echo "kill $KILLS $name $addr: down, restored, connections ${c0:-?} -> ${c1:-?}" >>"$OUT/kills.log"
}

# The main loop: samples, reloads, certificates, kills, until the end of the load.
start_s=$(( $(now_ms) / 1000 ))
next_sample=$((start_s + SAMPLE_S)); next_reload=$((start_s + 10)); next_cert=$((start_s + 30))
next_kill=$((start_s + 20)); baseline_at=$((start_s + WARMUP_S))
BASE_RSS=""; BASE_CP=""
while [ "$(now_ms)" -lt "$END_MS" ]; do
  s=$(( $(now_ms) / 1000 ))
  if [ -z "$BASE_RSS" ] && [ "$s" -ge "$baseline_at" ]; then
    sample base; BASE_RSS=$S_RSS; BASE_CP=$S_CP; next_sample=$((s + SAMPLE_S))
  elif [ "$s" -ge "$next_sample" ]; then sample load; next_sample=$((s + SAMPLE_S)); fi
  # Nothing that takes seconds near the end (a kill and restore takes ~12 s):
  # the load ends on time.
  left=$(( (END_MS - $(now_ms)) / 1000 ))
  if [ "$left" -gt 40 ] && [ "$s" -ge "$next_kill" ]; then do_kill; next_kill=$(( $(now_ms) / 1000 + KILL_S )); fi
  if [ "$left" -gt 20 ]; then
    if [ "$s" -ge "$next_reload" ]; then do_reload; next_reload=$((s + 10)); fi
    if [ "$s" -ge "$next_cert" ]; then do_cert; next_cert=$((s + 30)); fi
  fi
  sleep 0.5
done
for p in "${LOAD_PIDS[@]}"; do wait "$p"; done
sample stopped

# ------------------------------------------------------------------ settle
settled() {
  local st; st=$(ctl --json status)
  [ "$(jfield connections <<<"$st")" = "$IDLE_CONNS" ] && [ "$(fd_count)" -le $((IDLE_FDS + FD_SLACK)) ]
}
settle_t0=$(now_ms)
until settled || [ $(( $(now_ms) - settle_t0 )) -ge 60000 ]; do sleep 1; done
sleep 5
sample final

# ------------------------------------------------------------------ verdict
python3 - "$OUT" "$LOAD_S" <<'PY' >"$OUT/load-summary.txt"
import glob, json, os, sys
out, load_s = sys.argv[1], int(sys.argv[2])
kinds = {}
for rcf in sorted(glob.glob(os.path.join(out, "load", "*.rc"))):
    name = os.path.basename(rcf).rsplit("-", 1)[0]
    k = kinds.setdefault(name, dict(runs=0, bad_runs=0, started=0, failed=0, errors=0, full=0, resumed=0,
                                    bytes=0, bulk_bad=0, held=0, error_kinds={}))
    k["runs"] += 1
    rc = open(rcf).read().strip()
    try:
        r = json.load(open(rcf[:-3] + ".json"))
    except (OSError, ValueError):
        k["bad_runs"] += 1
        continue
    if rc != "0": k["bad_runs"] += 1
    k["started"] += r["connections"]["started"]; k["failed"] += r["connections"]["failed"]
    k["errors"] += r["errors"]["total"]
    for e, v in r["errors"].items():
        if e != "total": k["error_kinds"][e] = k["error_kinds"].get(e, 0) + v
    k["full"] += r["handshakes"]["full"]; k["resumed"] += r["handshakes"]["resumed"]
    k["bytes"] += r["bytes"]["received"]
    if "bulk" in r and not r["bulk"]["ok"]: k["bulk_bad"] += 1
    k["held"] += r.get("idle", {}).get("held", 0)
json.dump(kinds, open(os.path.join(out, "load-summary.json"), "w"))
for name, k in sorted(kinds.items()):
    print(f"{name}\t{k['runs']}\t{k['bad_runs']}\t{k['started']}\t{k['errors']}\t{k['full']}\t{k['resumed']}"
          f"\t{k['bytes']}\t{k['bulk_bad']}\t{k['held']}\t{json.dumps(k['error_kinds'], separators=(',', ':'))}")
PY
echo "   load    runs bad  connections errors   full  resumed   bytes_back bulk_bad held error_kinds"
awk -F'\t' '{ printf "   %-8s %4s %3s %11s %6s %6s %8s %12s %8s %4s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' \
  "$OUT/load-summary.txt"
lf() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$OUT/load-summary.txt"; }
for kind in full resumed passthru bulk idle; do
  assert_ge "load $kind: ran" "$(lf "$kind" 2)" 1
  assert_eq "load $kind: every lodeload run exited 0 with a report" 0 "$(lf "$kind" 3)"
done
ERRORS=$(awk -F'\t' '{ s += $5 } END { print s + 0 }' "$OUT/load-summary.txt")
assert_eq "every lodeload run (with the kills' probes, if any) exited 0 with a report" 0 \
  "$(awk -F'\t' '{ s += $3 } END { print s + 0 }' "$OUT/load-summary.txt")"
if [ "$KILLED_OPEN" -gt 0 ]; then
  echo "   expected client failures: $KILLED_OPEN (connections open on backends killed after 10 s of drain)"
fi
assert_le "zero unexpected client errors (all kinds; expected from kills: $KILLED_OPEN)" "$ERRORS" "$KILLED_OPEN"
assert_ge "full handshakes made" "$(lf full 6)" 100
assert_ge "resumed handshakes made" "$(lf resumed 7)" 100
assert_ge "passthrough connections made" "$(lf passthru 4)" 20
assert_eq "bulk: every SHA-256 pair equal" 0 "$(lf bulk 9)"
assert_ge "idle connections held" "$(lf idle 10)" 50
# At least half the nominal counts (the kills hold the main loop a few seconds each).
assert_ge "reloads done (every 10 s)" "$RELOADS" $(( (LOAD_S - 30) / 20 ))
assert_eq "every reload succeeded ($RELOADS)" 0 "$RELOADS_FAILED"
assert_ge "certificates replaced (every 30 s)" "$CERTS" $(( (LOAD_S - 50) / 60 ))
assert_eq "every certificate replaced and served ($CERTS)" 0 "$CERTS_FAILED"
assert_ge "backends killed" "$KILLS" $(( LOAD_S >= 120 ? 2 : 1 ))
assert_eq "every backend killed went down, came back and got connections again ($KILLS)" 0 "$KILLS_FAILED"
check "the dataplane ran throughout (pid $LPID)" kill -0 "$LPID"
assert_eq "the control plane ran throughout" "$CPID" "$(ctl --json status | jfield controlplane_pid)"
assert_eq "after the load: open connections back to the idle baseline" "$IDLE_CONNS" "$S_CONNS"
assert_le "after the load: fds back to the idle baseline $IDLE_FDS (+$FD_SLACK)" "$S_FDS" $((IDLE_FDS + FD_SLACK))
RSS_MAX=$(python3 -c "print(round(float('$BASE_RSS') * $RSS_FACTOR + $RSS_SLACK_MB, 1))")
CP_MAX=$(python3 -c "print(round(float('$BASE_CP') * $RSS_FACTOR + $RSS_SLACK_MB, 1))")
assert_le "after the load: dataplane RSS ${S_RSS} MB <= baseline ${BASE_RSS} x $RSS_FACTOR + $RSS_SLACK_MB" "$S_RSS" "$RSS_MAX"
assert_le "after the load: control-plane RSS ${S_CP} MB <= baseline ${BASE_CP} x $RSS_FACTOR + $RSS_SLACK_MB" "$S_CP" "$CP_MAX"

python3 - "$OUT" <<PY
import csv, json, os
out = "$OUT"
rows = list(csv.DictReader(open(os.path.join(out, "samples.tsv")), delimiter="\t"))
json.dump({
    "minutes": $MINUTES, "sample_s": $SAMPLE_S, "warmup_s": $WARMUP_S,
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "baseline": {"idle_fds": $IDLE_FDS, "idle_connections": ${IDLE_CONNS:-0},
                 "rss_mb": float("$BASE_RSS"), "cp_rss_mb": float("$BASE_CP")},
    "final": {"fds": $S_FDS, "connections": ${S_CONNS:-0}, "rss_mb": float("$S_RSS"), "cp_rss_mb": float("$S_CP")},
    "bounds": {"rss_mb": $RSS_MAX, "cp_rss_mb": $CP_MAX, "fds": $((IDLE_FDS + FD_SLACK))},
    "reloads": $RELOADS, "reloads_failed": $RELOADS_FAILED,
    "certificates_replaced": $CERTS, "certificates_failed": $CERTS_FAILED,
    "backend_kills": $KILLS, "backend_kills_failed": $KILLS_FAILED, "expected_client_failures": $KILLED_OPEN,
    "client_errors": $ERRORS,
    "load": json.load(open(os.path.join(out, "load-summary.json"))),
    "samples": rows,
    "checks": $CHECKS, "failed_checks": $FAILS,
}, open(os.path.join(out, "soak.json"), "w"), indent=1)
PY
cp "$LLOG" "$OUT/lodestone.log" 2>/dev/null; cp "$T/access.log" "$OUT/access.log" 2>/dev/null
awk -F'\t' '{ printf "%6s %-7s %8s %8s %6s %8s %8s %8s %6s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$SAMPLES" >"$OUT/table.txt"
echo "   table: $OUT/table.txt  JSON: $OUT/soak.json"
finish
