#!/usr/bin/env bash
# Scale-out: two Lodestone nodes announce one VIP over BGP (BIRD 2) to a
# router that spreads the client's connections over them with ECMP.
#
#   client ns ── router ns (BIRD: BGP with both nodes, kernel ECMP, L4 hash)
#                 ├── nodeA ns (BIRD + Lodestone, VIP on lo, lode-backend "nodeA")
#                 ├── nodeB ns (BIRD + Lodestone, VIP on lo, lode-backend "nodeB")
#                 └── backend ns (three TLS backends for the passthrough route)
#
# Checks: the router learns the VIP with two next hops; connections from many
# source ports land on both nodes; a ticket from one node resumes on the
# other (shared ticket_key_file); passthrough by maglev_client reaches the
# same backend through either node; drain-node withdraws and undrain
# re-announces; SIGKILL of node A's processes withdraws its route (the
# liveness link goes with the process) and new connections succeed through
# B; SIGTERM of node A under load: no new connection is refused.
# Root only (network namespaces); everything it creates is removed at exit.
source "$(dirname "$0")/lib.sh"
e2e_begin bgp 240

[ "$(id -u)" = 0 ] || { echo "FAIL bgp: needs root (network namespaces, BIRD, TUN links)"; exit 1; }
for tool in ip bird birdc; do
  command -v "$tool" >/dev/null || { echo "FAIL bgp: $tool is not installed (tools/install-deps.sh: iproute2, bird2)"; exit 1; }
done
[ -c /dev/net/tun ] || { echo "FAIL bgp: /dev/net/tun is missing"; exit 1; }

ID=$(( $$ % 100000 ))
NS_R="lodebgp$ID-router" NS_A="lodebgp$ID-nodeA" NS_B="lodebgp$ID-nodeB" NS_C="lodebgp$ID-client"
NS_K="lodebgp$ID-backend"
VIP=10.201.100.100
PORT=8443
CLIENT=(ip netns exec "$NS_C" timeout 150 python3 "$E2E_DIR/bgp_client.py")
for ns in "$NS_R" "$NS_A" "$NS_B" "$NS_C" "$NS_K"; do
  ip netns add "$ns" || { echo "FAIL bgp: ip netns add $ns"; exit 1; }
  ON_EXIT+=("ip netns del $ns")
  ip -n "$ns" link set lo up
done

# link NS IFNAME ADDR ROUTER_IFNAME ROUTER_ADDR: a veth from NS to the router.
link() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$NS_R" || return 1
  ip -n "$1" addr add "$3/24" dev "$2" && ip -n "$1" link set "$2" up &&
    ip -n "$NS_R" addr add "$5/24" dev "$4" && ip -n "$NS_R" link set "$4" up &&
    ip -n "$1" route add default via "$5"
}
link "$NS_C" "lb${ID}c" 10.201.0.2 "lb${ID}rc" 10.201.0.1 &&
  link "$NS_A" "lb${ID}a" 10.201.1.2 "lb${ID}ra" 10.201.1.1 &&
  link "$NS_B" "lb${ID}b" 10.201.2.2 "lb${ID}rb" 10.201.2.1 &&
  link "$NS_K" "lb${ID}k" 10.201.3.2 "lb${ID}rk" 10.201.3.1 || { echo "FAIL bgp: veth setup"; exit 1; }
ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
  net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 || { echo "FAIL bgp: router sysctls"; exit 1; }
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" addr add "$VIP/32" dev lo; done

