#!/usr/bin/env bash
# The dpdk front with two polling lcores: a net_tap wire port and a net_tap
# exception port with two queues each, one queue pair per lcore. 200
# concurrent TLS connections from a client namespace, half passed through to
# a TLS backend in that namespace, half terminated by the workers behind the
# exception port, each fetching a file whose SHA-256 must match. The kernel
# picks the tap queue of every frame it sends (the backend's segments, the
# workers', ARP answers), so some land on the lcore that does not hold their
# flow: that lcore hands them to the owner (the flow's local port names it)
# through a ring, and the counters (stats file and /metrics, per lcore) show
# frames crossing lcores with none dropped. A clean stop removes both taps.
# Needs root (taps, namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_lcores 240
make_pki t.test p.test
dpdk_needs dpdk_lcores

NS="lode-dl$$"
TAP="ldlt$$"
XIF="ldlx$$"
PREFIX="lode-e2e-l$$"
NET="10.$(( $$ % 200 + 20 )).81"
VIP="$NET.1"
XNET="169.254.$(( $$ % 250 + 1 ))"
CONNS=${LODE_LCORES_CONNS:-200}
ON_EXIT+=("ip netns del $NS" "rm -rf /var/run/dpdk/$PREFIX")
WP=$(free_port)
MP=$(free_port)
mkdir -p "$T/www"
head -c 65536 /dev/urandom >"$T/www/blob.bin"
serve_www "$WP"

# Two polling lcores (1 and 2) beside the main one, free to share the
# machine's CPUs (they nap when idle).
{
  split_config '"--lcores", "0@(0,1),1@(0,1),2@(0,1)"' 256 'steer = "client"'
  cat <<TOML

[admin]
metrics = "127.0.0.1:$MP"
TOML
} >"$T/lode.toml"
start_lodestone "$T/lode.toml"
dpdk_started
assert_eq "start event: two polling lcores (an exception port no longer refuses them)" 2 "$(jfield dpdk_lcores <<<"$start")"
# net_tap's queue is the kernel's flow hash, not Toeplitz: backend legs take
# ports by the port rule and stray segments cross the rings (below).
assert_contains "start event: return steering by the port rule on net_tap" \
  "$(jfield dpdk_return_steering <<<"$start")" "port rule (net_tap does not hash by Toeplitz"
assert_eq "start event: the exception port is a net_tap" net_tap "$(jfield dpdk_exception <<<"$start")"
check "the wire tap has two queues" sh -c "ls /sys/class/net/$TAP/queues | grep -c rx- | grep -qx 2"
check "the exception tap has two queues" sh -c "ls /sys/class/net/$XIF/queues | grep -c rx- | grep -qx 2"

client_ns "$NET.2" "$NET.9"

# The passthrough backend: a threaded HTTPS server with p.test's certificate.
cat >"$T/tls_server.py" <<'PY'
import http.server, ssl, sys
addr, port, cert, key, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k): super().__init__(*a, directory=root, **k)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.request_queue_size = 512
srv = http.server.ThreadingHTTPServer((addr, port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
ip netns exec "$NS" python3 "$T/tls_server.py" "$NET.9" 443 "$PKI/p.test.pem" "$PKI/p.test.key" "$T/www" >"$T/tls_server.log" 2>&1 &
PIDS+=($!)
wait_for 10 in_ns python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 443), 1)' "$NET.9"

