#!/usr/bin/env bash
# Saturation and scaling across cores: Lodestone, nginx (stream) and HAProxy
# (mode tcp) terminating TLS 1.3 (ECDSA P-256) and relaying a 100-byte echo,
# each given N cores (Lodestone N workers, nginx N worker processes with
# reuseport, HAProxy N threads), driven to saturation by one lodeload per
# remaining core. compare_nginx.sh measures CPU per operation one connection
# at a time on a 2-core machine, where one client core cannot saturate one
# server core; this one needs a machine with more cores and measures what a
# saturated server does: handshakes per second, its CPU per handshake, how
# busy its cores were, and how the rate grows with N (rate(N) / (N x rate(1))).
#
#   bench/scaling.sh [CORES] [SECONDS] [REPS]
#       CORES    server core counts, default "1 2 4" (each must leave a core
#                for the load: the servers take CPUs 0..N-1, the backends the
#                last CPU (the last two from 12 CPUs), the load the rest)
#       SECONDS  length of each timed run, default 4
#       REPS     interleaved rounds (Lodestone, nginx, HAProxy) per N, default 2
#   BUILD=DIR               Lodestone's build (default build/release)
#   NGINX=PATH HAPROXY=PATH NGINX_STREAM_MODULE=PATH  the peers (default: the
#                           Debian packages, installed if absent)
#   BENCH_JSON=FILE         where the JSON goes (default BUILD/scaling.json)
#   SCALE_CONCURRENCY=C     connections in flight per lodeload (default 16)
#   SCALE_SERVERS="A B"     the servers, in this order (default "lodestone nginx
#                           haproxy"; also lodestone-procs, lodestone-osslrec:
#                           see start_server)
#   SCALE_TESTS="A B"       the tests (default "full resumed")
#
# Tests: full (full handshake + 100 B echoed through the relay, close) and
# resumed (the same resuming by session ticket; each lodeload's first
# connection is full). The load does not verify the certificate (--insecure):
# a client's verification costs more than a server's signature, and the point
# is to saturate the server with as few load cores as possible. The measured
# CPU is the whole server: Lodestone's dataplane process (not its control
# plane), all of nginx's workers, HAProxy's process. Everything started here is
# stopped by PID; every lodeload ends by itself and is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cores_list=${1:-"1 2 4"}
secs=${2:-4}
reps=${3:-2}
conc=${SCALE_CONCURRENCY:-16}
ncpu=$(nproc)
bin=$(realpath -m "${BUILD:-$root/build/release}")
for b in lodestone lode-backend lodeload; do
  [ -x "$bin/$b" ] || { echo "$bin/$b missing: build first (cmake --preset release && cmake --build build/release)"; exit 1; }
done
if [ -z "${NGINX:-}${HAPROXY:-}" ] && { ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null ||
  [ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]; }; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx libnginx-mod-stream haproxy >/dev/null
fi
nginx=${NGINX:-nginx}
haproxy=${HAPROXY:-haproxy}
stream_module=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}
json_out=${BENCH_JSON:-$bin/scaling.json}
if [ "$ncpu" -ge 12 ]; then backend_cpus="$((ncpu - 2)),$((ncpu - 1))"; last_load=$((ncpu - 3))
else backend_cpus="$((ncpu - 1))"; last_load=$((ncpu - 2)); fi
for n in $cores_list; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le "$last_load" ] ||
    { echo "CORES: $n does not fit $ncpu CPUs (servers 0..N-1, load up to CPU $last_load, backends $backend_cpus)"; exit 2; }
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
fdlim=$(ulimit -n)
[ "$fdlim" = unlimited ] && fdlim=65536
maxconn=$(( (fdlim - 200) / 2 ))  # two descriptors per proxied connection

d=$(mktemp -d /tmp/lodestone-scaling.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$d"
}
trap cleanup EXIT
source "$root/bench/bench_lib.sh"  # port, listening, cpu_ns, unlist
stop() { local p; for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; unlist "$p"; done; }

tools/make-test-pki.sh "$d/pki" bench.test >/dev/null
cat "$d/pki/bench.test.pem" "$d/pki/bench.test.key" >"$d/pki/bench.test.haproxy.pem"
ECHO=$(port)
taskset -c "$backend_cpus" "$bin/lode-backend" --listen "127.0.0.1:$ECHO" --name echo --mode echo --max-conns 20000 2>/dev/null &
pids+=($!)
for _ in $(seq 1 50); do listening "$ECHO" && break; sleep 0.1; done

