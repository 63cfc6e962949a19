#!/usr/bin/env bash
# Load through the dpdk front (issue 6): `lodestone run` with front = "dpdk",
# one polling lcore on a net_tap port and a [dpdk.exception] port for the
# workers. Clients in a network namespace; the passthrough backend is nginx
# (TLS, its own certificate) in that namespace, behind the same tap; the
# terminate backend is a plain HTTP server on the host's loopback, behind
# the workers. Checked:
#   - 100 MB through a passthrough flow (spliced in the dataplane) and
#     100 MB through a terminate flow (handed to a worker): equal SHA-256;
#   - 500 concurrent flows each way (lodeload idle: every handshake done,
#     all 500 open at once, held, closed), none failed;
#   - the front's counters: every flow created has ended once the flows
#     are closed (flows_created = flows_ended: nothing leaked, time-wait
#     included), no hello timeout, no backend or hand-off failure, the
#     table never full;
#   - a clean stop.
# The rates achieved are printed (MB/s, handshakes/s); no time is asserted.
# Needs root (taps, namespaces); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_load 170
make_pki t.test p.test
dpdk_needs dpdk_load nginx sha256sum
LODELOAD=${LODELOAD:-$(dirname "$LODESTONE")/lodeload}
[ -x "$LODELOAD" ] || { fail "dpdk_load: $LODELOAD is not built"; finish; }

NS="lode-dl$$"
TAP="ldlt$$"
XIF="ldlx$$"
PREFIX="lode-e2e-l$$"
NET="10.$(( $$ % 200 + 20 )).81"
VIP="$NET.1"
XNET="169.254.$(( ($$ + 101) % 250 + 1 ))"
ON_EXIT+=("ip netns del $NS" "rm -rf /var/run/dpdk/$PREFIX")
MB=100
WP=$(free_port)
mkdir -p "$T/www" "$T/nginx-tmp"
head -c $((MB * 1000000)) /dev/urandom >"$T/www/blob.bin"
want=$(sha256sum <"$T/www/blob.bin")
serve_www "$WP"

split_config '"-l", "0-1"' 512 >"$T/lode.toml"
start_lodestone "$T/lode.toml"
dpdk_started
assert_eq "start event: one lcore polls the port" 1 "$(jfield dpdk_lcores <<<"$start")"

client_ns "$NET.2" "$NET.9"
# nginx in the namespace: the passthrough backend (its own TLS).
cat >"$T/nginx.conf" <<NGINX
daemon off;
master_process on;
user root;
worker_processes 2;
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $T/nginx-tmp/body;
  proxy_temp_path $T/nginx-tmp/proxy;
  fastcgi_temp_path $T/nginx-tmp/fastcgi;
  uwsgi_temp_path $T/nginx-tmp/uwsgi;
  scgi_temp_path $T/nginx-tmp/scgi;
  server {
    listen $NET.9:443 ssl;
    ssl_certificate $PKI/p.test.pem;
    ssl_certificate_key $PKI/p.test.key;
    root $T/www;
    keepalive_timeout 5s;
  }
}
NGINX
ip netns exec "$NS" nginx -c "$T/nginx.conf" -e "$T/nginx-error.log" -p "$T/" >"$T/nginx.log" 2>&1 &
PIDS+=($!)
wait_for 5 in_ns python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], 443), 1)' "$NET.9"

# rate START_MS BYTES: MB/s since START_MS.
rate() { python3 -c 'import sys; ms = max(1, int(sys.argv[2]) - int(sys.argv[1])); print("%.1f MB/s (%.2f s)" % (int(sys.argv[3]) / 1e6 / (ms / 1000), ms / 1000))' "$1" "$(now_ms)" "$2"; }

# ---- 100 MB each way
t0=$(now_ms)
in_ns curl -sS --max-time 60 --cacert "$PKI/ca.pem" --resolve "p.test:443:$VIP" -o "$T/got-p.bin" \
  https://p.test/blob.bin 2>"$T/curl-p.log"; rc=$?
