#!/usr/bin/env bash
# Path MTU discovery through the dpdk front, for real. The client's network
# namespace is also the router to a backend namespace whose link (a veth
# pair) has an MTU of 1280; the front's SYN-ACK told the client MSS 1460, so
# the client's full-sized segments, forwarded by the front with DF, are too
# big for that link. The router's ICMP "fragmentation needed" goes to their
# source, the VIP; the front passes it on to the client about its own
# segment (flow_engine_icmp.cc), the client's kernel lowers its path MTU and
# sends smaller segments, and a 3 MB upload echoed back by the backend
# arrives whole. Without that the upload stalls (a PMTU black hole):
#   - an IPv4 client: fragmentation needed, MTU 1280, passed on as it is;
#   - an IPv6 client of the same IPv4 backend: passed on as an ICMPv6 packet
#     too big with 20 bytes more (1300: the IPv6 header is 20 bytes longer).
# The counters say it went through the front (icmp_too_big). Needs root
# (tap devices, network namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_icmp_pmtu 150
make_pki q.test
dpdk_needs dpdk_icmp_pmtu

NS="lode-pmr$$"   # client and router, the tap's kernel side
NB="lode-pmb$$"   # the backend behind the router
TAP="lpmt$$"
VETH="lpmv$$"
PREFIX="lode-pmtu-$$"
N=$(( $$ % 200 + 20 ))
NET="10.$N.80"           # the tap's link: VIP .1, router and client .2
FAR="10.$((N + 1)).81"   # behind the router (MTU 1280): backend .9
NET6="fd6e:$N::"         # the tap's link: VIP ::1, client ::2
VIP="$NET.1"
VIP6="${NET6}1"
ON_EXIT+=("ip netns del $NS" "ip netns del $NB" "rm -rf /var/run/dpdk/$PREFIX")
cat >"$T/lode.toml" <<TOML
$(dpdk_head "\"$VIP:443\", \"[$VIP6]:443\"")

[[pool]]
name = "far"
backends = ["$FAR.9:443"]

[[route]]
name = "q"
names = ["q.test"]
action = "passthrough"
pool = "far"

[dpdk]
$(dpdk_eal '"-l", "0-1"' 256)
networks = ["$NET.0/24", "${NET6}/64"]
gateway = "$NET.2"
TOML
start_lodestone "$T/lode.toml"

router_ns
in_ns ip addr add "$NET.2/24" dev "$TAP"
in_ns ip -6 addr add "${NET6}2/64" dev "$TAP" nodad
in_ns ip link set "$TAP" up
far_link 1280
in_ns sysctl -qw net.ipv4.ip_no_pmtu_disc=0

# The backend: TLS echo (backend_server.py) with q.test's certificate.
ip netns exec "$NB" python3 "$PYSERVER" --listen "$FAR.9:443" --name q --cert "$PKI/q.test.pem" \
  --key "$PKI/q.test.key" --mode echo 2>"$T/pyserver-q.log" &
PIDS+=($!)
wait_for 5 grep -q "listening" "$T/pyserver-q.log" || { fail "dpdk_icmp_pmtu: the backend did not start"; finish; }

# upload ADDRESS: 3 MB in 16 KB chunks through the VIP to the echo backend,
# each chunk read back before the next; prints "ok SHA" or the error.
upload() {
  in_ns timeout 60 python3 - "$1" "$PKI/ca.pem" <<'PY'
import hashlib, os, socket, ssl, sys
addr, ca = sys.argv[1], sys.argv[2]
data = os.urandom(3 * 1024 * 1024)
ctx = ssl.create_default_context(cafile=ca)
try:
    raw = socket.create_connection((addr, 443), timeout=15)
    t = ctx.wrap_socket(raw, server_hostname="q.test")
    back = bytearray()
    for at in range(0, len(data), 16384):
        chunk = data[at:at + 16384]
        t.sendall(chunk)
        want = at + len(chunk)
        while len(back) < want:
            got = t.recv(65536)
            if not got: raise RuntimeError("closed after %d bytes" % len(back))
            back += got
    print("ok" if hashlib.sha256(back).digest() == hashlib.sha256(data).digest() else "different bytes")
except Exception as e:
    print("error: %s" % e)
PY
}

out=$(upload "$VIP")
assert_eq "IPv4 client: 3 MB up and back through a 1280-byte link (the front passed the router's ICMP on)" ok "$out"
pmtu=$(in_ns ip route get "$VIP" 2>&1)
assert_contains "IPv4 client: its kernel learned the path MTU from the front's ICMP" "$pmtu" "mtu 1280"
out=$(upload "$VIP6")
assert_eq "IPv6 client: 3 MB up and back (ICMPv6 packet too big from the front)" ok "$out"
pmtu=$(in_ns ip -6 route get "$VIP6" 2>&1)
assert_contains "IPv6 client: its kernel learned 1300 (the IPv4 link's 1280 + 20)" "$pmtu" "mtu 1300"
sleep 1.2
assert_ge "stats: too-big errors passed on" "$(front icmp_too_big)" 2
assert_eq "stats: none refused as out of window" 0 "$(front icmp_too_big_bad_seq)"
assert_eq "stats: none malformed" 0 "$(front icmp_too_big_bad)"
finish
