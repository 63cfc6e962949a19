#!/usr/bin/env bash
# Backend TLS (re-encrypt, stone's `-q sni -q servername=... -q verify`):
# Lodestone terminates the client's TLS and originates TLS to the backend with
# the configured SNI, verifying the backend's chain against ca_file. Through
# it, `openssl s_server -www` answers; the verified chain is logged. A chain
# from another CA, or a name that does not match, fails the connection and the
# access log's result names the verify error (backend_tls:...). Without
# server_name the client's SNI is sent on; verify = false skips verification;
# a backend that hangs up mid-handshake is logged as such (backend_tls:eof).
source "$(dirname "$0")/lib.sh"
e2e_begin reencrypt 60
make_pki a.test backend.test bad.test wrong.test sni.test noverify.test hangup.test

P=$(free_port); PS=$(free_port); PY=$(free_port); PC=$(free_port)
mkdir -p "$T/certs"
for n in a.test backend.test bad.test wrong.test sni.test noverify.test hangup.test; do cp "$PKI/$n.pem" "$PKI/$n.key" "$T/certs/"; done
start_s_server tls "$PS" -cert "$PKI/backend.test.pem" -key "$PKI/backend.test.key" \
  -cert_chain "$PKI/intermediate.pem" -www
start_pyserver pytls "$PY" --cert "$PKI/backend.test.pem" --key "$PKI/backend.test.key" --mode http
start_pyserver hangup "$PC" --plain --mode close
{
  cat <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[certificate_dir]]
name = "sites"
path = "certs"

[[pool]]
name = "good"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "backend.test", ca_file = "pki/ca-bundle.pem" }

[[pool]]
name = "badca"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "backend.test", ca_file = "pki/other-ca.pem" }

[[pool]]
name = "wrongname"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "wrong.test", ca_file = "pki/ca-bundle.pem" }

[[pool]]
name = "sniset"
backends = ["127.0.0.1:$PY"]
tls = { server_name = "backend.test", ca_file = "pki/ca-bundle.pem" }

[[pool]]
name = "clientsni"
backends = ["127.0.0.1:$PY"]
tls = { verify = false }

[[pool]]
name = "hangup"
backends = ["127.0.0.1:$PC"]
tls = { server_name = "backend.test", ca_file = "pki/ca-bundle.pem" }

[[pool]]
name = "noverify"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "backend.test", verify = false, ca_file = "pki/other-ca.pem" }
TOML
  for r in a.test:good bad.test:badca wrong.test:wrongname backend.test:sniset sni.test:clientsni noverify.test:noverify hangup.test:hangup; do
    cat <<TOML

[[route]]
name = "${r#*:}"
names = ["${r%%:*}"]
action = "terminate"
pool = "${r#*:}"
certificate = "sites"
TOML
  done
} >"$T/lode.toml"
start_lodestone "$T/lode.toml" --workers 2

# Verified re-encryption.
out=$(lcurl a.test "$P" --http1.1)
assert_contains "re-encrypt: a request through Lodestone gets s_server's page" "$out" "s_server"
assert_contains "  ... which saw a TLS session from Lodestone" "$out" "New, TLSv1.3"
wait_for 3 grep -q '"route":"good"' "$LLOG"
line=$(last_log '"route":"good"')
assert_eq "access log: result ok" "ok" "$(jfield result <<<"$line")"
assert_contains "access log: the verified backend chain, leaf" "$(jfield backend_chain <<<"$line")" "s=CN=backend.test"
assert_contains "access log: the verified backend chain, up to the root" "$(jfield backend_chain <<<"$line")" "Lodestone Test Root CA"

# The SNI Lodestone sends.
out=$(lcurl backend.test "$P" --http1.1)
assert_contains "re-encrypt to a Python TLS backend" "$out" "tls_backend=pytls"
assert_contains "server_name = backend.test is the SNI the backend sees" "$out" "sni=backend.test"
out=$(lcurl sni.test "$P" --http1.1)
assert_contains "no server_name: the client's SNI is sent on" "$out" "sni=sni.test"

# A chain from another CA.
out=$(lcurl bad.test "$P" --http1.1); rc=$?
assert_not_contains "another CA: the request fails" "$out" "s_server"
assert_contains "  ... curl reports an error" "$out" "curl: ("
check "  ... and exits non-zero" test "$rc" -ne 0
wait_for 3 grep -q '"route":"badca"' "$LLOG"
result=$(last_log '"route":"badca"' | jfield result)
assert_contains "another CA: the log's result is backend_tls:..." "$result" "backend_tls:"
assert_contains "  ... naming the verify error" "$result" "unable to get local issuer certificate"
# A name the backend's certificate does not have.
out=$(lcurl wrong.test "$P" --http1.1)
assert_not_contains "wrong server_name: the request fails" "$out" "s_server"
wait_for 3 grep -q '"route":"wrongname"' "$LLOG"
assert_contains "wrong server_name: the log's result is a hostname mismatch" \
  "$(last_log '"route":"wrongname"' | jfield result)" "backend_tls:hostname mismatch"
assert_ge "stats: backend TLS errors counted" "$(stats backend_tls_errors)" 2
# A backend that hangs up during the TLS handshake.
out=$(lcurl hangup.test "$P" --http1.1)
assert_contains "backend hangs up in the TLS handshake: the request fails" "$out" "curl: ("
wait_for 3 grep -q '"route":"hangup"' "$LLOG"
assert_eq "backend hangs up in the TLS handshake: the log's result says so" "backend_tls:eof" \
  "$(last_log '"route":"hangup"' | jfield result)"
# verify = false.
assert_contains "verify = false: another CA's backend is accepted" "$(lcurl noverify.test "$P" --http1.1)" "s_server"
# Still fine afterwards.
assert_contains "verified re-encryption still works after the failures" "$(lcurl a.test "$P" --http1.1)" "s_server"
finish