# CONNS clients at once (half p.test, half t.test): all connect and finish
# their handshakes, wait for each other, then fetch blob.bin; each body's
# SHA-256 compared with the file's.
cat >"$T/many.py" <<'PY'
import hashlib, socket, ssl, sys, threading, time
vip, ca, n, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
barrier = threading.Barrier(n, timeout=90)
results = {}
def one(i):
    name = "p.test" if i % 2 == 0 else "t.test"
    try:
        raw = socket.create_connection((vip, 443), timeout=60)
        s = ctx.wrap_socket(raw, server_hostname=name)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        s.sendall(b"GET /blob.bin HTTP/1.0\r\nHost: " + name.encode() + b"\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        ok = head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] and hashlib.sha256(body).hexdigest() == want
        results[i] = (name, "ok" if ok else "bad body (%d bytes)" % len(body))
    except Exception as e:
        try:
            barrier.abort()
        except Exception:
            pass
        results[i] = (name, "error: %r" % (e,))
threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
    time.sleep(0.005)
for t in threads:
    t.join(120)
for name in ("p.test", "t.test"):
    good = sum(1 for v in results.values() if v == (name, "ok"))
    print("%s %d" % (name, good))
for i, v in sorted(results.items()):
    if v[1] != "ok":
        print("conn %d %s %s" % (i, v[0], v[1]), file=sys.stderr)
PY
want=$(sha256sum "$T/www/blob.bin" | cut -d' ' -f1)
out=$(in_ns timeout 150 python3 "$T/many.py" "$VIP" "$PKI/ca.pem" "$CONNS" "$want" 2>"$T/many.err")
head -n 5 "$T/many.err"
assert_eq "passthrough: every p.test connection got the file (equal SHA-256)" "$((CONNS / 2))" "$(awk '$1 == "p.test" { print $2 }' <<<"$out")"
assert_eq "terminate: every t.test connection got the file through a worker (equal SHA-256)" "$((CONNS / 2))" "$(awk '$1 == "t.test" { print $2 }' <<<"$out")"

sleep 1.2  # the stats file is written every second
curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" >"$T/metrics.txt"
fm() { awk -v want="lodestone_front_$1_total{lcore=\"$2\"}" '$1 == want { print $2 }' "$T/metrics.txt"; }
echo "redirected out/in/drops: $(front redirected_out)/$(front redirected_in)/$(front redirect_drops)" \
  "lcore 0 in: $(fm redirected_in 0), lcore 1 in: $(fm redirected_in 1)," \
  "flows per lcore: $(fm flows_created 0)/$(fm flows_created 1)"
# Beyond the few ARP answers copied to every lcore (2 per neighbour): TCP segments.
assert_ge "stats: frames handed between the lcores (segments, not only ARP copies)" "$(front redirected_out)" 10
assert_ge "stats: and taken by their owners" "$(front redirected_in)" 1
assert_eq "stats: every frame handed over was taken" "$(front redirected_out)" "$(front redirected_in)"
assert_eq "stats: no frame lost between lcores" 0 "$(front redirect_drops)"
assert_ge "/metrics: lcore 0 created flows" "$(fm flows_created 0)" 1
assert_ge "/metrics: lcore 1 created flows" "$(fm flows_created 1)" 1
assert_ge "/metrics: the redirect counters per lcore" "$(( $(fm redirected_in 0) + $(fm redirected_in 1) ))" 1
assert_eq "stats: the passthrough flows" "$((CONNS / 2))" "$(front passthrough_flows)"
assert_eq "stats: the hand-offs" "$((CONNS / 2))" "$(front handoff_flows)"
assert_eq "stats: no hand-off failed" 0 "$(front handoff_failures)"
assert_eq "stats: no backend connect failed" 0 "$(front backend_connect_failures)"
# Both lcores' rows of the per-route series, summed with the workers': each
# passthrough flow once (by the lcore that routed it), each terminated one
# once (by the worker that took it, not again by the lcore).
series() { awk -v fam="$1" -v lbl="$2" 'index($1, fam "{") == 1 && index($1, lbl) { print $2 }' "$T/metrics.txt"; }
assert_eq "/metrics: route p, every passthrough connection once over both lcores" "$((CONNS / 2))" \
  "$(series lodestone_route_connections_total 'route="p"}')"
assert_eq "/metrics: route t, every terminated connection once" "$((CONNS / 2))" \
  "$(series lodestone_route_connections_total 'route="t"}')"
assert_eq "/metrics: pool p's backend, every passthrough connection established once" "$((CONNS / 2))" \
  "$(series lodestone_backend_established_total 'pool="p",')"

dpdk_stop 15
taps_gone
finish
