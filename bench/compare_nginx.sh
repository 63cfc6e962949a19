#!/usr/bin/env bash
# Lodestone against nginx (stream module) on the same machine, same
# certificate (ECDSA P-256), same backend, one worker each pinned to CPU 0,
# the load on CPU 1. Runs interleaved (Lodestone, nginx, Lodestone, nginx ...)
# and reports server CPU microseconds per operation (from /proc/PID/stat, the
# figure that stays fair when one client core cannot saturate the server)
# with the ratio nginx / Lodestone for each pair.
#
#   bench/compare_nginx.sh [REPS] [HANDSHAKES] [MB]      defaults: 3 1000 300
#
# Workloads:
#   full     full TLS 1.3 handshakes, one small request each, terminate + relay
#   resumed  the same with session tickets (resumed handshakes)
#   pass     SNI passthrough bulk: a ClientHello then MB megabytes each way
#            through to an echo backend (CPU per GB moved)
# This is the first slice of the nginx comparison (issue 8): no HAProxy, no
# io_uring load generator yet; see the README's performance section.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
reps=${1:-3}
handshakes=${2:-1000}
mb=${3:-300}

tools/install-deps.sh >/dev/null
if ! command -v nginx >/dev/null || [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream >/dev/null
fi
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" >/dev/null
bin="$root/build/release"

d=$(mktemp -d /tmp/lodestone-vs-nginx.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$d"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tools/make-test-pki.sh "$d/pki" bench.test >/dev/null
HTTP=$(port); ECHO=$(port); L_T=$(port); N_T=$(port); L_P=$(port); N_P=$(port)
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

"$bin/lodestone" run "$d/lodestone.toml" 2>"$d/lodestone.log" &
lpid=$!
pids+=($lpid)
nginx -c "$d/nginx.conf" 2>"$d/nginx.stderr" &
pids+=($!)
for _ in $(seq 1 50); do
  [ -s "$d/nginx.pid" ] && grep -q '"event":"start"' "$d/lodestone.log" && break
  sleep 0.1
done
npid=$(pgrep -P "$(cat "$d/nginx.pid")" | head -n 1)  # nginx's one worker
[ -n "$npid" ] || { echo "nginx did not start"; cat "$d/nginx-error.log" "$d/nginx.stderr"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run PID PORT WORKLOAD -> prints "µs_per_op seconds"
run() {
  local pid=$1 p=$2 w=$3 before after out ops
  before=$(cpu_ticks "$pid")
  case $w in
    full) out=$(taskset -c 1 python3 bench/tls_load.py handshakes "$p" bench.test "$d/pki/ca.pem" "$handshakes"); ops=$handshakes ;;
    resumed) out=$(taskset -c 1 python3 bench/tls_load.py handshakes "$p" bench.test "$d/pki/ca.pem" "$handshakes" resumed); ops=$handshakes ;;
    pass) out=$(taskset -c 1 python3 bench/tls_load.py bulk-raw "$p" "$d/hello.bin" "$mb"); ops=$((2 * mb)) ;;
  esac
  sleep 0.3
  after=$(cpu_ticks "$pid")
  case "$out" in *"failed 0"*|equal*) ;; *) echo "run failed: $w on port $p: $out" >&2; exit 1 ;; esac
  python3 -c "print(f'{($after - $before) / $hz / $ops * 1e6:.1f}')"
}

declare -A L N
for w in full resumed pass; do L[$w]=""; N[$w]=""; done
for r in $(seq 1 "$reps"); do
  for w in full resumed pass; do
    lp=$L_T; np=$N_T
    [ "$w" = pass ] && { lp=$L_P; np=$N_P; }
    L[$w]+="$(run "$lpid" "$lp" "$w") "
    N[$w]+="$(run "$npid" "$np" "$w") "
  done
done

echo
echo "Lodestone vs nginx $(nginx -v 2>&1 | sed 's/.*\///'), one worker each on CPU 0, load on CPU 1, $reps interleaved runs"
printf "%-34s %-24s %-24s %s\n" "workload (server CPU per op)" "lodestone min/med/max" "nginx min/med/max" "nginx/lodestone per pair"
for w in full resumed pass; do
  case $w in
    full) label="full TLS 1.3 handshake+request, us" ;;
    resumed) label="resumed handshake+request, us" ;;
    pass) label="passthrough, us per MB" ;;
  esac
  python3 - "$label" "${L[$w]}" "${N[$w]}" <<'PY'
import sys, statistics
label, l, n = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
f = lambda v: f"{min(v):.1f}/{statistics.median(v):.1f}/{max(v):.1f}"
ratios = " ".join(f"{b / a:.2f}x" if a > 0 else "inf" for a, b in zip(l, n))
print(f"{label:<34} {f(l):<24} {f(n):<24} {ratios}")
PY
done
