#!/usr/bin/env bash
# The dpdk front on 802.1Q VLANs for real: the net_tap port is a trunk. Its
# kernel side is split by VLAN (vlan_bridge.py: this kernel has no 8021q) into
# two access ports, each in its own namespace: VLAN 100 with the clients
# (namespace $NS), VLAN 200 with the passthrough backend (namespace $NB, an
# `openssl s_server`), on the same IPv4 prefix. The only way between them is
# the dataplane, and only when it tags right: the VIP's
# ARP and ping answered on VLAN 100, the backend found by an ARP request on
# VLAN 200 ([dpdk] backend_vlan = 200), every spliced segment re-tagged in
# each direction (curl fetches 5 MB with equal SHA-256), a reject's alert on
# the client's VLAN. An untagged frame or one on the client's VLAN never
# reaches the backend's namespace. A reload that changes backend_vlan is
# refused (the front is set up at start). Needs root (tap, namespaces); release
# build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_vlan 120
make_pki r.test p.test
dpdk_needs dpdk_vlan ping ethtool python3

NT="lode-dvt$$"   # the tap (a trunk) and the bridge
NS="lode-dvc$$"   # the clients, VLAN 100
NB="lode-dvb$$"   # the backend, VLAN 200
TAP="ldvt$$"
PREFIX="lode-e2ev-$$"
NET="10.$(( $$ % 200 + 20 )).84"
VIP="$NET.1"
ON_EXIT+=("ip netns del $NT" "ip netns del $NS" "ip netns del $NB" "rm -rf /var/run/dpdk/$PREFIX")
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
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "p"

[dpdk]
$(dpdk_eal '"-l", "0-1"' 256)
backend_vlan = 200
TOML
start_lodestone "$T/lode.toml"
dpdk_started

# This kernel has no 8021q: the VLAN ports come from vlan_bridge.py, a
# trunk-to-access bridge on packet sockets in $NT. Offloads off on every
# link it reads, so that it sees wire-sized frames with their checksums.
in_nt() { ip netns exec "$NT" "$@"; }
ip netns add "$NT"
ip netns add "$NS"
ip netns add "$NB"
ip link set "$TAP" netns "$NT"
for ns in "$NT" "$NS" "$NB"; do ip netns exec "$ns" ip link set lo up; done
in_nt ip link set "$TAP" up
in_nt ethtool -K "$TAP" gro off >/dev/null 2>&1
for side in c b; do
  in_nt ip link add "ldv${side}0$$" type veth peer name "ldv${side}1$$"
  [ "$side" = c ] && peer="$NS" || peer="$NB"
  in_nt ip link set "ldv${side}1$$" netns "$peer"
  in_nt ip link set "ldv${side}0$$" up
  in_nt ethtool -K "ldv${side}0$$" gro off tso off gso off tx off >/dev/null
  ip netns exec "$peer" ethtool -K "ldv${side}1$$" gro off tso off gso off tx off >/dev/null
  ip netns exec "$peer" ip link set "ldv${side}1$$" up
done
in_ns ip addr add "$NET.2/24" dev "ldvc1$$"
in_nb ip addr add "$NET.9/24" dev "ldvb1$$"
ip netns exec "$NT" python3 "$(dirname "$0")/vlan_bridge.py" --trunk "$TAP" --access "100:ldvc0$$" \
  --access "200:ldvb0$$" --seconds 100 >"$T/bridge.log" 2>&1 &
BRIDGE=$!
PIDS+=("$BRIDGE")
wait_for 5 grep -q bridging "$T/bridge.log" || { fail "dpdk_vlan: the VLAN bridge did not start"; finish; }

mkdir -p "$T/www"
head -c 5000000 /dev/urandom >"$T/www/blob.bin"
(cd "$T/www" && exec ip netns exec "$NB" openssl s_server -accept "$NET.9:443" -cert "$PKI/p.test.pem" \
  -key "$PKI/p.test.key" -cert_chain "$PKI/p.test.pem" -WWW -quiet) >"$T/s_server.log" 2>&1 &
PIDS+=($!)

out=$(in_ns ping -c 2 -i 0.2 -W 2 "$VIP" 2>&1)
assert_contains "ping the VIP from VLAN 100: ARP and echo answered on it" "$out" "2 received"
out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "r.test:443:$VIP" https://r.test/ 2>&1)
assert_contains "reject on VLAN 100: alert 112 from the dataplane" "$out" "unrecognized name"
in_ns curl -sS --max-time 60 --cacert "$PKI/ca.pem" --resolve "p.test:443:$VIP" -o "$T/got.bin" \
  https://p.test/blob.bin 2>"$T/curl-p.log"; rc=$?
assert_eq "passthrough VLAN 100 -> VLAN 200: curl gets the backend's own certificate (exit 0)" 0 "$rc"
assert_eq "passthrough: 5 MB with equal SHA-256" "$(sha256sum <"$T/www/blob.bin")" "$(sha256sum <"$T/got.bin" 2>/dev/null)"
assert_contains "the backend's kernel learned our MAC on VLAN 200 (our ARP request came tagged)" \
  "$(in_nb ip neigh show "$VIP")" "$(jfield dpdk_mac <<<"$start")"

sleep 1.2  # the stats file is rewritten every second
assert_eq "stats: the backend resolved by one ARP exchange" 1 "$(front backend_arp_requests)"
assert_eq "stats: no answer ignored" 0 "$(front neighbor_ignored)"
assert_eq "stats: one passthrough flow" 1 "$(front passthrough_flows)"
assert_eq "stats: no backend connect failed" 0 "$(front backend_connect_failures)"
assert_ge "stats: segments spliced to the client" "$(front spliced_to_client)" 100
assert_ge "stats: tagged both ways, so rewritten in place (the tag's VLAN id changed)" "$(front forwarded_in_place)" 100

# The front is set up at start: a reload that changes [dpdk] is refused,
# with the reason, and the flows go on as configured; the same file again
# reloads.
cp "$T/lode.toml" "$T/good.toml"
sed -i 's/^backend_vlan = 200$/backend_vlan = 300/' "$T/lode.toml"
assert_eq "a changed backend_vlan on SIGHUP: reload_refused" reload_refused "$(reload)"
assert_contains "  ... saying a restart changes it" "$(last_log '"event":"reload_refused"')" "restart"
in_ns curl -sS --max-time 30 --cacert "$PKI/ca.pem" --resolve "p.test:443:$VIP" -o "$T/again.bin" \
  https://p.test/blob.bin 2>>"$T/curl-p.log"; rc=$?
assert_eq "  ... still passed through on VLAN 200 (exit 0)" 0 "$rc"
cp "$T/good.toml" "$T/lode.toml"
assert_eq "the configuration in service again on SIGHUP: reloaded" reloaded "$(reload)"

kill -TERM "$BRIDGE"
wait "$BRIDGE" 2>/dev/null
bridged=$(tail -1 "$T/bridge.log")
assert_contains "the bridge tagged frames both ways" "$bridged" "tagged_out="
assert_contains "the bridge dropped no frame of an unknown or missing VLAN (nothing untagged from the front)" \
  "$bridged" "dropped=0"

dpdk_stop 10
finish
