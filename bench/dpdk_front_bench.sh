#!/usr/bin/env bash
# The dpdk front's per-core packet work against two baselines measured in the
# same run (issue 6):
#  1. forwarding: the flow engine translating segments of an established
#     passthrough flow (bench/flow_engine_bench: parse, look up, rewrite with
#     new checksums, 1,500-byte frames) vs `dpdk-testpmd` io forwarding on
#     net_null vdevs (one core, both ports; it touches no packet data);
#     then the issue's own setup: the engine behind a net_ring port fed by an
#     in-process generator (bench/dpdk_ring_forward_bench) vs testpmd io
#     forwarding over net_ring ports on the same core, interleaved 3 times
#     (section 1c below; its JSON is BUILD/dpdk_ring_forward.json, RING_JSON
#     to change, and the "ring_forwarding" key of the main JSON); and the
#     same over 1, 1,000 and 100,000 flows, with and without the burst
#     loop's flow prefetch (section 1d, BUILD/dpdk_ring_flows.json);
#  2. new flows: the engine's whole connection (SYN -> cookie SYN-ACK, ACK,
#     ClientHello parsed and routed to a reject, FIN), and a passthrough one
#     up to the splice (SYN -> cookie, ACK + 600-byte hello -> parse -> route
#     -> backend SYN -> SYN-ACK -> replay -> spliced, RST), vs the kernel
#     front's accept + read + parse (+ alert, close) for `lodeload handshakes`
#     to a reject route: Lodestone's CPU per connection from /proc/PID/stat.
# Prints one table with the ratios, writes the figures as JSON (BENCH_JSON,
# default BUILD/dpdk_front_bench.json) and draws the chart beside it
# (bench/bench_chart.py dpdk, gnuplot: .svg and .png). Bounded: a few
# seconds each.
#
#   bash bench/dpdk_front_bench.sh        (release build; BUILD=dir to change)
#   QUICK=1 bash bench/dpdk_front_bench.sh  (forwarding only: testpmd and the
#                                            engine, in memory and behind
#                                            net_ring, ~5 min; only the ring
#                                            section's JSON, no chart)
#   NEWFLOW=1 bash bench/dpdk_front_bench.sh  (new flows only, section 2:
#                                              the engine and the kernel
#                                              front, ~1 min; no JSON)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD:-$src/build/release}" && pwd)
T=$(mktemp -d /tmp/lode-dpdk-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T" "/var/run/dpdk/lodebench$$"
  ip netns del "lodebench$$" 2>/dev/null || true
}
trap cleanup EXIT
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd is missing (apt-get install dpdk-dev)"; exit 1; }

# 1a. testpmd io forwarding, 6 s; the per-second rates of both ports summed.
[ -n "${NEWFLOW:-}" ] || (sleep 8 | timeout -s INT 6 dpdk-testpmd -l 0-1 --no-huge --no-pci -m 512 \
  --file-prefix="lodebench$$" --vdev=net_null0 --vdev=net_null1 -- --forward-mode=io --total-num-mbufs=8192 \
  --stats-period 1) >"$T/testpmd.log" 2>&1 || true
touch "$T/testpmd.log"
testpmd_pps=$(awk '/Rx-pps:/ { v[n++] = $2 } END { m = 0; for (i = 2; i + 1 < n; i += 2) { s = v[i] + v[i + 1]; if (s > m) m = s } print m }' "$T/testpmd.log")

