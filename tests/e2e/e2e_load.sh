#!/usr/bin/env bash
# Bulk and concurrency with real clients: 100 MB each way through
# termination and through passthrough (SHA-256 equal), 1,000 concurrent TLS
# connections, and SIGHUP five times under a request loop with zero failed
# requests. Runs against the release build only (ctest registers it there).
source "$(dirname "$0")/common.sh"
C="$(dirname "$0")/clients.py"
pki a.test
P=$(free_port); PE=$(free_port); PH=$(free_port)
mkdir -p "$T/certs"
cp "$T/pki/a.test.pem" "$T/pki/a.test.key" "$T/certs/"
start_backend echo "$PE" --mode echo
start_backend http "$PH"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]
[[pool]]
name = "echo"
backends = ["127.0.0.1:$PE"]
[[pool]]
name = "http"
backends = ["127.0.0.1:$PH"]
[[certificate_dir]]
name = "sites"
path = "certs"
[[route]]
name = "bulk"
names = ["a.test"]
action = "terminate"
pool = "echo"
certificate = "sites"
[[route]]
name = "web"
names = ["*.web.test"]
action = "terminate"
pool = "http"
certificate = "sites"
[[route]]
name = "pass"
names = ["curl.test", "a.web.test.pass"]
action = "passthrough"
pool = "echo"
[log]
access = "off"
TOML
start_lodestone "$T/lode.toml" --workers 2 --stats-file "$T/stats.json"

out=$(timeout 150 python3 "$C" bulk-tls "$P" a.test "$T/pki/ca.pem" 100)
contains "100 MB each way through termination" "$out" "equal bytes=104857600"
# curl's captured hello says SNI a.test: route it by a passthrough name.
python3 - "$LODE_SOURCE_DIR/tests/fixtures/client_hello/curl.bin" "$T/hello.bin" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
old, new = b"\x00\x06a.test", b"\x00\x06" + b"zz.zzz"
i = b.index(old)
b[i:i + len(old)] = new
open(sys.argv[2], "wb").write(bytes(b))
PY
sed -i 's/"curl.test", "a.web.test.pass"/"zz.zzz"/' "$T/lode.toml"
kill -HUP "$LPID"
wait_for 10 grep -q '"event":"reloaded"' "$LLOG"
out=$(timeout 150 python3 "$C" bulk-raw "$P" "$T/hello.bin" 100)
contains "100 MB each way through passthrough" "$out" "equal bytes=$((104857600 + $(stat -c %s "$T/hello.bin")))"
check "passthrough bytes moved by splice" wait_for 3 grep -q '"splice_relays":[1-9]' "$T/stats.json"

# Open 1,000 at once (the names are served by the wildcard route).
cp "$T/pki/a.test.pem" "$T/certs/x.web.test.pem" 2>/dev/null
"$LODE_SOURCE_DIR/tools/make-test-pki.sh" "$T/pki" x.web.test >/dev/null
cp "$T/pki/x.web.test.pem" "$T/pki/x.web.test.key" "$T/certs/"
kill -HUP "$LPID"
wait_for 10 bash -c "[ \$(grep -c '\"event\":\"reloaded\"' '$LLOG') -ge 2 ]"
out=$(timeout 120 python3 "$C" concurrent "$P" x.web.test "$T/pki/ca.pem" 1000)
contains "1,000 concurrent connections all served" "$out" "ok 1000 failed 0"

# SIGHUP under load: zero failed requests.
timeout 60 python3 "$C" loop "$P" x.web.test "$T/pki/ca.pem" 8 >"$T/loop.out" &
LOOP=$!
for i in 1 2 3 4 5; do sleep 1.2; kill -HUP "$LPID"; done
wait "$LOOP"
contains "no request failed across five reloads" "$(cat "$T/loop.out")" "failed 0"
check "all five reloads applied" bash -c "[ \$(grep -c '\"event\":\"reloaded\"' '$LLOG') -ge 7 ]"
check "nothing left open" wait_for 5 grep -q '"active":0' "$T/stats.json"
finish
