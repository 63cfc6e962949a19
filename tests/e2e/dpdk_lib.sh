# Helpers shared by the dpdk front's e2e tests (test_dpdk_*.sh): sourced
# after lib.sh. They read the test's NS, TAP, XIF, XNET, PREFIX and STATS.

# dpdk_needs NAME [TOOLS...]: root (taps, namespaces) and ip plus TOOLS.
dpdk_needs() {
  local name=$1 tool; shift
  [ "$(id -u)" -eq 0 ] || { fail "$name: needs root (tap devices, network namespaces)"; finish; }
  for tool in ip "$@"; do
    command -v "$tool" >/dev/null || { fail "$name: $tool is installed (tools/install-deps.sh)"; finish; }
  done
}

# serve_www PORT: a plain HTTP server for $T/www on 127.0.0.1:PORT.
serve_www() {
  python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$1" >"$T/http.log" 2>&1 &
  PIDS+=($!)
  wait_for 5 python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"
}

# dpdk_head LISTEN: the config's first lines, front = "dpdk" and a listener
# "vip" on LISTEN (the inside of a TOML array).
dpdk_head() {
  cat <<TOML
front = "dpdk"

[[listener]]
name = "vip"
listen = [$1]
TOML
}

# split_config LCORE_ARGS MEGABYTES [T_ROUTE_LINE]: two workers, t.test
# terminated (pool www on 127.0.0.1:$WP) and p.test passed through to
# $NET.9:443, one wire tap and an exception port (test_dpdk_lcores.sh,
# test_dpdk_load.sh).
split_config() {
  dpdk_head "\"$VIP:443\""
  cat <<TOML

[workers]
count = 2

[[pool]]
name = "www"
backends = ["127.0.0.1:$WP"]

[[pool]]
name = "p"
backends = ["$NET.9:443"]

[[certificate]]
name = "t"
cert = "pki/t.test.pem"
key = "pki/t.test.key"

[[route]]
name = "t"
names = ["t.test"]
action = "terminate"
pool = "www"
certificate = "t"${3:+
$3}

[[route]]
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "p"

[dpdk]
$(dpdk_eal "$1" "$2")

$(dpdk_exception)
TOML
}

# dpdk_eal LCORE_ARGS MEGABYTES: the [dpdk] eal line for $PREFIX and the
# wire tap $TAP (no hugepages, no PCI).
dpdk_eal() {
  echo "eal = [$1, \"--no-huge\", \"--no-pci\", \"-m\", \"$2\", \"--file-prefix=$PREFIX\", \"--vdev=net_tap0,iface=$TAP\"]"
}

# dpdk_exception: the [dpdk.exception] section, a net_tap $XIF on $XNET.0/30.
dpdk_exception() {
  cat <<TOML
[dpdk.exception]
vdev = "net_tap1,iface=$XIF"
interface = "$XIF"
kernel_address = "$XNET.1"
address = "$XNET.2"
TOML
}

# dpdk_started: $start is the start event; checks it names the dpdk front.
dpdk_started() {
  start=$(grep '"event":"start"' "$LLOG")
  assert_eq "start event: the dpdk front" dpdk "$(jfield front <<<"$start")"
}

# client_ns ADDRESSES...: namespace $NS holding the wire tap $TAP with
# ADDRESSES (/24 each), tap and loopback up; in_ns runs a command there.
client_ns() {
  local a
  ip netns add "$NS"
  ip link set "$TAP" netns "$NS"
  for a in "$@"; do ip netns exec "$NS" ip addr add "$a/24" dev "$TAP"; done
  ip netns exec "$NS" ip link set "$TAP" up
  ip netns exec "$NS" ip link set lo up
}
# in_ns CMD...: CMD in the test's namespace. Not for a process started in the
# background (`in_ns ... &` forks a subshell, so $! would be the subshell and
# the server outlive the test): write `ip netns exec "$NS" CMD... &` there,
# whose $! is the command itself (ip execs it).
in_ns() { ip netns exec "$NS" "$@"; }

# router_ns: namespaces $NS (the wire tap's kernel side: client and router)
# and $NB (the backends behind the router), loopbacks up; in_nb runs a
# command in $NB.
router_ns() {
  ip netns add "$NS"
  ip netns add "$NB"
  ip link set "$TAP" netns "$NS"
  in_ns ip link set lo up
  in_nb ip link set lo up
}
in_nb() { ip netns exec "$NB" "$@"; }

# far_link [MTU]: the router's other side, a veth pair from $NS ($VETH,
# $FAR.1/24) to $NB (${VETH}b, $FAR.9/24, its default route via $FAR.1),
# IPv4 forwarding on in $NS.
far_link() {
  in_ns ip link add "$VETH" ${1:+mtu "$1"} type veth peer name "${VETH}b" ${1:+mtu "$1"}
  in_ns ip link set "${VETH}b" netns "$NB"
  in_ns ip addr add "$FAR.1/24" dev "$VETH"
  in_ns ip link set "$VETH" up
  in_nb ip addr add "$FAR.9/24" dev "${VETH}b"
  in_nb ip link set "${VETH}b" up
  in_nb ip route add default via "$FAR.1"
  in_ns sysctl -qw net.ipv4.ip_forward=1
}

# front COUNTER: the front's counter in the stats file (-1 if absent).
front() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["front"].get(sys.argv[2], -1))' "$STATS" "$1"; }

# dpdk_stop SECONDS: SIGTERM, then the stopped event within SECONDS.
dpdk_stop() {
  kill -TERM "$LPID"
  wait_for "$1" grep -q '"event":"stopped"' "$LLOG"
  check "SIGTERM: stopped" grep -q '"event":"stopped"' "$LLOG"
}

# taps_gone: both taps (exception $XIF here, wire $TAP in $NS) removed.
taps_gone() {
  check "the exception tap is gone" sh -c "! ip link show $XIF >/dev/null 2>&1"
  check "the wire tap is gone" sh -c "! ip netns exec $NS ip link show $TAP >/dev/null 2>&1"
}
