#!/usr/bin/env bash
# `lodectl routes diff CONFIG` and `lodectl routes rollback` against a running
# lodestone (controlplane/control_plane_admin.cc, tools/lodectl/admin.h).
#
# 1. diff of a config that adds route b (certificate b) and moves pool app to
#    another backend: lists + route b, ~ pool app with its backends, +
#    certificate b (human and --json); nothing changes: generation, a.test
#    still answered by the first backend, b.test not served, no reload.
# 2. diff of a config naming an unknown pool: exit 1, the error names the file,
#    the key (pool) and the value; nothing changes. diff of the config in
#    service: "no change". diff of a missing file: exit 2.
# 3. rollback before any reload: exit 1, says there is nothing to roll back to.
# 4. reload to the new config (b.test served, a.test -> app2), rollback: a new
#    generation, b.test no longer served, a.test -> app again; a second
#    rollback goes forward again (b.test served, a.test -> app2).
# 5. reload of a FIFO, /dev/zero, a sparse 17 MiB file: exit 1 at once naming
#    the path and what it is; nothing changes.
source "$(dirname "$0")/lib.sh"

e2e_begin admin_routes 90
make_pki a.test b.test

P=$(free_port); PA=$(free_port); PA2=$(free_port)
start_backend app "$PA"
start_backend app2 "$PA2"
a_test_config "$T/lode.toml" "$P" "$PA"
printf '\n[admin]\nmetrics = "127.0.0.1:%s"\n' "$(free_port)" >>"$T/lode.toml"
cp "$T/lode.toml" "$T/base.toml"
# next.toml: pool app on the second backend, and route b with certificate b.
sed "s/127.0.0.1:$PA\"/127.0.0.1:$PA2\"/" "$T/base.toml" >"$T/next.toml"
cat >>"$T/next.toml" <<TOML

[[certificate]]
name = "b"
cert = "pki/b.test.pem"
key = "pki/b.test.key"

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "b"
TOML
start_lodestone "$T/lode.toml" --workers 2
SOCK="$T/run/admin.sock"

ctl() {
  OUT=$(timeout 10 "$LODECTL" --socket "$SOCK" "$@" 2>"$T/ctl.err"); RC=$?
  ERR=$(cat "$T/ctl.err")
}
st() { timeout 10 "$LODECTL" --socket "$SOCK" --json status 2>/dev/null | jfield "$1"; }
st_gt() { [ "$(st "$1")" -gt "$2" ] 2>/dev/null; }
served_cn() { peer_cert "$P" -servername "$1" | sed -n 's/^subject=.*CN *= *//p'; }
backend_of() { lcurl "$1" "$P" | sed -n 's/.*backend=\([a-z0-9]*\).*/\1/p' | head -n 1; }
wait_for 5 st_gt generation 0

# ---------------------------------------------------------------- 1. diff changes nothing
assert_eq "before: a.test -> app" app "$(backend_of a.test)"
assert_eq "before: b.test is not served" "" "$(served_cn b.test)"
g0=$(st generation); reloads0=$(st reloads); rel0=$(log_count '"event":"reloaded"')
ctl routes diff "$T/next.toml"
assert_eq "diff: exit 0" 0 "$RC"
assert_match "diff: + route b" "$OUT" $'(^|\n)\\+ route b(\n|$)'
assert_match "diff: ~ pool app" "$OUT" $'(^|\n)~ pool app(\n|$)'
assert_contains "diff: the pool's backends, old -> new" "$OUT" "backends: 127.0.0.1:$PA -> 127.0.0.1:$PA2"
assert_match "diff: + certificate b" "$OUT" $'(^|\n)\\+ certificate b(\n|$)'
assert_contains "diff: the certificate record name:b" "$OUT" "certificate records added: name:b"
assert_not_contains "diff: route a is unchanged" "$OUT" "route a"
ctl --json routes diff "$T/next.toml"
assert_eq "diff --json: exit 0" 0 "$RC"
assert_eq "diff --json: routes, pools, certificates" "['b'] [] [] app ['b'] ['name:b']" \
  "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1])
print(v["routes_added"], v["routes_removed"], v["routes_changed"], ",".join(c["name"] for c in v["pools_changed"]),
      v["certificates_added"], v["certificate_records_added"])' "$OUT" 2>&1)"
sleep 0.5
assert_eq "diff: generation unchanged" "$g0" "$(st generation)"
assert_eq "diff: not counted as a reload" "$reloads0" "$(st reloads)"
assert_eq "diff: no reloaded event" "$rel0" "$(log_count '"event":"reloaded"')"
assert_eq "diff: a.test still -> app" app "$(backend_of a.test)"
assert_eq "diff: b.test still not served" "" "$(served_cn b.test)"
ctl routes show b.test
assert_not_contains "diff: routes show b.test finds no route b" "$OUT" "route: b"

