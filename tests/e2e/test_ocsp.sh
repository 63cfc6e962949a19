#!/usr/bin/env bash
# OCSP stapling end to end, in the shape of the wolfSSL article: a test PKI
# (tools/make-ocsp-pki.sh: root, intermediate, responder certificates, a good
# serial 7, a revoked serial 8, a must-staple serial 9) and a real
# `openssl ocsp` responder on a loopback port. The control plane fetches a
# response for every certificate before the first snapshot, so:
#  - the very first `openssl s_client -status` after start gets "OCSP Response
#    Status: successful" and "Cert Status: good" (TLS 1.3 and TLS 1.2);
#  - a second connection is served from the cache: the responder's request
#    count does not move;
#  - a restart with the responder down staples from the disk cache;
#  - the revoked certificate is withheld (the client gets an alert), logged as
#    an error event and counted;
#  - a garbage responder and a silent one (with an empty cache): nothing is
#    stapled, the lenient certificate is still served, the must-staple one is
#    withheld; nothing crashes;
#  - on_revoked = "serve" serves the revoked certificate, unstapled;
#  - certificates with only a CRL distribution point are checked against the
#    CRL (served over HTTP): a listed one is withheld, the other served;
#  - the intermediate revoked at the root's responder: every chain through it
#    is withheld (what RFC 6961 "multi" stapling was for).
source "$(dirname "$0")/lib.sh"
e2e_begin ocsp 120

OP=$(free_port); CP=$(free_port); RP=$(free_port)
OPKI="$T/opki"
OCSP_PORT=$OP CRL_PORT=$CP ROOT_OCSP_PORT=$RP "$LODE_SOURCE_DIR/tools/make-ocsp-pki.sh" "$OPKI" >/dev/null 2>&1 ||
  { echo "FAIL ocsp: make-ocsp-pki.sh"; exit 1; }
PKI=$OPKI  # sclient verifies against $PKI/ca.pem

RESPONDER=""
start_responder() {  # the intermediate's responder on $OP; requests counted in its log
  openssl ocsp -index "$OPKI/index.txt" -port "$OP" -rsigner "$OPKI/ocsp-responder.pem" \
    -rkey "$OPKI/ocsp-responder.key" -CA "$OPKI/intermediate.pem" -ndays 1 >"$T/responder.log" 2>&1 &
  RESPONDER=$!; PIDS+=("$RESPONDER")
  wait_for 5 grep -q "waiting for OCSP client" "$T/responder.log" || { echo "FAIL ocsp: responder did not start"; exit 1; }
}
stop_responder() { [ -n "$RESPONDER" ] && kill "$RESPONDER" 2>/dev/null; wait "$RESPONDER" 2>/dev/null; RESPONDER=""; }
requests() { grep -c "Received request" "$T/responder.log"; }

PA=$(free_port); start_backend app "$PA"
write_config() {  # write_config PORT STATE_DIR ON_REVOKED
  cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$1"]
[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]
[[certificate]]
name = "good"
cert = "opki/ocsp-good.test.pem"
key = "opki/ocsp-good.test.key"
[[certificate]]
name = "revoked"
cert = "opki/ocsp-revoked.test.pem"
key = "opki/ocsp-revoked.test.key"
[[certificate]]
name = "muststaple"
cert = "opki/ocsp-muststaple.test.pem"
key = "opki/ocsp-muststaple.test.key"
[[route]]
name = "good"
names = ["ocsp-good.test"]
action = "terminate"
pool = "app"
certificate = "good"
[[route]]
name = "revoked"
names = ["ocsp-revoked.test"]
action = "terminate"
pool = "app"
certificate = "revoked"
[[route]]
name = "muststaple"
names = ["ocsp-muststaple.test"]
action = "terminate"
pool = "app"
certificate = "muststaple"
[control]
state_dir = "$2"
trusted_ca = "opki/ca.pem"
[ocsp]
timeout_ms = 1000
startup_wait_ms = 5000
on_revoked = "$3"
TOML
}

