#!/bin/sh
# The guest half of tests/vm/ktls_probe.sh: runs inside the kTLS VM
# (tools/ktls-vm/run.sh) under busybox sh. Real kTLS exchanges between
# Debian's `openssl s_server` and `openssl s_client`, both with kTLS enabled
# through OPENSSL_CONF (`Options = KTLS`), on loopback:
#   - s_server -rev: the client sends DIR/payload.txt, the server returns every
#     line reversed (both directions carry data), per protocol and cipher;
#   - s_server -WWW -sendfile: the server sends DIR/blob.bin with SSL_sendfile,
#     which only works when the kernel does the record layer.
# /proc/net/tls_stat before and after each exchange says what the kernel did.
#
#   ktls_probe_guest.sh DIR ktls       kTLS on: the kernel must do the crypto
#   ktls_probe_guest.sh DIR fallback   booted with module_blacklist=tls: the
#                                      same exchanges work in user space
# Prints PASS/FAIL per check and "guest checks: N passed, M failed"; the exit
# status is 0 only when all passed.
set -u
dir=${1:?usage: ktls_probe_guest.sh DIR ktls|fallback}
mode=${2:?usage: ktls_probe_guest.sh DIR ktls|fallback}
export OPENSSL_CONF="$dir/ktls.cnf"
pki="$dir/pki"
work=/tmp/ktls-probe
mkdir -p "$work"
checks=0
fails=0
pass() { checks=$((checks + 1)); echo "PASS $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $*"; }
contains() { grep -qF -- "$2" "$1"; }  # contains FILE TEXT

# stat NAME: one /proc/net/tls_stat counter (empty without the tls module)
stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat 2>/dev/null; }

