#!/usr/bin/env bash
# Hostile and broken clients, each with its defined answer, and the worker
# keeps serving after every one of them:
#   slowloris (a real ClientHello at 1 byte/s), a silent client, and a client
#   that stalls inside the TLS handshake: cut at [timeouts] hello_ms (2 s
#   here), counted in hello_timeouts;
#   a client gone after half a ClientHello, or gone mid-handshake: closed,
#   nothing leaks (active back to 0);
#   malformed hellos made from the parser's fixtures and from a real Python
#   hello: the fatal alert record 15 03 03 00 02 02 <code> (decode_error 50,
#   illegal_parameter 47, record_overflow 22, protocol_version 70,
#   unexpected_message 10), then close;
#   plain HTTP on the TLS port: "HTTP/1.1 400 Bad Request";
#   an SSLv2 hello and other protocols: closed without a byte;
#   an established connection left idle: closed at [timeouts] idle_ms.
source "$(dirname "$0")/lib.sh"
e2e_begin client_faults 90
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
cat >>"$T/lode.toml" <<TOML

[timeouts]
hello_ms = 2000
idle_ms = 3000
TOML
start_lodestone "$T/lode.toml" --workers 2
fds_before=$(fd_count)
serving() { [[ "$(lcurl a.test "$P")" == *backend=app* ]]; }
seconds_of() { sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$1" | head -n 1; }

netclient hello --sni a.test --out "$T/hello.bin"
FIX="$LODE_SOURCE_DIR/tests/fixtures/client_hello"

# --- slow and silent clients, all three at once (each bounded at 15 s)
netclient slow --port "$P" --file "$T/hello.bin" --interval 1 --max-seconds 15 >"$T/slow.out" &
S1=$!
netclient raw --port "$P" --text "" --wait 15 >"$T/silent.out" &
S2=$!
netclient raw --port "$P" --file "$T/hello.bin" --wait 15 >"$T/stall.out" &
S3=$!
PIDS+=("$S1" "$S2" "$S3")
wait $S1 $S2 $S3
out=$(cat "$T/slow.out"); echo "   slowloris: $out"
assert_match "slowloris (1 byte/s): the server ends the connection" "$out" "end=(reset|eof)"
assert_ge "slowloris: not before hello_ms (2 s)" "$(seconds_of "$out")" 1.8
assert_le "slowloris: cut within 4 s" "$(seconds_of "$out")" 4
out=$(cat "$T/silent.out"); echo "   silent: ${out%%$'\n'*}"
assert_match "silent client: the server ends the connection" "$out" "end=(reset|eof)"
assert_ge "silent client: not before hello_ms" "$(seconds_of "$out")" 1.8
assert_le "silent client: cut within 4 s" "$(seconds_of "$out")" 4
out=$(cat "$T/stall.out"); echo "   stalled handshake: ${out%%$'\n'*}"
assert_match "client stalled in the TLS handshake: the server ends the connection" "$out" "end=(reset|eof)"
assert_le "stalled handshake: cut within 4 s" "$(seconds_of "$out")" 4
assert_ge "stats: hello_timeouts counted all three" "$(stats hello_timeouts)" 3
wait_for 3 grep -q '"phase":"handshake".*"result":"hello_timeout"' "$LLOG"
assert_ge "access log: slowloris and the silent client cut in phase hello" \
  "$(grep '"result":"hello_timeout"' "$LLOG" | grep -c '"phase":"hello"')" 2
assert_ge "access log: the stalled handshake cut in phase handshake" \
  "$(grep -c '"phase":"handshake".*"result":"hello_timeout"' "$LLOG")" 1
check "still serving after the slow clients" serving

# --- clients that go away
head -c 100 "$T/hello.bin" >"$T/half.bin"
out=$(netclient raw --port "$P" --file "$T/half.bin" --close)
assert_contains "half a ClientHello, then the client closes" "$out" "end=closed_by_client"
wait_for 3 grep -q '"result":"hello:eof"' "$LLOG"
assert_ge "access log: hello:eof for the half hello" "$(grep -c '"result":"hello:eof"' "$LLOG")" 1
out=$(netclient abort-handshake --port "$P" --sni a.test)
assert_match "client gone mid-handshake (after the server's first flight)" "$out" "server_first_flight=[1-9]"
wait_for 3 grep -q '"result":"handshake:' "$LLOG"
assert_ge "access log: the abandoned handshake is logged" "$(grep -c '"result":"handshake:' "$LLOG")" 1
# What ended it is the client's FIN, as "hello:eof" says for the half hello.
assert_eq "access log: the abandoned handshake's result says the client left" "handshake:eof" \
  "$(last_log '"result":"handshake:' | jfield result)"
check "still serving after the clients that left" serving

# --- malformed hellos: alert record 15 03 03 00 02 02 <code>, then close
alert_case() {  # alert_case NAME FILE CODE_HEX REASON
  local out
  out=$(netclient raw --port "$P" --file "$2" --wait 5)
  assert_contains "$1: alert $3" "$out" "bytes=7 hex=150303000202$3"
  assert_contains "$1: then closed" "$out" "end=eof"
  wait_for 3 grep -q "\"result\":\"hello:$4\"" "$LLOG"
  assert_ge "$1: logged as hello:$4" "$(grep -c "\"result\":\"hello:$4\"" "$LLOG")" 1
}
netclient mutate "$FIX/openssl_tls13.bin" "$T/m1.bin" ext-len+1
alert_case "fixture openssl_tls13 with its extensions length off by one" "$T/m1.bin" 32 bad_extensions_block
netclient mutate "$FIX/curl.bin" "$T/m2.bin" dup-ext
alert_case "fixture curl with a duplicated extension" "$T/m2.bin" 32 duplicate_extension
netclient mutate "$FIX/openssl_tls13.bin" "$T/m3.bin" two-names
alert_case "fixture openssl_tls13 with two host names" "$T/m3.bin" 32 multiple_server_names
netclient mutate "$FIX/openssl_tls13.bin" "$T/m4.bin" name-nul
alert_case "fixture openssl_tls13 with a NUL in the host name" "$T/m4.bin" 2f bad_host_name
netclient mutate "$FIX/openssl_tls12.bin" "$T/m5.bin" record-overflow
alert_case "fixture openssl_tls12 with a record longer than 2^14" "$T/m5.bin" 16 record_too_long
netclient mutate "$T/hello.bin" "$T/m6.bin" byte:9:02
alert_case "Python's hello with legacy_version 2.x" "$T/m6.bin" 46 bad_legacy_version
netclient mutate "$FIX/openssl_tls13.bin" "$T/m7.bin" byte:5:02
alert_case "fixture openssl_tls13 as a ServerHello" "$T/m7.bin" 0a not_client_hello
netclient mutate "$FIX/openssl_tls13.bin" "$T/m8.bin" byte:0:17
alert_case "application data before the hello" "$T/m8.bin" 0a unexpected_content_type
assert_ge "stats: hello_errors counted" "$(stats hello_errors)" 8
check "still serving after the malformed hellos" serving