# ---- 1. first connection after start is stapled
start_responder
P=$(free_port)
write_config "$P" "$T/state" withhold
start_lodestone "$T/lode.toml" --workers 2
before=$(requests)
out13=$(sclient "$P" -servername ocsp-good.test -status -tls1_3)
assert_contains "first connection (TLS 1.3): OCSP Response Status: successful" "$out13" "OCSP Response Status: successful"
assert_contains "first connection (TLS 1.3): Cert Status: good" "$out13" "Cert Status: good"
out12=$(sclient "$P" -servername ocsp-good.test -status -tls1_2)
assert_contains "TLS 1.2 CertificateStatus: successful" "$out12" "OCSP Response Status: successful"
assert_contains "TLS 1.2: Cert Status: good" "$out12" "Cert Status: good"
assert_contains "the chain verifies" "$out12" "Verify return code: 0 (ok)"
for i in 1 2 3; do sclient "$P" -servername ocsp-good.test -status >/dev/null; done
assert_eq "later connections use the cache: no new responder request" "$before" "$(requests)"
assert_ge "startup fetched one response per certificate" "$before" 3
assert_ge "stats: staples sent" "$(stats staples_sent)" 5
nostatus=$(sclient "$P" -servername ocsp-good.test)
assert_not_contains "no status_request, no staple" "$nostatus" "OCSP Response Status"

# ---- 2. the must-staple certificate is served with its staple
ms=$(sclient "$P" -servername ocsp-muststaple.test -status)
assert_contains "must-staple certificate served, stapled" "$ms" "Cert Status: good"

# ---- 3. revoked: withheld, loud
rv=$(sclient "$P" -servername ocsp-revoked.test -status)
assert_not_contains "revoked certificate is not served" "$rv" "BEGIN CERTIFICATE"
assert_match "the client gets an alert" "$rv" "alert|handshake failure|no peer certificate"
check "an error event names the revoked certificate" grep -q '"event":"certificate_revoked","level":"error","certificate":"name:revoked"' "$LLOG"
check "and says it is withheld" grep -q '"action":"withheld"' "$LLOG"
assert_ge "stats: cert_withheld counted" "$(stats cert_withheld)" 1
check "responses are cached on disk" test -n "$(ls "$T/state/ocsp" 2>/dev/null)"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null

# ---- 4. restart with the responder down: stapled from the disk cache
stop_responder
P=$(free_port)
write_config "$P" "$T/state" withhold
start_lodestone "$T/lode.toml"
out=$(sclient "$P" -servername ocsp-good.test -status)
assert_contains "restart, responder down: first connection stapled from disk" "$out" "Cert Status: good"
check "startup took responses from disk" grep -q '"event":"ocsp_startup","from_disk":3' "$LLOG"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null

# ---- 5. a garbage responder, empty cache: no staple, must-staple withheld
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"\x30\x03garbage-not-ocsp"
        self.send_response(200); self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$OP" &
GARBAGE=$!; PIDS+=("$GARBAGE")
sleep 0.5
P=$(free_port)
write_config "$P" "$T/state-garbage" withhold
start_lodestone "$T/lode.toml"
out=$(sclient "$P" -servername ocsp-good.test -status)
assert_contains "garbage responder: lenient certificate still served" "$out" "BEGIN CERTIFICATE"
assert_contains "  ... without a staple" "$out" "OCSP response: no response sent"
ms=$(sclient "$P" -servername ocsp-muststaple.test -status)
assert_not_contains "garbage responder: must-staple certificate withheld" "$ms" "BEGIN CERTIFICATE"
check "the fetch failure is logged" grep -q '"event":"ocsp_fetch_failed"' "$LLOG"
check "the must-staple withholding is logged" grep -q '"event":"certificate_withheld","level":"error","certificate":"name:muststaple"' "$LLOG"
check "lodestone is still running" kill -0 "$LPID"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null
kill "$GARBAGE" 2>/dev/null; wait "$GARBAGE" 2>/dev/null

# ---- 6. a silent responder (accepts, never answers): bounded by timeout_ms
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)' "$OP" &
SILENT=$!; PIDS+=("$SILENT")
sleep 0.3
P=$(free_port)
write_config "$P" "$T/state-silent" withhold
t0=$(now_ms)
start_lodestone "$T/lode.toml"
took=$(( $(now_ms) - t0 ))
echo "   started in ${took} ms with a silent responder (timeout_ms 1000)"
assert_le "a silent responder delays the start by at most startup_wait_ms" "$took" 8000
out=$(sclient "$P" -servername ocsp-good.test -status)
assert_contains "silent responder: served without a staple" "$out" "OCSP response: no response sent"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null
kill "$SILENT" 2>/dev/null; wait "$SILENT" 2>/dev/null

# ---- 7. on_revoked = "serve": served, never stapled (a revoked staple would fail the client)
start_responder
P=$(free_port)
write_config "$P" "$T/state" serve
start_lodestone "$T/lode.toml"
rv=$(sclient "$P" -servername ocsp-revoked.test -status)
assert_contains "on_revoked=serve: the revoked certificate is served" "$rv" "BEGIN CERTIFICATE"
assert_contains "  ... without a staple" "$rv" "OCSP response: no response sent"
check "  ... and still logged as an error" grep -q '"action":"served without a staple"' "$LLOG"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null

