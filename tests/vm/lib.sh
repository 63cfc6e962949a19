# Shared by the VM tests (tests/vm/*.sh, sourced, bash): the temp folder, PASS
# and FAIL, the kernel prepared by tools/ktls-vm/prepare.sh, one VM run with
# its console, and the guest's own summary.
#
#   source "$(dirname "$0")/lib.sh"
#   vm_begin NAME TIMEOUT_VAR_DEFAULT   # sets T, here, src, cache, vm_timeout
#   run_vm LABEL [run.sh OPTIONS...] -- PROGRAM [ARGS...]   # sets vm_rc, vm_out
#   guest_summary LABEL MIN_CHECKS
#
# KTLS_VM_CACHE: the prepared kernel (default build/ktls-vm; the first run
# downloads Debian's kernel package there). KTLS_VM_TIMEOUT: the limit of each
# VM run in seconds. A VM that does not boot is a FAIL, never a skip.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${KTLS_VM_CACHE:-$src/build/ktls-vm}
checks=0
fails=0
run_pid=""
pass() { checks=$((checks + 1)); echo "PASS $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $*"; }

vm_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # run.sh kills its qemu by PID when it is ended.
  [ -n "$run_pid" ] && kill -TERM "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
  [ "${E2E_KEEP:-0}" == 1 ] || rm -rf "$T"
  [ "$rc" -eq 0 ] && [ "$fails" -ne 0 ] && rc=1
  exit "$rc"
}

vm_begin() {  # vm_begin NAME DEFAULT_TIMEOUT_S
  VM_NAME=$1
  vm_timeout=${KTLS_VM_TIMEOUT:-$2}
  T=$(mktemp -d "/tmp/lode-vm-$VM_NAME.XXXXXX")
  trap vm_cleanup EXIT
  trap 'exit 130' INT
  trap 'echo "FAIL $VM_NAME: terminated"; fails=$((fails + 1)); exit 143' TERM
  echo "== $VM_NAME (temp dir $T, VM limit ${vm_timeout}s each)"
  local tool
  for tool in openssl qemu-system-x86_64 cpio; do
    command -v "$tool" >/dev/null || { echo "FAIL $VM_NAME: $tool is not installed (tools/install-deps.sh)"; exit 1; }
  done
  local prep_start
  prep_start=$(date +%s.%N)
  if ! "$src/tools/ktls-vm/prepare.sh" "$cache"; then
    fail "$VM_NAME: tools/ktls-vm/prepare.sh prepared the VM kernel"
    exit 1
  fi
  echo "info prepare: $(awk -v s="$prep_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
}

run_vm() {  # run_vm LABEL [run.sh OPTIONS...] -- PROGRAM [ARGS...]
  local name=$1
  shift
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  vm_out="$T/$name.out"
  local start
  start=$(date +%s.%N)
  "$src/tools/ktls-vm/run.sh" --timeout "$vm_timeout" "${opts[@]}" "$cache" -- "$@" >"$vm_out" 2>&1 &
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

guest_summary() {  # guest_summary LABEL MIN_CHECKS: the guest's own PASS/FAIL count
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

vm_end() {
  echo "== $VM_NAME: $((checks - fails)) passed, $fails failed"
  [ "$fails" -eq 0 ]
}
