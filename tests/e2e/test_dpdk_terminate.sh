#!/usr/bin/env bash
# Terminate through the dpdk front: `lodestone run` with front = "dpdk" and a
# [dpdk.exception] port. Clients in a network namespace reach the VIP over a
# net_tap port polled by the DPDK dataplane, which answers the SYN with a
# cookie, reads the ClientHello, and hands the flow to a TLS worker: it opens
# a connection from its side of a second net_tap (the exception port, whose
# kernel side Lodestone addresses in its own namespace) to the worker's
# listener, sends a PROXY v2 header and the hello, and translates the rest of
# the flow. The workers terminate TLS with the route's certificate and relay
# to a plaintext backend. Checked: curl and openssl s_client complete TLS
# with the route's certificate and get the backend's answer, a 20 MB file
# has equal SHA-256, the access log shows the client's real address and the
# VIP (PROXY v2; an IPv6 client's too, over the IPv4 exception link), names
# steer to a stable worker, passthrough and reject
# still work beside it, counters, and a clean stop that removes both taps.
# Two polling lcores with an exception port: test_dpdk_lcores.sh.
# Needs root (taps, namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_terminate 150
make_pki t.test u.test p.test
dpdk_needs dpdk_terminate

NS="lode-dt$$"
TAP="ldtt$$"
XIF="ldtx$$"
PREFIX="lode-e2e-t$$"
NET="10.$(( $$ % 200 + 20 )).79"
VIP="$NET.1"
NET6="fd7e:$(( $$ % 200 + 20 ))::"   # an IPv6 VIP too: its clients handed off over the IPv4 exception link
VIP6="${NET6}1"
XNET="169.254.$(( $$ % 250 + 1 ))"
ON_EXIT+=("ip netns del $NS" "rm -rf /var/run/dpdk/$PREFIX")
BP=$(free_port)
WP=$(free_port)
start_backend app "$BP" http
mkdir -p "$T/www"
head -c 20000000 /dev/urandom >"$T/www/blob.bin"
serve_www "$WP"

cat >"$T/lode.toml" <<TOML
$(dpdk_head "\"$VIP:443\", \"[$VIP6]:443\"")

[workers]
count = 2

[[pool]]
name = "app"
backends = ["127.0.0.1:$BP"]

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

[[certificate]]
name = "u"
cert = "pki/u.test.pem"
key = "pki/u.test.key"

[[route]]
name = "t"
names = ["t.test"]
action = "terminate"
pool = "app"
certificate = "t"

[[route]]
name = "u"
names = ["u.test"]
action = "terminate"
pool = "www"
certificate = "u"

[[route]]
name = "p"
names = ["p.test"]
action = "passthrough"
pool = "p"

[dpdk]
$(dpdk_eal '"-l", "0-1"' 256)

