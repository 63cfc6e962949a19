#!/usr/bin/env bash
# ALPN and the PROXY v2 header to the backend. With [tls] alpn = ["h2",
# "http/1.1"] Lodestone negotiates by its own preference among what the client
# offers (`curl --http1.1` gets http/1.1, `openssl s_client -alpn h2` gets h2)
# and, with send_proxy_v2 = true, tells the backend (lode-backend --proxy-v2)
# the client's address, the SNI (authority TLV), the ALPN and the TLS version.
# Without a common protocol none is negotiated; after a reload without the
# alpn list none is offered at all.
source "$(dirname "$0")/lib.sh"
e2e_begin alpn 60
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA" http --proxy-v2
write_config() {  # write_config ALPN_LINE
  cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]
send_proxy_v2 = true

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[tls]
$1
TOML
}
write_config 'alpn = ["h2", "http/1.1"]'
start_lodestone "$T/lode.toml" --workers 2

out=$(lcurl a.test "$P" --http1.1 -v)
assert_contains "curl --http1.1: ALPN http/1.1 negotiated" "$out" "ALPN: server accepted http/1.1"
assert_contains "the backend is told ALPN http/1.1 (PROXY v2)" "$out" "proxy_alpn=http/1.1"
assert_contains "the backend is told the SNI (authority TLV)" "$out" "proxy_authority=a.test"
assert_contains "the backend is told the TLS version" "$out" "proxy_tls=TLSv1.3"
assert_contains "the backend is told the client address" "$out" "proxy_client=127.0.0.1:"
assert_contains "the backend got a PROXY v2 header" "$out" "proxy=v2"

assert_contains "s_client -alpn h2: ALPN protocol h2" "$(sclient "$P" -servername a.test -alpn h2)" "ALPN protocol: h2"
assert_contains "s_client -alpn http/1.1,h2: the server's preference (h2)" \
  "$(sclient "$P" -servername a.test -alpn http/1.1,h2)" "ALPN protocol: h2"
assert_contains "s_client -alpn foo: no ALPN negotiated" "$(sclient "$P" -servername a.test -alpn foo)" "No ALPN negotiated"
assert_contains "s_client without ALPN: none negotiated" "$(sclient "$P" -servername a.test)" "No ALPN negotiated"

out=$(netclient request --port "$P" --sni a.test --ca "$PKI/ca.pem" --alpn h2)
assert_contains "python client offering h2 gets h2" "$out" "alpn=h2"
assert_contains "the backend is told ALPN h2" "$out" "proxy_alpn=h2"
out=$(netclient request --port "$P" --sni a.test --ca "$PKI/ca.pem" --alpn http/1.1 --tls12)
assert_contains "TLS 1.2: ALPN http/1.1" "$out" "alpn=http/1.1"
assert_contains "TLS 1.2: the backend is told TLSv1.2" "$out" "proxy_tls=TLSv1.2"
assert_contains "TLS 1.2: the backend is told http/1.1" "$out" "proxy_alpn=http/1.1"
out=$(netclient request --port "$P" --sni a.test --ca "$PKI/ca.pem" --alpn foo)
assert_contains "no common protocol: the connection goes on without ALPN" "$out" "alpn=-"
assert_not_contains "no common protocol: no ALPN TLV to the backend" "$out" "proxy_alpn="

wait_for 3 grep -q '"alpn":"h2"' "$LLOG"
line=$(last_log '"alpn":"h2"')
assert_eq "access log: ALPN chosen" "h2" "$(jfield alpn <<<"$line")"
assert_eq "access log: ALPN offered" "h2" "$(jfield alpn_offered <<<"$line")"

# Reload without the ALPN list: nothing is negotiated any more.
write_config ''
assert_eq "reload without [tls] alpn" reloaded "$(reload)"
assert_contains "after the reload: s_client -alpn h2 gets no ALPN" "$(sclient "$P" -servername a.test -alpn h2)" "No ALPN negotiated"
out=$(netclient request --port "$P" --sni a.test --ca "$PKI/ca.pem" --alpn h2)
assert_contains "after the reload: requests still served" "$out" "backend=app"
assert_not_contains "after the reload: no ALPN TLV to the backend" "$out" "proxy_alpn="
finish