# --- not TLS at all
out=$(netclient raw --port "$P" --text 'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n' --wait 5)
assert_contains "plain HTTP on the TLS port: 400 Bad Request" "$out" "text=HTTP/1.1 400 Bad Request"
assert_contains "plain HTTP: then closed" "$out" "end=eof"
out=$(timeout 10 curl -s -i --max-time 5 "http://127.0.0.1:$P/")
assert_contains "curl http:// on the TLS port: 400 Bad Request" "$out" "400 Bad Request"
# SSLv2 CLIENT-HELLO: 2-byte header (high bit set, length 46), msg 1, version
# 0.2, 21 bytes of cipher specs, no session id, a 16-byte challenge.
SSLV2=802e0100020015000000100700c0050080030080010080060040040080020080
SSLV2+=0123456789abcdef0123456789abcdef
out=$(netclient raw --port "$P" --hex "$SSLV2" --wait 5)
assert_contains "SSLv2 hello: closed" "$out" "end=eof"
assert_contains "SSLv2 hello: without a byte" "$out" "bytes=0"
out=$(netclient raw --port "$P" --text 'SSH-2.0-OpenSSH_9.2p1\r\n' --wait 5)
assert_match "an SSH client: closed without a byte" "$out" "end=eof .*bytes=0 "
wait_for 3 grep -q '"result":"hello:sslv2_hello"' "$LLOG"
assert_ge "access log: SSLv2 logged as such" "$(grep -c '"result":"hello:sslv2_hello"' "$LLOG")" 1
assert_ge "stats: hello_not_tls counted" "$(stats hello_not_tls)" 4

# --- an established connection left idle: cut at idle_ms (3 s)
out=$(netclient keepalive --port "$P" --sni a.test --ca "$PKI/ca.pem" --requests 1 --hold 10)
echo "   idle: $(tr '\n' ' ' <<<"$out")"
assert_contains "idle connection: its request was served" "$out" "ok=1 failed=0"
assert_match "idle connection: ended by the server" "$out" "server_end=(eof|error)"
held=$(sed -n 's/.*held=\([0-9.]*\).*/\1/p' <<<"$out")
assert_ge "idle connection: not before idle_ms" "${held:-0}" 2.8
assert_le "idle connection: within idle_ms + 1.5 s" "${held:-99}" 4.5
assert_ge "stats: idle_timeouts counted" "$(stats idle_timeouts)" 1

# --- afterwards: serving, nothing leaked
bad=0
for _ in $(seq 1 10); do serving || bad=$((bad + 1)); done
assert_eq "10 requests after all of the above succeed (both workers)" 0 "$bad"
check "nothing left open (active 0)" wait_stat_eq active 0 6
wait_for 3 fds_back_to "$fds_before"
assert_le "no file descriptor leaked (lodestone had $fds_before at start)" "$(fd_count)" "$fds_before"
finish
