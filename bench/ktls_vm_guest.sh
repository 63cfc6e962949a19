#!/bin/sh
# The guest half of bench/ktls_vm_bench.sh (busybox sh, inside the kTLS VM):
# lodestone (one worker) terminating TLS 1.3 in front of lode-backend (echo),
# lodeload bulk through it, with kTLS on and off, interleaved; prints one line
# per run: "run MODE BYTES_EACH_WAY CPU_TICKS WALL_MS EQUAL".
#   ktls_vm_guest.sh DIR MB RUNS LODESTONE BACKEND LODELOAD
dir=$1; mb=$2; runs=$3; lodestone=$4; backend=$5; lodeload=$6
bytes=$((mb * 1048576))
"$backend" --listen 127.0.0.1:9001 --name vm --mode echo 2>/dev/null &
bpid=$!
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
i=0
while [ $i -lt "$runs" ]; do
  for mode in ktls user; do
    [ "$mode" = ktls ] && on=true || on=false
    w=/tmp/run-$mode-$i
    mkdir -p "$w/run"
    cat >"$w/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:8443"]
[[pool]]
name = "echo"
backends = ["127.0.0.1:9001"]
[[certificate]]
name = "a"
cert = "$dir/pki/a.test.pem"
key = "$dir/pki/a.test.key"
[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "echo"
certificate = "a"
[workers]
count = 1
[tls]
ktls = $on
TOML
    : >"$w/lode.log"
    "$lodestone" run "$w/lode.toml" --run-dir "$w/run" 2>>"$w/lode.log" >/dev/null &
    lpid=$!
    n=0
    while [ $n -lt 150 ] && ! grep -q '"event":"start"' "$w/lode.log"; do sleep 0.1; n=$((n + 1)); done
    c0=$(cpu "$lpid")
    t0=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)
    "$lodeload" bulk --connect 127.0.0.1:8443 --sni a.test --ca "$dir/pki/ca.pem" --tls 1.3 \
      --bytes "$bytes" --quiet >"$w/load.json" 2>&1
    rc=$?
    [ $rc -eq 0 ] || head -c 600 "$w/load.json"
    c1=$(cpu "$lpid")
    t1=$(awk '{ printf "%d", $1 * 1000 }' /proc/uptime)
    kill -TERM "$lpid"
    wait "$lpid"
    grep -o '"ktls":"[^"]*"' "$w/lode.log" | head -n 1
    echo "run $mode $bytes $((c1 - c0)) $((t1 - t0)) $([ $rc -eq 0 ] && echo equal || echo FAILED)"
  done
  i=$((i + 1))
done
kill -TERM "$bpid"
