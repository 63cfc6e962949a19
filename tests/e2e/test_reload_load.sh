#!/usr/bin/env bash
# SIGHUP under load: while 8 client threads make requests on fresh TLS
# connections for 10 s (bounded: at most 30,000 requests) and one keep-alive
# connection makes a request every 1.5 s, the test rewrites the configuration
# (a second backend comes and goes, a route is added and removed, the
# certificate is swapped for a new one) and sends SIGHUP five times. Every
# reload is applied ("reloaded"), no request fails, and the established
# keep-alive connections live through all five reloads, one of them on a
# route that the first reload removed.
source "$(dirname "$0")/lib.sh"
e2e_begin reload_load 90
make_pki a.test
# A second PKI: another key pair for a.test, swapped in on reload. Clients
# trust both roots.
"$LODE_SOURCE_DIR/tools/make-test-pki.sh" "$T/pki2" a.test >/dev/null
cat "$PKI/ca.pem" "$T/pki2/ca.pem" >"$T/both-ca.pem"
cp "$PKI/a.test.pem" "$T/a.pem"; cp "$PKI/a.test.key" "$T/a.key"

P=$(free_port); PA=$(free_port); PB=$(free_port)
start_backend app1 "$PA"
start_backend app2 "$PB"
write_config() {  # write_config VARIANT (0 or 1)
  local backends="\"127.0.0.1:$PA\"" extra=""
  if [ "$1" = 1 ]; then
    backends="\"127.0.0.1:$PA\", \"127.0.0.1:$PB\""
    extra=$'[[route]]\nname = "extra"\nnames = ["extra.test"]\naction = "terminate"\npool = "app"\ncertificate = "a"\n'
  fi
  cat >"$T/lode.toml.new" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = [$backends]

[[certificate]]
name = "a"
cert = "a.pem"
key = "a.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

$extra
TOML
  mv "$T/lode.toml.new" "$T/lode.toml"  # atomic: a reload never reads half a file
}
write_config 1
start_lodestone "$T/lode.toml" --workers 2

NETCLIENT_TIMEOUT=40 netclient loop --port "$P" --sni a.test --ca "$T/both-ca.pem" --threads 8 --seconds 10 --max 30000 \
  >"$T/loop.out" 2>&1 &
LOOP=$!
NETCLIENT_TIMEOUT=40 netclient keepalive --port "$P" --sni a.test --ca "$T/both-ca.pem" --requests 7 --gap 1.5 \
  >"$T/keepalive.out" 2>&1 &
KA=$!
# A connection on a route that the first reload removes (extra.test, served
# with a.test's certificate: not verified).
NETCLIENT_TIMEOUT=40 netclient keepalive --port "$P" --sni extra.test --no-verify --requests 7 --gap 1.5 \
  >"$T/keepalive-extra.out" 2>&1 &
KX=$!
PIDS+=("$LOOP" "$KA" "$KX")
results=""
for i in 1 2 3 4 5; do
  sleep 1.5
  write_config $(((i + 1) % 2))
  # The certificate changes too (same name, the other PKI's key pair).
  if [ $((i % 2)) = 1 ]; then cp "$T/pki2/a.test.pem" "$T/a.pem"; cp "$T/pki2/a.test.key" "$T/a.key"
  else cp "$PKI/a.test.pem" "$T/a.pem"; cp "$PKI/a.test.key" "$T/a.key"; fi
  results+="$(reload) "
done
wait "$LOOP"; wait "$KA"; wait "$KX"
assert_eq "five SIGHUPs under load, five reloads applied" "reloaded reloaded reloaded reloaded reloaded " "$results"
out=$(cat "$T/loop.out"); echo "   request loop: $(tr '\n' ' ' <<<"$out")"
assert_contains "no request failed across five reloads" "$out" "failed=0"
ok=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
assert_ge "the load was real (at least 200 requests in 10 s)" "${ok:-0}" 200
assert_ge "the load lasted past the last reload (>= 9 s)" "$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out" | head -n 1)" 9
out=$(cat "$T/keepalive.out"); echo "   keep-alive: $(tr '\n' ' ' <<<"$out")"
assert_contains "an established connection lives through all five reloads" "$out" "ok=7 failed=0"
out=$(cat "$T/keepalive-extra.out"); echo "   keep-alive on the removed route: $(tr '\n' ' ' <<<"$out")"
assert_contains "a connection on a route removed by a reload keeps working" "$out" "ok=7 failed=0"
assert_contains "the removed route is gone for new connections (alert 112)" \
  "$(sclient "$P" -servername extra.test)" "alert number 112"
assert_eq "generation after five reloads" 6 "$(stats generation)"
assert_ge "the second backend (in and out of the pool across reloads) took traffic" "$(grep -c "\"backend\":\"127.0.0.1:$PB\"" "$LLOG")" 1
fp() { openssl x509 -noout -fingerprint -sha256 2>/dev/null; }
assert_eq "the certificate swapped in by the last reload is served" "$(fp <"$T/pki2/a.test.pem")" \
  "$(sclient "$P" -servername a.test | fp)"
finish