wait_listen() {  # wait_listen PORT: until a socket listens on it (10 s at most)
  hex=$(printf ':%04X' "$1")
  i=0
  while [ $i -lt 100 ]; do
    awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
      /proc/net/tcp && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

server_pid=""
stop_server() {  # the s_server of this exchange: it ends after one connection
  [ -n "$server_pid" ] || return 0
  i=0
  while kill -0 "$server_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill "$server_pid" 2>/dev/null && echo "note: s_server (pid $server_pid) still running, ended"
  wait "$server_pid" 2>/dev/null
  server_pid=""
}
trap stop_server EXIT

start_server() {  # start_server NAME PORT ARGS...
  name=$1 port=$2
  shift 2
  openssl s_server -accept "127.0.0.1:$port" -naccept 1 \
    -cert "$pki/ktls.test.pem" -cert_chain "$pki/intermediate.pem" -key "$pki/ktls.test.key" \
    "$@" >"$work/$name.server.out" 2>"$work/$name.server.err" &
  server_pid=$!
  wait_listen "$port" || { fail "$name: s_server listens on $port"; cat "$work/$name.server.err"; return 1; }
}
client() {  # client NAME PORT INPUT ARGS...: s_client, verifying the server
  name=$1 port=$2 input=$3
  shift 3
  timeout 30 openssl s_client -connect "127.0.0.1:$port" -servername ktls.test \
    -CAfile "$pki/ca.pem" -verify_return_error -quiet "$@" \
    <"$input" >"$work/$name.client.out" 2>"$work/$name.client.err"
}

# delta NAME BEFORE: how much counter NAME grew since BEFORE
delta() { now=$(stat "$1"); echo $(( ${now:-0} - ${2:-0} )); }

show_logs() {  # on failure: what the peers said
  for f in "$work/$1".*.err; do echo "---- $(basename "$f")"; tail -n 15 "$f"; done
}

echo "guest: kernel $(uname -r), $(openssl version), mode $mode"
if [ "$mode" = ktls ]; then
  if [ -r /proc/net/tls_stat ]; then pass "/proc/net/tls_stat exists (tls module loaded)"
  else fail "/proc/net/tls_stat exists (tls module loaded)"; fi
else
  if [ -r /proc/net/tls_stat ]; then fail "module_blacklist=tls: no /proc/net/tls_stat"
  else pass "module_blacklist=tls: no /proc/net/tls_stat"; fi
fi

# ----------------------------------------------- -rev: data both ways
port=4430
rev "$dir/payload.txt" >"$work/payload.rev"
printf 'CLOSE\n' | cat "$dir/payload.txt" - >"$work/rev.in"
# protocol cipher-option cipher: what both peers are limited to
for spec in "tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256" \
            "tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384" \
            "tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305" \
            "tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256" \
            "tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384" \
            "tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256"; do
  # shellcheck disable=SC2086  # split into its words on purpose
  set -- $spec
  proto=$1 copt=$2 cipher=$3
  name="rev-$proto-$cipher"
  port=$((port + 1))
  tx0=$(stat TlsTxSw) rx0=$(stat TlsRxSw) de0=$(stat TlsDecryptError)
  start_server "$name" "$port" "-$proto" "$copt" "$cipher" -rev || continue
  client "$name" "$port" "$work/rev.in" "-$proto" "$copt" "$cipher"
  crc=$?
  stop_server
  before=$fails
  if [ $crc -eq 0 ]; then pass "$name: s_client exited 0"; else fail "$name: s_client exited $crc"; fi
  head -n "$(wc -l <"$dir/payload.txt")" "$work/$name.client.out" >"$work/$name.got"
  if cmp -s "$work/payload.rev" "$work/$name.got"; then
    pass "$name: $(wc -c <"$dir/payload.txt") bytes sent, every line came back reversed"
  else
    fail "$name: the reversed payload came back intact ($(wc -c <"$work/$name.got") bytes back)"
  fi
  if [ "$mode" = ktls ]; then
    tx=$(delta TlsTxSw "$tx0") rx=$(delta TlsRxSw "$rx0") de=$(delta TlsDecryptError "$de0")
    echo "info $name: tls_stat TlsTxSw +$tx TlsRxSw +$rx TlsDecryptError +$de"
    # Both peers offload sending; OpenSSL 3.0 offloads receiving for TLS 1.2 only.
    if [ "$tx" -ge 2 ]; then pass "$name: TlsTxSw grew by 2 (server and client send through the kernel)"
    else fail "$name: TlsTxSw grew by 2 (server and client send through the kernel): +$tx"; fi
    if [ "$proto" = tls1_2 ]; then
      if [ "$rx" -ge 2 ]; then pass "$name: TlsRxSw grew by 2 (server and client receive through the kernel)"
      else fail "$name: TlsRxSw grew by 2 (server and client receive through the kernel): +$rx"; fi
    fi
    if [ "$de" -eq 0 ]; then pass "$name: TlsDecryptError did not grow"
    else fail "$name: TlsDecryptError did not grow: +$de"; fi
    # s_client says what it offloaded (s_server -rev does not).
    if contains "$work/$name.client.err" "Using Kernel TLS for sending"; then
      pass "$name: s_client reports kernel TLS for sending"
    else fail "$name: s_client reports kernel TLS for sending"; fi
    if [ "$proto" = tls1_2 ]; then
      if contains "$work/$name.client.err" "Using Kernel TLS for receiving"; then
        pass "$name: s_client reports kernel TLS for receiving"
      else fail "$name: s_client reports kernel TLS for receiving"; fi
    fi
  else
    if contains "$work/$name.client.err" "Using Kernel TLS"; then
      fail "$name: s_client falls back to user-space TLS (no \"Using Kernel TLS\")"
    else pass "$name: s_client falls back to user-space TLS (no \"Using Kernel TLS\")"; fi
  fi
  [ $fails -eq "$before" ] || show_logs "$name"
done

# ----------------------------------------------- -WWW -sendfile: SSL_sendfile
blob_size=$(wc -c <"$dir/blob.bin")
blob_sha=$(sha256sum <"$dir/blob.bin" | cut -d' ' -f1)
printf 'GET /blob.bin HTTP/1.0\r\n\r\n' >"$work/get.in"
for proto in tls1_2 tls1_3; do
  name="sendfile-$proto"
  port=$((port + 1))
  tx0=$(stat TlsTxSw) de0=$(stat TlsDecryptError)
  cd "$dir" || exit 1  # -WWW serves files from the server's working folder
  start_server "$name" "$port" "-$proto" -WWW -sendfile || { cd /tmp || exit 1; continue; }
  cd /tmp || exit 1
  client "$name" "$port" "$work/get.in" "-$proto"
  crc=$?
  stop_server
  before=$fails
  if [ $crc -eq 0 ]; then pass "$name: s_client exited 0"; else fail "$name: s_client exited $crc"; fi
  got_sha=$(tail -c "$blob_size" "$work/$name.client.out" | sha256sum | cut -d' ' -f1)
  if [ "$got_sha" = "$blob_sha" ] && contains "$work/$name.client.out" "HTTP/1.0 200 ok"; then
    pass "$name: $blob_size bytes received, same SHA-256"
  else fail "$name: $blob_size bytes received, same SHA-256 (saw $(wc -c <"$work/$name.client.out") bytes)"; fi
  if [ "$mode" = ktls ]; then
    tx=$(delta TlsTxSw "$tx0") de=$(delta TlsDecryptError "$de0")
    echo "info $name: tls_stat TlsTxSw +$tx TlsDecryptError +$de"
    if [ "$tx" -ge 1 ]; then pass "$name: TlsTxSw grew"; else fail "$name: TlsTxSw grew: +$tx"; fi
    if [ "$de" -eq 0 ]; then pass "$name: TlsDecryptError did not grow"
    else fail "$name: TlsDecryptError did not grow: +$de"; fi
    if contains "$work/$name.server.err" "KTLS SENDFILE" &&
       ! contains "$work/$name.server.err" "KTLS is not available"; then
      pass "$name: s_server sent the file with SSL_sendfile over kTLS"
    else fail "$name: s_server sent the file with SSL_sendfile over kTLS"; fi
  else
    if contains "$work/$name.server.err" "sendfile requested but KTLS is not available"; then
      pass "$name: s_server reports that kTLS is not available"
    else fail "$name: s_server reports that kTLS is not available"; fi
  fi
  [ $fails -eq "$before" ] || show_logs "$name"
done

if [ -r /proc/net/tls_stat ]; then
  echo "info final tls_stat: $(awk '{ printf "%s=%s ", $1, $2 }' /proc/net/tls_stat)"
fi
echo "guest checks: $((checks - fails)) passed, $fails failed"
[ $fails -eq 0 ]
