#!/usr/bin/env bash
# Per-route and per-backend counters (include/lodestone/stats_layout.h v3),
# as /metrics, the admin API's "stats" and `lodectl top` show them.
#
# 1. Routes "app" (terminate, two backends), "pt" (passthrough), "rej"
#    (reject). 5 curl requests to app, 2 connections to rej, 3 with an
#    unknown name, 1 hello whose host name is `<script>alert(1)</script>`.
#    /metrics: app has 5 connections, 5 full handshakes, a histogram with
#    count 5 (+Inf bucket 5, buckets never decrease), bytes both ways; rej has
#    2 rejects; app's two backends have 5 connections between them and none
#    open; hello_rejected_total{reason="bad_host_name"} 1; alerts sent:
#    unrecognized_name 5 (2 rejects + 3 no route), illegal_parameter 1; the
#    document passes `promtool check metrics`.
# 2. The stats command's recent_refused has the hostile name as it was sent
#    (JSON-escaped, not interpreted), and `no_route` for the unknown names.
# 3. `lodectl top --json --count 2` while a bounded load runs: app's
#    connection rate > 0; the frame names the workers; human output has the
#    route; bad arguments exit 2; no daemon exits 3.
# 4. A reload without "rej": its series leave /metrics; a reload with it
#    back: its counters are where they were (the slot is kept).
source "$(dirname "$0")/lib.sh"
e2e_begin route_metrics 120
make_pki a.test
P=$(free_port); PA=$(free_port); PB=$(free_port); PP=$(free_port); MP=$(free_port)
start_backend app1 "$PA"
start_backend app2 "$PB"
start_backend pt "$PP" echo
write_config() {  # write_config FILE WITH_REJ
  cat >"$1" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA", "127.0.0.1:$PB"]

[[pool]]
name = "ptpool"
backends = ["127.0.0.1:$PP"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "app"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "pt"
names = ["pt.test"]
action = "passthrough"
pool = "ptpool"
TOML
  if [ "$2" = 1 ]; then
    printf '\n[[route]]\nname = "rej"\nnames = ["rej.test"]\naction = "reject"\n' >>"$1"
  fi
  printf '\n[admin]\nmetrics = "127.0.0.1:%s"\n' "$MP" >>"$1"
}
write_config "$T/lode.toml" 1
start_lodestone "$T/lode.toml" --workers 2
SOCK="$T/run/admin.sock"
metrics() { timeout 10 curl -sS "http://127.0.0.1:$MP/metrics"; }
# m NAME LABELS: the value of the sample NAME{LABELS} (labels as written)
m() { metrics | awk -v want="$1{$2}" '$1 == want { print $2 }'; }

# ---------------------------------------------------------------- 1. counting
for _ in 1 2 3 4 5; do lcurl a.test "$P" -o /dev/null -w '%{http_code}\n'; done >"$T/curl.out"
assert_eq "5 requests through app" "200 200 200 200 200" "$(tr '\n' ' ' <"$T/curl.out" | sed 's/ $//')"
for _ in 1 2; do sclient "$P" -servername rej.test >/dev/null; done
for n in x1.test x2.test x3.test; do sclient "$P" -servername "$n" >/dev/null; done
netclient hello --sni x.test --out "$T/hello.bin"
netclient mutate "$T/hello.bin" "$T/evil.bin" "set-name:$(printf '<script>alert(1)</script>' | od -An -tx1 | tr -d ' \n')"
NETCLIENT_TIMEOUT=10 netclient raw --port "$P" --file "$T/evil.bin" --wait 3 >"$T/evil.out"
assert_contains "the hostile hello gets a fatal illegal_parameter alert" "$(cat "$T/evil.out")" "hex=1503030002022f"
R='listener="https",route="app"'
active_zero() { [ "$(m lodestone_route_active_connections "$R")" = 0 ]; }
check "app's connections all closed" wait_for 5 active_zero
metrics >"$T/metrics.txt"
mf() { awk -v want="$1{$2}" '$1 == want { print $2 }' "$T/metrics.txt"; }
assert_eq "route app: 5 connections" 5 "$(mf lodestone_route_connections_total "$R")"
assert_eq "route app: 5 full handshakes" 5 "$(mf lodestone_route_handshakes_total "$R,kind=\"full\"")"
assert_eq "route app: 0 resumed" 0 "$(mf lodestone_route_handshakes_total "$R,kind=\"resumed\"")"
assert_eq "route app: histogram count 5" 5 "$(mf lodestone_handshake_duration_seconds_count "$R")"
assert_eq "route app: +Inf bucket 5" 5 "$(mf lodestone_handshake_duration_seconds_bucket "$R,le=\"+Inf\"")"
assert_eq "route app: buckets never decrease" ok "$(awk -v p="lodestone_handshake_duration_seconds_bucket{$R," '
  index($1, p) == 1 { if ($2 + 0 < last) bad = 1; last = $2 + 0 } END { print bad ? "decreasing" : "ok" }' "$T/metrics.txt")"
assert_ge "route app: handshake seconds sum > 0" "$(mf lodestone_handshake_duration_seconds_sum "$R")" 0.000001
assert_ge "route app: bytes in" "$(mf lodestone_route_bytes_total "$R,direction=\"in\"")" 500
assert_ge "route app: bytes out" "$(mf lodestone_route_bytes_total "$R,direction=\"out\"")" 1000
assert_eq "route rej: 2 rejects" 2 "$(mf lodestone_route_rejects_total 'listener="https",route="rej"')"
assert_eq "route rej: 2 connections" 2 "$(mf lodestone_route_connections_total 'listener="https",route="rej"')"
assert_eq "route pt: no connection yet" 0 "$(mf lodestone_route_connections_total 'listener="https",route="pt"')"
b1=$(mf lodestone_backend_connections_total "pool=\"app\",backend=\"127.0.0.1:$PA\"")
b2=$(mf lodestone_backend_connections_total "pool=\"app\",backend=\"127.0.0.1:$PB\"")
assert_eq "app's backends: 5 connections between them" 5 "$((b1 + b2))"
assert_ge "app's backends: both used (round robin)" "$(( b1 < b2 ? b1 : b2 ))" 1
assert_eq "app's backends: 5 connects" 5 "$(( $(mf lodestone_backend_established_total "pool=\"app\",backend=\"127.0.0.1:$PA\"") + \
  $(mf lodestone_backend_established_total "pool=\"app\",backend=\"127.0.0.1:$PB\"") ))"
