#!/usr/bin/env bash
# The dpdk front's per-core packet work against two baselines measured in the
# same run (issue 6):
#  1. forwarding: the flow engine translating segments of an established
#     passthrough flow (bench/flow_engine_bench: parse, look up, rewrite with
#     new checksums, 1,500-byte frames) vs `dpdk-testpmd` io forwarding on
#     net_null vdevs (one core, both ports; it touches no packet data);
#  2. new flows: the engine's whole connection (SYN -> cookie SYN-ACK, ACK,
#     ClientHello parsed and routed to a reject, FIN) vs the kernel front doing
#     the same (accept, read, parse, alert, close) for `lodeload handshakes`
#     to a reject route: Lodestone's CPU per connection from /proc/PID/stat.
# Prints one table with the ratios. Bounded: a few seconds each.
#
#   bash bench/dpdk_front_bench.sh        (release build; BUILD=dir to change)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD:-$src/build/release}" && pwd)
T=$(mktemp -d /tmp/lode-dpdk-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T" "/var/run/dpdk/lodebench$$"
}
trap cleanup EXIT
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd is missing (apt-get install dpdk-dev)"; exit 1; }

# 1a. testpmd io forwarding, 6 s; the per-second rates of both ports summed.
(sleep 8 | timeout -s INT 6 dpdk-testpmd -l 0-1 --no-huge --no-pci -m 512 --file-prefix="lodebench$$" \
  --vdev=net_null0 --vdev=net_null1 -- --forward-mode=io --total-num-mbufs=8192 --stats-period 1) \
  >"$T/testpmd.log" 2>&1 || true
testpmd_pps=$(awk '/Rx-pps:/ { v[n++] = $2 } END { m = 0; for (i = 2; i + 1 < n; i += 2) { s = v[i] + v[i + 1]; if (s > m) m = s } print m }' "$T/testpmd.log")

# 1b + 2a. The engine's numbers.
"$build/bench/flow_engine_bench" --benchmark_min_time=1 --benchmark_format=json >"$T/engine.json" 2>/dev/null
read -r fwd_c2b fwd_b2c ip_c2b ip_b2c nic_c2b nic_b2c newflow_ns < <(python3 - "$T/engine.json" <<'PY'
import json, sys
b = {x["name"]: x for x in json.load(open(sys.argv[1]))["benchmarks"]}
r = lambda n: b[n]["items_per_second"]
print(r("BM_ForwardClientToBackend"), r("BM_ForwardBackendToClient"),
      r("BM_ForwardInPlaceClientToBackend"), r("BM_ForwardInPlaceBackendToClient"),
      r("BM_ForwardInPlaceNicChecksumClientToBackend"), r("BM_ForwardInPlaceNicChecksumBackendToClient"),
      b["BM_NewFlowRejectedInTheDataplane"]["cpu_time"])
PY
)

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

awk -v tp="$testpmd_pps" -v c2b="$fwd_c2b" -v b2c="$fwd_b2c" -v ic="$ip_c2b" -v ib="$ip_b2c" -v nc="$nic_c2b" \
    -v nb="$nic_b2c" -v nf="$newflow_ns" -v kn="$kernel_ns" 'BEGIN {
  printf "%-58s %14s %14s %8s\n", "test (one core; baseline: testpmd io forwarding)", "lodestone", "baseline", "ratio"
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward client->backend, copied", c2b / 1e6, tp / 1e6, c2b / tp
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward backend->client, copied", b2c / 1e6, tp / 1e6, b2c / tp
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward client->backend, in place", ic / 1e6, tp / 1e6, ic / tp
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward backend->client, in place", ib / 1e6, tp / 1e6, ib / tp
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward client->backend, in place, NIC RX checksum", nc / 1e6, tp / 1e6, nc / tp
  printf "%-58s %11.2f Mpps %9.2f Mpps %7.2fx\n", "forward backend->client, in place, NIC RX checksum", nb / 1e6, tp / 1e6, nb / tp
  printf "%-58s %9.0f ns/conn %8.0f ns/conn %7.1fx\n", "new flow rejected: dpdk engine vs kernel front", nf, kn, kn / nf
}'
