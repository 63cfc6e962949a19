#!/usr/bin/env bash
# Reload under load (issue 5): while lodeload opens TLS connections
# continuously (each sends 64 bytes through to an echo backend and checks
# them; bounded: 60 s, 500 connections/s at most, stopped with SIGINT once the
# reloads are done), 100 `lodectl routes reload CONFIG` calls alternate two
# configurations that send a.test to different backends (blue, green).
#
# Checks: every reload succeeds, each answers a generation of its own, in
# service when it answers; lodeload counts zero failed connections; every
# connection's access-log line names the generation whose configuration
# routed it (a generation some reload answered, or the start's) and the
# backend that generation's configuration names; connections were made
# under many of the generations (the load spanned the reloads).
source "$(dirname "$0")/lib.sh"
e2e_begin reload_100 120
make_pki a.test
LODELOAD=${LODELOAD:-$(dirname "$LODESTONE")/lodeload}
[ -x "$LODELOAD" ] || { echo "FAIL reload_100: $LODELOAD is not built"; exit 1; }

P=$(free_port); PB=$(free_port); PG=$(free_port); MP=$(free_port)
start_backend blue "$PB" echo
start_backend green "$PG" echo
write_config() {  # write_config FILE BACKEND_PORT
  a_test_config "$1" "$P" "$2"
  printf '\n[admin]\nmetrics = "127.0.0.1:%s"\n\n[log]\naccess = "access.log"\n' "$MP" >>"$1"
}
write_config "$T/blue.toml" "$PB"
write_config "$T/green.toml" "$PG"
start_lodestone "$T/blue.toml" --workers 2
SOCK="$T/run/admin.sock"
g0=$(timeout 10 "$LODECTL" --socket "$SOCK" --json status | jfield generation)

"$LODELOAD" handshakes --connect "127.0.0.1:$P" --sni a.test --ca "$PKI/ca.pem" --rate 500 --concurrency 8 \
  --duration 60 --request 64 --quiet >"$T/load.json" 2>"$T/load.err" &
LOAD=$!
PIDS+=("$LOAD")
sleep 0.5

: >"$T/reloads.txt"  # "CONFIG_NAME ANSWER_JSON" per reload, read at the end
refused=0
t0=$(now_ms)
for i in $(seq 1 100); do
  if [ $((i % 2)) = 1 ]; then cfg=green; else cfg=blue; fi
  out=$(timeout 10 "$LODECTL" --socket "$SOCK" --json routes reload "$T/$cfg.toml" 2>>"$T/reload.err") ||
    refused=$((refused + 1))
  printf '%s %s\n' "$cfg" "$out" >>"$T/reloads.txt"
done
t1=$(now_ms)
sleep 0.3
kill -INT "$LOAD"
wait "$LOAD"
load_rc=$?
echo "   100 reloads in $(( (t1 - t0) / 1000 )).$(( (t1 - t0) % 1000 / 100 )) s; lodeload: $(head -c 400 "$T/load.json")"
assert_eq "100 reloads, none refused" 0 "$refused"
assert_eq "lodeload: exit 0 (no failed connection)" 0 "$load_rc"
# Connections "aborted": the ones in progress when SIGINT ended the run.
read -r made failed aborted <<<"$(python3 -c 'import json,sys
c = json.load(open(sys.argv[1]))["connections"]
print(c["started"], c["failed"], c["aborted"])' "$T/load.json" 2>/dev/null)"
assert_eq "lodeload: zero failed connections" 0 "$failed"
assert_ge "lodeload: connections made during the reloads" "$made" 200
assert_le "lodeload: at most the 8 open at the end were aborted by the stop" "$aborted" 8
sleep 0.5  # the workers' last log batch

python3 - "$T/reloads.txt" "$T/access.log" "$g0" "127.0.0.1:$PB" "127.0.0.1:$PG" "$made" >"$T/verdict.txt" <<'PY'
import json, sys
reloads_path, log_path, g0, blue, green, made = sys.argv[1:7]
backend = {"blue": blue, "green": green}
reloads = []
for line in open(reloads_path):
    cfg, answer = line.split(" ", 1)
    a = json.loads(answer)
    reloads.append((int(a["generation"]), cfg, "true" if a.get("in_service") is True else "false"))
gens = [g for g, _, _ in reloads]
print("distinct", len(set(gens)) == len(gens) and all(b > a for a, b in zip(gens, gens[1:])))
print("in_service", sum(1 for _, _, s in reloads if s == "true"))
expected = {g: backend[c] for g, c, _ in reloads}
lines = bad_gen = wrong = failed = 0
seen = set()
for raw in open(log_path):
    v = json.loads(raw)
    if v.get("sni") != "a.test":
        continue
    lines += 1
    g = v.get("generation")
    if v.get("result") != "ok":
        failed += 1
    if isinstance(g, int) and g <= int(g0):
        want = blue  # the configuration of the start
    elif g in expected:
        want = expected[g]
    else:
        bad_gen += 1
        continue
    seen.add(g)
    # A connection the stop aborted before it had a backend reached none
    # (counted in `failed` above, bounded by the aborted ones).
    if v.get("backend") is None and v.get("result") != "ok":
        continue
    if v.get("backend") != want:
        wrong += 1
        if wrong <= 3:
            print("wrong_example", g, v.get("backend"), want, file=sys.stderr)
print("lines", lines)
print("failed", failed)
print("bad_generation", bad_gen)
print("wrong_backend", wrong)
print("generations_seen", len(seen & set(gens)))
PY
v() { sed -n "s/^$1 //p" "$T/verdict.txt"; }
echo "   access log: $(tr '\n' ' ' <"$T/verdict.txt")"
assert_eq "each reload answered a generation of its own (increasing)" True "$(v distinct)"
assert_eq "each reload was in service when it answered" 100 "$(v in_service)"
assert_le "one access-log line per connection lodeload made" "$(v lines)" "$made"
assert_ge "one access-log line per connection lodeload made (the stop may abort some before accept)" "$(v lines)" \
  $((made - aborted))
assert_le "no connection failed (access log) but the ones the stop aborted" "$(v failed)" "$aborted"
assert_eq "every line names a generation a reload answered (or the start's)" 0 "$(v bad_generation)"
assert_eq "every connection reached the backend of its generation" 0 "$(v wrong_backend)"
assert_ge "connections were made under at least 50 of the 100 generations" "$(v generations_seen)" 50
finish
