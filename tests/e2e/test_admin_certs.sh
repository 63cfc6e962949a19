#!/usr/bin/env bash
# `lodectl certs add|rm` and `lodectl routes reload CONFIG` against a running
# lodestone (controlplane/control_plane_admin.cc, published_config.h).
#
# 1. certs add: a new certificate (b.test's) is listed, one generation more;
#    refused with exit 1 and nothing changed (generation, list): a key that
#    does not match, a chain that does not verify to [control] trusted_ca, a
#    name the file defines, a bad name.
# 2. routes reload CONFIG: a file in another directory whose new route names
#    the added certificate; s_client sees b.test's certificate; `status`
#    shows CONFIG; SIGHUP re-reads CONFIG (a name added to it is served).
#    --dry-run and a CONFIG naming an unknown pool change nothing.
# 3. certs rm while the route names it: exit 1 naming the route, still
#    served; a certificate of the file: exit 1; after a reload back to the
#    first file, rm: exit 0, gone from certs list, one generation more.
# 4. Kept across a reload (no CONFIG) and across a control-plane restart
#    (killed; the restarted one re-attaches with the file in service and the
#    added certificate, which still serves its route); the store (mode 0700,
#    keys 0600) is gone when Lodestone stops.
source "$(dirname "$0")/lib.sh"
e2e_begin admin_certs 90
make_pki a.test b.test

P=$(free_port); PA=$(free_port); MP=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
printf '\n[control]\ntrusted_ca = "pki/ca.pem"\n\n[admin]\nmetrics = "127.0.0.1:%s"\n' "$MP" >>"$T/lode.toml"
# Stores a Lodestone killed without its exit path left behind (keys inside):
# the one of a dead PID goes at start, a live process's stays.
mkdir -p "$T/run"
true & DEAD=$!; wait "$DEAD"
mkdir -m 700 "$T/run/lodestone-$DEAD.sock.certs" "$T/run/lodestone-$$.sock.certs"
echo key >"$T/run/lodestone-$DEAD.sock.certs/old.key"
start_lodestone "$T/lode.toml" --workers 2
SOCK="$T/run/admin.sock"
check "a dead Lodestone's certificate store is removed at start" test ! -e "$T/run/lodestone-$DEAD.sock.certs"
check "  ... a live process's is left alone" test -d "$T/run/lodestone-$$.sock.certs"
rmdir "$T/run/lodestone-$$.sock.certs"

ctl() {  # ctl ARGS...: sets OUT, ERR, RC
  OUT=$(timeout 10 "$LODECTL" --socket "$SOCK" "$@" 2>"$T/ctl.err"); RC=$?
  ERR=$(cat "$T/ctl.err")
}
st() { timeout 10 "$LODECTL" --socket "$SOCK" --json status 2>/dev/null | jfield "$1"; }
cert_keys() { timeout 10 "$LODECTL" --socket "$SOCK" --json certs list 2>/dev/null |
  python3 -c 'import json,sys; print(" ".join(c["key"] for c in json.load(sys.stdin)["certificates"]))'; }
served_cn() { peer_cert "$P" -servername "$1" | sed -n 's/^subject=.*CN *= *//p'; }

# ---------------------------------------------------------------- 1. certs add
g0=$(st generation)
ctl --json certs add newc --cert "$PKI/b.test.pem" --key "$PKI/b.test.key"
assert_eq "certs add: exit 0" 0 "$RC"
g1=$(jfield generation <<<"$OUT")
assert_eq "certs add: one new generation" $((g0 + 1)) "$g1"
assert_eq "certs add: in service when it answers" true "$(jfield in_service <<<"$OUT")"
assert_eq "certs add: status agrees" "$g1" "$(st generation)"
assert_contains "certs add: the answer names it" "$OUT" '"certificates_added":["name:newc"]'
assert_eq "certs list: a and newc" "name:a name:newc" "$(cert_keys)"
STORE="$T/run/lodestone-$LPID.sock.certs"
assert_eq "the store of added certificates is mode 700, its key 600" "700 600" \
  "$(stat -c %a "$STORE" 2>&1) $(stat -c %a "$STORE/newc.key" 2>&1)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/self.key" -out "$T/self.pem" \
  -days 30 -subj "/CN=self.test" -addext "subjectAltName=DNS:self.test" -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
for bad in "mismatch|$PKI/b.test.pem|$PKI/a.test.key|key" \
           "untrusted|$T/self.pem|$T/self.key|verif" \
           "a|$PKI/b.test.pem|$PKI/b.test.key|certificate_dir" \
           "../x|$PKI/b.test.pem|$PKI/b.test.key|not a certificate name" \
           "newc|$PKI/a.test.pem|$PKI/a.test.key|added already"; do
  IFS='|' read -r name cert key says <<<"$bad"
  ctl certs add "$name" --cert "$cert" --key "$key"
  assert_eq "certs add $name ($says): exit 1" 1 "$RC"
  assert_contains "certs add $name: the error says why" "$ERR" "$says"
done
assert_eq "refused adds: the generation is unchanged" "$g1" "$(st generation)"
assert_eq "refused adds: certs list is unchanged" "name:a name:newc" "$(cert_keys)"

