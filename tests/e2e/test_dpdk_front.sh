#!/usr/bin/env bash
# The dpdk front for real: `lodestone run` with front = "dpdk" polls a net_tap
# port whose kernel side sits in a client network namespace; real clients
# there (ping, curl, openssl s_client, hping3) talk to the VIP through the
# DPDK dataplane: ARP and ping answered, every connection through a SYN
# cookie, the ClientHello parsed and routed in the dataplane (alert 112 for a
# rejected or unknown name, 400 for plain HTTP, a reset for a closed port),
# passthrough spliced in the dataplane (FullNAT to an `openssl s_server`
# backend in the same namespace: curl gets its page and a 20 MB file with
# equal SHA-256), a bounded SYN flood answered with cookies while real clients
# still get their answers, the lcore's counters both in the stats file and in
# /metrics (lodestone_front_*_total{lcore}), and a clean stop. Terminate through the dpdk front
# (the hand-off to the workers) is test_dpdk_terminate.sh. Needs root (tap,
# namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_front 120
make_pki r.test p.test
dpdk_needs dpdk_front ping hping3

NS="lode-dp$$"
TAP="ldtap$$"
PREFIX="lode-e2e-$$"
NET="10.$(( $$ % 200 + 20 )).77"
VIP="$NET.1"
ON_EXIT+=("ip netns del $NS" "rm -rf /var/run/dpdk/$PREFIX")
MP=$(free_port)
cat >"$T/lode.toml" <<TOML
$(dpdk_head "\"$VIP:443\"")

[[pool]]
name = "p"
backends = ["$NET.9:443"]

[[route]]
name = "r"
names = ["r.test"]
action = "reject"

[[route]]
name = "rr"
names = ["rr.test"]
action = "reject"
reject_with = "reset"

[[route]]
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "p"

[dpdk]
$(dpdk_eal '"-l", "0-1"' 256)

[admin]
metrics = "127.0.0.1:$MP"
TOML
start_lodestone "$T/lode.toml"
dpdk_started
assert_eq "start event: one lcore polls the port" 1 "$(jfield dpdk_lcores <<<"$start")"
check "the tap device exists" sh -c "ip link show $TAP >/dev/null"

client_ns "$NET.2" "$NET.9"
# The passthrough backend: openssl s_server with p.test's own certificate,
# serving files (-WWW) from $T/www, in the client's namespace on $NET.9.
mkdir -p "$T/www"
head -c 20000000 /dev/urandom >"$T/www/blob.bin"
(cd "$T/www" && exec ip netns exec "$NS" openssl s_server -accept "$NET.9:443" -cert "$PKI/p.test.pem" \
  -key "$PKI/p.test.key" -cert_chain "$PKI/p.test.pem" -WWW -quiet) >"$T/s_server.log" 2>&1 &
PIDS+=($!)

out=$(in_ns ping -c 3 -i 0.2 -W 2 "$VIP" 2>&1)
assert_contains "ping the VIP: answered by the dataplane (ARP, then echo)" "$out" "3 received"
assert_contains "ARP: the VIP's MAC is the port's" "$(in_ns ip neigh show "$VIP")" "$(jfield dpdk_mac <<<"$start")"

out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "r.test:443:$VIP" https://r.test/ 2>&1); rc=$?
assert_eq "curl r.test: the handshake fails (curl exit 35)" 35 "$rc"
assert_contains "curl r.test: alert 112 from the dataplane" "$out" "unrecognized name"
out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "nobody.test:443:$VIP" https://nobody.test/ 2>&1)
assert_contains "curl for a name with no route: alert 112" "$out" "unrecognized name"
out=$(in_ns timeout 10 openssl s_client -connect "$VIP:443" -servername r.test -brief </dev/null 2>&1)
assert_contains "openssl s_client r.test: alert 112" "$out" "unrecognized name"
out=$(in_ns curl -sS --max-time 10 "http://$VIP:443/" 2>&1)
assert_contains "plain HTTP on the TLS port: 400 from the dataplane" "$out" "This port speaks TLS"
out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "rr.test:443:$VIP" https://rr.test/ 2>&1)
assert_contains "reject_with = reset: the connection is reset" "$out" "reset"
sleep 0.3
in_ns curl -sS --max-time 60 --cacert "$PKI/ca.pem" --resolve "p.test:443:$VIP" -o "$T/got.bin" \
  https://p.test/blob.bin 2>"$T/curl-p.log"; rc=$?
assert_eq "passthrough: curl through the dataplane to the backend's own certificate (exit 0)" 0 "$rc"
assert_eq "passthrough: 20 MB with equal SHA-256" "$(sha256sum <"$T/www/blob.bin")" "$(sha256sum <"$T/got.bin" 2>/dev/null)"
out=$(in_ns timeout 10 openssl s_client -connect "$VIP:443" -servername p.test -CAfile "$PKI/ca.pem" \
  -verify_return_error -brief </dev/null 2>&1)