# 1b + 2a. The engine's numbers.
"$build/bench/flow_engine_bench" --benchmark_min_time=1 --benchmark_format=json >"$T/engine.json" 2>/dev/null
read -r fwd_c2b fwd_b2c ip_c2b ip_b2c nic_c2b nic_b2c ts_c2b ts_b2c newflow_ns passflow_ns < <(python3 - "$T/engine.json" <<'PY'
import json, sys
b = {x["name"]: x for x in json.load(open(sys.argv[1]))["benchmarks"]}
r = lambda n: b[n]["items_per_second"] if n in b else 0  # 0: an older bench binary without it
print(r("BM_ForwardClientToBackend"), r("BM_ForwardBackendToClient"),
      r("BM_ForwardInPlaceClientToBackend"), r("BM_ForwardInPlaceBackendToClient"),
      r("BM_ForwardInPlaceNicChecksumClientToBackend"), r("BM_ForwardInPlaceNicChecksumBackendToClient"),
      r("BM_ForwardInPlaceNicChecksumTimestampsClientToBackend"),
      r("BM_ForwardInPlaceNicChecksumTimestampsBackendToClient"),
      b["BM_NewFlowRejectedInTheDataplane"]["cpu_time"],
      b.get("BM_NewFlowPassedThroughInTheDataplane", {}).get("cpu_time", 0))
PY
)
# 1c. The issue's setup: the engine behind a real ethdev, a net_ring port on
#     one lcore fed by a generator in the same thread
#     (bench/dpdk_ring_forward_bench: rte_eth_rx_burst -> on_frame_in_place
#     -> rte_eth_tx_burst; the generator's ring moves, header restores and
#     sampled checks are charged to Lodestone), against testpmd io forwarding
#     over two net_ring ports on the same core (lcore 0; testpmd's main lcore,
#     which only prints the stats, on 1). --tx-first puts 32 64-byte frames
#     on each port's ring and io forwarding moves them ring to ring without
#     reading them; the engine bench circulates as many (64) 1,502-byte
#     frames. Interleaved: testpmd, engine, testpmd, engine, ... (RING_PAIRS
#     pairs, default 3), each testpmd run 6 s, each engine case at most
#     1.5 s. For context, each pair also runs testpmd's 5tswap mode (MACs,
#     addresses and ports swapped in every frame: a forwarder that writes
#     headers). Rates per wall-clock second (the issue's) and per second of
#     the polling thread's own CPU time (this VM's other work takes part of
#     the core: the thread's share is in the JSON).
# The CPU time (ns) testpmd's forwarding thread has used (sum_exec_runtime,
# or utime + stime where schedstat is missing), or nothing once it is gone.
testpmd_worker_ns() {
  local t
  for t in /proc/"$1"/task/*; do
    case "$(cat "$t/comm" 2>/dev/null)" in
      *worker-0)
        if [ -r "$t/schedstat" ]; then cut -d' ' -f1 "$t/schedstat" 2>/dev/null
        else awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f\n", ($14 + $15) * 1e9 / hz }' "$t/stat" 2>/dev/null; fi
        return ;;
    esac
  done
}
# ring_testpmd MODE TAG: one run; writes "wall_pps cpu_pps stalled_periods"
# to $T/ring-testpmd-TAG.txt (not a command substitution: the trap must
# know testpmd's PID).
ring_testpmd() {
  local log="$T/ring-testpmd-$2.log"
  dpdk-testpmd -l 0-1 --main-lcore 1 --no-huge --no-pci -m 512 --file-prefix="lodebench$$" \
    --vdev=net_ring0 --vdev=net_ring1 -- --forward-mode="$1" --tx-first --stats-period 1 --total-num-mbufs=8192 \
    </dev/null >"$log" 2>&1 &
  local tp=$! ns="" last="" same=0 c p keep=()
  pids+=("$tp")
  sleep "${RING_TESTPMD_S:-6}"
  # SIGINT stops the forwarding (and prints the accumulated counts); the
  # thread's CPU time is read once it has stopped growing (stopped), so
  # frames forwarded while the signal waited for the scheduler are counted
  # on both sides.
  kill -INT "$tp" 2>/dev/null || true
  for _ in $(seq 1 100); do
    c=$(testpmd_worker_ns "$tp")
    [ -z "$c" ] && break
    if [ "$c" = "$last" ]; then same=$((same + 1)); else same=0; fi
    last=$c
    [ "$same" -ge 3 ] && break
    sleep 0.05
  done
  ns=${last:-0}
  for _ in $(seq 1 50); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$tp" 2>/dev/null || true
  wait "$tp" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$tp" ] || keep+=("$p"); done
  pids=("${keep[@]}")
  rm -rf "/var/run/dpdk/lodebench$$"
  (python3 - "$log" "$ns" <<'PY'
import re, statistics, sys
text = open(sys.argv[1], errors="replace").read()
pps = [int(v) for v in re.findall(r"Rx-pps:\s+(\d+)", text)]
sums = [pps[i] + pps[i + 1] for i in range(0, len(pps) - 1, 2)]  # both ports, per stats period
while sums and sums[0] == 0:
    sums.pop(0)  # before the first burst
acc = re.search(r"Accumulated forward statistics.*?RX-packets:\s+(\d+)", text, re.S)
cpu_s = int(sys.argv[2]) / 1e9
total = int(acc.group(1)) if acc else 0
# A period with nothing forwarded after the start: forwarding stopped.
print(statistics.median(sums) if sums else 0, total / cpu_s if cpu_s > 0 else 0, sum(1 for s in sums if s == 0))
PY
  ) >"$T/ring-testpmd-$2.txt"
}
ring_pairs=${RING_PAIRS:-3}
[ -z "${NEWFLOW:-}" ] || ring_pairs=0
ring_tp=() ring_swap=()
for i in $(seq 1 "$ring_pairs"); do
  ring_testpmd io "io-$i"
  ring_tp+=("$(cat "$T/ring-testpmd-io-$i.txt")")
  if ! "$build/bench/dpdk_ring_forward_bench" --json --lcore 0 --file-prefix "lodebench$$" --frames 2e7 \
      --seconds 1.5 >"$T/ring-engine-$i.json" 2>"$T/ring-engine-$i.err"; then
    echo "ring forwarding: dpdk_ring_forward_bench failed (run $i):"
    cat "$T/ring-engine-$i.json" "$T/ring-engine-$i.err"
    exit 1
  fi
  rm -rf "/var/run/dpdk/lodebench$$"
  ring_testpmd 5tswap "5tswap-$i"
  ring_swap+=("$(cat "$T/ring-testpmd-5tswap-$i.txt")")
done
# 1d. Many established flows (the flow table out of cache): the same ring
#     setup with the frames spread over 1, 1,000 and 100,000 spliced flows
#     in a random order, each engine case with FlowEngine::prefetch_flow K
#     frames ahead in the burst loop (K = 0: none; 4; 8), without and with
#     prefetch_flow_links L = 2 frames ahead, interleaved FLOW_REPEAT times
#     (default 2), each case at most 1 s (~3 min in all). Its JSON:
#     BUILD/dpdk_ring_flows.json (FLOWS_JSON to change).
flows_json=${FLOWS_JSON:-$build/dpdk_ring_flows.json}
mkdir -p "$(dirname "$flows_json")"
if [ -z "${NEWFLOW:-}" ] && ! "$build/bench/dpdk_ring_forward_bench" --json --lcore 0 --file-prefix "lodebench$$" --frames 2e7 --seconds 1 \
    --flows "${FLOW_COUNTS:-1,1000,100000}" --prefetch 0,4,8 --links 0,2 --repeat "${FLOW_REPEAT:-2}" \
    >"$flows_json" 2>"$T/ring-flows.err"; then
  echo "many flows: dpdk_ring_forward_bench failed:"
  cat "$flows_json" "$T/ring-flows.err"
  exit 1
fi
rm -rf "/var/run/dpdk/lodebench$$"
flows_table() {
  python3 - "$flows_json" <<'PY'
import json, statistics, sys
doc = json.load(open(sys.argv[1]))
runs = {}
for c in doc["cases"]:
    runs.setdefault((c["name"].split("/")[0], c["flows"], c["prefetch"], c["links"]), []).append(c)
print("%-34s %7s %9s %6s %24s %24s" % ("many flows, one lcore (net_ring)", "flows", "prefetch", "links",
                                       "CPU ns/frame min/med/max", "CPU Mpps min/med/max"))
for (name, flows, k, l), cs in sorted(runs.items(), key=lambda x: (x[0][1], x[0][0], x[0][2], x[0][3])):
    ns = [1e3 / c["cpu_mpps"] for c in cs if c["cpu_mpps"] > 0]
    mpps = [c["cpu_mpps"] for c in cs]
    if not ns:
        continue
    print("%-34s %7d %9s %6s %24s %24s" % (name, flows, "-" if name == "no_engine" else k,
                                           "-" if name == "no_engine" else l,
                                           "%.1f/%.1f/%.1f" % (min(ns), statistics.median(ns), max(ns)),
                                           "%.2f/%.2f/%.2f" % (min(mpps), statistics.median(mpps), max(mpps))))
print("JSON: %s" % sys.argv[1])
PY
}

ring_json=${RING_JSON:-$build/dpdk_ring_forward.json}
mkdir -p "$(dirname "$ring_json")"
ring_table() {
  python3 - "$ring_json" "$ring_pairs" "${ring_tp[@]}" "${ring_swap[@]}" "$T"/ring-engine-*.json <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
tp = [list(map(float, s.split())) for s in sys.argv[3:3 + n]]
swap = [list(map(float, s.split())) for s in sys.argv[3 + n:3 + 2 * n]]
runs = [json.load(open(p)) for p in sorted(sys.argv[3 + 2 * n:], key=lambda p: int(p.rsplit("-", 1)[1][:-5]))]
names = [("client_to_backend_nic_checksum", "client->backend, NIC RX checksum"),
         ("backend_to_client_nic_checksum", "backend->client, NIC RX checksum"),
         ("client_to_backend_sw_checksum", "client->backend, TCP checksum in software"),
         ("backend_to_client_sw_checksum", "backend->client, TCP checksum in software"),
         ("no_engine", "no engine (generator + ring port alone)")]
def mmm(v):
    return [round(min(v), 3), round(statistics.median(v), 3), round(max(v), 3)]
def fmt(v):
    return "%.2f/%.2f/%.2f" % tuple(v)
tp_wall = [t[0] / 1e6 for t in tp]
tp_cpu = [t[1] / 1e6 for t in tp]
summary = {}
print("%-44s %20s %20s %22s %7s" % ("ring forwarding, one lcore (x%d, interleaved)" % n, "lodestone Mpps",
                                     "testpmd io Mpps", "ratio per pair", "median"))
print("%-44s %20s %20s" % ("", "min/median/max", "min/median/max"))
for clock, key, base in (("wall", "mpps", tp_wall), ("CPU", "cpu_mpps", tp_cpu)):
    print("per wall-clock second:" if clock == "wall" else "per second of the polling thread's CPU time:")
    for name, label in names:
        v = [next(c for c in r["cases"] if c["name"] == name)[key] for r in runs]
        ratios = [a / b if b > 0 else 0 for a, b in zip(v, base)]
        s = summary.setdefault(name, {})
        s[key] = mmm(v)
        s["testpmd_" + key] = mmm(base)
        s["ratios_" + clock.lower()] = [round(x, 4) for x in ratios]
        s["ratio_" + clock.lower() + "_median"] = round(statistics.median(ratios), 4)
        print("  %-42s %20s %20s %22s %6.3fx" % (label, fmt(mmm(v)), fmt(mmm(base)),
                                                 " ".join("%.3f" % x for x in ratios), statistics.median(ratios)))
sw_wall = [t[0] / 1e6 for t in swap]
sw_cpu = [t[1] / 1e6 for t in swap]
print("  context: testpmd 5tswap (headers rewritten), Mpps min/median/max: wall %s, CPU %s"
      % (fmt(mmm(sw_wall)), fmt(mmm(sw_cpu))))
print("  testpmd per frame (median): io %.2f ns, 5tswap %.2f ns of CPU time" %
      (1e3 / statistics.median(tp_cpu), 1e3 / statistics.median(sw_cpu)))
stalled = int(sum(t[2] for t in tp + swap))
if stalled:
    print("  WARNING: testpmd forwarded nothing in %d stats periods after it started" % stalled)
share = [c["cpu_seconds"] / c["seconds"] for r in runs for c in r["cases"] if c["seconds"] > 0]
print("  the polling thread's share of its core during the engine runs: %.0f-%.0f%%"
      % (100 * min(share), 100 * max(share)))
def testpmd_run(t):
    return {"wall_mpps": round(t[0] / 1e6, 3), "cpu_mpps": round(t[1] / 1e6, 3), "stalled_periods": int(t[2])}
doc = {"pairs": n, "lcore": runs[0]["lcore"], "inflight": runs[0]["inflight"], "frame_bytes": runs[0]["frame_bytes"],
       "testpmd_io": [testpmd_run(t) for t in tp], "testpmd_5tswap": [testpmd_run(t) for t in swap],
       "engine_runs": runs, "summary": summary}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print("JSON: %s" % out)
PY
}

forwarding_table() {
  awk -v tp="$testpmd_pps" -v c2b="$fwd_c2b" -v b2c="$fwd_b2c" -v ic="$ip_c2b" -v ib="$ip_b2c" -v nc="$nic_c2b" \
      -v nb="$nic_b2c" -v tc="$ts_c2b" -v tb="$ts_b2c" 'function row(name, v) {
    printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx %7.1f ns\n", name, v / 1e6, tp / 1e6, v / tp, (v > 0 ? 1e9 / v : 0)
  }
  BEGIN {
    printf "%-58s %14s %14s %8s %10s\n", "test (one core; baseline: testpmd io forwarding)", "lodestone", "baseline", "ratio", "per frame"
    row("forward client->backend, copied", c2b)
    row("forward backend->client, copied", b2c)
    row("forward client->backend, in place", ic)
    row("forward backend->client, in place", ib)
    row("forward client->backend, in place, NIC RX checksum", nc)
    row("forward backend->client, in place, NIC RX checksum", nb)
    row("the same with timestamps, client->backend", tc)
    row("the same with timestamps, backend->client", tb)
    printf "%-58s %26s %18.1f ns\n", "testpmd io forwarding, per frame", "", (tp > 0 ? 1e9 / tp : 0)
  }'
}
if [ -n "${QUICK:-}" ]; then
  forwarding_table
  ring_table
  flows_table
  exit 0
fi

# 2b. The kernel front: one worker, a reject route, lodeload opening connections.
"$src/tools/make-test-pki.sh" "$T/pki" r.test >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "l"
listen = ["127.0.0.1:$port"]
[[route]]
name = "r"
names = ["r.test"]
action = "reject"
[workers]
count = 1
[log]
access = "off"
TOML
mkdir -p "$T/run"
"$build/lodestone" run "$T/lode.toml" --run-dir "$T/run" 2>"$T/lode.log" >/dev/null &
lpid=$!
pids+=("$lpid")
for _ in $(seq 1 100); do grep -q '"event":"start"' "$T/lode.log" && break; sleep 0.1; done
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
conns=20000
c0=$(cpu "$lpid")
"$build/lodeload" handshakes --connect "127.0.0.1:$port" --sni r.test --insecure --count "$conns" --concurrency 16 \
  --quiet >"$T/load.json" 2>/dev/null || true
c1=$(cpu "$lpid")
ticks=$(getconf CLK_TCK)
kernel_ns=$(awk -v d=$((c1 - c0)) -v t="$ticks" -v n="$conns" 'BEGIN { printf "%.0f", d / t * 1e9 / n }')

new_flow_table() {
  awk -v nf="$newflow_ns" -v pf="$passflow_ns" -v kn="$kernel_ns" 'BEGIN {
    printf "%-58s %9.0f ns/conn %8.0f ns/conn %7.1fx\n", "new flow rejected: dpdk engine vs kernel front", nf, kn, kn / nf
    if (pf > 0) printf "%-58s %9.0f ns/conn %8.0f ns/conn %7.1fx\n", "new flow passed through (to the splice) vs the same", pf, kn, kn / pf
  }'
}
if [ -n "${NEWFLOW:-}" ]; then
  new_flow_table
  exit 0
fi
forwarding_table
ring_table
flows_table
new_flow_table

json_out=${BENCH_JSON:-$build/dpdk_front_bench.json}
mkdir -p "$(dirname "$json_out")"
python3 - "$json_out" "$testpmd_pps" "$fwd_c2b" "$fwd_b2c" "$ip_c2b" "$ip_b2c" "$nic_c2b" "$nic_b2c" "$ts_c2b" "$ts_b2c" "$newflow_ns" \
  "$kernel_ns" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$passflow_ns" <<'PY'
import json, sys
out, tp, c2b, b2c, ic, ib, nc, nb, tc, tb, nf, kn, date, load, pf = sys.argv[1:]
tp = float(tp) / 1e6
rows = [("copied c->b", c2b), ("copied b->c", b2c), ("in place c->b", ic), ("in place b->c", ib),
        ("NIC csum c->b", nc), ("NIC csum b->c", nb), ("NIC csum+TS c->b", tc), ("NIC csum+TS b->c", tb)]
doc = {"meta": {"date": date, "command": "bash bench/dpdk_front_bench.sh", "loadavg_end": load},
       "forwarding": [{"name": n, "lodestone_mpps": round(float(v) / 1e6, 3), "testpmd_mpps": round(tp, 3),
                       "ratio": round(float(v) / 1e6 / tp, 3) if tp > 0 else None} for n, v in rows],
       "new_flow": {"dpdk_ns": round(float(nf), 1), "kernel_ns": float(kn),
                    "ratio": round(float(kn) / float(nf), 1) if float(nf) > 0 else None},
       "new_flow_passthrough": {"dpdk_ns": round(float(pf), 1), "kernel_ns": float(kn),
                                "ratio": round(float(kn) / float(pf), 1) if float(pf) > 0 else None}}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print(f"JSON: {out}")
PY
python3 - "$json_out" "$ring_json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["ring_forwarding"] = json.load(open(sys.argv[2]))
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
PY
python3 "$src/bench/bench_chart.py" dpdk "$json_out" "${json_out%.json}"

# 3. Terminate through the dpdk front (issue 6): new TLS flows per second and
#    the bulk rate through the hand-off to a worker (exception port, PROXY v2)
#    vs the kernel front, one worker each, the same routes, one after the
#    other in this run: `lodeload handshakes` (full TLS 1.3 handshakes, 16 at
#    a time) and `lodeload bulk` (100 MiB each way, SHA-256 checked) to a
#    terminate route relaying to an echo backend. The dpdk front's lcore polls
#    its own core, so only rates are compared. Needs root (taps, a namespace).
if [ "$(id -u)" -ne 0 ]; then echo "terminate: needs root (taps, a network namespace): not measured"; exit 0; fi
"$src/tools/make-test-pki.sh" "$T/tpki" t.test >/dev/null
bport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/lode-backend" --listen "127.0.0.1:$bport" --name echo --mode echo >"$T/echo.log" 2>&1 &
pids+=($!)
tns="lodebench$$"
tnet="10.$(( $$ % 200 + 20 )).81"
terminate_config() {  # terminate_config FILE LISTEN [dpdk]
  cat >"$1" <<TOML
$([ "${3:-}" = dpdk ] && echo 'front = "dpdk"')
[[listener]]
name = "l"
listen = ["$2"]
[[pool]]
name = "echo"
backends = ["127.0.0.1:$bport"]
[[certificate]]
name = "t"
cert = "$T/tpki/t.test.pem"
key = "$T/tpki/t.test.key"
[[route]]
name = "t"
names = ["t.test"]
action = "terminate"
pool = "echo"
certificate = "t"
[workers]
count = 1
[log]
access = "off"
TOML
  if [ "${3:-}" = dpdk ]; then
    cat >>"$1" <<TOML
[dpdk]
eal = ["-l", "0-1", "--no-huge", "--no-pci", "-m", "256", "--file-prefix=lodebench$$", "--vdev=net_tap0,iface=lbw$$"]
[dpdk.exception]
vdev = "net_tap1,iface=lbx$$"
interface = "lbx$$"
kernel_address = "169.254.$(( $$ % 250 + 1 )).1"
address = "169.254.$(( $$ % 250 + 1 )).2"
TOML
  fi
}
# measure_terminate FRONT TARGET [ns]: prints "handshakes/s bulk-bytes/s"
measure_terminate() {
  local run=()
  [ -n "${3:-}" ] && run=(ip netns exec "$3")
  "${run[@]}" "$build/lodeload" handshakes --connect "$2" --sni t.test --ca "$T/tpki/ca.pem" --count 3000 \
    --concurrency 16 --timeout-ms 5000 --quiet >"$T/hs-$1.json" 2>/dev/null || true
  "${run[@]}" "$build/lodeload" bulk --connect "$2" --sni t.test --ca "$T/tpki/ca.pem" --bytes 100Mi \
    --timeout-ms 20000 --quiet >"$T/bulk-$1.json" 2>/dev/null || true
  python3 - "$T/hs-$1.json" "$T/bulk-$1.json" <<'PY'
import json, sys
h, b = (json.load(open(p)) for p in sys.argv[1:3])
print(h["handshakes"]["per_s"], b["bytes"]["received_per_s"] if b["errors"]["total"] == 0 else 0,
      h["errors"]["total"] + b["errors"]["total"])
PY
}
start_lodestone_bench() {  # start_lodestone_bench CONFIG NAME: sets tpid
  mkdir -p "$T/run-$2"
  "$build/lodestone" run "$1" --run-dir "$T/run-$2" 2>"$T/lode-$2.log" >/dev/null &
  tpid=$!
  pids+=("$tpid")
  for _ in $(seq 1 150); do grep -q '"event":"start"' "$T/lode-$2.log" && return 0; sleep 0.1; done
  echo "terminate: lodestone ($2) did not start: $(tail -3 "$T/lode-$2.log")"; exit 1
}
kport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
terminate_config "$T/kernel.toml" "127.0.0.1:$kport"
start_lodestone_bench "$T/kernel.toml" kernel
read -r k_hs k_bulk k_err < <(measure_terminate kernel "127.0.0.1:$kport")
kill -TERM "$tpid"; wait "$tpid" 2>/dev/null || true
terminate_config "$T/dpdk.toml" "$tnet.1:443" dpdk
start_lodestone_bench "$T/dpdk.toml" dpdk
ip netns add "$tns"
ip link set "lbw$$" netns "$tns"
ip netns exec "$tns" ip addr add "$tnet.2/24" dev "lbw$$"
ip netns exec "$tns" ip link set "lbw$$" up
ip netns exec "$tns" ip link set lo up
read -r d_hs d_bulk d_err < <(measure_terminate dpdk "$tnet.1:443" "$tns")
kill -TERM "$tpid"; wait "$tpid" 2>/dev/null || true
awk -v kh="$k_hs" -v kb="$k_bulk" -v dh="$d_hs" -v db="$d_bulk" -v ke="$k_err" -v de="$d_err" 'BEGIN {
  printf "%-58s %14s %14s %8s\n", "terminate (1 worker; baseline: the kernel front)", "dpdk front", "kernel front", "ratio"
  printf "%-58s %9.0f hs/s %9.0f hs/s %7.2fx\n", "new TLS flows handed to a worker (full handshakes)", dh, kh, (kh > 0 ? dh / kh : 0)
  printf "%-58s %9.1f MB/s %9.1f MB/s %7.2fx\n", "bulk through a worker (100 MiB each way, echo)", db / 1e6, kb / 1e6, (kb > 0 ? db / kb : 0)
  if (ke + de > 0) printf "terminate: lodeload errors: kernel %d, dpdk %d (a failed bulk shows 0 MB/s)\n", ke, de
}'
python3 - "$json_out" "$d_hs" "$k_hs" "$d_bulk" "$k_bulk" <<'PY'
import json, sys
out, dh, kh, db, kb = sys.argv[1], *map(float, sys.argv[2:])
doc = json.load(open(out))
doc["terminate"] = {"handshakes_per_s": {"dpdk": dh, "kernel": kh, "ratio": round(dh / kh, 2) if kh else None},
                    "bulk_bytes_per_s": {"dpdk": db, "kernel": kb, "ratio": round(db / kb, 2) if kb else None}}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
PY
