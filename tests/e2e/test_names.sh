#!/usr/bin/env bash
# Two names on one port (stone's senri/asao example): `openssl s_client
# -servername` sees each name's own certificate (CN and SAN), verified against
# the test CA; `curl --resolve` reaches each name's own backend; the access
# log names the SNI, route, backend, TLS version, cipher, kTLS and timings
# (and the start event the OpenSSL version and kTLS); names are matched
# case-insensitively; a name never gets the other name's certificate.
source "$(dirname "$0")/lib.sh"
e2e_begin names 60
make_pki a.test b.test

P=$(free_port); PA=$(free_port); PB=$(free_port)
start_backend senri "$PA"
start_backend asao "$PB"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "senri"
backends = ["127.0.0.1:$PA"]

[[pool]]
name = "asao"
backends = ["127.0.0.1:$PB"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[certificate]]
name = "b"
cert = "pki/b.test.pem"
key = "pki/b.test.key"

[[route]]
name = "senri"
names = ["a.test"]
action = "terminate"
pool = "senri"
certificate = "a"

[[route]]
name = "asao"
names = ["b.test"]
action = "terminate"
pool = "asao"
certificate = "b"
TOML
start_lodestone "$T/lode.toml" --workers 2

# The certificate each name gets, seen by a stock client.
out=$(sclient "$P" -servername a.test)
assert_contains "s_client -servername a.test sees CN a.test" "$out" "subject=CN = a.test"
assert_contains "a.test's chain verifies against the test CA" "$out" "Verify return code: 0 (ok)"
assert_contains "a.test's chain carries the intermediate" "$out" "i:CN = Lodestone Test Root CA"
assert_not_contains "a.test never gets b.test's certificate" "$out" "CN = b.test"
out=$(sclient "$P" -servername b.test)
assert_contains "s_client -servername b.test sees CN b.test" "$out" "subject=CN = b.test"
assert_contains "b.test's chain verifies against the test CA" "$out" "Verify return code: 0 (ok)"
assert_contains "SAN of a.test's certificate is DNS:a.test" "$(peer_cert "$P" -servername a.test)" "DNS:a.test"
assert_contains "SAN of b.test's certificate is DNS:b.test" "$(peer_cert "$P" -servername b.test)" "DNS:b.test"
# Both TLS versions serve the right certificate.
assert_contains "TLS 1.2: a.test sees CN a.test" "$(sclient "$P" -servername a.test -tls1_2)" "subject=CN = a.test"
assert_contains "TLS 1.2: b.test sees CN b.test" "$(sclient "$P" -servername b.test -tls1_2)" "subject=CN = b.test"
# Host names are case-insensitive (RFC 6066 / DNS).
assert_contains "SNI A.TEST (upper case) gets a.test's certificate" "$(sclient "$P" -servername A.TEST)" "subject=CN = a.test"

# Each name reaches its own backend (curl verifies the name and chain).
out=$(lcurl a.test "$P")
assert_contains "curl https://a.test reaches backend A" "$out" "backend=senri"
assert_contains "backend A got the request line" "$out" 'request="GET / HTTP/1.1"'
assert_contains "curl https://b.test reaches backend B" "$(lcurl b.test "$P")" "backend=asao"
# Many requests, both names interleaved, over both workers.
bad=0
for _ in $(seq 1 10); do
  [[ "$(lcurl a.test "$P")" == *backend=senri* ]] || bad=$((bad + 1))
  [[ "$(lcurl b.test "$P")" == *backend=asao* ]] || bad=$((bad + 1))
done
assert_eq "20 interleaved requests each reach their own backend" 0 "$bad"

# The access log: one line per connection with its facts.
wait_for 3 grep -q '"sni":"a.test".*"route":"senri"' "$LLOG"
line=$(last_log '"route":"senri"')
assert_eq "access log: sni" "a.test" "$(jfield sni <<<"$line")"
assert_eq "access log: action" "terminate" "$(jfield action <<<"$line")"
assert_eq "access log: backend" "127.0.0.1:$PA" "$(jfield backend <<<"$line")"
assert_eq "access log: TLS version" "TLSv1.3" "$(jfield tls_version <<<"$line")"
assert_eq "access log: result" "ok" "$(jfield result <<<"$line")"
assert_ge "access log: bytes to the backend counted" "$(jfield bytes_to_backend <<<"$line")" 20
assert_contains "access log: the cipher" "$(jfield cipher <<<"$line")" "TLS_"
assert_eq "access log: kTLS or not (this kernel: none)" none "$(jfield ktls <<<"$line")"
assert_eq "access log: resumed" false "$(jfield resumed <<<"$line")"
assert_ge "access log: handshake duration" "$(jfield handshake_ms <<<"$line")" 0
assert_ge "access log: connection duration" "$(jfield duration_ms <<<"$line")" 0
start=$(last_log '"event":"start"')
assert_contains "start event: the OpenSSL version" "$(jfield openssl <<<"$start")" "OpenSSL 3"
assert_match "start event: whether kTLS is available" "$(jfield ktls <<<"$start")" "^(true|false)$"
line=$(last_log '"route":"asao"')
assert_eq "access log: b.test's backend" "127.0.0.1:$PB" "$(jfield backend <<<"$line")"
assert_ge "stats: handshakes counted" "$(stats handshakes)" 26
assert_ge "stats: terminate routes counted" "$(stats routed_terminate)" 26
finish