# ---- 8. CRL only: leaves with a CRL distribution point and no OCSP URL
# (serial 0x08 is on the intermediate's CRL, serial 0x0a is not), the CRL
# served over HTTP on the port the certificates name.
crl_leaf() {  # crl_leaf NAME SERIAL
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OPKI/$1.key" 2>/dev/null
  openssl req -new -key "$OPKI/$1.key" -subj "/CN=$1" -out "$T/$1.csr" 2>/dev/null
  openssl x509 -req -in "$T/$1.csr" -CA "$OPKI/intermediate.pem" -CAkey "$OPKI/intermediate.key" -set_serial "$2" \
    -days 30 -extfile <(printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\ncrlDistributionPoints=URI:http://127.0.0.1:%s/intermediate.crl\n' "$1" "$CP") \
    -out "$T/$1.leaf.pem" 2>/dev/null
  cat "$T/$1.leaf.pem" "$OPKI/intermediate.pem" >"$OPKI/$1.pem"
}
crl_leaf crl-good.test 10
crl_leaf crl-revoked.test 8
python3 -m http.server "$CP" --bind 127.0.0.1 --directory "$OPKI" >"$T/crl-http.log" 2>&1 &
CRLSRV=$!; PIDS+=("$CRLSRV")
wait_for 5 grep -q "Serving HTTP" "$T/crl-http.log"
P=$(free_port)
write_config "$P" "$T/state" withhold
cat >>"$T/lode.toml" <<TOML
[[certificate]]
name = "crlgood"
cert = "opki/crl-good.test.pem"
key = "opki/crl-good.test.key"
[[certificate]]
name = "crlrevoked"
cert = "opki/crl-revoked.test.pem"
key = "opki/crl-revoked.test.key"
[[route]]
name = "crlgood"
names = ["crl-good.test"]
action = "terminate"
pool = "app"
certificate = "crlgood"
[[route]]
name = "crlrevoked"
names = ["crl-revoked.test"]
action = "terminate"
pool = "app"
certificate = "crlrevoked"
TOML
start_lodestone "$T/lode.toml"
out=$(sclient "$P" -servername crl-good.test -status)
assert_contains "CRL only, not listed: served" "$out" "BEGIN CERTIFICATE"
assert_contains "  ... without a staple (a CRL is not stapled)" "$out" "OCSP response: no response sent"
out=$(sclient "$P" -servername crl-revoked.test)
assert_not_contains "CRL only, listed: withheld" "$out" "BEGIN CERTIFICATE"
check "  ... an error event with source crl" grep -q '"event":"certificate_revoked","level":"error","certificate":"name:crlrevoked","source":"crl"' "$LLOG"
check "the CRL was fetched over HTTP" grep -q "GET /intermediate.crl" "$T/crl-http.log"
kill -TERM "$LPID"; wait "$LPID" 2>/dev/null

# ---- 9. a revoked intermediate withholds every chain through it
# (the root's responder, as in the article's second responder)
(cd "$OPKI" && openssl ca -batch -config root-ca.cnf -revoke intermediate.pem -crl_reason keyCompromise >/dev/null 2>&1)
check "the intermediate is revoked in the root's database" grep -q '^R' "$OPKI/root-index.txt"
openssl ocsp -index "$OPKI/root-index.txt" -port "$RP" -rsigner "$OPKI/root-ocsp-responder.pem" \
  -rkey "$OPKI/root-ocsp-responder.key" -CA "$OPKI/ca.pem" -ndays 1 >"$T/root-responder.log" 2>&1 &
ROOTRESP=$!; PIDS+=("$ROOTRESP")
wait_for 5 grep -q "waiting for OCSP client" "$T/root-responder.log"
P=$(free_port)
write_config "$P" "$T/state" withhold
start_lodestone "$T/lode.toml"
out=$(sclient "$P" -servername ocsp-good.test -status)
assert_not_contains "intermediate revoked: the good leaf is withheld" "$out" "BEGIN CERTIFICATE"
check "  ... an intermediate_revoked error event" grep -q '"event":"intermediate_revoked","level":"error"' "$LLOG"
check "  ... the withholding names the chain" grep -q '"reason":"an intermediate of its chain is revoked"' "$LLOG"
check "the root's responder was asked" grep -q "Received request" "$T/root-responder.log"
finish
