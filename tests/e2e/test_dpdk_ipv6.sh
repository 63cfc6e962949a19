#!/usr/bin/env bash
# The dpdk front's next hops for real: `lodestone run` with front = "dpdk"
# polls a net_tap port whose kernel side sits in a namespace that is both the
# client and a router.
# - IPv6 passthrough on the link: curl -6 through the dataplane to an
#   `openssl s_server` backend on the same link, found by neighbour
#   discovery (our solicitation, the kernel's advertisement): 5 MB with equal
#   SHA-256.
# - Backends behind a gateway ([dpdk] networks / gateway / gateway6): a
#   backend namespace behind the router namespace (a veth pair, forwarding
#   on), outside `networks`: IPv4 and IPv6 passthrough through the gateways'
#   MACs, equal SHA-256 both.
# - A backend of the other family than the VIP the client used (IPv4 client,
#   IPv6 backend): FullNAT from the IPv6 VIP.
# - The counters: neighbour solicitations sent, nothing reset for want of a
#   route, no answer ignored.
# Needs root (tap, namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_ipv6 150
make_pki p.test q.test x.test
dpdk_needs dpdk_ipv6

NS="lode-d6r$$"   # client and router, the tap's kernel side
NB="lode-d6b$$"   # the backends behind the router
TAP="ld6tap$$"
VETH="ld6v$$"
PREFIX="lode-e2e6-$$"
N=$(( $$ % 200 + 20 ))
NET="10.$N.78"           # the tap's link: VIP .1, router .2, on-link backend .9
FAR="10.$((N + 1)).79"   # behind the router: backend .9
NET6="fd6c:$N::"         # the tap's link: VIP ::1, router ::2, on-link backend ::9
FAR6="fd6d:$N::"         # behind the router: backend ::9
VIP="$NET.1"
VIP6="${NET6}1"
ON_EXIT+=("ip netns del $NS" "ip netns del $NB" "rm -rf /var/run/dpdk/$PREFIX")
cat >"$T/lode.toml" <<TOML
$(dpdk_head "\"$VIP:443\", \"[$VIP6]:443\"")

[[pool]]
name = "near6"
backends = ["[${NET6}9]:443"]

[[pool]]
name = "far4"
backends = ["$FAR.9:443"]

[[pool]]
name = "far6"
backends = ["[${FAR6}9]:443"]

[[route]]
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "near6"

[[route]]
name = "q"
names = ["q.test"]
action = "passthrough"
pool = "far4"

[[route]]
name = "x"
names = ["x.test"]
action = "passthrough"
pool = "far6"

[dpdk]
$(dpdk_eal '"-l", "0-1"' 256)
networks = ["$NET.0/24", "${NET6}/64"]
gateway = "$NET.2"
gateway6 = "${NET6}2"
TOML
start_lodestone "$T/lode.toml"
dpdk_started

router_ns
in_ns ip addr add "$NET.2/24" dev "$TAP"
in_ns ip addr add "$NET.9/24" dev "$TAP"
in_ns ip -6 addr add "${NET6}2/64" dev "$TAP" nodad
in_ns ip -6 addr add "${NET6}9/64" dev "$TAP" nodad
in_ns ip link set "$TAP" up
# The router's other side: a veth pair to the backends' namespace.
far_link
in_ns ip -6 addr add "${FAR6}1/64" dev "$VETH" nodad
in_nb ip -6 addr add "${FAR6}9/64" dev "${VETH}b" nodad
in_nb ip -6 route add default via "${FAR6}1"
in_ns sysctl -qw net.ipv6.conf.all.forwarding=1

# The backends: openssl s_server serving $T/www, each with its name's certificate.
mkdir -p "$T/www"
head -c 5000000 /dev/urandom >"$T/www/blob.bin"
serve() {  # serve NETNS ADDRESS NAME
  (cd "$T/www" && exec ip netns exec "$1" openssl s_server -accept "$2" -cert "$PKI/$3.pem" \
    -key "$PKI/$3.key" -cert_chain "$PKI/$3.pem" -WWW -quiet) >"$T/s_server-$3.log" 2>&1 &
  PIDS+=($!)
}
serve "$NS" "[${NET6}9]:443" p.test
serve "$NB" "$FAR.9:443" q.test
serve "$NB" "[${FAR6}9]:443" x.test
sleep 0.5

out=$(in_ns ping -6 -c 2 -i 0.2 -W 2 "$VIP6" 2>&1)
assert_contains "ping -6 the VIP: answered by the dataplane (NS/NA, then echo)" "$out" "2 received"

fetch() {  # fetch NAME ADDRESS (curl's --resolve form) CURL-FLAGS...: exit status, body in $T/got-NAME.bin
  local name=$1 addr=$2; shift 2
  in_ns curl -sS --max-time 30 "$@" --cacert "$PKI/ca.pem" --resolve "$name:443:$addr" -o "$T/got-$name.bin" \
    "https://$name/blob.bin" 2>"$T/curl-$name.log"
}
want=$(sha256sum <"$T/www/blob.bin")
fetch p.test "[$VIP6]" -6; rc=$?
assert_eq "IPv6 passthrough on the link: curl -6 exit 0 ($(head -c 200 "$T/curl-p.test.log"))" 0 "$rc"
assert_eq "IPv6 passthrough on the link: 5 MB with equal SHA-256" "$want" "$(sha256sum <"$T/got-p.test.bin" 2>/dev/null)"
assert_contains "the link knows the VIP's MAC (neighbour discovery both ways)" \
  "$(in_ns ip -6 neigh show "$VIP6")" "$(jfield dpdk_mac <<<"$start")"

fetch q.test "$VIP"; rc=$?
assert_eq "IPv4 backend behind the gateway: curl exit 0 ($(head -c 200 "$T/curl-q.test.log"))" 0 "$rc"
assert_eq "IPv4 backend behind the gateway: equal SHA-256" "$want" "$(sha256sum <"$T/got-q.test.bin" 2>/dev/null)"
fetch x.test "[$VIP6]" -6; rc=$?
assert_eq "IPv6 backend behind the gateway: curl -6 exit 0 ($(head -c 200 "$T/curl-x.test.log"))" 0 "$rc"
assert_eq "IPv6 backend behind the gateway: equal SHA-256" "$want" "$(sha256sum <"$T/got-x.test.bin" 2>/dev/null)"
# An IPv4 client, the IPv6 backend: FullNAT from the IPv6 VIP.
rm -f "$T/got-x.test.bin"
fetch x.test "$VIP"; rc=$?
assert_eq "IPv4 client, IPv6 backend: curl exit 0 ($(head -c 200 "$T/curl-x.test.log"))" 0 "$rc"
assert_eq "IPv4 client, IPv6 backend: equal SHA-256" "$want" "$(sha256sum <"$T/got-x.test.bin" 2>/dev/null)"

sleep 1.2  # the stats file is rewritten every second
assert_eq "stats: passthrough flows" 4 "$(front passthrough_flows)"
assert_ge "stats: neighbour solicitations for backends (the link's backend, the IPv6 gateway)" \
  "$(front backend_nd_solicits)" 2
assert_ge "stats: ARP for the IPv4 gateway" "$(front backend_arp_requests)" 1
assert_eq "stats: no flow without a route" 0 "$(front backend_no_route)"
assert_eq "stats: no backend left unresolved" 0 "$(front backend_connect_failures)"
assert_ge "stats: segments spliced to the client" "$(front spliced_to_client)" 1000

dpdk_stop 10
finish
