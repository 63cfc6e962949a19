#!/usr/bin/env bash
# Passthrough: Lodestone routes by the SNI and relays the encrypted stream
# untouched to a TLS backend that holds its own key. The client sees the
# backend's certificate through Lodestone's port (openssl s_server -www), curl
# gets s_server's page, and bytes sent through a TLS echo backend come back
# identical; the access log says passthrough and counts the same bytes on
# both sides; terminate and passthrough routes share the port; a TCP
# half-close is passed on in both directions.
source "$(dirname "$0")/lib.sh"
e2e_begin passthrough 60
make_pki a.test backend.test echo.test

P=$(free_port); PS=$(free_port); PE=$(free_port); PA=$(free_port); PR=$(free_port)
start_s_server tls "$PS" -cert "$PKI/backend.test.pem" -key "$PKI/backend.test.key" \
  -cert_chain "$PKI/intermediate.pem" -www
start_pyserver echo "$PE" --cert "$PKI/echo.test.pem" --key "$PKI/echo.test.key" --mode echo
start_backend app "$PA"
start_backend rawecho "$PR" echo
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "tls"
backends = ["127.0.0.1:$PS"]

[[pool]]
name = "echo"
backends = ["127.0.0.1:$PE"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]

[[pool]]
name = "rawecho"
backends = ["127.0.0.1:$PR"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "pass"
names = ["backend.test"]
action = "passthrough"
pool = "tls"

[[route]]
name = "pass-echo"
names = ["echo.test"]
action = "passthrough"
pool = "echo"

[[route]]
name = "pass-raw"
names = ["raw.test"]
action = "passthrough"
pool = "rawecho"

[[route]]
name = "term"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"
TOML
start_lodestone "$T/lode.toml" --workers 2

out=$(sclient "$P" -servername backend.test)
assert_contains "passthrough: the client sees the backend's certificate" "$out" "subject=CN = backend.test"
assert_contains "passthrough: the backend's chain verifies" "$out" "Verify return code: 0 (ok)"
assert_contains "passthrough: SAN is the backend's" "$(peer_cert "$P" -servername backend.test)" "DNS:backend.test"
out=$(sclient "$P" -servername backend.test -tls1_2)
assert_contains "passthrough, TLS 1.2: the backend's certificate" "$out" "subject=CN = backend.test"
out=$(lcurl backend.test "$P")
assert_contains "passthrough: curl gets openssl s_server's page" "$out" "s_server"
assert_contains "terminate on the same port still works" "$(lcurl a.test "$P")" "backend=app"

# Bytes identical end to end (TLS between the client and the echo backend).
out=$(netclient bulk --port "$P" --sni echo.test --ca "$PKI/ca.pem" --mb 8 --seconds 25)
assert_contains "passthrough: 8 MiB echoed, SHA-256 equal" "$out" "result=equal"
assert_contains "passthrough: the TLS session ends cleanly (close_notify both ways)" "$out" "clean_close=yes"
wait_for 5 grep -q '"route":"pass-echo"' "$LLOG"
line=$(last_log '"route":"pass-echo"')
assert_eq "access log: action passthrough" "passthrough" "$(jfield action <<<"$line")"
assert_eq "access log: no TLS terminated (no tls_version)" "" "$(jfield tls_version <<<"$line")"
assert_eq "access log: sni" "echo.test" "$(jfield sni <<<"$line")"
assert_eq "access log: result" "ok" "$(jfield result <<<"$line")"
from_client=$(jfield bytes_from_client <<<"$line"); to_backend=$(jfield bytes_to_backend <<<"$line")
from_backend=$(jfield bytes_from_backend <<<"$line"); to_client=$(jfield bytes_to_client <<<"$line")
assert_eq "access log: bytes from the client = bytes to the backend" "$from_client" "$to_backend"
assert_eq "access log: bytes from the backend = bytes to the client" "$from_backend" "$to_client"
assert_ge "access log: at least 8 MiB each way" "$to_client" 8388608
assert_ge "stats: passthrough routes counted" "$(stats routed_passthrough)" 4
assert_contains "the echo backend saw the client's SNI" "$(cat "$T/pyserver-echo.log")" "conn sni=echo.test"

# TCP half-close passed on: a hello for raw.test, then 1 MiB, then our FIN; a
# plaintext echo backend sends everything back, then its FIN comes through.
netclient hello --sni raw.test --out "$T/raw.bin"
head -c 1048576 /dev/urandom >>"$T/raw.bin"
size=$(stat -c %s "$T/raw.bin")
out=$(netclient raw --port "$P" --file "$T/raw.bin" --shut-wr --wait 10)
assert_contains "passthrough: after the client's FIN every byte still comes back" "$out" "bytes=$size "
assert_contains "passthrough: then the backend's FIN comes through" "$out" "end=eof"
finish
