#!/usr/bin/env bash
# Lodestone against nginx (stream module) and HAProxy (mode tcp) on the same
# machine: same certificates (ECDSA P-256, and RSA-2048 for one test), same
# backends, one worker/thread each pinned to CPU 0; the load (lodeload) and
# the backends on CPU 1. Runs interleaved (Lodestone, nginx, HAProxy,
# Lodestone, nginx, HAProxy ...) and reports, per test:
#   - server CPU per operation (from /proc/PID/stat, the figure that stays
#     fair when one client core cannot saturate the server), min/median/max
#     of the runs, with the ratios nginx / Lodestone and HAProxy / Lodestone
#     run by run;
#   - latency p50/p99 from lodeload's histograms (median of the runs), and for
#     the kept-connection requests test the p99 added against a direct run
#     (the same test with no proxy, to a TLS echo backend, in the same rep);
#   - system calls per operation: `strace -c -f -p PID` attached to each
#     server for one extra run of each test (not one of the timed runs: a
#     traced process is slow), io_uring_enter counted as a call;
#   - two reference columns, measured on CPU 0 once per rep: the crypto
#     bound (bench/crypto_bound: the signature, X25519 and AES-GCM work a TLS
#     1.3 server cannot avoid, libcrypto alone) and the OpenSSL ceiling
#     (bench/openssl_ceiling: libssl's server side alone, client and server
#     over a BIO pair, no network), with each server's CPU per operation as a
#     multiple of them, rep by rep.
# It prints the tables (markdown), writes every run and figure as JSON and
# draws the chart beside it (bench/bench_chart.py, gnuplot: JSON name with
# .svg and .png).
#
#   bench/compare_nginx.sh [REPS] [HANDSHAKES] [MB] [IDLE] [REQUESTS]
#       defaults: 3 1000 300 1000 5000
#   BUILD=DIR             the build to use (default build/release)
#   BENCH_JSON=FILE       where the JSON goes (default BUILD/compare_nginx.json)
#   BENCH_REQ_RATE=N      requests per second in the requests test (default 2500)
#   BENCH_STRACE=0        skip the system-call counts
#   BENCH_TESTS="A B"     run only these tests (names below)
#   BENCH_IDLE_BATCH=N    idle test: connections opened at once (default 100)
#   BENCH_REBUILD=1       rebuild the release binaries first
#   BENCH_DEFER_ACCEPT=1  deferred accepts for Lodestone and HAProxy (nginx's stream has none)
#   BENCH_HALF_CLOSED=MS  Lodestone's [timeouts] half_closed_ms (default: not set, idle_ms);
#                         0 ends a connection at its first end of stream, like
#                         nginx stream's default (proxy_half_close off)
#
# Tests (lodeload, build/release/lodeload; TLS 1.3 as negotiated):
#   full      HANDSHAKES connections one at a time: full handshake (ECDSA
#             P-256), 100 B sent, echoed back through the relay, close
#   full-rsa  the same with an RSA-2048 certificate (its own port per server)
#   resumed   the same resuming with session tickets (the first is full)
#   requests  REQUESTS 100 B requests at BENCH_REQ_RATE/s over 4 kept
#             connections, each echoed back through the relay; also run
#             "direct", with no proxy, against bench/tls_echo on CPU 0 (the
#             echo backend with TLS inside, since lodeload speaks only TLS):
#             p99 added = each proxy's p99 minus the direct p99 of the rep
#   h2load    the cross-check by a stock tool: REQUESTS HTTP/1.1 GETs by
#             `h2load --h1` (Debian's nghttp2-client) at the same rate over 4
#             kept connections, to an HTTP backend (lode-backend --mode http)
#             through each server's terminate route; h2load's own req/s
#   requests-max, h2load-max  the same two with no rate limit (closed loop,
#             one request in flight per connection): each tool's req/s
#   bulk      one connection sending MB MiB while reading the echo back
#             through the relay, SHA-256 both ways (CPU per MB moved)
#   pass-conn SNI passthrough: HANDSHAKES connections one at a time through
#             to bench/tls_echo, which terminates them (CPU per connection)
#   pass      SNI passthrough bulk: MB MiB each way through to bench/tls_echo
#   idle      memory: IDLE TLS connections handshaken (full, ECDSA) and held
#             (lodeload idle, BENCH_IDLE_BATCH connections per lodeload, the
#             next batch once the last is up and quiet); the growth of the
#             server process's VmRSS (/proc/PID/status) per connection, in
#             KB, 1 s after the last batch. Fresh instances of the three
#             servers per run (warmed with 20 handshakes first), since an
#             allocator keeps what it once grew to — and what handshakes in
#             flight together needed: 1,000 opened at once measured 43-49 KB
#             for all three, against 18-39 KB in batches of 100 or 20.
#             Each proxied connection holds two descriptors in the proxy:
#             IDLE needs RLIMIT_NOFILE >= 2 x IDLE + 200, raised here up to
#             the hard limit (10,000 needs 20,200; a container whose hard
#             limit is lower and which lacks CAP_SYS_RESOURCE cannot run it).
#             The same test also measures IDLE idle SNI passthrough
#             connections (recorded as idle-pass; fresh instances again):
#             handshaken with bench/tls_echo through each server's
#             passthrough (Lodestone's passthrough route, nginx ssl_preread,
#             HAProxy req.ssl_sni) and held. Lodestone moves an idle
#             passthrough connection by splice, with a pipe per direction:
#             six descriptors each; past its limit a connection copies
#             through user space instead (splice_fallbacks).
#
# Which process is measured: Lodestone's dataplane, i.e. the PID of
# `lodestone run` (its control plane is a separate child process,
# `lodestone controlplane`, and is not counted); nginx's one worker (not the
# master); HAProxy's one process (`haproxy -db`, nbthread 1, no master).
# Routing: Lodestone routes by SNI; nginx `stream` terminates per listen port
# and passes through by `map $ssl_preread_server_name`; HAProxy terminates with
# `bind ... ssl crt` and `use_backend if { ssl_fc_sni ... }`, and passes
# through by `req.ssl_sni` after `tcp-request inspect-delay`.
# The release build is used as it is; it is built (nice, -j1) only when a
# binary is missing, or always with BENCH_REBUILD=1. Everything started here
# is stopped by PID; every lodeload run ends by itself (count, bytes,
# timeouts) and is also bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reps=${1:-3}
handshakes=${2:-1000}
mb=${3:-300}
idle_n=${4:-1000}
requests=${5:-5000}
req_rate=${BENCH_REQ_RATE:-2500}
req_conc=4
req_bytes=100
do_strace=${BENCH_STRACE:-1}
# BENCH_DEFER_ACCEPT=1: deferred accepts (TCP_DEFER_ACCEPT) where the server
# has them, Lodestone's defer_accept and HAProxy's `defer-accept`; nginx
# 1.22's stream module has no `deferred` (its http listen does). Off by
# default, so that the three listen alike; measured on, Lodestone's system
# calls per connection did not change (its accept and the hello's receive
# still take two io_uring_enter, the second returning at once).
if [ "${BENCH_DEFER_ACCEPT:-0}" = 1 ]; then
  l_defer="defer_accept = true" h_defer=" defer-accept"