# The OpenSSL ceiling (bench/openssl_ceiling: libssl's server side alone, a
# client and a server over a BIO pair, no network) on CPU 0, once, when the
# build has it: each server's CPU per handshake as a multiple of it.
ceiling=-
if [ -x "$bin/bench/openssl_ceiling" ]; then
  ceiling=$d/ceiling.json
  taskset -c 0 timeout 300 "$bin/bench/openssl_ceiling" --cert "$d/pki/bench.test.pem" --key "$d/pki/bench.test.key" \
    --rsa-cert "$d/pki/bench.test.pem" --rsa-key "$d/pki/bench.test.key" --handshakes 2000 --requests 100 --mib 1 \
    >"$ceiling" || { echo "openssl_ceiling failed"; exit 1; }
fi
{
  echo "machine: $ncpu CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
  echo "layout: servers on CPUs 0..N-1, backend (lode-backend echo) on $backend_cpus, one lodeload per other CPU up to $last_load"
  echo "peers: $("$nginx" -v 2>&1 | head -n 1), $("$haproxy" -v 2>&1 | head -n 1)"
} | tee "$d/machine.txt" >&2

# lodestone_conf N PORT DIR [EXTRA_TLS]: a Lodestone configuration with N
# workers on CPUs 0..N-1 (one worker on CPU C when N is given as "1@C"),
# its run and state directories under DIR.
lodestone_conf() {
  local n=$1 p=$2 dir=$3 extra=${4:-} cpus
  if [[ "$n" == 1@* ]]; then cpus=${n#1@}; n=1; else cpus=$(seq -s, 0 $((n - 1))); fi
  mkdir -p "$dir/run" "$dir/state"
  cat <<TOML
[[listener]]
name = "terminate"
listen = ["127.0.0.1:$p"]
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
[tls]
min_version = "1.2"
$extra
[workers]
count = $n
cpus = [$cpus]
[control]
run_dir = "$dir/run"
state_dir = "$dir/state"
[log]
access = "off"
TOML
}

# start_server NAME N: one of the servers on CPUs 0..N-1; sets PORT[NAME],
# MEASURED[NAME] (the PIDs whose CPU counts) and STOP[NAME] (what to stop).
#   lodestone          one process, N workers
#   lodestone-procs    N processes of one worker each on the same port
#                      (SO_REUSEPORT), like nginx's worker processes; each its
#                      own ticket keys, so only for full handshakes
#   lodestone-osslrec  one process, N workers, `[tls] own_records = false`
#                      (OpenSSL's record layer after the handshake)
#   nginx              N worker processes, reuseport, pinned one per CPU
#   haproxy            one process, N threads
declare -A PORT MEASURED STOP
start_server() {
  local name=$1 n=$2 cpus masks="" i p pid master w
  cpus=$(seq -s, 0 $((n - 1)))
  p=$(port)
  PORT[$name]=$p
  case $name in
    lodestone | lodestone-osslrec)
      local extra=""
      [ "$name" = lodestone-osslrec ] && extra="own_records = false"
      lodestone_conf "$n" "$p" "$d/$name-$n" "$extra" >"$d/$name-$n.toml"
      "$bin/lodestone" run "$d/$name-$n.toml" 2>"$d/$name-$n.log" &
      pid=$!
      pids+=($pid)
      MEASURED[$name]=$pid STOP[$name]=$pid ;;
    lodestone-procs)
      MEASURED[$name]="" STOP[$name]=""
      for i in $(seq 0 $((n - 1))); do
        lodestone_conf "1@$i" "$p" "$d/$name-$n-$i" >"$d/$name-$n-$i.toml"
        "$bin/lodestone" run "$d/$name-$n-$i.toml" 2>"$d/$name-$n-$i.log" &
        pids+=($!)
        MEASURED[$name]+="$! " STOP[$name]+="$! "
      done ;;
    nginx)
      for i in $(seq 0 $((n - 1))); do masks+=" $(python3 -c "print(format(1 << $i, 'b'))")"; done
      cat >"$d/nginx-$n.conf" <<NGINX
load_module $stream_module;
daemon off;
master_process on;
worker_processes $n;
worker_cpu_affinity$masks;
worker_rlimit_nofile $fdlim;
pid $d/nginx-$n.pid;
error_log $d/nginx-error.log warn;
events { worker_connections $maxconn; }
stream {
  server {
    listen 127.0.0.1:$p ssl reuseport;
    ssl_certificate $d/pki/bench.test.pem;
    ssl_certificate_key $d/pki/bench.test.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    proxy_pass 127.0.0.1:$ECHO;
  }
}
NGINX
      "$nginx" -e "$d/nginx-early.log" -c "$d/nginx-$n.conf" 2>"$d/nginx.stderr" &
      master=$!
      pids+=($master)
      STOP[$name]=$master ;;
    haproxy)
      cat >"$d/haproxy-$n.cfg" <<HAPROXY
