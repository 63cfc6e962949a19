#!/usr/bin/env bash
# Directory mode (stone's certpat=%n-cert.pem) and reloads: a route whose
# certificate is a [[certificate_dir]] serves NAME from NAME.pem/NAME.key; a
# name whose files are missing gets alert 112; dropping c.test's files in and
# sending SIGHUP serves c.test (the "reloaded" event); the listener's default
# route may point at the directory too. A broken configuration on SIGHUP is
# refused ("reload_refused", with file:line) and the old one keeps serving;
# so are a configuration that is valid TOML but wrong (an unknown pool, a
# missing certificate file) and a change of the listeners (restart needed);
# a fixed file is taken on the next SIGHUP. `lodectl check` agrees offline.
# `lodectl certs replace` of an entry refuses a certificate not covering it.
source "$(dirname "$0")/lib.sh"
e2e_begin certdir 60
make_pki a.test c.test d.example

P=$(free_port); PB=$(free_port)
start_backend sites "$PB"
mkdir -p "$T/certs"
cp "$PKI/a.test.pem" "$PKI/a.test.key" "$T/certs/"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]
default_route = "sites"

[[pool]]
name = "sites"
backends = ["127.0.0.1:$PB"]

[[certificate_dir]]
name = "dir"
path = "certs"
cert_pattern = "%n.pem"
key_pattern = "%n.key"

[[route]]
name = "sites"
names = ["*.test"]
action = "terminate"
pool = "sites"
certificate = "dir"
TOML
cp "$T/lode.toml" "$T/good.toml"
start_lodestone "$T/lode.toml" --workers 2

assert_contains "a.test served from the directory" "$(sclient "$P" -servername a.test)" "subject=CN = a.test"
assert_contains "a.test reaches the backend" "$(lcurl a.test "$P")" "backend=sites"
out=$(sclient "$P" -servername c.test)
assert_contains "c.test without its files gets alert 112" "$out" "alert number 112"
assert_not_contains "c.test without its files gets no certificate" "$out" "subject="
wait_for 3 grep -q '"sni":"c.test"' "$LLOG"
assert_eq "access log: c.test's result" "no_certificate" "$(last_log '"sni":"c.test"' | jfield result)"
assert_contains "d.example (default route, no files) gets alert 112" "$(sclient "$P" -servername d.example)" "alert number 112"

# Drop c.test's (and d.example's) files in, reload.
cp "$PKI/c.test.pem" "$PKI/c.test.key" "$PKI/d.example.pem" "$PKI/d.example.key" "$T/certs/"
assert_eq "SIGHUP after dropping files in: reloaded event" reloaded "$(reload)"
out=$(sclient "$P" -servername c.test)
assert_contains "c.test served after the reload" "$out" "subject=CN = c.test"
assert_contains "c.test's chain verifies" "$out" "Verify return code: 0 (ok)"
assert_contains "c.test reaches the backend (curl verifies the name)" "$(lcurl c.test "$P")" "backend=sites"
assert_contains "d.example served by the default route from the directory" \
  "$(sclient "$P" -servername d.example)" "subject=CN = d.example"
assert_contains "a.test still served" "$(sclient "$P" -servername a.test)" "subject=CN = a.test"

