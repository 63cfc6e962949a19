#!/usr/bin/env bash
# Reject and the default route. On a listener without a default route an
# unknown name, a hello without SNI and an IP literal as SNI get the TLS
# unrecognized_name alert (112: `openssl s_client` prints "alert number 112",
# the raw bytes are 15 03 03 00 02 02 70); a route with action = "reject"
# answers with the alert, or with a TCP reset when reject_with = "reset". On a
# listener with a default route, an unknown name, no SNI (-noservername, curl
# to an IP address) and an IP literal go to the default route.
source "$(dirname "$0")/lib.sh"
e2e_begin reject 60
make_pki a.test

P1=$(free_port); P2=$(free_port); PA=$(free_port); PF=$(free_port)
start_backend app "$PA"
start_backend fallback "$PF"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "strict"
listen = ["127.0.0.1:$P1"]

[[listener]]
name = "open"
listen = ["127.0.0.1:$P2"]
default_route = "fallback"

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]

[[pool]]
name = "fallback"
backends = ["127.0.0.1:$PF"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "a"
listener = "strict"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "rst"
listener = "strict"
names = ["rst.test"]
action = "reject"
reject_with = "reset"

[[route]]
name = "deny"
listener = "strict"
names = ["deny.test"]
action = "reject"
reject_with = "alert"

[[route]]
name = "a-open"
listener = "open"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "fallback"
listener = "open"
action = "terminate"
pool = "fallback"
certificate = "a"
TOML
start_lodestone "$T/lode.toml" --workers 2

# No default route: alert 112.
out=$(sclient "$P1" -servername nobody.test)
assert_contains "unknown name, no default route: alert 112" "$out" "alert number 112"
assert_contains "  ... which s_client calls unrecognized name" "$out" "unrecognized name"
assert_not_contains "unknown name: no certificate served" "$out" "subject="
assert_contains "no SNI, no default route: alert 112" "$(sclient "$P1" -noservername)" "alert number 112"
assert_contains "IP literal as SNI, no default route: alert 112" "$(sclient "$P1" -servername 127.0.0.1)" "alert number 112"
netclient hello --sni nobody.test --out "$T/nobody.bin"
out=$(netclient raw --port "$P1" --file "$T/nobody.bin")
assert_contains "unknown name: the exact alert record 15 03 03 00 02 02 70" "$out" "bytes=7 hex=15030300020270"
assert_contains "  ... then the connection is closed" "$out" "end=eof"
wait_for 3 grep -q '"sni":"nobody.test"' "$LLOG"
line=$(last_log '"sni":"nobody.test"')
assert_eq "access log: unknown name's result" "no_route" "$(jfield result <<<"$line")"
assert_eq "access log: unknown name's action" "none" "$(jfield action <<<"$line")"
assert_ge "stats: no_route counted" "$(stats no_route)" 4
assert_contains "a.test still served on the strict listener" "$(lcurl a.test "$P1")" "backend=app"

# Reject routes.
assert_contains "reject_with = alert: alert 112" "$(sclient "$P1" -servername deny.test)" "alert number 112"
out=$(sclient "$P1" -servername rst.test)
assert_match "reject_with = reset: s_client sees a reset" "$out" "errno=104|Connection reset by peer"
assert_not_contains "reject_with = reset: no alert" "$out" "alert number"
netclient hello --sni rst.test --out "$T/rst.bin"
out=$(netclient raw --port "$P1" --file "$T/rst.bin")
assert_contains "reject_with = reset: a raw client sees ECONNRESET" "$out" "end=reset"
assert_contains "  ... with no byte before it" "$out" "bytes=0"
wait_for 3 grep -q '"sni":"rst.test"' "$LLOG"
line=$(last_log '"sni":"rst.test"')
assert_eq "access log: reset route's action" "reject" "$(jfield action <<<"$line")"
assert_eq "access log: reset route's name" "rst" "$(jfield route <<<"$line")"
assert_ge "stats: routed_reject counted" "$(stats routed_reject)" 3

# With a default route.
out=$(sclient "$P2" -servername nobody.test)
assert_contains "unknown name with a default route: served by it" "$out" "subject=CN = a.test"
out=$(sclient "$P2" -noservername)
assert_contains "no SNI (-noservername) goes to the default route" "$out" "subject=CN = a.test"
assert_contains "IP literal as SNI goes to the default route" "$(sclient "$P2" -servername 127.0.0.1)" "subject=CN = a.test"
out=$(timeout 15 curl -sS --max-time 10 -k "https://127.0.0.1:$P2/" 2>&1)
assert_contains "curl to an IP address (no SNI) reaches the default route's backend" "$out" "backend=fallback"
assert_contains "a.test on the open listener still has its own route" "$(lcurl a.test "$P2")" "backend=app"
wait_for 3 grep -q '"route":"fallback"' "$LLOG"
assert_eq "access log: the default route's match kind" "default" "$(last_log '"route":"fallback"' | jfield match)"
assert_ge "stats: IP literals counted" "$(stats sni_ip_literal)" 2
finish
