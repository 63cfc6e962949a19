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
# KTLS_VM_CACHE, KTLS_VM_TIMEOUT (default 120): see tests/vm/lib.sh. A VM
# that does not boot, or kTLS that is not used, is a FAIL, never a skip.
source "$(dirname "$0")/lib.sh"
vm_begin ktls_probe 120

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

# kTLS on: the tls_stat check, 6 -rev exchanges (7 checks for TLS 1.2, 5 for
# TLS 1.3), 2 sendfile exchanges (5 checks each).
run_vm ktls --file /usr/bin/openssl --file "$G" -- "$here/ktls_probe_guest.sh" "$G" ktls
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
run_vm fallback --cmdline module_blacklist=tls --file /usr/bin/openssl --file "$G" -- "$here/ktls_probe_guest.sh" "$G" fallback
guest_summary fallback 25

vm_end