# ------------------------------------------------------------------ BIRD
mkdir -p "$T/router" "$T/nodeA" "$T/nodeB"
cat >"$T/router/bird.conf" <<EOF
router id 10.201.0.1;
log "$T/router/bird.log" all;
protocol device { scan time 1; }
# ECMP: equal BGP routes from both nodes become one multipath kernel route.
protocol kernel { ipv4 { export all; }; merge paths on; }
template bgp node {
  local as 65000;
  ipv4 { import all; export none; };
  connect delay time 1; connect retry time 1; error wait time 1, 4;
}
protocol bgp nodeA from node { neighbor 10.201.1.2 as 65001; }
protocol bgp nodeB from node { neighbor 10.201.2.2 as 65002; }
EOF
node_bird() {  # node_bird NAME ADDR AS ROUTER_ADDR
  cat >"$T/$1/bird.conf" <<EOF
router id $2;
log "$T/$1/bird.log" all;
protocol device { scan time 1; }
# Lodestone's VIPs (protocols lodestone4 and lodestone6), rewritten by it.
include "$T/$1/bird-vips.conf";
protocol bgp uplink {
  local $2 as $3;
  neighbor $4 as 65000;
  ipv4 { import none; export where proto = "lodestone4"; };
  connect delay time 1; connect retry time 1; error wait time 1, 4;
}
EOF
  # BIRD needs the include before Lodestone first writes it.
  printf 'protocol static lodestone4 { ipv4; }\nprotocol static lodestone6 { ipv6; }\n' >"$T/$1/bird-vips.conf"
}
node_bird nodeA 10.201.1.2 65001 10.201.1.1
node_bird nodeB 10.201.2.2 65002 10.201.2.1
start_bird() {  # start_bird NS NAME
  ip netns exec "$1" bird -f -c "$T/$2/bird.conf" -s "$T/$2/bird.ctl" 2>"$T/bird-$2.log" &
  PIDS+=($!); PID_OF[bird-$2]=$!
  wait_for 10 ip netns exec "$1" birdc -s "$T/$2/bird.ctl" show status >/dev/null ||
    { echo "FAIL bgp: BIRD in $1 did not start"; cat "$T/bird-$2.log"; exit 1; }
}
start_bird "$NS_R" router
start_bird "$NS_A" nodeA
start_bird "$NS_B" nodeB

# ------------------------------------------------------------------ backends and nodes
make_pki t.test p.test k.test
head -c 160 /dev/urandom >"$T/tickets.key"  # two keys: both nodes encrypt with the first
for k in 1 2 3; do
  ip netns exec "$NS_K" python3 "$PYSERVER" --listen "10.201.3.2:910$k" --name "k$k" --mode http \
    --cert "$PKI/k.test.pem" --key "$PKI/k.test.key" 2>"$T/pyserver-k$k.log" &
  PIDS+=($!)
  wait_for 5 grep -q listening "$T/pyserver-k$k.log" || { echo "FAIL bgp: backend k$k did not start"; exit 1; }
done

node_config() {  # node_config NAME: the same configuration but for paths and the local backend's name
  local d="$T/$1"
  mkdir -p "$d/run" "$d/state"
  cat >"$d/lodestone.toml" <<EOF
[[listener]]
name = "vip"
listen = ["$VIP:$PORT"]

[[pool]]
name = "local"
backends = ["127.0.0.1:9001"]

[[pool]]
name = "shared"
backends = ["10.201.3.2:9101", "10.201.3.2:9102", "10.201.3.2:9103"]
algorithm = "maglev_client"

[[certificate]]
name = "t"
cert = "$PKI/t.test.pem"
key = "$PKI/t.test.key"

[[route]]
name = "t"
names = ["t.test"]
action = "terminate"
pool = "local"
certificate = "t"

[[route]]
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "shared"

[tls]
ticket_key_file = "$T/tickets.key"

[workers]
count = 2

[timeouts]
drain_ms = 5000

[control]
state_dir = "$d/state"

[admin]
socket = "$d/admin.sock"
metrics = "127.0.0.1:9180"

[log]
access = "$d/access.log"

[bgp]
enabled = true
socket = "$d/bird.ctl"
include = "$d/bird-vips.conf"
liveness_interface = "lodealive0"
convergence_ms = 1500
EOF
}
node_config nodeA
node_config nodeB
for n in A B; do
  ns_var="NS_$n"
  ip netns exec "${!ns_var}" "$LODE_BACKEND" --listen 127.0.0.1:9001 --name "node$n" 2>"$T/backend-node$n.log" &
  PIDS+=($!)
  wait_for 5 grep -q listening "$T/backend-node$n.log" || { echo "FAIL bgp: lode-backend node$n did not start"; exit 1; }
done

# start_node NAME: Lodestone in the node's namespace; sets NODE_PID[NAME].
declare -A NODE_PID=() NODE_LOG=()
start_node() {
  local ns_var="NS_${1#node}" n=$(( ${LCOUNT:-0} + 1 ))
  LCOUNT=$n
  NODE_LOG[$1]="$T/lodestone-$1-$n.log"
  ip netns exec "${!ns_var}" "$LODESTONE" run "$T/$1/lodestone.toml" --run-dir "$T/$1/run" 2>"${NODE_LOG[$1]}" &
  NODE_PID[$1]=$!
  PIDS+=($!)
  wait_for 15 grep -q '"event":"start"' "${NODE_LOG[$1]}" || { echo "FAIL bgp: lodestone $1 did not start"; cat "${NODE_LOG[$1]}"; exit 1; }
}
start_node nodeA
start_node nodeB

