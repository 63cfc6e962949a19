#!/usr/bin/env bash
# vm.ktls_probe: kTLS for real, in a VM whose kernel has it (the host's kernel
# has no `tls` ULP). Boots Debian's 6.1 kernel under qemu (tools/ktls-vm/) and
# runs tests/vm/ktls_probe_guest.sh there: Debian's `openssl s_server` and
# `s_client` with kTLS enabled (OPENSSL_CONF `Options = KTLS`) exchange data
# over TLS 1.2 and 1.3 (AES-128/256-GCM, ChaCha20-Poly1305) and serve a file
# with SSL_sendfile; /proc/net/tls_stat must show that the kernel did the
# record layer (TlsTxSw, and TlsRxSw for TLS 1.2, grow; TlsDecryptError does
# not). Then the negative control: the same exchanges in a VM booted with
# module_blacklist=tls must work in user space and report no kTLS.
#
#   bash tests/vm/ktls_probe.sh
#
# KTLS_VM_CACHE: the prepared kernel (default build/ktls-vm; the first run
# downloads Debian's kernel package there). KTLS_PROBE_TIMEOUT: the limit of
# each VM run in seconds (default 120). A VM that does not boot, or kTLS that
# is not used, is a FAIL, never a skip.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${KTLS_VM_CACHE:-$src/build/ktls-vm}
vm_timeout=${KTLS_PROBE_TIMEOUT:-120}
checks=0
fails=0
pass() { checks=$((checks + 1)); echo "PASS $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $*"; }

T=$(mktemp -d /tmp/lode-vm-ktls_probe.XXXXXX)
run_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # run.sh kills its qemu by PID when it is ended.
  [ -n "$run_pid" ] && kill -TERM "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
  [ "${E2E_KEEP:-0}" == 1 ] || rm -rf "$T"
  [ "$rc" -eq 0 ] && [ "$fails" -ne 0 ] && rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "FAIL ktls_probe: terminated"; fails=$((fails + 1)); exit 143' TERM
echo "== ktls_probe (temp dir $T, VM limit ${vm_timeout}s each)"

for tool in openssl qemu-system-x86_64 cpio; do
  command -v "$tool" >/dev/null || { echo "FAIL ktls_probe: $tool is not installed (tools/install-deps.sh)"; exit 1; }
done

# What the guest needs, in $G: a test PKI, the kTLS configuration, the data.
G="$T/guest"
"$src/tools/make-test-pki.sh" "$G/pki" ktls.test >/dev/null
cat >"$G/ktls.cnf" <<'CNF'
# Enables kTLS (SSL_OP_ENABLE_KTLS) in every SSL_CTX: `openssl s_server` and
# `s_client` 3.0 have no -ktls option.
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = ktls_on
[ktls_on]
Options = KTLS
CNF
for i in $(seq 1 1000); do printf 'line %05d abcdefghijklmnopqrstuvwxyz 0123456789 kTLS probe\n' "$i"; done >"$G/payload.txt"
head -c 262144 /dev/urandom >"$G/blob.bin"

prep_start=$(date +%s.%N)
if ! "$src/tools/ktls-vm/prepare.sh" "$cache"; then
  fail "ktls_probe: tools/ktls-vm/prepare.sh prepared the VM kernel"
  exit 1
fi
echo "info prepare: $(awk -v s="$prep_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"

run_vm() {  # run_vm NAME MODE [run.sh OPTIONS...]: the guest script; sets vm_rc, vm_out
  local name=$1 mode=$2
  shift 2
  vm_out="$T/$name.out"
  local start
  start=$(date +%s.%N)
  "$src/tools/ktls-vm/run.sh" --timeout "$vm_timeout" "$@" \
    --file /usr/bin/openssl --file "$G" \
    "$cache" -- "$here/ktls_probe_guest.sh" "$G" "$mode" >"$vm_out" 2>&1 &
  run_pid=$!
  wait "$run_pid"
  vm_rc=$?
  run_pid=""
  tr -d '\r' <"$vm_out" >"$vm_out.txt" && mv "$vm_out.txt" "$vm_out"
  echo "---- $name: VM console"
  cat "$vm_out"
  echo "---- $name: end of VM console"
  local boot wall
  boot=$(sed -n 's/^ktls-vm: init at uptime \([0-9.]*\) s.*/\1/p' "$vm_out" | head -n 1)
  wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  if [ -n "$boot" ]; then
    pass "$name: the VM booted (init at ${boot} s guest uptime; the whole run took ${wall} s)"
  else
    fail "$name: the VM booted (no init line on the console; run.sh status $vm_rc after ${wall} s)"
  fi
}

guest_summary() {  # guest_summary NAME: the guest's own PASS/FAIL count
  local name=$1 summary passed failed
  summary=$(grep -E '^guest checks: [0-9]+ passed, [0-9]+ failed$' "$vm_out" | tail -n 1)
  passed=$(grep -c '^PASS ' "$vm_out")
  failed=$(grep -c '^FAIL ' "$vm_out")
  if [ -z "$summary" ]; then
    fail "$name: the guest script ran to its end (no summary; run.sh status $vm_rc)"
  elif [ "$vm_rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    fail "$name: all guest checks passed ($summary; run.sh status $vm_rc)"
  elif [ "$passed" -lt "$2" ]; then
    fail "$name: at least $2 guest checks ran (saw $passed)"
  else
    pass "$name: all $passed guest checks passed"
  fi
}

# kTLS on: the tls_stat check, 6 -rev exchanges (7 checks for TLS 1.2, 5 for
# TLS 1.3), 2 sendfile exchanges (5 checks each).
run_vm ktls ktls
guest_summary ktls 47
tx_total=$(sed -n 's/^ktls-vm:   TlsTxSw[[:space:]]*\([0-9]*\)$/\1/p' "$vm_out")
rx_total=$(sed -n 's/^ktls-vm:   TlsRxSw[[:space:]]*\([0-9]*\)$/\1/p' "$vm_out")
de_total=$(sed -n 's/^ktls-vm:   TlsDecryptError[[:space:]]*\([0-9]*\)$/\1/p' "$vm_out")
echo "info ktls: tls_stat at the end: TlsTxSw=${tx_total:-?} TlsRxSw=${rx_total:-?} TlsDecryptError=${de_total:-?}"
# 8 connections offload sending at both ends, the 4 TLS 1.2 ones receiving too.
if [ "${tx_total:-0}" -ge 16 ] && [ "${rx_total:-0}" -ge 8 ] && [ "${de_total:-x}" == 0 ]; then
  pass "ktls: the VM's final tls_stat: TlsTxSw >= 16, TlsRxSw >= 8, TlsDecryptError 0"
else
  fail "ktls: the VM's final tls_stat: TlsTxSw >= 16, TlsRxSw >= 8, TlsDecryptError 0"
fi

# The negative control: no tls module, the same exchanges in user space.
# 1 + 6 * 3 + 2 * 3 checks.
run_vm fallback fallback --cmdline module_blacklist=tls
guest_summary fallback 25

echo "== ktls_probe: $((checks - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
