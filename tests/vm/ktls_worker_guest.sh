#!/bin/sh
# The guest half of tests/vm/ktls_worker.sh, under busybox sh inside the VM.
#
#   ktls_worker_guest.sh DIR ktls|fallback BULK_MB UNIT_TESTS LODESTONE BACKEND
#
# 1. The workers' kTLS unit tests (tests/worker/worker_ktls_test.cc and the
#    hand-over state tests), LODE_EXPECT_KTLS=1 (ktls) or 0 (fallback), with
#    BULK_MB each way per suite.
# 2. The product: `lodestone run` (kernel front, its control plane, one
#    worker) terminating TLS for curl (TLS 1.3 and 1.2) and `openssl
#    s_client` in front of lode-backend; the access log says per connection
#    whether the kernel did the record layer ("ktls":"tx+rx") or not
#    ("none"), the start event whether kTLS is available, the stats file
#    counts it, and /proc/net/tls_stat agrees.
# Prints PASS/FAIL per check and "guest checks: N passed, M failed".
set -u
dir=${1:?}; mode=${2:?}; mb=${3:?}; unit=${4:?}; lodestone=${5:?}; backend=${6:?}
checks=0
fails=0
pass() { checks=$((checks + 1)); echo "PASS $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL $*"; }
check() { label=$1; shift; if "$@"; then pass "$label"; else fail "$label"; fi; }
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
stat() { awk -v k="$1" '$1 == k { print $2 }' /proc/net/tls_stat 2>/dev/null; }
if [ "$mode" = ktls ]; then expect=1; want='"ktls":"tx+rx"'; else expect=0; want='"ktls":"none"'; fi

echo "== unit tests (LODE_EXPECT_KTLS=$expect, ${mb} MB each way)"
LODE_EXPECT_KTLS=$expect LODE_KTLS_BULK_MB=$mb "$unit" --gtest_color=no \
  --gtest_filter='*WorkerKtls*:*KtlsHandover*:KtlsKeys.*' >/tmp/unit.log 2>&1
rc=$?
grep -E '^\[ *(OK|FAILED|PASSED) *\]|Failure|Expected|Which is|actual' /tmp/unit.log
check "unit: the kTLS worker tests passed (status $rc)" [ "$rc" -eq 0 ]
check "unit: 14 or more tests ran" grep -qE '^\[  PASSED  \] (1[4-9]|[2-9][0-9]) tests' /tmp/unit.log

echo "== lodestone run"
work=/tmp/product
mkdir -p "$work/run"
cat >"$work/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:8443"]

[[pool]]
name = "web"
backends = ["127.0.0.1:9001"]

[[certificate]]
name = "a"
cert = "$dir/pki/a.test.pem"
key = "$dir/pki/a.test.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "web"
certificate = "a"

[workers]
count = 1
TOML
"$backend" --listen 127.0.0.1:9001 --name vm --mode http 2>"$work/backend.log" &
bpid=$!
tx0=$(stat TlsTxSw); rx0=$(stat TlsRxSw)
"$lodestone" run "$work/lode.toml" --stats-file "$work/stats.json" --run-dir "$work/run" \
  2>"$work/lode.log" >"$work/lode.out" &
lpid=$!
i=0
while [ $i -lt 150 ] && ! grep -q '"event":"start"' "$work/lode.log"; do sleep 0.1; i=$((i + 1)); done
check "lodestone started" grep -q '"event":"start"' "$work/lode.log"
if [ "$mode" = ktls ]; then
  check "start event: kTLS available" grep -q '"event":"start".*"ktls":true' "$work/lode.log"
else
  check "start event: kTLS not available" grep -q '"event":"start".*"ktls":false' "$work/lode.log"
fi
for v in 1.3 1.2; do
  out=$(curl -sS --max-time 20 --cacert "$dir/pki/ca.pem" --resolve a.test:8443:127.0.0.1 \
    --tlsv$v --tls-max $v https://a.test:8443/ 2>&1)
  check "curl TLS $v through lodestone: the backend answered ($out)" has "$out" backend=vm
done
printf 'GET / HTTP/1.0\r\nHost: a.test\r\n\r\n' | timeout 5 openssl s_client -quiet -connect 127.0.0.1:8443 \
  -servername a.test -CAfile "$dir/pki/ca.pem" -verify_return_error >"$work/s_client.out" 2>&1
check "openssl s_client through lodestone: the backend answered" grep -q 'backend=vm' "$work/s_client.out"
i=0
while [ $i -lt 50 ] && [ "$(grep -c '"route":"a"' "$work/lode.log")" -lt 3 ]; do sleep 0.1; i=$((i + 1)); done
grep '"route":"a"' "$work/lode.log"
check "access log: 3 connections with $want" [ "$(grep '"route":"a"' "$work/lode.log" | grep -c "$want")" -eq 3 ]
check "access log: 3 connections ended ok" [ "$(grep '"route":"a"' "$work/lode.log" | grep -c '"result":"ok"')" -eq 3 ]
sleep 1.5  # the stats file is rewritten every second
cat "$work/stats.json"; echo
if [ "$mode" = ktls ]; then
  check "stats: ktls_tx 3" grep -q '"ktls_tx":3[,}]' "$work/stats.json"
  check "stats: ktls_rx 3" grep -q '"ktls_rx":3[,}]' "$work/stats.json"
  check "tls_stat: TlsTxSw +3" [ $(($(stat TlsTxSw) - tx0)) -eq 3 ]
  check "tls_stat: TlsRxSw +3" [ $(($(stat TlsRxSw) - rx0)) -eq 3 ]
  check "tls_stat: no decrypt errors" [ "$(stat TlsDecryptError)" = 0 ]
else
  check "stats: ktls_tx 0" grep -q '"ktls_tx":0[,}]' "$work/stats.json"
  check "stats: kTLS offers declined as unavailable" sh -c "! grep -q '\"ktls_unavailable\":0[,}]' '$work/stats.json'"
  check "no tls module: /proc/net/tls_stat absent" [ ! -e /proc/net/tls_stat ]
fi
kill -TERM "$lpid" "$bpid" 2>/dev/null
wait "$lpid" "$bpid" 2>/dev/null

echo "guest checks: $((checks - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
