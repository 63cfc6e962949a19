#!/usr/bin/env bash
# The access log to a file: [log] sample and the reopen on SIGUSR1.
#
# 1. sample = 0.25: 600 successful connections give about 150 lines
#    (bounds 15%..35%, beyond 5 standard deviations of the binomial), and
#    every one of 40 failed connections (unknown name: alert) has its line.
#    Every line is one JSON object carrying the generation in service.
# 2. sample = 1 (a reload changes it): logrotate's way, while connections
#    go on: the file is renamed, SIGUSR1, more connections. The renamed file
#    and the new one hold exactly one line per connection made (none lost,
#    none twice), every line whole JSON (no interleaving), and what was
#    made after the reopen is in the new file.
# 3. SIGUSR2 prints the counters (the event SIGUSR1 used to print); a
#    reopen that cannot open the path keeps the old file and says so.
source "$(dirname "$0")/lib.sh"
e2e_begin access_log 90
make_pki a.test

P=$(free_port); PA=$(free_port); MP=$(free_port)
start_backend app "$PA"
write_config() {  # write_config SAMPLE
  a_test_config "$T/lode.toml.new" "$P" "$PA"
  printf '\n[admin]\nmetrics = "127.0.0.1:%s"\n\n[log]\naccess = "logs/access.log"\nsample = %s\n' "$MP" "$1" \
    >>"$T/lode.toml.new"
  mv "$T/lode.toml.new" "$T/lode.toml"
}
mkdir -p "$T/logs"
write_config 0.25
start_lodestone "$T/lode.toml" --workers 2
ALOG="$T/logs/access.log"

# load SNI N [ARGS...]: N connections, one request each; prints "ok failed".
load() {
  local sni=$1 n=$2; shift 2
  NETCLIENT_TIMEOUT=60 netclient loop --port "$P" --sni "$sni" --ca "$PKI/ca.pem" --threads 4 --seconds 40 \
    --max "$n" "$@" >"$T/load.out" 2>&1
  python3 - "$T/load.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
ok = re.search(r"ok=(\d+)", t); failed = re.search(r"failed=(\d+)", t)
print(ok.group(1) if ok else "?", failed.group(1) if failed else "?")
PY
}
# lines FILE... : counts "total ok failed bad_json nogen" over the files.
lines() {
  python3 - "$@" <<'PY'
import json, sys
total = ok = failed = bad = nogen = 0
for path in sys.argv[1:]:
    try:
        f = open(path)
    except OSError:
        continue
    for line in f:
        total += 1
        try:
            v = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if v.get("result") == "ok": ok += 1
        else: failed += 1
        if not isinstance(v.get("generation"), int) or v["generation"] < 1: nogen += 1
print(total, ok, failed, bad, nogen)
PY
}
failed_lines_ge() { [ "$(lines "$ALOG" | cut -d' ' -f3)" -ge "$1" ]; }
total_lines_ge() { [ "$(lines "$@" | cut -d' ' -f1)" -ge "${!#}" ] 2>/dev/null; }

# ---------------------------------------------------------------- 1. sample = 0.25
# (The loop's threads may each make one more than --max: the counts it
# reports are the connections made.)
read -r ok failed <<<"$(load a.test 600)"
assert_eq "connections to a.test succeed" 0 "$failed"
assert_ge "at least 600 of them" "$ok" 600
read -r ok2 failed2 <<<"$(load nope.test 40)"
assert_eq "connections to an unknown name fail" 0 "$ok2"
assert_ge "at least 40 of them" "$failed2" 40
check "every failed connection is logged" wait_for 5 failed_lines_ge "$failed2"
sleep 0.5  # one more flush tick of both workers
read -r total lok lfailed bad nogen <<<"$(lines "$ALOG")"
echo "   sample=0.25: $lok lines of $ok successful connections, $lfailed of $failed2 failed"
assert_ge "sampled: at least 15% of the ok connections" "$lok" "$((ok * 15 / 100))"
assert_le "sampled: at most 35% of the ok connections" "$lok" "$((ok * 35 / 100))"
assert_eq "sampled: exactly the failed connections" "$failed2" "$lfailed"
assert_eq "every line is JSON" 0 "$bad"
assert_eq "every line carries the generation" 0 "$nogen"
assert_contains "the failed ones say why" "$(grep -F nope.test "$ALOG" | head -n 1)" '"result":"no_route"'

# ---------------------------------------------------------------- 2. reopen (logrotate)
write_config 1
assert_eq "a reload sets sample = 1" reloaded "$(reload)"
: >"$ALOG"  # from here on, count from zero
NETCLIENT_TIMEOUT=60 netclient loop --port "$P" --sni a.test --ca "$PKI/ca.pem" --threads 4 --seconds 40 --max 800 \
  >"$T/during.out" 2>&1 &
DURING=$!
PIDS+=("$DURING")
check "connections are logged before the rename" wait_for 10 total_lines_ge "$ALOG" 50
mv "$ALOG" "$ALOG.1"
before=$(log_count '"event":"access_log_reopened"')
kill -USR1 "$LPID"
check "SIGUSR1: the access log is reopened" wait_log_count '"event":"access_log_reopened"' $((before + 1)) 5
wait "$DURING"
read -r ok3 failed3 <<<"$(load a.test 100)"  # all after the reopen
during=$(sed -n 's/.*ok=\([0-9]*\) failed=\([0-9]*\).*/\1 \2/p' "$T/during.out")
made=$(( ${during% *} + ${during#* } + ok3 + failed3 ))
check "all lines are written" wait_for 5 total_lines_ge "$ALOG.1" "$ALOG" "$made"
sleep 0.3
read -r total lok lfailed bad nogen <<<"$(lines "$ALOG.1" "$ALOG")"
read -r new_total _ <<<"$(lines "$ALOG")"
read -r old_total _ <<<"$(lines "$ALOG.1")"
echo "   reopen: $made connections; $old_total lines in the renamed file, $new_total in the new one"
assert_eq "one line per connection across both files (none lost, none twice)" "$made" "$total"
assert_eq "no line is split or interleaved" 0 "$bad"
assert_ge "the renamed file kept the lines before the reopen" "$old_total" 50
assert_ge "the new file has everything after the reopen" "$new_total" 100

# ---------------------------------------------------------------- 3. SIGUSR2; a reopen that fails
before=$(log_count '"handshakes":')
kill -USR2 "$LPID"
check "SIGUSR2 prints the counters" wait_log_count '"handshakes":' $((before + 1)) 5
mv "$T/logs" "$T/logs.gone"
mkdir -p "$T/logs"; chmod 000 "$T/logs"
if [ "$(id -u)" = 0 ]; then rmdir "$T/logs"; touch "$T/logs"; fi  # root ignores modes: a file where the directory was
kill -USR1 "$LPID"
check "a reopen that cannot open the path says so" wait_log_count '"event":"access_log_reopen_failed"' 1 5
read -r ok4 _ <<<"$(load a.test 20)"
check "after a failed reopen, lines still go to the open file" wait_for 5 total_lines_ge "$T/logs.gone/access.log" $((new_total + ok4))
finish