$(dpdk_exception)
TOML
start_lodestone "$T/lode.toml"
dpdk_started
assert_eq "start event: two workers behind the exception port" 2 "$(jfield workers <<<"$start")"
assert_eq "start event: the exception port is a net_tap" net_tap "$(jfield dpdk_exception <<<"$start")"
check "the exception interface has the kernel address" sh -c "ip -4 addr show $XIF | grep -q 'inet $XNET.1/30'"
# Worker w of listener 0 listens on kernel_address:20443+w.
check "worker 0 listens on the exception link" sh -c "ss -Hltn 'src $XNET.1:20443' | grep -q LISTEN"
check "worker 1 listens on the exception link" sh -c "ss -Hltn 'src $XNET.1:20444' | grep -q LISTEN"
check "nothing listens on the VIP in the kernel" sh -c "! ss -Hltn | grep -q '$VIP:443'"
# A local process other than the front cannot speak to a hand-off listener
# (its PROXY header would name any client it liked): cut before a byte is read.
pe0=$(stats proxy_errors)
spoof=$(timeout 10 python3 -c 'import socket, sys
s = socket.create_connection((sys.argv[1], 20443), timeout=5)
# PROXY v2, TCP over IPv4, 203.0.113.7:1234 -> VIP:443
s.sendall(bytes.fromhex("0d0a0d0a000d0a515549540a") + bytes([0x21, 0x11, 0, 12]) + bytes([203, 0, 113, 7, 10, 0, 0, 1, 4, 210, 1, 187]))
try:
    print("got:%d" % len(s.recv(100)))
except ConnectionResetError:
    print("reset")' "$XNET.1" 2>&1)
assert_match "a spoofed PROXY header from a local process: closed with no answer" "$spoof" '^(got:0|reset)$'
check "  ... counted as a PROXY error" wait_stat proxy_errors $((pe0 + 1)) 5

client_ns "$NET.2" "$NET.9"
in_ns ip -6 addr add "${NET6}2/64" dev "$TAP" nodad
mkdir -p "$T/pwww"
echo "passthrough backend" >"$T/pwww/index.txt"
(cd "$T/pwww" && exec ip netns exec "$NS" openssl s_server -accept "$NET.9:443" -cert "$PKI/p.test.pem" \
  -key "$PKI/p.test.key" -cert_chain "$PKI/p.test.pem" -WWW -quiet) >"$T/s_server.log" 2>&1 &
PIDS+=($!)

out=$(in_ns curl -sS --max-time 15 --cacert "$PKI/ca.pem" --resolve "t.test:443:$VIP" https://t.test/ 2>&1); rc=$?
assert_eq "terminate: curl t.test through the dpdk front and a worker (exit 0)" 0 "$rc"
assert_contains "terminate: the backend's answer" "$out" "backend=app"
out=$(in_ns timeout 15 openssl s_client -connect "$VIP:443" -servername t.test -CAfile "$PKI/ca.pem" \
  -verify_return_error -brief </dev/null 2>&1)
assert_contains "terminate: s_client verifies the route's certificate" "$out" "Verification: OK"
assert_contains "terminate: the certificate is t.test's" "$out" "t.test"
# The request, then stdin stays open a moment (s_client ends at its EOF).
out=$( (printf 'GET / HTTP/1.0\r\nHost: t.test\r\n\r\n'; sleep 1) | in_ns timeout 15 openssl s_client \
  -connect "$VIP:443" -servername t.test -CAfile "$PKI/ca.pem" 2>/dev/null)
assert_contains "terminate: s_client gets the backend's answer" "$out" "backend=app"

in_ns curl -sS --max-time 60 --cacert "$PKI/ca.pem" --resolve "u.test:443:$VIP" -o "$T/got.bin" \
  https://u.test/blob.bin 2>"$T/curl-u.log"; rc=$?
assert_eq "terminate: curl u.test/blob.bin (exit 0)" 0 "$rc"
assert_eq "terminate: 20 MB with equal SHA-256" "$(sha256sum <"$T/www/blob.bin")" "$(sha256sum <"$T/got.bin" 2>/dev/null)"

# An IPv6 client: handed to a worker over the IPv4 exception link, the PROXY
# v2 header naming its IPv6 address and the IPv6 VIP.
out=$(in_ns curl -sS -6 --max-time 15 --cacert "$PKI/ca.pem" --resolve "t.test:443:[$VIP6]" https://t.test/ 2>&1); rc=$?
assert_eq "terminate, IPv6 client: curl -6 t.test (exit 0)" 0 "$rc"
assert_contains "terminate, IPv6 client: the backend's answer" "$out" "backend=app"

# Steering: one name, one worker, every time.
for i in 1 2 3 4; do
  in_ns curl -sS --max-time 15 --cacert "$PKI/ca.pem" --resolve "t.test:443:$VIP" https://t.test/ >/dev/null 2>&1
done
out=$(in_ns curl -sS --max-time 15 --cacert "$PKI/ca.pem" --resolve "p.test:443:$VIP" https://p.test/index.txt 2>&1)
assert_contains "passthrough beside terminate: the backend's own answer" "$out" "passthrough backend"
out=$(in_ns curl -sS --max-time 10 --cacert "$PKI/ca.pem" --resolve "nobody.test:443:$VIP" https://nobody.test/ 2>&1)
assert_contains "no route: alert 112 from the dataplane (no worker involved)" "$out" "unrecognized name"

sleep 1.2  # the access log is flushed every tick, the stats file every second
lines=$(grep '"route":"t"' "$LLOG")
assert_ge "access log: the t.test connections" "$(grep -c . <<<"$lines")" 7
assert_contains "access log: the client's real address (PROXY v2 from the front)" "$lines" "\"client\":\"$NET.2:"
assert_contains "access log: the IPv6 client's real address" "$lines" "\"client\":\"[${NET6}2]:"
assert_not_contains "access log: never the front's address on the exception link" "$lines" "$XNET.2"
workers_t=$(grep -o '"worker":[0-9]*' <<<"$lines" | sort -u | wc -l)
assert_eq "steering: every t.test connection on one worker" 1 "$workers_t"
assert_ge "stats: flows handed to the workers" "$(front handoff_flows)" 8
assert_eq "stats: no hand-off failed" 0 "$(front handoff_failures)"
assert_eq "stats: no terminate flow reset for want of an exception port" 0 "$(front action_unsupported)"
assert_ge "stats: frames from the exception port" "$(front exception_rx)" 10000
assert_ge "stats: segments spliced towards the clients" "$(front spliced_to_client)" 10000
assert_eq "stats: one passthrough flow" 1 "$(front passthrough_flows)"

dpdk_stop 15
taps_gone

finish
