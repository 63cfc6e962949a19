#!/usr/bin/env bash
# Lodestone against nginx (stream module) and HAProxy (mode tcp) on the same
# machine: same certificates (ECDSA P-256, and RSA-2048 for one test), same
# backend, one worker/thread each pinned to CPU 0, the load on CPU 1. Runs
# interleaved (Lodestone, nginx, HAProxy, Lodestone, nginx, HAProxy ...) and
# reports server CPU microseconds per operation (from /proc/PID/stat, the
# figure that stays fair when one client core cannot saturate the server) with
# the ratios nginx / Lodestone and HAProxy / Lodestone for each run.
#
#   bench/compare_nginx.sh [REPS] [HANDSHAKES] [MB] [IDLE]   defaults: 3 1000 300 1000
#
# Workloads:
#   full      full TLS 1.3 handshakes (ECDSA P-256), one small request each,
#             terminate + relay to a plain backend
#   full-rsa  the same with an RSA-2048 certificate (its own port per server)
#   resumed   ECDSA with session tickets (resumed handshakes)
#   pass      SNI passthrough bulk: a ClientHello then MB megabytes each way
#             through to an echo backend (CPU per MB moved)
#   idle      memory: IDLE TLS connections handshaken (full, ECDSA) and held
#             idle 1 s; the growth of the server process's VmRSS
#             (/proc/PID/status) per connection, in KB. Fresh instances of
#             the three servers per run (warmed with 20 handshakes first),
#             since an allocator keeps what it once grew to.
#
# Which process is measured: Lodestone's dataplane, i.e. the PID of
# `lodestone run` (its control plane is a separate child process,
# `lodestone controlplane`, and is not counted); nginx's one worker (not the
# master); HAProxy's one process (`haproxy -db`, nbthread 1, no master).
# Routing: Lodestone routes by SNI; nginx `stream` terminates per listen port
# and passes through by `map $ssl_preread_server_name`; HAProxy terminates with
# `bind ... ssl crt` and `use_backend if { ssl_fc_sni ... }`, and passes
# through by `req.ssl_sni` after `tcp-request inspect-delay`.
# The release build is used as it is; it is built (nice, -j1) only when
# missing, or always with BENCH_REBUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reps=${1:-3}
handshakes=${2:-1000}
mb=${3:-300}
idle_n=${4:-1000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true  # the idle test holds thousands of sockets
fdlim=$(ulimit -n)
[ "$fdlim" = unlimited ] && fdlim=65536
hmaxconn=$(( (fdlim - 200) / 2 ))  # HAProxy needs 2 fds per proxied connection
[ "$hmaxconn" -gt 20000 ] && hmaxconn=20000
[ $(( 2 * idle_n + 100 )) -le "$fdlim" ] || { echo "idle test: $idle_n connections need more than the $fdlim fds allowed"; exit 1; }

tools/install-deps.sh >/dev/null
if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream >/dev/null
fi
if ! command -v haproxy >/dev/null; then
  # The package's service is not started here (no systemd in the VM; where
  # there is one, stop it yourself): the script runs its own haproxy -db.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
bin="$root/build/release"
if [ "${BENCH_REBUILD:-0}" = 1 ] || [ ! -x "$bin/lodestone" ] || [ ! -x "$bin/lode-backend" ]; then
  [ -f "$bin/build.ninja" ] || cmake --preset release >/dev/null
  nice cmake --build "$bin" -j1 --target lodestone lode-backend >/dev/null
fi

d=$(mktemp -d /tmp/lodestone-vs-nginx.XXXXXX)
t_start=$(date +%s)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$d"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tools/make-test-pki.sh "$d/pki" bench.test >/dev/null
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
)
HTTP=$(port); ECHO=$(port); L_T=$(port); N_T=$(port); L_P=$(port); N_P=$(port)
L_R=$(port); N_R=$(port); H_T=$(port); H_R=$(port); H_P=$(port)
taskset -c 1 "$bin/lode-backend" --listen "127.0.0.1:$HTTP" --name plain 2>/dev/null &
pids+=($!)
taskset -c 1 "$bin/lode-backend" --listen "127.0.0.1:$ECHO" --name echo --mode echo 2>/dev/null &
pids+=($!)

# The passthrough hello: curl's captured one with its SNI renamed (same length).
python3 - "$root/tests/fixtures/client_hello/curl.bin" "$d/hello.bin" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = b.index(b"\x00\x06a.test")
b[i:i + 8] = b"\x00\x06p.test"
open(sys.argv[2], "wb").write(bytes(b))
PY