# ---------------------------------------------------------------- 2. routes reload CONFIG
mkdir -p "$T/other"
sed -e 's|"pki/|"../pki/|g' "$T/lode.toml" >"$T/other/next.toml"
cat >>"$T/other/next.toml" <<'TOML'

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "newc"
TOML
assert_not_contains "before: b.test is not served" "$(sclient "$P" -servername b.test)" "CN = b.test"
ctl routes reload "$T/other/next.toml" --dry-run
assert_eq "routes reload CONFIG --dry-run: exit 0" 0 "$RC"
assert_eq "--dry-run: generation unchanged" "$g1" "$(st generation)"
assert_eq "--dry-run: the file in service is unchanged" "$T/lode.toml" "$(st config)"
cp "$T/other/next.toml" "$T/other/bad.toml"
sed -i 's/^pool = "app"$/pool = "nope"/' "$T/other/bad.toml"
ctl routes reload "$T/other/bad.toml"
assert_eq "routes reload of a bad CONFIG: exit 1" 1 "$RC"
assert_contains "routes reload of a bad CONFIG: names the key" "$ERR" "route[1].pool"
assert_eq "bad CONFIG: the file in service is unchanged" "$T/lode.toml" "$(st config)"
ctl --json routes reload "$T/other/next.toml"
assert_eq "routes reload CONFIG: exit 0" 0 "$RC"
g2=$(jfield generation <<<"$OUT")
assert_eq "routes reload CONFIG: one new generation" $((g1 + 1)) "$g2"
assert_eq "routes reload CONFIG: the answer names CONFIG" "$T/other/next.toml" "$(jfield config <<<"$OUT")"
assert_eq "status shows CONFIG" "$T/other/next.toml" "$(st config)"
assert_eq "b.test is served with the added certificate" "b.test" "$(served_cn b.test)"
assert_eq "a.test still served (relative paths from CONFIG's directory)" "a.test" "$(served_cn a.test)"
sed -i 's/^names = \["b.test"\]$/names = ["b.test", "b2.test"]/' "$T/other/next.toml"
assert_eq "SIGHUP re-reads CONFIG" reloaded "$(reload)"
assert_eq "SIGHUP: a name added to CONFIG is served" "b.test" "$(served_cn b2.test)"

# ---------------------------------------------------------------- 3. certs rm
g3=$(st generation)
ctl certs rm newc
assert_eq "certs rm while a route names it: exit 1" 1 "$RC"
assert_contains "certs rm: the error names the route" "$ERR" "route 'b'"
assert_eq "refused rm: generation unchanged" "$g3" "$(st generation)"
assert_eq "refused rm: still served" "b.test" "$(served_cn b.test)"
ctl certs rm a
assert_eq "certs rm of the file's certificate: exit 1" 1 "$RC"
assert_contains "certs rm a: says it is in the file" "$ERR" "defined in"
ctl certs rm nothing
assert_eq "certs rm of an unknown name: exit 1" 1 "$RC"

# ---------------------------------------------------------------- 4. kept: reload, control-plane restart
ctl routes reload
assert_eq "routes reload (no CONFIG): exit 0" 0 "$RC"
assert_eq "reload: the added certificate is kept" "name:a name:newc" "$(cert_keys)"
cp_pid=$(st controlplane_pid)
kill -KILL "$cp_pid"
new_cp() { local p; p=$(st controlplane_pid); [ -n "$p" ] && [ "$p" != "$cp_pid" ]; }
check "the control plane is restarted" wait_for 15 new_cp
assert_eq "re-attached: the file in service is still CONFIG" "$T/other/next.toml" "$(st config)"
assert_eq "re-attached: the added certificate is kept" "name:a name:newc" "$(cert_keys)"
assert_eq "re-attached: b.test still served with it" "b.test" "$(served_cn b.test)"
ctl routes reload "$T/lode.toml"
assert_eq "routes reload back to the first file: exit 0" 0 "$RC"
assert_not_contains "route b is gone" "$(sclient "$P" -servername b.test)" "CN = b.test"
g4=$(st generation)
ctl --json certs rm newc
assert_eq "certs rm unreferenced: exit 0" 0 "$RC"
assert_eq "certs rm: one new generation" $((g4 + 1)) "$(jfield generation <<<"$OUT")"
assert_eq "certs rm: gone from certs list" "name:a" "$(cert_keys)"
ctl certs rm newc
assert_eq "certs rm again: exit 1" 1 "$RC"
assert_eq "lodestone is still running" 0 "$(kill -0 "$LPID" 2>/dev/null; echo $?)"

# ---------------------------------------------------------------- 5. a removal not yet in service
# The dataplane acknowledges nothing while stopped: `certs rm` answers "not
# in service" and the files stay, since the configuration saved for a
# re-attach still names them; a control plane that dies then comes back with
# that configuration and the certificate (files removed at once used to make
# the restarted control plane load a configuration naming missing files).
ctl certs add held --cert "$PKI/b.test.pem" --key "$PKI/b.test.key"
assert_eq "certs add held: exit 0" 0 "$RC"
cp_pid=$(st controlplane_pid)
kill -STOP "$LPID"
ctl --json certs rm held
kill -KILL "$cp_pid"
kill -CONT "$LPID"
assert_eq "certs rm, dataplane stopped: exit 0" 0 "$RC"
assert_eq "certs rm, dataplane stopped: not in service" false "$(jfield in_service <<<"$OUT")"
check "  ... the files stay until the saved configuration drops them" test -s "$STORE/held.pem" -a -s "$STORE/held.key"
check "the control plane is restarted" wait_for 15 new_cp
assert_eq "re-attached: the certificate whose removal never took effect is there" "name:a name:held" "$(cert_keys)"
ctl --json certs rm held
assert_eq "certs rm held again: in service" true "$(jfield in_service <<<"$OUT")"
check "  ... now its files are gone" test ! -e "$STORE/held.pem" -a ! -e "$STORE/held.key"

ctl certs add again --cert "$PKI/b.test.pem" --key "$PKI/b.test.key"
kill -TERM "$LPID"
wait "$LPID"
assert_eq "a stopped lodestone leaves no store of added certificates" absent "$([ -e "$STORE" ] && echo present || echo absent)"
finish