assert_eq "app's backends: none open" 0 "$(mf lodestone_backend_active_connections "pool=\"app\",backend=\"127.0.0.1:$PA\"")"
assert_eq "hello rejected: bad_host_name 1" 1 "$(mf lodestone_hello_rejected_total 'reason="bad_host_name"')"
assert_eq "alerts sent: unrecognized_name 5" 5 "$(mf lodestone_alerts_sent_total 'alert="unrecognized_name"')"
assert_eq "alerts sent: illegal_parameter 1" 1 "$(mf lodestone_alerts_sent_total 'alert="illegal_parameter"')"
assert_eq "no (other) series: nothing overflowed" "" "$(grep -F 'route="(other)"' "$T/metrics.txt")"
if command -v promtool >/dev/null; then
  assert_eq "promtool check metrics" "" "$(promtool check metrics <"$T/metrics.txt" 2>&1)"
else
  fail "promtool is not installed (tools/install-deps.sh installs prometheus)"
fi

# ---------------------------------------------------------------- 2. recent refused
timeout 10 python3 - "$SOCK" >"$T/refused.out" 2>&1 <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"v":1,"cmd":"stats"}\n')
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(65536)
    if not d: break
    buf += d
v = json.loads(buf)
for r in v["recent_refused"]:
    print(r["reason"], r["sni"], sep="\t")
PY
assert_contains "recent refused: the hostile name, as sent" "$(cat "$T/refused.out")" $'hello:bad_host_name\t<script>alert(1)</script>'
assert_contains "recent refused: no_route for x3.test" "$(cat "$T/refused.out")" $'no_route\tx3.test'
assert_contains "recent refused: rejected for rej.test" "$(cat "$T/refused.out")" $'rejected\trej.test'

# ---------------------------------------------------------------- 3. lodectl top
timeout 20 python3 "$NETCLIENT" loop --port "$P" --sni a.test --ca "$PKI/ca.pem" --threads 2 --seconds 4 --max 2000 \
  >"$T/loop.out" 2>&1 &
LOOP=$!; PIDS+=($LOOP)
sleep 0.5
TOP=$(timeout 20 "$LODECTL" --socket "$SOCK" top --json --count 2 --interval 0.7 2>&1); RC=$?
wait "$LOOP"
assert_eq "top --json: exit 0" 0 "$RC"
assert_eq "top --json: two frames" 2 "$(printf '%s\n' "$TOP" | wc -l)"
assert_eq "top --json: app's connection and handshake rates > 0, two workers" "yes yes 2" "$(printf '%s\n' "$TOP" | tail -n 1 |
  python3 -c 'import json,sys
v = json.loads(sys.stdin.read())
r = [x for x in v["routes"] if x["route"] == "app"][0]
print("yes" if r["connections_per_s"] > 0 else "no", "yes" if r["handshakes_per_s"] > 0 else "no", len(v["workers"]))' 2>&1)"
HUMAN=$(timeout 20 "$LODECTL" --socket "$SOCK" top --interval 0.2 2>&1)
assert_match "top: a human frame with the route and the workers" "$HUMAN" $'https/app.*\n(.|\n)*WORKER'
assert_contains "top: the hostile name printed inert" "$HUMAN" "<script>alert(1)</script>"
assert_eq "top --interval 0: exit 2" 2 "$(timeout 10 "$LODECTL" --socket "$SOCK" top --interval 0 >/dev/null 2>&1; echo $?)"
assert_eq "top with no daemon: exit 3" 3 "$(timeout 10 "$LODECTL" --socket "$T/nowhere.sock" top >/dev/null 2>&1; echo $?)"

# ---------------------------------------------------------------- 4. series across reloads
write_config "$T/lode.toml" 0
assert_eq "reload without rej" reloaded "$(reload)"
assert_eq "rej's series left /metrics" "" "$(metrics | grep -F 'route="rej"')"
assert_ge "app's series stayed" "$(m lodestone_route_connections_total "$R")" 5
write_config "$T/lode.toml" 1
assert_eq "reload with rej back" reloaded "$(reload)"
assert_eq "rej's counters are where they were" 2 "$(m lodestone_route_rejects_total 'listener="https",route="rej"')"
finish