# ------------------------------------------------------------------ helpers
# The router's kernel route to the VIP, on one line.
vip_route() { ip -n "$NS_R" -o route show "$VIP/32" 2>/dev/null; }
route_has_both() { local r; r=$(vip_route); [[ "$r" == *"via 10.201.1.2"* && "$r" == *"via 10.201.2.2"* ]]; }
route_only_b() { local r; r=$(vip_route); [[ "$r" == *"10.201.2.2"* && "$r" != *"10.201.1.2"* ]]; }
lctl() { ip netns exec "$NS_A" timeout 10 "$LODECTL" --socket "$T/nodeA/admin.sock" "$@"; }
metrics_a() { ip netns exec "$NS_A" timeout 10 curl -sS --max-time 5 http://127.0.0.1:9180/metrics; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1"; }
node_state_is() { [ "$(lctl --json status | json 'd["node_state"]')" == "$1" ]; }

# ------------------------------------------------------------------ announced, ECMP
if wait_for 60 route_has_both; then pass "router: the VIP has two next hops ($(vip_route))"
else fail "router: expected next hops via both nodes, saw '$(vip_route)'; router BIRD: $(ip netns exec "$NS_R" birdc -s "$T/router/bird.ctl" show route 2>&1 | tr '\n' ' ')"; fi
assert_contains "birdc on the router sees both nodes' routes" \
  "$(ip netns exec "$NS_R" birdc -s "$T/router/bird.ctl" show route "$VIP/32" all 2>&1)" "BGP.as_path: 65002"
# Announced only once the workers listen: the first birdc run that announces
# the VIP comes after the dataplane's start event (its workers are up).
start_line=$(grep -n '"event":"start"' "${NODE_LOG[nodeA]}" | head -n 1 | cut -d: -f1)
announce_line=$(grep -n "\"event\":\"bgp_configured\",\"announced\":\[\"$VIP/32\"" "${NODE_LOG[nodeA]}" | head -n 1 | cut -d: -f1)
assert_ge "node A: the VIP first announced after its workers started (log lines)" "${announce_line:-0}" "$(( ${start_line:-999999} + 1 ))"
status=$(lctl --json status)
assert_eq "status: node_state serving" "serving" "$(json 'd["node_state"]' <<<"$status")"
assert_eq "status: the VIP is announced" "True" "$(json '[v["announced"] for v in d["bgp"]["vips"]][0]' <<<"$status")"
assert_eq "status: the liveness link" "lodealive0" "$(json 'd["bgp"]["liveness_interface"]' <<<"$status")"
m=$(metrics_a)
assert_contains "metrics: lodestone_vip_announced 1" "$m" "lodestone_vip_announced{vip=\"$VIP/32\"} 1"
assert_match "metrics: lodestone_vip_last_change_seconds" "$m" "lodestone_vip_last_change_seconds\\{vip=\"$VIP/32\"\\} [1-9][0-9]+"

probe=$("${CLIENT[@]}" probe "$VIP" "$PORT" "$PKI/ca.pem" 30000 64)
n_a=$(json 'sum(1 for v in d.values() if v == "nodeA")' <<<"$probe")
n_b=$(json 'sum(1 for v in d.values() if v == "nodeB")' <<<"$probe")
assert_eq "64 source ports: every connection served" 64 "$((n_a + n_b))"
assert_ge "source ports spread: some on node A" "$n_a" 8
assert_ge "source ports spread: some on node B" "$n_b" 8

# ------------------------------------------------------------------ tickets, Maglev
r=$("${CLIENT[@]}" resume "$VIP" "$PORT" "$PKI/ca.pem")
echo "  resume: $r"
assert_eq "ticket: issued by one node, resumed on the other" "True True" \
  "$(json 'str(d["second"] not in (None, d["first"])) + " " + str(d["reused"] and d["all_reused"])' <<<"$r")"
# Which node carried the passthrough connections: each node's counter for route p.
route_p() { ip netns exec "$1" timeout 10 curl -sS --max-time 5 http://127.0.0.1:9180/metrics |
  awk '/^lodestone_route_connections_total\{.*route="p"/ { n += $NF } END { print n + 0 }'; }
p_a=$(route_p "$NS_A") p_b=$(route_p "$NS_B")
pt=$("${CLIENT[@]}" passthrough "$VIP" "$PORT" 16)
assert_eq "passthrough maglev_client: one backend for this client, 16 connections" 1 \
  "$(json 'len(set(d.values())) if all(v.startswith("k") for v in d.values()) else d' <<<"$pt")"
assert_ge "passthrough: some connections through node A" "$(( $(route_p "$NS_A") - p_a ))" 1
assert_ge "passthrough: some connections through node B" "$(( $(route_p "$NS_B") - p_b ))" 1

# ------------------------------------------------------------------ drain-node, undrain
out=$(lctl drain-node)
assert_contains "lodectl drain-node: state" "$out" "node_state: draining"
check "router: node A withdrawn after drain-node" wait_for 30 route_only_b
check "status: drained once converged" wait_for 10 node_state_is drained
assert_contains "metrics: lodestone_vip_announced 0 while drained" "$(metrics_a)" "lodestone_vip_announced{vip=\"$VIP/32\"} 0"
probe=$("${CLIENT[@]}" probe "$VIP" "$PORT" "$PKI/ca.pem" 31000 16)
assert_eq "drained: all 16 connections served by node B" 16 "$(json 'sum(1 for v in d.values() if v == "nodeB")' <<<"$probe")"
lctl undrain >/dev/null
check "router: node A announced again after undrain" wait_for 30 route_has_both
check "status: serving after undrain" node_state_is serving

# ------------------------------------------------------------------ node A killed
cp_a=$(grep '"event":"controlplane_started"' "${NODE_LOG[nodeA]}" | tail -n 1 | jfield pid)
# The control plane first: killed after the dataplane, it would get its
# parent-death SIGTERM and could withdraw politely before the SIGKILL lands.
killed_at=$(now_ms)
kill -KILL "$cp_a" "${NODE_PID[nodeA]}"
wait "${NODE_PID[nodeA]}" 2>/dev/null
# Nobody withdrew politely: the include still lists the VIP...
assert_contains "killed: the include still has the route" "$(cat "$T/nodeA/bird-vips.conf")" "route $VIP/32 via \"lodealive0\""
# ...but the link it goes through died with the process.
check "router: node A's route withdrawn after SIGKILL (liveness link gone)" wait_for 30 route_only_b
echo "  (the router's route lost node A about $(( $(now_ms) - killed_at )) ms after the SIGKILL; polled every 100 ms)"
probe=$("${CLIENT[@]}" probe "$VIP" "$PORT" "$PKI/ca.pem" 32000 16)
assert_eq "node A killed: all 16 new connections served by node B" 16 \
  "$(json 'sum(1 for v in d.values() if v == "nodeB")' <<<"$probe")"

# ------------------------------------------------------------------ SIGTERM under load
start_node nodeA
check "router: node A back after its restart" wait_for 60 route_has_both
"${CLIENT[@]}" load "$VIP" "$PORT" "$PKI/ca.pem" 1000 4 "$T/progress" >"$T/load.json" 2>"$T/load.log" &
load_pid=$!
PIDS+=("$load_pid")
wait_for 60 grep -qE '^(5|6|7|8|9)[0-9]$|^[0-9]{3}$' "$T/progress"
kill -TERM "${NODE_PID[nodeA]}"
wait_for 60 bash -c "! kill -0 ${NODE_PID[nodeA]} 2>/dev/null"
wait "${NODE_PID[nodeA]}"
assert_eq "node A exited 0 after SIGTERM" 0 "$?"
wait "$load_pid"
load=$(cat "$T/load.json")
echo "  load: $load"
assert_eq "SIGTERM under load: 1000 connections made" 1000 "$(json 'd["done"]' <<<"$load")"
assert_eq "SIGTERM under load: no new connection refused or unanswered" 0 "$(json 'd["connect_failures"]' <<<"$load")"
# Plain ECMP keeps no flow state: a connection whose first packets went to
# node A just before the router dropped A has its next packets sent to B and
# is cut (0 to 3 per run seen here, release and ASan builds; a reset
# before connect() returned is one of these: its ACK went to B). At most the
# client's concurrency can be in flight at that instant.
assert_le "SIGTERM under load: connections cut by the router's change of next hops (in flight then)" \
  "$(json 'd["later_failures"]' <<<"$load")" 4
assert_ge "SIGTERM under load: node A served part of the load" "$(json 'd["nodes"].get("nodeA", 0)' <<<"$load")" 1
assert_eq "SIGTERM under load: the last connections all on node B" "nodeB" \
  "$(json '",".join(sorted(set(d["last_nodes"])))' <<<"$load")"
log=$(cat "${NODE_LOG[nodeA]}")
assert_match "node A: VIPs withdrawn, then the workers stopped" "$(tr '\n' ' ' <<<"$log")" \
  '"event":"vips_withdrawn".*"event":"stopped"'
assert_not_contains "node A: the include has no route after the stop" "$(cat "$T/nodeA/bird-vips.conf")" "  route "
check "router: only node B after node A's stop" route_only_b

finish
