#!/usr/bin/env bash
# TLS and ClientHello edge cases with real handshakes, each completed or
# refused as defined:
#   a ClientHello sent 1 byte per TCP segment, or cut across 4 TLS records
#   (and 7-byte segments), still routes and the handshake completes (the
#   bytes Lodestone buffered are what OpenSSL reads);
#   names: a trailing dot and upper case match; "*.x.test" matches exactly
#   one more label;
#   secure defaults: a TLS 1.1 client gets alert 70 (protocol_version), TLS 1.2
#   renegotiation is refused;
#   listener max_hello_bytes = 512: a 643-byte hello gets decode_error (50);
#   an IPv6 listener beside the IPv4 one;
#   a listener with proxy_protocol = "any" takes a PROXY v1 or v2 header from
#   an upstream load balancer: the client address it carries is the one
#   logged and passed on to the backend (PROXY v2); a malformed header is
#   refused (connection reset, proxy_errors counted).
source "$(dirname "$0")/lib.sh"
e2e_begin protocol 60
make_pki a.test

P=$(free_port); PL=$(free_port); PP=$(free_port); PA=$(free_port)
start_backend app "$PA" http --proxy-v2
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P", "[::1]:$P"]

[[listener]]
name = "small"
listen = ["127.0.0.1:$PL"]
max_hello_bytes = 512

[[listener]]
name = "behind-lb"
listen = ["127.0.0.1:$PP"]
proxy_protocol = "any"

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]
send_proxy_v2 = true

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"
TOML
for l in https small behind-lb; do
  printf '\n[[route]]\nname = "a-%s"\nlistener = "%s"\nnames = ["a.test"]\naction = "terminate"\npool = "app"\ncertificate = "a"\n' "$l" "$l" >>"$T/lode.toml"
done
printf '\n[[route]]\nname = "wild"\nlistener = "https"\nnames = ["*.x.test"]\naction = "terminate"\npool = "app"\ncertificate = "a"\n' >>"$T/lode.toml"
start_lodestone "$T/lode.toml" --workers 2

# --- shapes of the first flight
out=$(netclient shaped --port "$P" --sni a.test --ca "$PKI/ca.pem" --segment 1)
assert_contains "ClientHello in 1-byte TCP segments: handshake and request complete" "$out" "backend=app"
out=$(netclient shaped --port "$P" --sni a.test --ca "$PKI/ca.pem" --records 4 --segment 7)
assert_contains "ClientHello cut across 4 TLS records in 7-byte segments: served" "$out" "backend=app"
assert_contains "  ... and routed by its SNI (the backend is told a.test)" "$out" "proxy_authority=a.test"
assert_contains "  ... its SSL TLV says no client certificate was verified (verify non-zero)" "$out" "proxy_verify=1"

# --- names
assert_contains "SNI with a trailing dot (a.test.) gets a.test" "$(sclient "$P" -servername a.test.)" "subject=CN = a.test"
assert_contains "SNI in upper case (A.Test) gets a.test" "$(sclient "$P" -servername A.Test)" "subject=CN = a.test"
assert_contains "*.x.test matches b.x.test" "$(sclient "$P" -servername b.x.test)" "subject=CN = a.test"
assert_contains "*.x.test does not match c.b.x.test (alert 112)" "$(sclient "$P" -servername c.b.x.test)" "alert number 112"
assert_contains "*.x.test does not match x.test (alert 112)" "$(sclient "$P" -servername x.test)" "alert number 112"

# --- secure defaults
out=$(sclient "$P" -servername a.test -tls1_1 -cipher 'DEFAULT@SECLEVEL=0')
assert_contains "TLS 1.1 client: alert 70 (protocol_version)" "$out" "alert number 70"
out=$( (echo R; sleep 1) | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile "$PKI/ca.pem" \
  -servername a.test -tls1_2 2>&1)
assert_contains "TLS 1.2 renegotiation: attempted" "$out" "RENEGOTIATING"
assert_contains "TLS 1.2 renegotiation: refused" "$out" "no renegotiation"

# --- hello size cap (the handshake message's size, 4-byte header included)
long_alpn=$(python3 -c 'print(",".join("proto-%02d-%s" % (i, "x" * 20) for i in range(12)))')
netclient hello --sni a.test --alpn "$long_alpn" --out "$T/big.bin"
size=$(python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); print(int.from_bytes(b[6:9], "big") + 4)' "$T/big.bin")
assert_ge "a hello with a long ALPN list is over 512 bytes ($size)" "$size" 513
out=$(netclient raw --port "$PL" --file "$T/big.bin")
assert_contains "max_hello_bytes = 512: a $size-byte hello gets decode_error (50)" "$out" "bytes=7 hex=15030300020232"
wait_for 3 grep -q '"result":"hello:hello_too_large"' "$LLOG"
assert_ge "  ... logged as hello_too_large" "$(grep -c '"result":"hello:hello_too_large"' "$LLOG")" 1
assert_contains "max_hello_bytes = 512: s_client's smaller hello is served" "$(sclient "$PL" -servername a.test)" "subject=CN = a.test"
assert_contains "max_hello_bytes applies to its listener only" "$(sclient "$P" -servername a.test -alpn "$long_alpn")" "subject=CN = a.test"

# --- IPv6
out=$(timeout 15 curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "a.test:$P:[::1]" "https://a.test:$P/" 2>&1)
assert_contains "IPv6 listener [::1]: served" "$out" "backend=app"
assert_contains "  ... the backend is told the IPv6 client (PROXY v2)" "$out" "proxy_client=[::1]:"

# --- PROXY protocol from an upstream load balancer
out=$(netclient shaped --port "$PP" --sni a.test --ca "$PKI/ca.pem" --proxy v1 --proxy-src 192.0.2.7:4242)
assert_contains "PROXY v1 from upstream: served" "$out" "backend=app"
assert_contains "PROXY v1: the backend is told the original client" "$out" "proxy_client=192.0.2.7:4242"
out=$(netclient shaped --port "$PP" --sni a.test --ca "$PKI/ca.pem" --proxy v2 --proxy-src 198.51.100.9:5151)
assert_contains "PROXY v2 from upstream: served" "$out" "backend=app"
assert_contains "PROXY v2: the backend is told the original client" "$out" "proxy_client=198.51.100.9:5151"
wait_for 3 grep -q '"client":"198.51.100.9:5151"' "$LLOG"
assert_contains "PROXY v2: the access log names the original client" "$(last_log '"listener":"behind-lb"')" '"client":"198.51.100.9:5151"'
out=$(netclient raw --port "$PP" --text 'PROXY TCP4 not an address\r\n' --wait 5)
assert_match "malformed PROXY header: the connection is ended" "$out" "end=(reset|eof)"
assert_ge "malformed PROXY header: proxy_errors counted" "$(stats proxy_errors)" 1
out=$(netclient shaped --port "$PP" --sni a.test --ca "$PKI/ca.pem")
assert_not_contains "no PROXY header where one is required: not served" "$out" "backend=app"
finish