else
  l_defer="" h_defer=""
fi
# BENCH_HALF_CLOSED=MS: Lodestone's [timeouts] half_closed_ms. nginx's stream
# proxy ends a connection at the first end of stream (proxy_half_close off,
# its default) while Lodestone, like HAProxy, waits for the other side's by
# default: 0 makes Lodestone behave as nginx does (one wake-up less per
# connection).
l_half=""
if [ -n "${BENCH_HALF_CLOSED:-}" ]; then
  [[ "$BENCH_HALF_CLOSED" =~ ^[0-9]+$ ]] || { echo "BENCH_HALF_CLOSED=$BENCH_HALF_CLOSED: milliseconds expected" >&2; exit 2; }
  l_half="half_closed_ms = $BENCH_HALF_CLOSED"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true  # the idle test holds thousands of sockets
fdlim=$(ulimit -n)
[ "$fdlim" = unlimited ] && fdlim=65536
hmaxconn=$(( (fdlim - 200) / 2 ))  # HAProxy needs 2 fds per proxied connection
[ "$hmaxconn" -gt 20000 ] && hmaxconn=20000
if [ $(( 2 * idle_n + 200 )) -gt "$fdlim" ]; then
  echo "idle test: $idle_n connections need RLIMIT_NOFILE >= $(( 2 * idle_n + 200 )) (two descriptors per proxied" \
    "connection); the hard limit here is $(ulimit -Hn) (raising it needs CAP_SYS_RESOURCE): at most" \
    "$(( (fdlim - 200) / 2 )) here"
  exit 1
fi

tools/install-deps.sh >/dev/null
if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream >/dev/null
fi
if ! command -v haproxy >/dev/null; then
  # The package's service is not started here (no systemd in the VM; where
  # there is one, stop it yourself): the script runs its own haproxy -db.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