# A broken file: refused, the old configuration keeps serving.
printf 'this is = not [ toml\n' >>"$T/lode.toml"
assert_eq "broken config on SIGHUP: reload_refused event" reload_refused "$(reload)"
line=$(last_log '"event":"reload_refused"')
assert_match "the refusal names the file and line" "$line" 'lode\.toml:[0-9]+' 
assert_contains "still serving c.test after the refused reload" "$(lcurl c.test "$P")" "backend=sites"
assert_contains "still serving a.test after the refused reload" "$(sclient "$P" -servername a.test)" "subject=CN = a.test"
# lodectl check says the same offline.
out=$(timeout 10 "$LODECTL" check "$T/lode.toml" 2>&1); rc=$?
check "lodectl check: the broken file fails" test "$rc" -ne 0
assert_match "lodectl check: names the file and line" "$out" 'lode\.toml:[0-9]+'
out=$(timeout 10 "$LODECTL" check "$T/good.toml" 2>&1); rc=$?
assert_eq "lodectl check: the good file passes" 0 "$rc"
assert_match "lodectl check: it loaded the certificates" "$out" '[0-9]+ certificates loaded and valid'
# A key that does not match its certificate: check loads it as a start would.
mkdir -p "$T/mismatch"
cp "$PKI/a.test.pem" "$T/mismatch/m.pem"; cp "$PKI/other-ca.key" "$T/mismatch/m.key"
a_test_config "$T/mismatch.toml" "$P" 1
sed -i 's|^cert = "pki/a.test.pem"$|cert = "mismatch/m.pem"|; s|^key = "pki/a.test.key"$|key = "mismatch/m.key"|' "$T/mismatch.toml"
out=$(timeout 10 "$LODECTL" check "$T/mismatch.toml" 2>&1); rc=$?
check "lodectl check: a mismatched key fails" test "$rc" -ne 0
assert_contains "  ... naming the key file" "$out" "mismatch/m.key: the private key does not match"
out=$(timeout 10 "$LODECTL" check "$T/mismatch.toml" --skip-certificates 2>&1); rc=$?
assert_eq "lodectl check --skip-certificates: configuration only" 0 "$rc"
# Valid TOML, wrong meaning: refused too.
sed 's/pool = "sites"$/pool = "nonexistent"/' "$T/good.toml" >"$T/lode.toml"
assert_eq "unknown pool on SIGHUP: reload_refused event" reload_refused "$(reload)"
assert_contains "the refusal names the key" "$(last_log '"event":"reload_refused"')" "pool"
assert_contains "still serving after the second refused reload" "$(lcurl c.test "$P")" "backend=sites"
# A missing certificate file in a named [[certificate]]: refused.
cp "$T/good.toml" "$T/lode.toml"
cat >>"$T/lode.toml" <<TOML
[[certificate]]
name = "gone"
cert = "certs/gone.pem"
key = "certs/gone.key"
TOML
assert_eq "missing certificate file on SIGHUP: reload_refused event" reload_refused "$(reload)"
assert_contains "still serving after the third refused reload" "$(lcurl a.test "$P")" "backend=sites"
# Changing the listeners needs a restart (each worker owns its sockets):
# refused, with the reason.
P2=$(free_port)
sed "s/127.0.0.1:$P/127.0.0.1:$P2/" "$T/good.toml" >"$T/lode.toml"
assert_eq "changed listener address on SIGHUP: reload_refused" reload_refused "$(reload)"
assert_contains "  ... saying why" "$(last_log '"event":"reload_refused"')" "listeners"
assert_contains "still serving on the old port" "$(lcurl a.test "$P")" "backend=sites"
# Fixed: taken.
cp "$T/good.toml" "$T/lode.toml"
rm "$T/certs/d.example.pem" "$T/certs/d.example.key"
assert_eq "fixed config on SIGHUP: reloaded" reloaded "$(reload)"
assert_contains "d.example, its files removed, gets alert 112 again" "$(sclient "$P" -servername d.example)" "alert number 112"
assert_contains "c.test still served" "$(sclient "$P" -servername c.test)" "subject=CN = c.test"
# `lodectl certs replace` on a directory entry is held to the directory's
# rule: a certificate that does not cover the entry's name is refused (it
# was taken, and c.test served a.test's certificate).
out=$(timeout 10 "$LODECTL" --socket "$T/run/admin.sock" certs replace dir:dir/c.test \
  --cert "$PKI/a.test.pem" --key "$PKI/a.test.key" 2>&1); rc=$?
assert_eq "certs replace of dir:dir/c.test with a.test's certificate: exit 1" 1 "$rc"
assert_contains "  ... saying why" "$out" "do not cover c.test"
assert_contains "c.test still served its own" "$(sclient "$P" -servername c.test)" "subject=CN = c.test"
out=$(timeout 10 "$LODECTL" --socket "$T/run/admin.sock" certs replace dir:dir/c.test \
  --cert "$PKI/c.test.pem" --key "$PKI/c.test.key" 2>&1); rc=$?
assert_eq "certs replace of dir:dir/c.test with a certificate for c.test: exit 0" 0 "$rc"
finish
