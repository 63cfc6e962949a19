#!/usr/bin/env bash
# kTLS vs user-space TLS through Lodestone's relay, measured where kTLS exists:
# in the 6.1 VM of tools/ktls-vm/ (qemu TCG: absolute figures are meaningless,
# the ratio in the same VM is what counts). lodestone (one worker, TLS 1.3
# AES-128-GCM... the client's default suite) terminates in front of an echo
# backend; lodeload bulk sends MB each way with SHA-256 checked; Lodestone's
# CPU ticks (utime + stime of the dataplane process, /proc/PID/stat) per MB
# relayed, kTLS on vs `[tls] ktls = false`, interleaved RUNS times.
#
#   bash bench/ktls_vm_bench.sh [MB] [RUNS]      (default 100 MB, 3 runs; release build)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${BUILD:-$src/build/release}" && pwd)
mb=${1:-100}
runs=${2:-3}
cache=${KTLS_VM_CACHE:-$src/build/ktls-vm}
T=$(mktemp -d /tmp/lode-ktls-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
"$src/tools/ktls-vm/prepare.sh" "$cache" >/dev/null
"$src/tools/make-test-pki.sh" "$T/g/pki" a.test >/dev/null
"$src/tools/ktls-vm/run.sh" --timeout 580 --mem 1024 --file "$T/g" --file "$build/lodestone" \
  --file "$build/lode-backend" --file "$build/lodeload" "$cache" -- "$src/bench/ktls_vm_guest.sh" "$T/g" "$mb" \
  "$runs" "$build/lodestone" "$build/lode-backend" "$build/lodeload" | tr -d '\r' | tee "$T/out.txt" | grep -E '^(run|"ktls)' || true
awk -v mb="$mb" '
  /^run / { n[$2]++; t[$2] += $4; if ($6 != "equal") bad = 1 }
  END {
    if (!n["ktls"] || !n["user"]) { print "no complete runs"; exit 1 }
    k = t["ktls"] / n["ktls"]; u = t["user"] / n["user"]
    printf "lodestone CPU per MB relayed each way (VM ticks of 10 ms): kTLS %.2f, user space %.2f; user/kTLS = %.2fx\n", k / mb, u / mb, (k > 0 ? u / k : 0)
    if (bad) { print "a run did not echo every byte"; exit 1 }
  }' "$T/out.txt"