command -v h2load >/dev/null && command -v gnuplot >/dev/null || { echo "h2load or gnuplot missing (tools/install-deps.sh)"; exit 1; }
bin=$(realpath -m "${BUILD:-$root/build/release}")
if [ "${BENCH_REBUILD:-0}" = 1 ] || [ ! -x "$bin/lodestone" ] || [ ! -x "$bin/lode-backend" ] ||
   [ ! -x "$bin/lodeload" ] || [ ! -x "$bin/bench/tls_echo" ] || [ ! -x "$bin/bench/crypto_bound" ] ||
   [ ! -x "$bin/bench/openssl_ceiling" ]; then
  if [ ! -f "$bin/build.ninja" ]; then
    [ -z "${BUILD:-}" ] || { echo "BUILD=$bin is not a configured build"; exit 1; }
    cmake --preset release >/dev/null
  fi
  nice cmake --build "$bin" -j1 --target lodestone lode-backend lodeload tls_echo crypto_bound openssl_ceiling >/dev/null
fi
json_out=${BENCH_JSON:-$bin/compare_nginx.json}
report="python3 $root/bench/compare_nginx_report.py"

d=$(mktemp -d /tmp/lodestone-vs-nginx.XXXXXX)
t_start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)  # other work on the machine shows here (and in the ranges)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$d"
}
trap cleanup EXIT
source "$root/bench/bench_lib.sh"  # port, listening, cpu_ns, unlist

# bench.test: the terminated name; p.test: the passthrough name, whose
# certificate is tls_echo's (the TLS end behind the passthrough routes);
# http.test: the terminated name in front of the HTTP backend (h2load).
tools/make-test-pki.sh "$d/pki" bench.test p.test http.test >/dev/null
# The RSA-2048 leaf for rsa.test, from the same intermediate.
(
  cd "$d/pki"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.test.key 2>/dev/null
  openssl req -new -key rsa.test.key -subj "/CN=rsa.test" -out rsa.test.csr 2>/dev/null
  openssl x509 -req -in rsa.test.csr -CA intermediate.pem -CAkey intermediate.key -CAcreateserial -days 365 \
    -extfile <(printf 'subjectAltName=DNS:rsa.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n') \
    -out rsa.test.leaf.pem 2>/dev/null
  cat rsa.test.leaf.pem intermediate.pem >rsa.test.pem
  # HAProxy wants chain and key in one file.
  cat bench.test.pem bench.test.key >bench.test.haproxy.pem
  cat rsa.test.pem rsa.test.key >rsa.test.haproxy.pem
  cat http.test.pem http.test.key >http.test.haproxy.pem
)
ECHO=$(port); TECHO=$(port); TDIRECT=$(port); L_T=$(port); N_T=$(port); L_P=$(port); N_P=$(port)
L_R=$(port); N_R=$(port); H_T=$(port); H_R=$(port); H_P=$(port); HTTPB=$(port); N_H=$(port); H_H=$(port)
# One thread per connection: the idle test's connections all reach it.
taskset -c 1 "$bin/lode-backend" --listen "127.0.0.1:$ECHO" --name echo --mode echo --max-conns $(( idle_n + 1000 )) 2>/dev/null &
pids+=($!)
taskset -c 1 "$bin/lode-backend" --listen "127.0.0.1:$HTTPB" --name http --mode http 2>/dev/null &
pids+=($!)
taskset -c 1 "$bin/bench/tls_echo" --listen "127.0.0.1:$TECHO" --cert "$d/pki/p.test.pem" --key "$d/pki/p.test.key" \
  --max-conns $(( idle_n + 1000 )) 2>"$d/tls_echo.log" &
pids+=($!)
# The direct baseline: the same TLS echo where the proxies run (CPU 0), so the
# client's leg to the server is the same cross-CPU hop in both cases.
taskset -c 0 "$bin/bench/tls_echo" --listen "127.0.0.1:$TDIRECT" --cert "$d/pki/p.test.pem" --key "$d/pki/p.test.key" 2>>"$d/tls_echo.log" &
tpid=$!
pids+=($tpid)

cat >"$d/lodestone.toml" <<TOML
[[listener]]
name = "terminate"
listen = ["127.0.0.1:$L_T"]
$l_defer
[[listener]]
name = "pass"
listen = ["127.0.0.1:$L_P"]
$l_defer
[[listener]]
name = "rsa"
listen = ["127.0.0.1:$L_R"]
$l_defer
[[pool]]
name = "echo"
backends = ["127.0.0.1:$ECHO"]
[[pool]]
name = "tls_echo"
backends = ["127.0.0.1:$TECHO"]
[[pool]]
name = "http"
backends = ["127.0.0.1:$HTTPB"]
[[certificate]]
name = "bench"
cert = "$d/pki/bench.test.pem"
key = "$d/pki/bench.test.key"
[[route]]
name = "t"
listener = "terminate"
names = ["bench.test"]
action = "terminate"
pool = "echo"
certificate = "bench"
[[certificate]]
name = "http"
cert = "$d/pki/http.test.pem"
key = "$d/pki/http.test.key"
[[route]]
name = "h"
listener = "terminate"
names = ["http.test"]
action = "terminate"
pool = "http"
certificate = "http"
[[certificate]]
name = "rsa"
cert = "$d/pki/rsa.test.pem"
key = "$d/pki/rsa.test.key"
[[route]]
name = "r"
listener = "rsa"
names = ["rsa.test"]
action = "terminate"
pool = "echo"
certificate = "rsa"
[[route]]
name = "p"
listener = "pass"
names = ["p.test"]
action = "passthrough"
pool = "tls_echo"
[tls]
min_version = "1.2"
[workers]
count = 1
cpus = [0]
[timeouts]
$l_half
[log]
access = "off"
TOML