cat >"$d/lodestone.toml" <<TOML
[[listener]]
name = "terminate"
listen = ["127.0.0.1:$L_T"]
[[listener]]
name = "pass"
listen = ["127.0.0.1:$L_P"]
[[listener]]
name = "rsa"
listen = ["127.0.0.1:$L_R"]
[[pool]]
name = "plain"
backends = ["127.0.0.1:$HTTP"]
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
pool = "plain"
certificate = "bench"
[[certificate]]
name = "rsa"
cert = "$d/pki/rsa.test.pem"
key = "$d/pki/rsa.test.key"
[[route]]
name = "r"
listener = "rsa"
names = ["rsa.test"]
action = "terminate"
pool = "plain"
certificate = "rsa"
[[route]]
name = "p"
listener = "pass"
names = ["p.test"]
action = "passthrough"
pool = "echo"
[tls]
min_version = "1.2"
[workers]
count = 1
cpus = [0]
[log]
access = "off"
TOML

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
    proxy_pass 127.0.0.1:$HTTP;
  }
  server {
    listen 127.0.0.1:$N_R ssl;
    ssl_certificate $d/pki/rsa.test.pem;
    ssl_certificate_key $d/pki/rsa.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$HTTP;
  }
  map \$ssl_preread_server_name \$pass_to {
    p.test 127.0.0.1:$ECHO;
    default 127.0.0.1:1;
  }
  server {
    listen 127.0.0.1:$N_P;
    ssl_preread on;
    proxy_pass \$pass_to;
  }
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
  bind 127.0.0.1:$H_T ssl crt $d/pki/bench.test.haproxy.pem
  use_backend plain if { ssl_fc_sni -i bench.test }
frontend rsa
  bind 127.0.0.1:$H_R ssl crt $d/pki/rsa.test.haproxy.pem
  use_backend plain if { ssl_fc_sni -i rsa.test }
frontend pass
  bind 127.0.0.1:$H_P
  tcp-request inspect-delay 5s
  tcp-request content accept if { req.ssl_hello_type 1 }
  use_backend echo if { req.ssl_sni -i p.test }
backend plain
  server s1 127.0.0.1:$HTTP
backend echo
  server e1 127.0.0.1:$ECHO
HAPROXY
haproxy -c -q -f "$d/haproxy.cfg" || { echo "haproxy config rejected"; exit 1; }

