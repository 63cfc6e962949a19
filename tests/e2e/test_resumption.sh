#!/usr/bin/env bash
# Session resumption across workers: with `lodestone run --workers 2`, a
# session ticket issued by one worker resumes on the other (the ticket keys
# are shared by all workers). `openssl s_client -sess_out` takes a ticket; then
# up to 20 `-sess_in` connections (SO_REUSEPORT spreads them over the
# workers) until one shows "Reused" AND its access-log line says resumed=true
# on a different worker than the one that issued the ticket. TLS 1.3 and 1.2.
# If 20 tries never land on the other worker the check fails and says so.
# With session_tickets = false (reloaded) no ticket is accepted or issued.
source "$(dirname "$0")/lib.sh"
e2e_begin resumption 90
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
start_lodestone "$T/lode.toml" --workers 2

# The access-log line of the next connection to close (connections here are
# one at a time): waits for the line count to grow.
conn_lines() { log_count '"sni":"a.test"'; }
next_line() {  # next_line COUNT_BEFORE
  wait_log_count '"sni":"a.test"' $(($1 + 1)) 5 && last_log '"sni":"a.test"'
}

for v in tls1_3 tls1_2; do
  want="TLSv1.3"; [ $v = tls1_2 ] && want="TLSv1.2"
  n=$(conn_lines)
  # Stay half a second so TLS 1.3's NewSessionTicket arrives before exiting.
  (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile "$PKI/ca.pem" -servername a.test \
    -"$v" -sess_out "$T/sess-$v.pem" >"$T/first-$v.out" 2>&1
  assert_contains "$v: first connection is a full handshake" "$(cat "$T/first-$v.out")" "New, $want"
  check "$v: a session ticket was saved" test -s "$T/sess-$v.pem"
  first=$(next_line "$n")
  first_worker=$(jfield worker <<<"$first")
  assert_eq "$v: access log: the first connection was not resumed" false "$(jfield resumed <<<"$first")"
  crossed=no; reused=0; tries=0; workers_seen=""
  for i in $(seq 1 20); do
    tries=$i
    n=$(conn_lines)
    out=$(sclient "$P" -servername a.test -"$v" -sess_in "$T/sess-$v.pem")
    line=$(next_line "$n")
    w=$(jfield worker <<<"$line")
    workers_seen+="$w"
    if [[ "$out" == *"Reused, $want"* ]]; then
      reused=$((reused + 1))
      if [ "$(jfield resumed <<<"$line")" == true ] && [ "$w" != "$first_worker" ]; then crossed=yes; break; fi
    fi
  done
  echo "   $v: ticket from worker $first_worker; tries landed on workers [$workers_seen]; $reused of $tries reused"
  assert_eq "$v: every -sess_in connection resumed (Reused, $want)" "$tries" "$reused"
  if [[ "$workers_seen" != *[!$first_worker]* ]]; then
    fail "$v: all $tries tries landed on worker $first_worker (SO_REUSEPORT never spread them): cross-worker resumption not observed"
  else
    assert_eq "$v: a ticket issued by worker $first_worker resumed on another worker (s_client Reused + log resumed=true)" yes "$crossed"
  fi
done
assert_ge "stats: resumed handshakes counted" "$(stats handshakes_resumed)" 2

# session_tickets = false (on reload): tickets are neither accepted nor issued.
printf '\n[tls]\nsession_tickets = false\n' >>"$T/lode.toml"
assert_eq "reload with session_tickets = false" reloaded "$(reload)"
for v in tls1_3 tls1_2; do
  want="TLSv1.3"; [ $v = tls1_2 ] && want="TLSv1.2"
  out=$(sclient "$P" -servername a.test -"$v" -sess_in "$T/sess-$v.pem")
  assert_contains "$v: tickets off: an earlier ticket is not accepted (full handshake)" "$out" "New, $want"
  out=$( (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:$P" -CAfile "$PKI/ca.pem" \
    -servername a.test -"$v" 2>&1)
  assert_not_contains "$v: tickets off: no ticket issued" "$out" "TLS session ticket:"
done
finish