# nginx_preread PORT: nginx's stream passthrough on PORT, by SNI (ssl_preread):
# p.test to the TLS echo, any other name nowhere.
nginx_preread() {
  cat <<NGINX
  map \$ssl_preread_server_name \$pass_to {
    p.test 127.0.0.1:$TECHO;
    default 127.0.0.1:1;
  }
  server {
    listen 127.0.0.1:$1;
    ssl_preread on;
    proxy_pass \$pass_to;
  }
NGINX
}

cat >"$d/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity 01;
pid $d/nginx.pid;
error_log $d/nginx-error.log warn;
events { worker_connections 4096; }
stream {
  server {
    listen 127.0.0.1:$N_T ssl;
    ssl_certificate $d/pki/bench.test.pem;
    ssl_certificate_key $d/pki/bench.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$ECHO;
  }
  server {
    listen 127.0.0.1:$N_R ssl;
    ssl_certificate $d/pki/rsa.test.pem;
    ssl_certificate_key $d/pki/rsa.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$ECHO;
  }
  server {
    listen 127.0.0.1:$N_H ssl;
    ssl_certificate $d/pki/http.test.pem;
    ssl_certificate_key $d/pki/http.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$HTTPB;
  }
$(nginx_preread "$N_P")
}
NGINX

cat >"$d/haproxy.cfg" <<HAPROXY
global
  nbthread 1
  cpu-map 1 0
  maxconn $hmaxconn
  pidfile $d/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend terminate
  bind 127.0.0.1:$H_T ssl crt $d/pki/bench.test.haproxy.pem$h_defer
  use_backend echo if { ssl_fc_sni -i bench.test }
frontend rsa
  bind 127.0.0.1:$H_R ssl crt $d/pki/rsa.test.haproxy.pem$h_defer
  use_backend echo if { ssl_fc_sni -i rsa.test }
frontend http
  bind 127.0.0.1:$H_H ssl crt $d/pki/http.test.haproxy.pem$h_defer
  use_backend http if { ssl_fc_sni -i http.test }
frontend pass
  bind 127.0.0.1:$H_P$h_defer
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend tls_echo if { req.ssl_sni -i p.test }
backend echo
  server e1 127.0.0.1:$ECHO
backend tls_echo
  server t1 127.0.0.1:$TECHO
backend http
  server h1 127.0.0.1:$HTTPB
HAPROXY
haproxy -c -q -f "$d/haproxy.cfg" || { echo "haproxy config rejected"; exit 1; }

# The idle-memory test runs against fresh instances (one of each per run,
# started, warmed with a few handshakes, measured, stopped): a long-running
# process keeps the memory its allocator once grew to, so a second run
# against it would measure nothing. Their idle timeouts are all nginx's
# default (proxy_timeout 10 minutes): opening 10,000 connections in batches
# takes minutes, and the first must still be there when the last is up.
I_L=$(port); I_N=$(port); I_H=$(port); I_NP=$(port); I_HP=$(port)
cat >"$d/lodestone-idle.toml" <<TOML
[[listener]]
name = "terminate"
listen = ["127.0.0.1:$I_L"]
$l_defer
[[pool]]
name = "echo"
backends = ["127.0.0.1:$ECHO"]
[[certificate]]
name = "bench"
cert = "$d/pki/bench.test.pem"
key = "$d/pki/bench.test.key"
[[route]]
name = "t"
listener = "terminate"
names = ["bench.test"]
action = "terminate"
pool = "echo"
certificate = "bench"
[[pool]]
name = "tls_echo"
backends = ["127.0.0.1:$TECHO"]
[[route]]
name = "p"
listener = "terminate"
names = ["p.test"]
action = "passthrough"
pool = "tls_echo"
[tls]
min_version = "1.2"
[workers]
count = 1
cpus = [0]
[timeouts]
idle_ms = 600000
$l_half
[log]
access = "off"
TOML
cat >"$d/nginx-idle.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile $fdlim;
pid $d/nginx-idle.pid;
error_log $d/nginx-idle-error.log warn;
events { worker_connections $fdlim; }  # both sides of a proxied connection count
stream {
  server {
    listen 127.0.0.1:$I_N ssl;
    ssl_certificate $d/pki/bench.test.pem;
    ssl_certificate_key $d/pki/bench.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$ECHO;
  }
$(nginx_preread "$I_NP")
}
NGINX
cat >"$d/haproxy-idle.cfg" <<HAPROXY
global
  nbthread 1
  cpu-map 1 0
  maxconn $hmaxconn
  pidfile $d/haproxy-idle.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  maxconn $hmaxconn
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend terminate
  bind 127.0.0.1:$I_H ssl crt $d/pki/bench.test.haproxy.pem$h_defer
  use_backend echo if { ssl_fc_sni -i bench.test }