assert_contains "passthrough: s_client verifies p.test end to end" "$out" "Verification: OK"
out=$(in_ns curl -sS --max-time 10 "https://$VIP:8443/" 2>&1); rc=$?
assert_eq "a closed port on the VIP: refused (curl exit 7)" 7 "$rc"

# A bounded SYN flood from the namespace; real clients keep their answers.
ip netns exec "$NS" timeout 20 hping3 -q -S -p 443 -i u200 -c 20000 "$VIP" >"$T/hping.log" 2>&1 &
HP=$!
PIDS+=("$HP")
sleep 0.5
ok=0
for i in 1 2 3 4 5; do
  out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "r.test:443:$VIP" https://r.test/ 2>&1)
  [[ "$out" == *"unrecognized name"* ]] && ok=$((ok + 1))
done
assert_eq "during a SYN flood: 5 of 5 real clients got their answer" 5 "$ok"
wait "$HP" 2>/dev/null

sleep 1.2  # the stats file is rewritten every second
assert_ge "stats: SYN cookies sent (the flood included)" "$(front syn_cookies)" 10000
assert_le "stats: flows created only by real clients (no flood SYN made one)" "$(front flows_created)" 20
assert_eq "stats: pings answered" 3 "$(front echo_replies)"
assert_ge "stats: ARP answered" "$(front arp_replies)" 1
assert_ge "stats: hellos parsed" "$(front hello_done)" 9
assert_eq "stats: plain HTTP counted" 1 "$(front hello_not_tls)"
assert_eq "stats: passthrough flows" 2 "$(front passthrough_flows)"
assert_ge "stats: segments spliced to the client" "$(front spliced_to_client)" 1000
assert_ge "stats: spliced segments sent back out in their own mbuf (no copy)" "$(front forwarded_in_place)" 1000
assert_eq "stats: reset rejects" 1 "$(front rejects_reset)"
assert_eq "stats: backends resolved by ARP" 1 "$(front backend_arp_requests)"
# The same counters in /metrics (the lcores write them into the shared stats
# segment; the control plane sums nothing here: one lcore).
curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" >"$T/metrics.txt"
fm() { awk -v want="lodestone_front_$1_total{lcore=\"0\"}" '$1 == want { print $2 }' "$T/metrics.txt"; }
assert_eq "/metrics: pings answered (lodestone_front_echo_replies_total)" 3 "$(fm echo_replies)"
assert_eq "/metrics: passthrough flows" 2 "$(fm passthrough_flows)"
assert_ge "/metrics: SYN cookies" "$(fm syn_cookies)" 10000
assert_eq "/metrics: one lcore" 0 "$(grep -c 'lcore="1"' "$T/metrics.txt")"
# The flows the dataplane routed itself, in the per-route and per-backend
# series (the lcore's row of the stats segment, summed with the workers').
series() { awk -v fam="$1" -v lbl="$2" 'index($1, fam "{") == 1 && index($1, lbl) { print $2 }' "$T/metrics.txt"; }
assert_eq "/metrics: route p, its two passthrough connections" 2 \
  "$(series lodestone_route_connections_total 'route="p"}')"
assert_eq "/metrics: route p, none open now" 0 "$(series lodestone_route_active_connections 'route="p"}')"
assert_ge "/metrics: route p, the 20 MB to the client counted" \
  "$(series lodestone_route_bytes_total 'route="p",direction="out"}')" 20000000
assert_ge "/metrics: route p, the hellos from the client counted" \
  "$(series lodestone_route_bytes_total 'route="p",direction="in"}')" 400
assert_eq "/metrics: route r, 7 connections refused (2 + 5 during the flood)" 7 \
  "$(series lodestone_route_rejects_total 'route="r"}')"
assert_eq "/metrics: route rr, its reset reject" 1 "$(series lodestone_route_rejects_total 'route="rr"}')"
assert_eq "/metrics: backend $NET.9:443 picked twice" 2 \
  "$(series lodestone_backend_connections_total "backend=\"$NET.9:443\"}")"
assert_eq "/metrics: backend $NET.9:443 established twice" 2 \
  "$(series lodestone_backend_established_total "backend=\"$NET.9:443\"}")"
assert_eq "/metrics: backend $NET.9:443, none open now" 0 \
  "$(series lodestone_backend_active_connections "backend=\"$NET.9:443\"}")"
if command -v promtool >/dev/null; then
  assert_eq "/metrics passes promtool with the front's families" "" "$(promtool check metrics <"$T/metrics.txt" 2>&1)"
fi

dpdk_stop 10
check "the tap device is gone with the port" sh -c "! ip netns exec $NS ip link show $TAP >/dev/null 2>&1"
finish
