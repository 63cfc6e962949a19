#!/usr/bin/env bash
# One port, many names (stone's SNI mode): each name its certificate and its
# backend; unknown names get alert 112; no SNI takes the default route;
# directory mode picks up a dropped-in certificate on SIGHUP; a broken or
# listener-changing configuration is refused and the old one keeps serving;
# SIGTERM drains and exits 0.
source "$(dirname "$0")/common.sh"
pki a.test b.test c.test
P=$(free_port); PA=$(free_port); PB=$(free_port)
mkdir -p "$T/certs"
cp "$T/pki/a.test.pem" "$T/pki/a.test.key" "$T/pki/b.test.pem" "$T/pki/b.test.key" "$T/certs/"
start_backend senri "$PA"
start_backend asao "$PB"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P", "[::1]:$P"]
[[pool]]
name = "senri"
backends = ["127.0.0.1:$PA"]
[[pool]]
name = "asao"
backends = ["127.0.0.1:$PB"]
[[certificate_dir]]
name = "sites"
path = "certs"
[[certificate]]
name = "a"
cert = "certs/a.test.pem"
key = "certs/a.test.key"
[[route]]
name = "senri"
names = ["a.test"]
action = "terminate"
pool = "senri"
certificate = "sites"
[[route]]
name = "asao"
names = ["b.test", "*.dir.test", "c.test"]
action = "terminate"
pool = "asao"
certificate = "sites"
TOML
cp "$T/lode.toml" "$T/base.toml"
start_lodestone "$T/lode.toml" --workers 2

contains "a.test reaches backend senri" "$(lcurl a.test "$P")" "backend=senri"
contains "b.test reaches backend asao" "$(lcurl b.test "$P")" "backend=asao"
contains "the IPv6 listener serves too" \
  "$(timeout 10 curl -sS -6 --cacert "$T/pki/ca.pem" --resolve "a.test:$P:[::1]" "https://a.test:$P/")" "backend=senri"
out=$(sclient "$P" -servername a.test)
contains "s_client a.test sees CN a.test" "$out" "subject=CN = a.test"
contains "a.test chain verifies" "$out" "Verify return code: 0 (ok)"
contains "s_client b.test sees CN b.test" "$(sclient "$P" -servername b.test)" "subject=CN = b.test"
contains "unknown name gets alert 112" "$(sclient "$P" -servername nobody.test)" "alert number 112"
contains "c.test without its files gets alert 112" "$(sclient "$P" -servername c.test)" "alert number 112"
contains "no SNI without a default route gets alert 112" "$(sclient "$P" -noservername)" "alert number 112"

# Directory mode: drop c.test's files in, reload.
cp "$T/pki/c.test.pem" "$T/pki/c.test.key" "$T/certs/"
kill -HUP "$LPID"
check "reloaded after SIGHUP" wait_for 10 grep -q '"event":"reloaded"' "$LLOG"
contains "c.test served after the reload" "$(sclient "$P" -servername c.test)" "subject=CN = c.test"
contains "c.test reaches its backend" "$(lcurl c.test "$P")" "backend=asao"

# A default route for clients without SNI (a named certificate: a directory
# route needs a name to find its file).
sed -i 's/^name = "https"$/name = "https"\ndefault_route = "fallback"/' "$T/lode.toml"
cat >>"$T/lode.toml" <<TOML
[[route]]
name = "fallback"
action = "terminate"
pool = "senri"
certificate = "a"
TOML
kill -HUP "$LPID"
check "second reload" wait_for 10 bash -c "[ \$(grep -c '\"event\":\"reloaded\"' '$LLOG') -ge 2 ]"
out=$(sclient "$P" -noservername)
contains "no SNI takes the default route" "$out" "subject=CN = a.test"

# A broken configuration is refused; the old one keeps serving.
echo 'this is = not [ toml' >>"$T/lode.toml"
kill -HUP "$LPID"
check "broken config refused" wait_for 10 grep -q '"event":"reload_refused"' "$LLOG"
contains "still serving after a refused reload" "$(lcurl b.test "$P")" "backend=asao"
# Changing the listeners is refused with the reason.
sed "s/127.0.0.1:$P\"/127.0.0.1:$(free_port)\"/" "$T/base.toml" >"$T/lode.toml"
kill -HUP "$LPID"
check "listener change refused" wait_for 10 grep -q 'listeners (names, addresses, order, PROXY setting) changed' "$LLOG"

# The access log: one line per connection with its facts.
line=$(grep '"sni":"a.test"' "$LLOG" | head -n 1)
contains "access log has the TLS version" "$line" '"tls_version":"TLSv1.3"'
contains "access log has the route" "$line" '"route":"senri"'
contains "access log has the backend" "$line" "\"backend\":\"127.0.0.1:$PA\""

# SIGTERM: drain, exit 0.
kill -TERM "$LPID"
wait "$LPID"; rc=$?
check "SIGTERM exits 0" test "$rc" -eq 0
check "log ends with stopped" grep -q '"event":"stopped"' "$LLOG"
finish