frontend pass
  bind 127.0.0.1:$I_HP$h_defer
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend tls_echo if { req.ssl_sni -i p.test }
backend echo
  server e1 127.0.0.1:$ECHO
backend tls_echo
  server t1 127.0.0.1:$TECHO
HAPROXY
haproxy -c -q -f "$d/haproxy-idle.cfg" || { echo "haproxy idle config rejected"; exit 1; }

"$bin/lodestone" run "$d/lodestone.toml" 2>"$d/lodestone.log" &
lpid=$!
pids+=($lpid)
nginx -c "$d/nginx.conf" 2>"$d/nginx.stderr" &
pids+=($!)
# cpu-map is not applied by a foreground (-db) HAProxy 2.6: pin it with taskset.
taskset -c 0 haproxy -f "$d/haproxy.cfg" -db 2>"$d/haproxy.stderr" &
hpid=$!
pids+=($hpid)
for _ in $(seq 1 50); do
  [ -s "$d/nginx.pid" ] && grep -q '"event":"start"' "$d/lodestone.log" && break
  sleep 0.1
done
npid=$(pgrep -P "$(cat "$d/nginx.pid")" | head -n 1)  # nginx's one worker
[ -n "$npid" ] || { echo "nginx did not start"; cat "$d/nginx-error.log" "$d/nginx.stderr"; exit 1; }
grep -q '"event":"start"' "$d/lodestone.log" || { echo "lodestone did not start"; cat "$d/lodestone.log"; exit 1; }
for _ in $(seq 1 50); do listening "$H_P" && listening "$TECHO" && listening "$TDIRECT" && break; sleep 0.1; done
kill -0 "$hpid" 2>/dev/null && listening "$H_P" || { echo "haproxy did not start"; cat "$d/haproxy.stderr"; exit 1; }
listening "$TECHO" && listening "$TDIRECT" || { echo "tls_echo did not start"; cat "$d/tls_echo.log"; exit 1; }
echo "measured PIDs: lodestone run (dataplane) $lpid, nginx worker $npid, haproxy $hpid; direct: tls_echo $tpid" >&2
affinity() { local t out=""; for t in /proc/"$1"/task/*; do out+="$(awk '/^Name:/{n=$2} /^Cpus_allowed_list:/{print n "=" $2}' "$t/status") "; done; echo "$out"; }
echo "CPU affinity per thread: lodestone [$(affinity "$lpid")] nginx [$(affinity "$npid")] haproxy [$(affinity "$hpid")]" >&2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# wakeups PID: voluntary context switches of all the process's threads (each
# one a sleep that something ended: an event, a timer).
wakeups() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/{n += $2} END{print n + 0}'; }
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# load_args TEST PORT [COUNT]: lodeload's arguments for one run, in largs.
load_args() {
  local w=$1 p=$2 n=${3:-$handshakes} sni=bench.test
  case $w in full-rsa) sni=rsa.test ;; pass | pass-conn | direct-requests | idle-pass) sni=p.test ;; esac
  largs=(--connect "127.0.0.1:$p" --sni "$sni" --ca "$d/pki/ca.pem" --quiet)
  case $w in
    full | full-rsa | pass-conn) largs=(handshakes "${largs[@]}" --concurrency 1 --count "$n" --request "$req_bytes") ;;
    resumed) largs=(handshakes "${largs[@]}" --concurrency 1 --count "$n" --request "$req_bytes" --resume) ;;
    requests | direct-requests)
      largs=(requests "${largs[@]}" --concurrency "$req_conc" --rate "$req_rate" --count "$requests" --request "$req_bytes") ;;
    requests-max) largs=(requests "${largs[@]}" --concurrency "$req_conc" --count "$requests" --request "$req_bytes") ;;
    bulk | pass) largs=(bulk "${largs[@]}" --bytes "${mb}Mi" --timeout-ms 10000) ;;
    idle | idle-pass) largs=(idle "${largs[@]}" --concurrency "$n" --hold 1200 --timeout-ms 10000) ;;  # ended by SIGINT
  esac
}
# load TEST PORT [COUNT]: one lodeload run on CPU 1, its JSON report on stdout
# (h2load's text report for the h2load tests: GETs of https://http.test/ over
# REQ_CONC kept connections, each at REQ_RATE / REQ_CONC per second or as fast
# as it goes; it does not verify the certificate, the other tests do).
load() {
  case $1 in
    h2load | h2load-max)
      local rate=()
      [ "$1" = h2load ] && rate=(--rps "$(( req_rate / req_conc ))")
      taskset -c 1 timeout -s INT -k 10 600 h2load --h1 -c "$req_conc" -n "$requests" "${rate[@]}" \
        --connect-to "127.0.0.1:$2" https://http.test/
      return ;;
  esac
  load_args "$@"
  taskset -c 1 timeout -s INT -k 10 600 "$bin/lodeload" "${largs[@]}"
}
ops_of() {
  case $1 in
    requests | requests-max | h2load | h2load-max) echo "$requests" ;;
    bulk | pass) echo $((2 * mb)) ;;
    idle | idle-pass) echo "$idle_n" ;;
    *) echo "$handshakes" ;;
  esac
}

# run SERVER PID PORT TEST REP: one timed run, recorded in $d/runs.jsonl.
run() {
  local server=$1 pid=$2 p=$3 w=$4 rep=$5 before after wake0 wake1 out="$d/load.json"
  wake0=$(wakeups "$pid")
  before=$(cpu_ns "$pid")
  if ! load "$([ "$server" = direct ] && echo direct-requests || echo "$w")" "$p" >"$out"; then
    echo "run failed: $w on $server (port $p): $(head -c 2000 "$out")" >&2
    exit 1
  fi
  sleep 0.3
  after=$(cpu_ns "$pid")
  wake1=$(wakeups "$pid")
  $report record "$d/runs.jsonl" "$w" "$server" "$rep" "$(ops_of "$w")" $((after - before)) 1000000000 "$out" - \
    $((wake1 - wake0))
  echo "  $w $server: $(tail -n 1 "$d/runs.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["cpu_us_per_op"], "us CPU/op,", r["rate_per_s"], "op/s; p50/p99 us:", {h: (v["p50"], v["p99"]) for h, v in r["latency_us"].items()})')" >&2
}

# quiet PORT N SERVER_PID LOAD_PID: waits (at most 120 s) until N
# connections to PORT are established and both the load and the server have
# used no CPU for 0.3 s (three 0.1 s polls) — every handshake done.
quiet() {
  local p=$1 n=$2 spid=$3 lg=$4 k c=0 q=0 lt st lt0=-1 st0=-1
  for k in $(seq 1 1200); do
    sleep 0.1
    kill -0 "$lg" 2>/dev/null || return 1
    c=$(ss -Htn state established "( sport = :$p )" | wc -l)
    lt=$(cpu_ticks "$lg" 2>/dev/null || echo x); st=$(cpu_ticks "$spid")
    if [ "$c" -ge "$n" ] && [ "$lt" = "$lt0" ] && [ "$st" = "$st0" ]; then q=$((q + 1)); else q=0; fi
    lt0=$lt; st0=$st
    [ "$q" -ge 3 ] && return 0
  done
  return 1
}

# idle_run SERVER PID PORT REP [TEST]: IDLE connections (TEST idle, the
# default, or idle-pass) opened and held by lodeload
# idle, in batches of BENCH_IDLE_BATCH (default 100; one lodeload each, the
# next once the last is quiet) so that no more handshakes are in flight at
# once than that; 1 s after the last batch, VmRSS; then every lodeload is
# stopped (SIGINT: it closes its connections and reports).
idle_run() {
  local server=$1 pid=$2 p=$3 rep=$4 test=${5:-idle} before after opened=0 n lg rc ok=1 batch=${BENCH_IDLE_BATCH:-100}
  local lgs=() outs=()
  before=$(rss_kb "$pid")
  while [ "$opened" -lt "$idle_n" ]; do
    n=$(( idle_n - opened < batch ? idle_n - opened : batch ))
    load_args "$test" "$p" "$n"
    taskset -c 1 "$bin/lodeload" "${largs[@]}" >"$d/idle-$opened.json" &  # taskset execs: $! is lodeload
    lg=$!
    pids+=($lg); lgs+=($lg); outs+=("$d/idle-$opened.json")
    opened=$((opened + n))
    quiet "$p" "$opened" "$pid" "$lg" || { ok=0; break; }
  done
  [ "$ok" = 1 ] && sleep 1
  after=$(rss_kb "$pid")
  for lg in "${lgs[@]}"; do kill -INT "$lg" 2>/dev/null || true; done
  for lg in "${lgs[@]}"; do
    rc=0; wait "$lg" || rc=$?
    unlist "$lg"
    [ "$rc" = 0 ] || ok=0
  done
  if [ "$ok" != 1 ]; then
    echo "run failed: $test on $server: $(ss -Htn state established "( sport = :$p )" | wc -l) of $idle_n connections up" >&2
    head -c 2000 "${outs[@]}" >&2
    exit 1
  fi
  $report record "$d/runs.jsonl" "$test" "$server" "$rep" "$idle_n" 0 "$hz" "$(IFS=,; echo "${outs[*]}")" \
    "$(python3 -c "print(f'{($after - $before) / $idle_n:.2f}')")"
  echo "  $test $server: $(tail -n 1 "$d/runs.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["kb_per_conn"])') KB per connection (RSS $before -> $after KB)" >&2
}

# Fresh instances for the idle test: sets il in ih (the measured PIDs) and
# im (nginx's master, which is what we started and stop).
idle_pids=()
start_idle() {
  local k
  : >"$d/lodestone-idle.log"; rm -f "$d/nginx-idle.pid"
  "$bin/lodestone" run "$d/lodestone-idle.toml" 2>"$d/lodestone-idle.log" &
  il=$!
  nginx -c "$d/nginx-idle.conf" 2>>"$d/nginx-idle.stderr" &
  im=$!
  taskset -c 0 haproxy -f "$d/haproxy-idle.cfg" -db 2>>"$d/haproxy-idle.stderr" &
  ih=$!
  idle_pids=("$il" "$im" "$ih"); pids+=("$il" "$im" "$ih")
  for k in $(seq 1 50); do
    [ -s "$d/nginx-idle.pid" ] && grep -q '"event":"start"' "$d/lodestone-idle.log" && listening "$I_H" && break
    sleep 0.1
  done
  in=$(pgrep -P "$im" | head -n 1)
  [ -n "$in" ] && listening "$I_L" && listening "$I_N" && listening "$I_H" && listening "$I_NP" && listening "$I_HP" ||
    { echo "idle-test servers did not start" >&2; exit 1; }
  for k in "$I_L" "$I_N" "$I_H"; do  # warm: the TLS context, the backend connection path
    load full "$k" 20 >"$d/load.json" || { echo "idle-test warm-up failed on port $k: $(head -c 2000 "$d/load.json")" >&2; cat "$d/lodestone-idle.log" >&2; exit 1; }
  done
  for k in "$I_L" "$I_NP" "$I_HP"; do  # and the passthrough path
    load pass-conn "$k" 20 >"$d/load.json" || { echo "idle-test passthrough warm-up failed on port $k: $(head -c 2000 "$d/load.json")" >&2; exit 1; }
  done
  sleep 0.3
}
stop_idle() {
  local p
  for p in "${idle_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${idle_pids[@]}"; do wait "$p" 2>/dev/null || true; unlist "$p"; done
  idle_pids=()
}

# traced SERVER PID PORT TEST: one more run with `strace -c -f -p PID`
# attached (all the process's threads), counted into $d/syscalls.jsonl.
traced() {
  local server=$1 pid=$2 p=$3 w=$4 sp k
  : >"$d/strace.err"
  strace -c -f -p "$pid" -o "$d/strace.txt" 2>"$d/strace.err" &
  sp=$!
  pids+=($sp)
  for k in $(seq 1 50); do  # "Process N attached with K threads": all of them held
    grep -q attached "$d/strace.err" && break
    sleep 0.1
  done
  sleep 0.2
  load "$w" "$p" >"$d/load.json" || { echo "traced run failed: $w on $server: $(head -c 2000 "$d/load.json")" >&2; exit 1; }
  sleep 0.3
  kill -INT "$sp"
  for k in $(seq 1 100); do kill -0 "$sp" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$sp" 2>/dev/null && kill -KILL "$sp"
  wait "$sp" || true
  unlist "$sp"
  $report syscalls "$d/syscalls.jsonl" "$w" "$server" "$(ops_of "$w")" "$d/strace.txt"
  echo "  strace $w $server: $(tail -n 1 "$d/syscalls.jsonl")" >&2
}

port_of() {  # port_of SERVER TEST
  case $1-$2 in
    lodestone-pass | lodestone-pass-conn) echo "$L_P" ;;
    nginx-pass | nginx-pass-conn) echo "$N_P" ;;
    haproxy-pass | haproxy-pass-conn) echo "$H_P" ;;
    lodestone-full-rsa) echo "$L_R" ;;
    nginx-full-rsa) echo "$N_R" ;;
    haproxy-full-rsa) echo "$H_R" ;;
    lodestone-h2load*) echo "$L_T" ;;  # routed by SNI (http.test)
    nginx-h2load*) echo "$N_H" ;;
    haproxy-h2load*) echo "$H_H" ;;
    lodestone-*) echo "$L_T" ;;
    nginx-*) echo "$N_T" ;;
    haproxy-*) echo "$H_T" ;;
  esac
}
declare -A PID=([lodestone]=$lpid [nginx]=$npid [haproxy]=$hpid)
servers=(lodestone nginx haproxy)

# Warm-up, not counted: each server's TLS contexts and backend paths.
for s in "${servers[@]}"; do
  for w in full full-rsa pass-conn; do
    load "$w" "$(port_of "$s" "$w")" 20 >/dev/null || { echo "warm-up failed: $w on $s" >&2; exit 1; }
  done
done

# reference REP: the crypto bound and the OpenSSL ceiling, on CPU 0 where
# the servers run (idle meanwhile), with this run's certificates.
reference() {
  taskset -c 0 timeout 300 "$bin/bench/crypto_bound" --ecdsa-key "$d/pki/bench.test.key" \
    --rsa-key "$d/pki/rsa.test.key" >"$d/bound.json" || { echo "crypto_bound failed" >&2; exit 1; }
  taskset -c 0 timeout 300 "$bin/bench/openssl_ceiling" --cert "$d/pki/bench.test.pem" --key "$d/pki/bench.test.key" \
    --rsa-cert "$d/pki/rsa.test.pem" --rsa-key "$d/pki/rsa.test.key" --handshakes "$handshakes" \
    --requests "$requests" --mib "$mb" >"$d/ceiling.json" || { echo "openssl_ceiling failed" >&2; exit 1; }
  $report reference "$d/reference.jsonl" "$1" "$d/bound.json" "$d/ceiling.json"
  echo "  reference: $(tail -n 1 "$d/reference.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("bound", r["bound_us"], "ceiling", r["ceiling_us"])') (us per op)" >&2
}

read -r -a workloads <<<"${BENCH_TESTS:-full full-rsa resumed requests h2load requests-max h2load-max bulk pass-conn pass idle}"
for r in $(seq 1 "$reps"); do
  echo "rep $r/$reps" >&2
  reference "$r"
  for w in "${workloads[@]}"; do
    if [ "$w" = idle ]; then
      start_idle
      idle_run lodestone "$il" "$I_L" "$r"
      idle_run nginx "$in" "$I_N" "$r"
      idle_run haproxy "$ih" "$I_H" "$r"
      stop_idle
      # Passthrough on fresh instances: after the terminated connections the
      # allocator would hand their memory back out and hide what these take.
      start_idle
      idle_run lodestone "$il" "$I_L" "$r" idle-pass
      idle_run nginx "$in" "$I_NP" "$r" idle-pass
      idle_run haproxy "$ih" "$I_HP" "$r" idle-pass
      stop_idle
      continue
    fi
    for s in "${servers[@]}"; do run "$s" "${PID[$s]}" "$(port_of "$s" "$w")" "$w" "$r"; done
    [ "$w" = requests ] && run direct "$tpid" "$TDIRECT" requests "$r"
  done
done

if [ "$do_strace" = 1 ]; then
  echo "system calls: one traced run per test and server" >&2
  for w in "${workloads[@]}"; do
    [ "$w" = idle ] && continue
    for s in "${servers[@]}"; do traced "$s" "${PID[$s]}" "$(port_of "$s" "$w")" "$w"; done
  done
fi

nginx_v=$(nginx -v 2>&1 | sed 's/.*\///')
haproxy_v=$(haproxy -v | awk 'NR == 1 {print $3}')  # reads it all: no SIGPIPE for haproxy under pipefail
cat >"$d/meta.json" <<JSON
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "command": "bench/compare_nginx.sh $reps $handshakes $mb $idle_n $requests",
 "tests": "${workloads[*]}", "h2load": "$(h2load --version | awk '{print $2}')",
 "nginx": "$nginx_v", "haproxy": "$haproxy_v", "openssl": "$(openssl version | awk '{print $2}')",
 "kernel": "$(uname -r)", "reps": $reps, "handshakes": $handshakes, "mb": $mb, "idle": $idle_n,
 "requests": $requests, "request_rate": $req_rate, "request_concurrency": $req_conc, "request_bytes": $req_bytes,
 "strace": $([ "$do_strace" = 1 ] && echo true || echo false), "seconds": $(( $(date +%s) - t_start )),
 "loadavg_start": "$load_start", "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "lodestone_half_closed_ms": ${BENCH_HALF_CLOSED:-null}}
JSON
echo
mkdir -p "$(dirname "$json_out")"
$report summary "$d/runs.jsonl" "$d/syscalls.jsonl" "$d/reference.jsonl" "$d/meta.json" "$json_out"
python3 "$root/bench/bench_chart.py" compare "$json_out" "${json_out%.json}"