echo "   passthrough (spliced in the dataplane): $MB MB at $(rate "$t0" $((MB * 1000000)))"
assert_eq "passthrough: curl p.test/blob.bin through the dpdk front to nginx (exit 0)" 0 "$rc"
assert_eq "passthrough: $MB MB with equal SHA-256" "$want" "$(sha256sum <"$T/got-p.bin" 2>/dev/null)"
rm -f "$T/got-p.bin"
t0=$(now_ms)
in_ns curl -sS --max-time 60 --cacert "$PKI/ca.pem" --resolve "t.test:443:$VIP" -o "$T/got-t.bin" \
  https://t.test/blob.bin 2>"$T/curl-t.log"; rc=$?
echo "   terminate (handed to a worker): $MB MB at $(rate "$t0" $((MB * 1000000)))"
assert_eq "terminate: curl t.test/blob.bin through the dpdk front and a worker (exit 0)" 0 "$rc"
assert_eq "terminate: $MB MB with equal SHA-256" "$want" "$(sha256sum <"$T/got-t.bin" 2>/dev/null)"
rm -f "$T/got-t.bin"

# ---- 500 concurrent flows each way
# idle NAME SNI: 500 connections, all open at once, each held 2 s.
idle() {
  in_ns timeout 60 "$LODELOAD" idle --connect "$VIP:443" --sni "$2" --ca "$PKI/ca.pem" --concurrency 500 \
    --hold 2 --timeout-ms 20000 --quiet >"$T/idle-$1.json" 2>"$T/idle-$1.log"
  local rc=$?
  local j="$T/idle-$1.json"
  q() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$j" "$1" 2>/dev/null; }
  echo "   $1: $(q 'd["connections"]["ok"]') connections ok, peak $(q 'd["connections"]["peak_open"]') open," \
    "$(q 'round(d["connections"]["ok"] / max(0.001, d["elapsed_ms"] / 1000 - 2), 1)') handshakes/s" \
    "(the run's $(q 'd["elapsed_ms"]') ms less the 2 s hold), handshake p50 / p99" \
    "$(q 'd["latency_us"]["handshake"]["p50"] // 1000') / $(q 'd["latency_us"]["handshake"]["p99"] // 1000') ms"
  assert_eq "$1: lodeload exit 0 (no failed connection)" 0 "$rc"
  assert_eq "$1: 500 connections completed" 500 "$(q 'd["connections"]["ok"]')"
  assert_eq "$1: none failed" 0 "$(q 'd["connections"]["failed"]')"
  assert_eq "$1: 500 open at once" 500 "$(q 'd["connections"]["peak_open"]')"
  assert_eq "$1: every one held" 500 "$(q 'd["idle"]["held"]')"
}
idle passthrough p.test
idle terminate t.test

# ---- the front's counters
live() { python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["front"]; print(f["flows_created"] - f["flows_ended"])' "$STATS"; }
no_flows_left() { [ "$(live)" = 0 ]; }
# Closed flows wait in time-wait 2 s; the stats file is rewritten every second.
wait_for 15 no_flows_left
created=$(front flows_created)
echo "   front: $created flows created, $(front flows_ended) ended, $(front spliced_to_client) segments to clients," \
  "$(front forwarded_in_place) forwarded in place, $(front tx_no_buffer) without a buffer," \
  "$(front cookie_invalid) late or stray ACKs"
assert_ge "stats: flows created (2 transfers + 1000)" "$created" 1002
assert_eq "stats: every flow created has ended (flows_created = flows_ended: none leaked)" "$created" "$(front flows_ended)"
assert_eq "stats: every flow's hello was parsed" "$created" "$(front hello_done)"
assert_eq "stats: passthrough flows" 501 "$(front passthrough_flows)"
assert_eq "stats: flows handed to the workers" 501 "$(front handoff_flows)"
assert_eq "stats: no hand-off failed" 0 "$(front handoff_failures)"
assert_eq "stats: no backend connect failure" 0 "$(front backend_connect_failures)"
assert_eq "stats: no hello timeout" 0 "$(front hello_timeouts)"
assert_eq "stats: no idle timeout" 0 "$(front idle_timeouts)"
assert_eq "stats: the flow table never full" 0 "$(front flows_table_full)"
assert_ge "stats: segments spliced towards the clients (200 MB)" "$(front spliced_to_client)" 100000

dpdk_stop 15
taps_gone
finish