# The idle-memory test runs against fresh instances (one of each per run,
# started, warmed with a few handshakes, measured, stopped): a long-running
# process keeps the memory its allocator once grew to, so a second run
# against it would measure nothing.
I_L=$(port); I_N=$(port); I_H=$(port)
cat >"$d/lodestone-idle.toml" <<TOML
[[listener]]
name = "terminate"
listen = ["127.0.0.1:$I_L"]
[[pool]]
name = "plain"
backends = ["127.0.0.1:$HTTP"]
[[certificate]]
name = "bench"
cert = "$d/pki/bench.test.pem"
key = "$d/pki/bench.test.key"
[[route]]
name = "t"
listener = "terminate"
names = ["bench.test"]
action = "terminate"
pool = "plain"
certificate = "bench"
[tls]
min_version = "1.2"
[workers]
count = 1
cpus = [0]
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
events { worker_connections $(( fdlim / 2 )); }
stream {
  server {
    listen 127.0.0.1:$I_N ssl;
    ssl_certificate $d/pki/bench.test.pem;
    ssl_certificate_key $d/pki/bench.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$HTTP;
  }
}
NGINX
sed -e "/^frontend rsa/,/^  use_backend/d" -e "/^frontend pass/,/^  use_backend/d" -e "/^backend echo/,\$d" \
  -e "s/127.0.0.1:$H_T /127.0.0.1:$I_H /" -e "s#$d/haproxy.pid#$d/haproxy-idle.pid#" "$d/haproxy.cfg" >"$d/haproxy-idle.cfg"
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
listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1" 2>/dev/null; }
for _ in $(seq 1 50); do listening "$H_P" && break; sleep 0.1; done
kill -0 "$hpid" 2>/dev/null && listening "$H_P" || { echo "haproxy did not start"; cat "$d/haproxy.stderr"; exit 1; }
echo "measured PIDs: lodestone run (dataplane) $lpid, nginx worker $npid, haproxy $hpid" >&2
affinity() { local t out=""; for t in /proc/"$1"/task/*; do out+="$(awk '/^Name:/{n=$2} /^Cpus_allowed_list:/{print n "=" $2}' "$t/status") "; done; echo "$out"; }
echo "CPU affinity per thread: lodestone [$(affinity "$lpid")] nginx [$(affinity "$npid")] haproxy [$(affinity "$hpid")]" >&2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run PID PORT WORKLOAD -> prints µs (KB for idle) per op
run() {
  local pid=$1 p=$2 w=$3 before after out ops
  before=$(cpu_ticks "$pid")
  case $w in
    full) out=$(taskset -c 1 python3 bench/tls_load.py handshakes "$p" bench.test "$d/pki/ca.pem" "$handshakes"); ops=$handshakes ;;
    full-rsa) out=$(taskset -c 1 python3 bench/tls_load.py handshakes "$p" rsa.test "$d/pki/ca.pem" "$handshakes"); ops=$handshakes ;;
    resumed) out=$(taskset -c 1 python3 bench/tls_load.py handshakes "$p" bench.test "$d/pki/ca.pem" "$handshakes" resumed); ops=$handshakes ;;
    pass) out=$(taskset -c 1 python3 bench/tls_load.py bulk-raw "$p" "$d/hello.bin" "$mb"); ops=$((2 * mb)) ;;
    idle) out=$(taskset -c 1 python3 bench/tls_load.py idle "$p" bench.test "$d/pki/ca.pem" "$idle_n" "$pid") ;;
  esac
  sleep 0.3
  after=$(cpu_ticks "$pid")
  echo "  $w port $p pid $pid: $out" >&2
  case "$out" in *"failed 0"*|equal*) ;; *) echo "run failed: $w on port $p: $out" >&2; exit 1 ;; esac
  if [ "$w" = idle ]; then
    echo "$out" | awk '{print $6}'
  else
    python3 -c "print(f'{($after - $before) / $hz / $ops * 1e6:.1f}')"
  fi
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
  [ -n "$in" ] && listening "$I_L" && listening "$I_N" && listening "$I_H" || { echo "idle-test servers did not start" >&2; exit 1; }
  for k in "$I_L" "$I_N" "$I_H"; do  # warm: the TLS context, the backend connection path
    taskset -c 1 python3 bench/tls_load.py handshakes "$k" bench.test "$d/pki/ca.pem" 20 >/dev/null
  done
  sleep 0.3
}
stop_idle() {
  local p
  for p in "${idle_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${idle_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  idle_pids=()
}

workloads=(full full-rsa resumed pass idle)
declare -A L N H
for w in "${workloads[@]}"; do L[$w]=""; N[$w]=""; H[$w]=""; done
for r in $(seq 1 "$reps"); do
  echo "rep $r/$reps" >&2
  for w in "${workloads[@]}"; do
    lp=$L_T; np=$N_T; hp=$H_T
    [ "$w" = pass ] && { lp=$L_P; np=$N_P; hp=$H_P; }
    [ "$w" = full-rsa ] && { lp=$L_R; np=$N_R; hp=$H_R; }
    if [ "$w" = idle ]; then
      start_idle
      L[$w]+="$(run "$il" "$I_L" idle) "
      N[$w]+="$(run "$in" "$I_N" idle) "
      H[$w]+="$(run "$ih" "$I_H" idle) "
      stop_idle
      continue
    fi
    L[$w]+="$(run "$lpid" "$lp" "$w") "
    N[$w]+="$(run "$npid" "$np" "$w") "
    H[$w]+="$(run "$hpid" "$hp" "$w") "
  done
done

echo
echo "Lodestone vs nginx $(nginx -v 2>&1 | sed 's/.*\///') vs HAProxy $(haproxy -v | head -n 1 | awk '{print $3}'), one worker/thread each on CPU 0, load on CPU 1, $reps interleaved runs ($handshakes handshakes, $mb MB each way, $idle_n idle connections per run; $(( $(date +%s) - t_start )) s)"
printf "%-36s %-20s %-20s %-20s %-22s %s\n" "workload (server CPU per op)" "lodestone min/med/max" "nginx min/med/max" "haproxy min/med/max" "nginx/lodestone" "haproxy/lodestone"
for w in "${workloads[@]}"; do
  case $w in
    full) label="full TLS1.3 hs+request ECDSA, us" ;;
    full-rsa) label="full TLS1.3 hs+request RSA2048, us" ;;
    resumed) label="resumed hs+request, us" ;;
    pass) label="SNI passthrough, us per MB" ;;
    idle) label="idle TLS connection, KB RSS" ;;
  esac
  python3 - "$label" "${L[$w]}" "${N[$w]}" "${H[$w]}" <<'PY'
import sys, statistics
label = sys.argv[1]
l, n, h = ([float(x) for x in a.split()] for a in sys.argv[2:5])
f = lambda v: f"{min(v):.1f}/{statistics.median(v):.1f}/{max(v):.1f}"
r = lambda o: " ".join(f"{b / a:.2f}" if a > 0 else "inf" for a, b in zip(l, o))
med = lambda o: f"(med {statistics.median(o) / statistics.median(l):.2f})" if statistics.median(l) > 0 else ""
print(f"{label:<36} {f(l):<20} {f(n):<20} {f(h):<20} {r(n) + ' ' + med(n):<22} {r(h)} {med(h)}")
PY
done