global
  nbthread $n
  maxconn $maxconn
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend terminate
  bind 127.0.0.1:$p ssl crt $d/pki/bench.test.haproxy.pem
  use_backend echo if { ssl_fc_sni -i bench.test }
backend echo
  server e1 127.0.0.1:$ECHO
HAPROXY
      # A foreground (-db) HAProxy 2.6 does not apply cpu-map: taskset pins it.
      taskset -c "$cpus" "$haproxy" -f "$d/haproxy-$n.cfg" -db 2>"$d/haproxy.stderr" &
      pid=$!
      pids+=($pid)
      MEASURED[$name]=$pid STOP[$name]=$pid ;;
    *) echo "SCALE_SERVERS: unknown server $name"; exit 2 ;;
  esac
  for _ in $(seq 1 100); do
    listening "$p" && break
    # shellcheck disable=SC2086
    kill -0 ${STOP[$name]} 2>/dev/null || break
    sleep 0.1
  done
  listening "$p" || { echo "$name did not start"; cat "$d/$name"*.log "$d/nginx-error.log" "$d/"*.stderr 2>/dev/null; exit 1; }
  if [ "$name" = nginx ]; then
    for _ in $(seq 1 50); do
      w=$(pgrep -P "$master" | tr '\n' ' ')
      [ "$(wc -w <<<"$w")" -eq "$n" ] && break
      sleep 0.1
    done
    [ "$(wc -w <<<"$w")" -eq "$n" ] || { echo "nginx: $n workers expected, saw: $w"; exit 1; }
    MEASURED[$name]=$w
  fi
}

# run N SERVER TEST REP PORT PIDS...: one timed run; each load CPU runs one
# lodeload for SECONDS; the server's CPU and the wall clock from the first
# start to the last end. Recorded in $d/runs.jsonl.
run() {
  local n=$1 server=$2 test=$3 rep=$4 p=$5 cpu0 cpu1 t0 t1 c lpids=() outs=() extra=()
  shift 5
  [ "$test" = resumed ] && extra=(--resume)
  cpu0=$(cpu_ns "$@")
  t0=$(date +%s%N)
  for c in $(seq "$n" "$last_load"); do
    taskset -c "$c" timeout -s INT -k 10 $((secs + 60)) "$bin/lodeload" handshakes --connect "127.0.0.1:$p" \
      --sni bench.test --insecure --concurrency "$conc" --duration "$secs" --request 100 --timeout-ms 10000 \
      --quiet "${extra[@]}" >"$d/load-$c.json" &
    lpids+=($!)
    outs+=("$d/load-$c.json")
  done
  pids+=("${lpids[@]}")
  for c in "${lpids[@]}"; do
    wait "$c" || { echo "lodeload failed: $test on $server, N=$n: $(head -c 2000 "${outs[0]}")" >&2; exit 1; }
    unlist "$c"
  done
  t1=$(date +%s%N)
  cpu1=$(cpu_ns "$@")
  python3 "$root/bench/scaling_report.py" record "$d/runs.jsonl" "$test" "$server" "$n" "$rep" \
    $((cpu1 - cpu0)) $((t1 - t0)) "${outs[@]}"
}

read -r -a servers <<<"${SCALE_SERVERS:-lodestone nginx haproxy}"
read -r -a tests <<<"${SCALE_TESTS:-full resumed}"
for n in $cores_list; do
  for name in "${servers[@]}"; do
    start_server "$name" "$n"
    echo "N=$n: $name measured PIDs ${MEASURED[$name]}" >&2
  done
  # Warm-up, not recorded: each server's first handshakes (caches, allocators).
  secs_saved=$secs; secs=1
  # shellcheck disable=SC2086
  for name in "${servers[@]}"; do run "$n" "$name" warm 0 "${PORT[$name]}" ${MEASURED[$name]} >/dev/null; done
  secs=$secs_saved
  for rep in $(seq 1 "$reps"); do
    for test in "${tests[@]}"; do
      for name in "${servers[@]}"; do
        [ "$test:$name" = resumed:lodestone-procs ] && continue  # each process its own ticket keys
        # shellcheck disable=SC2086
        run "$n" "$name" "$test" "$rep" "${PORT[$name]}" ${MEASURED[$name]}
      done
    done
  done
  # shellcheck disable=SC2086
  for name in "${servers[@]}"; do stop ${STOP[$name]}; done
done
python3 "$root/bench/scaling_report.py" report "$d/runs.jsonl" "$d/machine.txt" "$ceiling" "$json_out" "$secs" "$conc"
