#!/usr/bin/env bash
# Bulk: 100 MiB each way through termination (TLS client -> Lodestone ->
# plaintext echo backend) and through passthrough (TLS client -> Lodestone ->
# TLS echo backend holding its own key): the SHA-256 of what comes back equals
# what was sent, the session ends cleanly (close_notify and half-closes passed
# on both ways), the access log counts every byte and the passthrough relay
# moved its bytes by splice. Release build only (ctest registers it there).
source "$(dirname "$0")/lib.sh"
e2e_begin bulk 110
make_pki a.test echo.test

MB=${BULK_MB:-100}
BYTES=$((MB * 1048576))
P=$(free_port); PE=$(free_port); PT=$(free_port)
start_backend echo "$PE" echo
start_pyserver tlsecho "$PT" --cert "$PKI/echo.test.pem" --key "$PKI/echo.test.key" --mode echo
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "echo"
backends = ["127.0.0.1:$PE"]

[[pool]]
name = "tlsecho"
backends = ["127.0.0.1:$PT"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "pki/a.test.key"

[[route]]
name = "term"
names = ["a.test"]
action = "terminate"
pool = "echo"
certificate = "a"

[[route]]
name = "pass"
names = ["echo.test"]
action = "passthrough"
pool = "tlsecho"
TOML
start_lodestone "$T/lode.toml" --workers 2

out=$(NETCLIENT_TIMEOUT=50 netclient bulk --port "$P" --sni a.test --ca "$PKI/ca.pem" --mb "$MB" --seconds 45)
echo "   terminate: $out"
assert_contains "terminate: ${MB} MiB each way, SHA-256 equal" "$out" "result=equal"
assert_contains "terminate: every byte came back" "$out" "received=$BYTES "
assert_contains "terminate: clean close (close_notify -> FIN to the backend -> close_notify back)" "$out" "clean_close=yes"
wait_for 5 grep -q '"route":"term"' "$LLOG"
line=$(last_log '"route":"term"')
assert_eq "terminate: access log result ok" "ok" "$(jfield result <<<"$line")"
assert_eq "terminate: access log bytes to the backend" "$BYTES" "$(jfield bytes_to_backend <<<"$line")"
assert_eq "terminate: access log bytes from the backend" "$BYTES" "$(jfield bytes_from_backend <<<"$line")"

out=$(NETCLIENT_TIMEOUT=50 netclient bulk --port "$P" --sni echo.test --ca "$PKI/ca.pem" --mb "$MB" --seconds 45)
echo "   passthrough: $out"
assert_contains "passthrough: ${MB} MiB each way, SHA-256 equal" "$out" "result=equal"
assert_contains "passthrough: every byte came back" "$out" "received=$BYTES "
assert_contains "passthrough: clean close" "$out" "clean_close=yes"
wait_for 5 grep -q '"route":"pass"' "$LLOG"
line=$(last_log '"route":"pass"')
assert_eq "passthrough: access log result ok" "ok" "$(jfield result <<<"$line")"
assert_eq "passthrough: bytes from the client = bytes to the backend" \
  "$(jfield bytes_from_client <<<"$line")" "$(jfield bytes_to_backend <<<"$line")"
assert_ge "passthrough: at least ${MB} MiB to the client" "$(jfield bytes_to_client <<<"$line")" "$BYTES"
assert_ge "passthrough: moved by splice" "$(stats splice_relays)" 1
assert_eq "nothing left open" 0 "$(stats active)"
finish