# ---------------------------------------------------------------- 2. a broken config, no change
cp "$T/next.toml" "$T/broken.toml"
sed -i 's/^pool = "app"$/pool = "nosuch"/' "$T/broken.toml"
refused0=$(st reloads_refused)
ctl routes diff "$T/broken.toml"
assert_eq "diff of a broken config: exit 1" 1 "$RC"
assert_contains "diff of a broken config: names the file" "$ERR" "broken.toml"
assert_contains "diff of a broken config: names the key (pool)" "$ERR" "pool"
assert_contains "diff of a broken config: names the unknown pool" "$ERR" "nosuch"
assert_eq "diff of a broken config: nothing on stdout" "" "$OUT"
assert_eq "diff of a broken config: generation unchanged" "$g0" "$(st generation)"
assert_eq "diff of a broken config: not a refused reload" "$refused0" "$(st reloads_refused)"
assert_eq "diff of a broken config: a.test still -> app" app "$(backend_of a.test)"
ctl routes diff "$T/lode.toml"
assert_eq "diff of the config in service: exit 0" 0 "$RC"
assert_eq "diff of the config in service: no change" "no change" "$OUT"
ctl routes diff "$T/nosuch.toml"
assert_eq "diff of a missing file: exit 2" 2 "$RC"
assert_contains "diff of a missing file: names it" "$ERR" "nosuch.toml"
ctl routes diff
assert_eq "diff without CONFIG: usage, exit 2" 2 "$RC"

# ---------------------------------------------------------------- 3. nothing to roll back to
ctl routes rollback
assert_eq "rollback before any reload: exit 1" 1 "$RC"
assert_contains "rollback before any reload: says why" "$ERR" "no previous configuration"
assert_eq "rollback before any reload: generation unchanged" "$g0" "$(st generation)"

# ---------------------------------------------------------------- 4. reload, rollback, rollback
cp "$T/next.toml" "$T/lode.toml"
ctl routes reload
assert_eq "reload to next.toml: exit 0" 0 "$RC"
check "reload: the generation grows (from $g0)" wait_for 5 st_gt generation "$g0"
check "reload: b.test served" wait_for 5 bash -c "[[ \"\$(timeout 10 curl -sS --max-time 5 --cacert '$PKI/ca.pem' --resolve b.test:$P:127.0.0.1 https://b.test:$P/ 2>&1)\" == *backend=app2* ]]"
assert_eq "reload: a.test -> app2" app2 "$(backend_of a.test)"
ctl routes diff "$T/base.toml"
assert_match "diff back to base: - route b" "$OUT" $'(^|\n)- route b(\n|$)'

g1=$(st generation); rel1=$(log_count '"event":"reloaded"')
ctl routes rollback
assert_eq "rollback: exit 0" 0 "$RC"
assert_match "rollback: reports certificates_removed name:b" "$OUT" $'(^|\n)certificates_removed: name:b(\n|$)'
assert_match "rollback: returns the generation" "$OUT" $'(^|\n)generation: [0-9]+(\n|$)'
check "rollback: a new generation (from $g1)" wait_for 5 st_gt generation "$g1"
check "rollback: a reloaded event" wait_log_count '"event":"reloaded"' $((rel1 + 1)) 5
out=$(lcurl b.test "$P")
assert_not_contains "rollback: b.test no longer answered" "$out" "backend="
assert_eq "rollback: b.test's certificate not served" "" "$(served_cn b.test)"
assert_eq "rollback: a.test -> app again" app "$(backend_of a.test)"
ctl routes diff "$T/base.toml"
assert_eq "rollback: the config in service is base.toml again" "no change" "$OUT"

g2=$(st generation)
ctl --json routes rollback
assert_eq "second rollback: exit 0" 0 "$RC"
assert_eq "second rollback --json: ok, name:b back" "True ['name:b']" \
  "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v["ok"], v["certificates_added"])' "$OUT" 2>&1)"
check "second rollback: a new generation (from $g2)" wait_for 5 st_gt generation "$g2"
assert_eq "second rollback: b.test served again" "b.test" "$(served_cn b.test)"
assert_eq "second rollback: a.test -> app2" app2 "$(backend_of a.test)"
assert_contains "still alive" "$(sclient "$P" -servername a.test)" "Verify return code: 0 (ok)"

# ---------------------------------------------------------------- 5. paths that are no configuration file
# `routes reload PATH`: the control plane reads PATH itself. A FIFO nobody
# writes to is refused at once (it blocked the control plane's loop: no
# answer to anyone); /dev/zero and a sparse file over 16 MiB are refused
# unread (they filled its memory). Nothing changes; it answers on.
g3=$(st generation)
mkfifo "$T/fifo.toml"
t0=$(now_ms)
ctl routes reload "$T/fifo.toml"
assert_eq "reload of a FIFO: exit 1 (refused), not 3 or 5 (no answer)" 1 "$RC"
assert_contains "reload of a FIFO: says what it is" "$ERR" "$T/fifo.toml: a FIFO, not a regular file"
check "reload of a FIFO: answered within 3 s" test $(($(now_ms) - t0)) -lt 3000
ctl routes reload /dev/zero --dry-run
assert_eq "reload of /dev/zero: exit 1" 1 "$RC"
assert_contains "reload of /dev/zero: says what it is" "$ERR" "/dev/zero: a device, not a regular file"
truncate -s 17M "$T/huge.toml"
ctl routes reload "$T/huge.toml"
assert_eq "reload of a 17 MiB file: exit 1" 1 "$RC"
assert_contains "reload of a 17 MiB file: says why" "$ERR" "$T/huge.toml: larger than 16777216 bytes"
assert_eq "refused paths: generation unchanged" "$g3" "$(st generation)"
assert_eq "refused paths: a.test -> app2 still" app2 "$(backend_of a.test)"

finish
