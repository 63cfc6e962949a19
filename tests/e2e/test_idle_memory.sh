#!/usr/bin/env bash
# Memory an idle terminated TLS connection costs the dataplane (issue 8: at
# most 6 KB): lodestone (one worker, an echo backend) holds 1,000 idle TLS 1.3
# connections opened by lodeload idle, 100 at a time (handshaken, then
# quiet), and the growth of its VmRSS is divided by 1,000.
# - With Lodestone's own record layer (`[tls] own_records`, the default where
#   the kernel does not take the records; `ktls = false` here so that the
#   kernel never does) the connection's SSL is freed after the handshake:
#   at most 6 KB per connection;
# - with `own_records = false` OpenSSL keeps its SSL (about 14 KB): the same
#   measure must come out well above, so the test tells the two apart.
# RSS, not a time: the worker gives its heap's free pages back once its
# counters have stood still (heap_trim), which the wait below allows for.
source "$(dirname "$0")/lib.sh"
e2e_begin idle_memory 150
: "${LODELOAD:=$(dirname "$LODESTONE")/lodeload}"
make_pki a.test
N=1000
# Two descriptors per proxied connection, and lodeload's.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PA=$(free_port)
start_backend app "$PA" echo --max-conns $((2 * N + 100))

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }

# measure NAME TOML: KB of VmRSS per idle connection, into KB_$NAME.
measure() {
  local name=$1 extra=$2 p lg before after rc k
  p=$(free_port)
  a_test_config "$T/$name.toml" "$p" "$PA"
  printf '\n[tls]\nktls = false\n%s\n' "$extra" >>"$T/$name.toml"
  start_lodestone "$T/$name.toml" --workers 1
  assert_eq "$name: the start event says who seals the records" "$([ "$name" = own ] && echo true || echo false)" \
    "$(grep -F '"event":"start"' "$LLOG" | head -n 1 | jfield own_records)"
  # Warm: the certificate's context, the backend path, OpenSSL's tables.
  "$LODELOAD" handshakes --connect "127.0.0.1:$p" --sni a.test --ca "$PKI/ca.pem" --count 50 --concurrency 10 \
    --request 100 --quiet >"$T/warm-$name.json" 2>&1
  check "$name: warm-up handshakes" [ $? -eq 0 ]
  sleep 1.5
  before=$(rss_kb "$LPID")
  # 100 at a time, as bench/compare_nginx.sh does: every allocator keeps
  # something of many handshakes in flight together (500 at once measure
  # several KB more for both layers).
  local lgs=() b
  for b in $(seq 1 $((N / 100))); do
    "$LODELOAD" idle --connect "127.0.0.1:$p" --sni a.test --ca "$PKI/ca.pem" --concurrency 100 --hold 25 \
      --timeout-ms 20000 --quiet >"$T/idle-$name-$b.json" 2>"$T/idle-$name-$b.log" &
    lg=$!
    PIDS+=("$lg"); lgs+=("$lg")
    wait_for 30 bash -c "[ \$(ss -Htn state established '( sport = :$p )' | wc -l) -ge $((b * 100)) ]"
  done
  check "$name: $N connections up" [ "$(established "$p")" -ge "$N" ]
  # Quiet: the handshakes done, the heap trimmed (the worker trims once its
  # counters stand still for 0.5 s): VmRSS the same three times 0.5 s apart.
  local same=0 last=0 now
  for _ in $(seq 1 20); do
    sleep 0.5
    now=$(rss_kb "$LPID")
    if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
    last=$now
    [ "$same" -ge 2 ] && break
  done
  after=$(rss_kb "$LPID")
  echo "  $name: $(established "$p") connections held, VmRSS $before -> $after KB"
  printf -v "OWN_$name" '%s' "$(stats own_records)"
  rc=0
  for lg in "${lgs[@]}"; do wait "$lg" || rc=$?; done
  check "$name: lodeload idle exit 0 (every connection handshaken and held)" [ "$rc" -eq 0 ]
  k=$(python3 -c "print(f'{($after - $before) / $N:.2f}')")
  echo "  $name: $k KB per idle TLS connection"
  printf -v "KB_$name" '%s' "$k"
  kill -TERM "$LPID"
  wait_for 10 bash -c "! kill -0 $LPID 2>/dev/null"
}

measure own ""
measure openssl "own_records = false"
assert_le "own record layer: KB per idle TLS connection (issue 8: <= 6)" "$KB_own" 6
assert_ge "OpenSSL's record layer: KB per idle TLS connection (its SSL kept: > 10)" "$KB_openssl" 10
assert_ge "own record layer: the worker's own_records counter" "$OWN_own" "$N"
assert_eq "own_records = false: own_records counter" 0 "$OWN_openssl"
finish
