#!/usr/bin/env bash
# The three actions with real peers: passthrough to an openssl s_server that
# holds its own key (the client sees the backend's certificate); ALPN h2 and
# http/1.1 negotiated and passed to the backend in a PROXY v2 header;
# re-encryption to an openssl s_server with SNI and chain verification (and a
# bad chain refused and logged); reject by reset; session resumption across
# workers (TLS 1.3 and 1.2); plain HTTP on the TLS port answered 400.
source "$(dirname "$0")/common.sh"
pki a.test backend.test
P=$(free_port); PB=$(free_port); PS=$(free_port); PW=$(free_port)
mkdir -p "$T/certs"
cp "$T/pki/a.test.pem" "$T/pki/a.test.key" "$T/certs/"
start_backend app "$PB" --proxy-v2
# A TLS backend with its own certificate (passthrough and re-encrypt).
openssl s_server -accept "127.0.0.1:$PS" -cert "$T/pki/backend.test.pem" -key "$T/pki/backend.test.key" \
  -cert_chain "$T/pki/intermediate.pem" -www -quiet >"$T/s_server.log" 2>&1 &
PIDS+=($!)
wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PS" 2>/dev/null
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]
[[pool]]
name = "app"
backends = ["127.0.0.1:$PB"]
send_proxy_v2 = true
[[pool]]
name = "tlsb"
backends = ["127.0.0.1:$PS"]
[[pool]]
name = "reenc"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "backend.test", ca_file = "pki/ca-bundle.pem" }
[[pool]]
name = "badca"
backends = ["127.0.0.1:$PS"]
tls = { server_name = "backend.test", ca_file = "pki/other-ca.pem" }
[[certificate_dir]]
name = "sites"
path = "certs"
[[certificate]]
name = "a"
cert = "certs/a.test.pem"
key = "certs/a.test.key"
[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "sites"
[[route]]
name = "pass"
names = ["backend.test"]
action = "passthrough"
pool = "tlsb"
[[route]]
name = "reenc"
names = ["reenc.test"]
action = "terminate"
pool = "reenc"
certificate = "a"
[[route]]
name = "badca"
names = ["badca.test"]
action = "terminate"
pool = "badca"
certificate = "a"
[[route]]
name = "rst"
names = ["rst.test"]
action = "reject"
reject_with = "reset"
[tls]
alpn = ["h2", "http/1.1"]
TOML
start_lodestone "$T/lode.toml" --workers 2

# Passthrough: the backend's own certificate comes through Lodestone's port.
out=$(sclient "$P" -servername backend.test)
contains "passthrough shows the backend's certificate" "$out" "subject=CN = backend.test"
contains "passthrough chain verifies" "$out" "Verify return code: 0 (ok)"
contains "passthrough carries HTTP to the backend" "$(lcurl backend.test "$P" --http1.1)" "s_server"

# ALPN, and the PROXY v2 header the backend receives.
out=$(lcurl a.test "$P" --http1.1)
contains "ALPN http/1.1 reaches the backend" "$out" "proxy_alpn=http/1.1"
contains "the SNI reaches the backend" "$out" "proxy_authority=a.test"
contains "the TLS version reaches the backend" "$out" "proxy_tls=TLSv1.3"
contains "the client address reaches the backend" "$out" "proxy_client=127.0.0.1:"
contains "s_client -alpn h2 gets h2" "$(sclient "$P" -servername a.test -alpn h2)" "ALPN protocol: h2"
contains "s_client without ALPN gets none" "$(sclient "$P" -servername a.test)" "No ALPN negotiated"

# Re-encryption with verification.
contains "re-encrypt reaches the TLS backend" "$(lcurl reenc.test "$P" -k --http1.1)" "s_server"
wait_for 3 grep -q '"route":"reenc"' "$LLOG"  # workers write their log lines every 100 ms
grep '"route":"reenc"' "$LLOG" | tail -n 1 >"$T/reenc.line"
contains "the verified backend chain is logged" "$(cat "$T/reenc.line")" '"backend_chain":"0 s=CN=backend.test'
out=$(lcurl badca.test "$P" -k --http1.1 2>&1)
check "a bad backend chain fails the connection" test -z "$(echo "$out" | grep s_server)"
wait_for 5 grep -q '"route":"badca"' "$LLOG"
contains "the verify error is logged" "$(grep '"route":"badca"' "$LLOG" | tail -n 1)" '"result":"backend_tls:'

# Reject with a reset.
out=$(sclient "$P" -servername rst.test)
contains "reset route resets" "$out" "errno=104"

# Plain HTTP on the TLS port.
contains "plain HTTP gets 400" "$(timeout 5 curl -s -i "http://127.0.0.1:$P/")" "400 Bad Request"

# Resumption across workers: a ticket issued by one worker resumes on another.
for v in -tls1_3 -tls1_2; do
  # Stay a moment so TLS 1.3's NewSessionTicket arrives before the client exits.
  (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile "$T/pki/ca.pem" -servername a.test $v \
    -sess_out "$T/sess$v.pem" >/dev/null 2>&1
  sleep 0.25  # its log line lands within a worker tick
  first=$(grep '"sni":"a.test"' "$LLOG" | grep '"resumed":false' | tail -n 1 | grep -o '"worker":[0-9]*')
  crossed=no
  for i in $(seq 1 30); do
    out=$(sclient "$P" -servername a.test $v -sess_in "$T/sess$v.pem")
    [[ "$out" == *"Reused, TLSv1."* ]] || continue
    sleep 0.25  # the worker writes its log lines every 100 ms
    w=$(grep '"resumed":true' "$LLOG" | tail -n 1 | grep -o '"worker":[0-9]*')
    if [ -n "$w" ] && [ "$w" != "$first" ]; then crossed=yes; break; fi
  done
  check "ticket from one worker resumes on another ($v)" test "$crossed" = yes
done
finish
