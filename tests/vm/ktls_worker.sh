#!/usr/bin/env bash
# vm.ktls_worker: the workers' kTLS path for real, in a VM whose kernel has the
# tls ULP (the host's has not). Boots Debian's 6.1 kernel under qemu
# (tools/ktls-vm/) and runs tests/vm/ktls_worker_guest.sh there: the kTLS
# unit tests (TLS 1.2 and 1.3 x AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305,
# BULK_MB each way with equal SHA-256, application data in the Finished's
# segment, a KeyUpdate, kTLS off in the configuration) expecting the kernel to
# do the record layer both ways; then `lodestone run` with curl and
# `openssl s_client` clients. Then the negative control: a VM booted with
# module_blacklist=tls runs the same and must fall back to user space and say
# so.
#
#   bash tests/vm/ktls_worker.sh [BUILD_DIR]     (default build/release)
#
# KTLS_WORKER_MB: bulk per suite and direction with kTLS (default 50; the
# fallback run uses a fifth). KTLS_VM_CACHE, KTLS_VM_TIMEOUT (default 240):
# see tests/vm/lib.sh.
source "$(dirname "$0")/lib.sh"
vm_begin ktls_worker 240
build=$(cd "${1:-$src/build/release}" && pwd)
mb=${KTLS_WORKER_MB:-50}
unit=$build/tests/lode_unit_tests
for f in "$unit" "$build/lodestone" "$build/lode-backend"; do
  [ -x "$f" ] || { fail "ktls_worker: $f is built"; exit 1; }
done
curl_bin=$(command -v curl) || { fail "ktls_worker: curl is installed"; exit 1; }
G="$T/guest"
"$src/tools/make-test-pki.sh" "$G/pki" a.test >/dev/null
files=(--file "$G" --file "$unit" --file "$build/lodestone" --file "$build/lode-backend"
       --file "$curl_bin" --file /usr/bin/openssl)

run_vm ktls --mem 768 "${files[@]}" -- "$here/ktls_worker_guest.sh" "$G" ktls "$mb" \
  "$unit" "$build/lodestone" "$build/lode-backend"
guest_summary ktls 14

run_vm fallback --mem 768 --cmdline module_blacklist=tls "${files[@]}" -- "$here/ktls_worker_guest.sh" "$G" \
  fallback "$(( (mb + 4) / 5 ))" "$unit" "$build/lodestone" "$build/lode-backend"
guest_summary fallback 12

vm_end
