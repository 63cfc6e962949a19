#!/usr/bin/env bash
# Certificates changed on disk are picked up by the control plane (inotify,
# debounced) without SIGHUP, one certificate at a time.
#
# 1. Under load (full handshakes + one request each, on a.test and on a
#    directory certificate, bounded), a.test's cert and key are replaced by a
#    new pair from the same CA with `mv` (rename over, certbot style): no
#    connection fails; within 2 s new handshakes present the new serial;
#    "certificate_replaced" is logged; cert_ctx_builds grows by at most the
#    number of workers (only a.test's SSL_CTX is rebuilt, not the other one).
# 2. Invalid replacements are refused ("certificate_refused") and the
#    certificate in service stays: a certificate whose key does not match, an
#    expired certificate. A valid pair after them is taken again.
# 3. A [[certificate_dir]]: files dropped in serve the new name
#    ("certificate_added", no SIGHUP); deleted, the name is no longer served
#    ("certificate_removed", alert 112).
# 4. Two files naming one host (E.sites.test.pem, e.sites.test.pem): the
#    first in byte order serves, as a scan does, whatever the watcher sees;
#    the other changing or going changes nothing; the one serving going
#    leaves the name to the other.
# 5. A directory named with a trailing slash ("swap/") is watched the same.
# 6. The directory replaced by rename (mv swap swap.old; mv swap.new swap):
#    the new one's files are served, the old one's no more, and files
#    dropped into the new one are seen (the watch moved to it).
# 7. A directory that is a symlink, swapped (`ln -s v2 live.tmp; mv -T
#    live.tmp live`): the same, also when a named certificate's files in
#    it share the directory's watch. Neither is a reload (generation
#    unchanged).
# 8. A rescan refused (a named certificate in the new target that does not
#    load: expired) is tried again at the next file change (once per batch
#    of changes), without holding back other files' own reloads: fixed, the
#    new target's directory certificates are served.
source "$(dirname "$0")/lib.sh"
e2e_begin cert_rotation 120
make_pki a.test c.sites.test d.sites.test E.sites.test e.sites.test f.swap.test g.swap.test h.swap.test \
  j.link.test k.link.test l.link.test m.link.test n.link.test
# A second a.test pair from the same CA (the intermediate and its serial file
# are copied, so the serial differs).
mkdir -p "$T/pki2"
cp "$PKI"/ca.pem "$PKI"/ca.key "$PKI"/intermediate.pem "$PKI"/intermediate.key "$PKI"/*.srl "$T/pki2/"
"$LODE_SOURCE_DIR/tools/make-test-pki.sh" "$T/pki2" a.test >/dev/null || { echo "FAIL make-test-pki.sh pki2"; exit 1; }
# An expired a.test (notAfter a day before notBefore = now), same CA.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/expired.key" 2>/dev/null
openssl req -new -key "$T/expired.key" -subj /CN=a.test -out "$T/expired.csr" 2>/dev/null
openssl x509 -req -in "$T/expired.csr" -CA "$PKI/intermediate.pem" -CAkey "$PKI/intermediate.key" -CAcreateserial \
  -CAserial "$T/expired.srl" -days -1 -extfile <(printf 'subjectAltName=DNS:a.test\nbasicConstraints=CA:FALSE\n') \
  -out "$T/expired.leaf.pem" 2>/dev/null
cat "$T/expired.leaf.pem" "$PKI/intermediate.pem" >"$T/expired.pem"

serial_of() { openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//'; }
S1=$(serial_of <"$PKI/a.test.pem"); S2=$(serial_of <"$T/pki2/a.test.pem"); SX=$(serial_of <"$T/expired.pem")
check "the test PKI: three distinct a.test serials ($S1 $S2 $SX)" test -n "$S1" -a -n "$S2" -a -n "$SX" -a "$S1" != "$S2" -a "$S2" != "$SX"
verifies() { openssl verify -CAfile "$PKI/ca.pem" -untrusted "$PKI/intermediate.pem" "$1" >/dev/null 2>&1; }
check "the second pair verifies against the same CA" verifies "$T/pki2/a.test.pem"

mkdir -p "$T/certs" "$T/sites" "$T/swap" "$T/v1" "$T/v2"
cp "$PKI/j.link.test.pem" "$PKI/j.link.test.key" "$T/v1/"
cp "$PKI/k.link.test.pem" "$PKI/k.link.test.key" "$T/v2/"
ln -s v1 "$T/live"
# m.link.test: a named certificate whose files are in the linked directory
# (other names than the directory's pattern).
for v in v1 v2; do cp "$PKI/m.link.test.pem" "$T/$v/m.link.test.crt"; cp "$PKI/m.link.test.key" "$T/$v/m.link.test.k"; done
cp "$PKI/a.test.pem" "$T/certs/a.pem"; cp "$PKI/a.test.key" "$T/certs/a.key"
cp "$PKI/c.sites.test.pem" "$PKI/c.sites.test.key" "$T/sites/"
P=$(free_port); PA=$(free_port)
start_backend app "$PA"
cat >"$T/lode.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]

[[certificate]]
name = "a"
cert = "certs/a.pem"
key = "certs/a.key"

[[certificate_dir]]
name = "sites"
path = "sites"
cert_pattern = "%n.pem"
key_pattern = "%n.key"

[[certificate_dir]]
name = "swap"
path = "swap/"
cert_pattern = "%n.pem"
key_pattern = "%n.key"

[[certificate_dir]]
name = "link"
path = "live"
cert_pattern = "%n.pem"
key_pattern = "%n.key"

[[certificate]]
name = "m"
cert = "live/m.link.test.crt"
key = "live/m.link.test.k"

[[route]]
name = "m"
names = ["m.link.test"]
action = "terminate"
pool = "app"
certificate = "m"

[[route]]
name = "swap"
names = ["*.swap.test"]
action = "terminate"
pool = "app"
certificate = "swap"

[[route]]
name = "link"
names = ["*.link.test"]
action = "terminate"
pool = "app"
certificate = "link"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "sites"
names = ["*.sites.test"]
action = "terminate"
pool = "app"
certificate = "sites"
TOML
WORKERS=2
start_lodestone "$T/lode.toml" --workers $WORKERS

served_serial() { sclient "$P" -servername a.test | serial_of; }
serial_is() { [ "$(served_serial)" == "$1" ]; }
gen0=$(stats generation)
assert_eq "a.test: the first certificate is served" "$S1" "$(served_serial)"
assert_contains "c.sites.test served from the directory" "$(lcurl c.sites.test "$P")" "backend=app"

# ---------------------------------------------------------------- 1. rename-over under load
NETCLIENT_TIMEOUT=40 netclient loop --port "$P" --sni a.test --ca "$PKI/ca.pem" --threads 3 --seconds 8 --max 20000 \
  >"$T/load-a.out" 2>&1 &
LA=$!
NETCLIENT_TIMEOUT=40 netclient loop --port "$P" --sni c.sites.test --ca "$PKI/ca.pem" --threads 1 --seconds 8 --max 20000 \
  >"$T/load-c.out" 2>&1 &
LC=$!
PIDS+=("$LA" "$LC")
sleep 2  # both names handshaken on both workers: their SSL_CTXs are built
builds0=$(stats cert_ctx_builds)
rep0=$(log_count '"event":"certificate_replaced"'); ref0=$(log_count '"event":"certificate_refused"')
# certbot style: new files written beside, then renamed over the old ones.
cp "$T/pki2/a.test.pem" "$T/certs/.a.pem.new"; cp "$T/pki2/a.test.key" "$T/certs/.a.key.new"
t0=$(now_ms)
mv "$T/certs/.a.key.new" "$T/certs/a.key"; mv "$T/certs/.a.pem.new" "$T/certs/a.pem"
seen=none
for _ in $(seq 1 60); do  # bounded: 60 handshakes, about 6 s at most
  if serial_is "$S2"; then seen=$(( $(now_ms) - t0 )); break; fi
  sleep 0.05
done
echo "   the new serial was served $seen ms after the rename"
check "new handshakes present the new certificate's serial" test "$seen" != none
assert_le "... within 2 s of the rename" "${seen/none/99999}" 2000
check "certificate_replaced logged" wait_log_count '"event":"certificate_replaced"' $((rep0 + 1)) 5
assert_contains "it names certificate a" "$(last_log '"event":"certificate_replaced"')" '"certificate":"name:a"'
assert_eq "no certificate_refused during a good rotation" "$ref0" "$(log_count '"event":"certificate_refused"')"
wait "$LA"; wait "$LC"
for f in a c; do
  out=$(cat "$T/load-$f.out"); echo "   load $f: $(tr '\n' ' ' <<<"$out")"
  assert_contains "load on $f: no connection failed across the rotation" "$out" "failed=0"
  assert_ge "load on $f: the load was real" "$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)" 20
done
builds1=$(stats cert_ctx_builds)
echo "   cert_ctx_builds: $builds0 before, $builds1 after ($WORKERS workers)"
assert_le "cert_ctx_builds grew by at most the number of workers (only a.test rebuilt)" $((builds1 - builds0)) $WORKERS
assert_ge "cert_ctx_builds grew (a.test was rebuilt)" $((builds1 - builds0)) 1
assert_eq "no reload: the runtime generation is unchanged" "$gen0" "$(stats generation)"
assert_contains "curl verifies the new certificate" "$(lcurl a.test "$P")" "backend=app"

# ---------------------------------------------------------------- 2. invalid replacements
# A certificate whose key does not match (the first pair's cert, the second's key).
ref1=$(log_count '"event":"certificate_refused"')
cp "$PKI/a.test.pem" "$T/certs/.a.pem.new"; mv "$T/certs/.a.pem.new" "$T/certs/a.pem"
check "mismatched key: certificate_refused" wait_log_count '"event":"certificate_refused"' $((ref1 + 1)) 5
line=$(last_log '"event":"certificate_refused"')
assert_contains "the refusal names certificate a" "$line" '"certificate":"name:a"'
assert_contains "the refusal says the key does not match" "$line" "does not match"
sleep 0.5
assert_eq "the previous certificate keeps being served" "$S2" "$(served_serial)"
assert_contains "and requests work" "$(lcurl a.test "$P")" "backend=app"
# An expired certificate (with its own key).
ref2=$(log_count '"event":"certificate_refused"')
cp "$T/expired.pem" "$T/certs/.a.pem.new"; cp "$T/expired.key" "$T/certs/.a.key.new"
mv "$T/certs/.a.key.new" "$T/certs/a.key"; mv "$T/certs/.a.pem.new" "$T/certs/a.pem"
check "expired certificate: certificate_refused" wait_log_count '"event":"certificate_refused"' $((ref2 + 1)) 5
assert_contains "the refusal says it expired" "$(last_log '"event":"certificate_refused"')" "expired"
sleep 0.5
assert_eq "the previous certificate keeps being served" "$S2" "$(served_serial)"
# A valid pair again: taken.
rep1=$(log_count '"event":"certificate_replaced"')
cp "$PKI/a.test.pem" "$T/certs/.a.pem.new"; cp "$PKI/a.test.key" "$T/certs/.a.key.new"
mv "$T/certs/.a.key.new" "$T/certs/a.key"; mv "$T/certs/.a.pem.new" "$T/certs/a.pem"
check "a valid pair after the refusals: certificate_replaced" wait_log_count '"event":"certificate_replaced"' $((rep1 + 1)) 5
check "and its serial is served" wait_for 3 serial_is "$S1"

# ---------------------------------------------------------------- 3. certificate directory
out=$(sclient "$P" -servername d.sites.test)
assert_contains "d.sites.test without files: alert 112" "$out" "alert number 112"
add0=$(log_count '"event":"certificate_added"'); rem0=$(log_count '"event":"certificate_removed"')
cp "$PKI/d.sites.test.pem" "$PKI/d.sites.test.key" "$T/sites/"
check "files dropped in: certificate_added (no SIGHUP)" wait_log_count '"event":"certificate_added"' $((add0 + 1)) 5
assert_contains "it names dir:sites/d.sites.test" "$(last_log '"event":"certificate_added"')" '"certificate":"dir:sites/d.sites.test"'
# (the output is captured, not piped into grep -q: with pipefail, s_client's
# own failure status on an alert would fail the pipeline)
d_served() { [[ "$(sclient "$P" -servername d.sites.test)" == *"subject=CN = d.sites.test"* ]]; }
check "d.sites.test is served" wait_for 3 d_served
assert_contains "d.sites.test: curl verifies it and reaches the backend" "$(lcurl d.sites.test "$P")" "backend=app"
rm -f "$T/sites/d.sites.test.pem" "$T/sites/d.sites.test.key"
check "files deleted: certificate_removed" wait_log_count '"event":"certificate_removed"' $((rem0 + 1)) 5
assert_contains "it names dir:sites/d.sites.test" "$(last_log '"event":"certificate_removed"')" '"certificate":"dir:sites/d.sites.test"'
d_gone() { [[ "$(sclient "$P" -servername d.sites.test)" == *"alert number 112"* ]]; }
check "d.sites.test is no longer served (alert 112)" wait_for 3 d_gone
assert_contains "c.sites.test still served" "$(lcurl c.sites.test "$P")" "backend=app"
assert_eq "a.test still served (the first certificate)" "$S1" "$(served_serial)"

# ---------------------------------------------------------------- 4. two files, one host
e_cn() { sclient "$P" -servername e.sites.test | sed -n 's/^subject=.*CN *= *//p'; }
e_is() { [ "$(e_cn)" = "$1" ]; }
cp "$PKI/E.sites.test.pem" "$PKI/E.sites.test.key" "$T/sites/"
cp "$PKI/e.sites.test.pem" "$PKI/e.sites.test.key" "$T/sites/"
check "E.sites.test.pem serves e.sites.test (first in byte order)" wait_for 5 e_is E.sites.test
sleep 1  # the watcher has seen both files
assert_eq "  ... after the later file came too" "E.sites.test" "$(e_cn)"
touch "$T/sites/e.sites.test.pem"
sleep 1
assert_eq "the later file changing changes nothing" "E.sites.test" "$(e_cn)"
rm -f "$T/sites/e.sites.test.pem" "$T/sites/e.sites.test.key"
sleep 1
assert_eq "the later file going changes nothing" "E.sites.test" "$(e_cn)"
cp "$PKI/e.sites.test.pem" "$PKI/e.sites.test.key" "$T/sites/"
rm -f "$T/sites/E.sites.test.pem" "$T/sites/E.sites.test.key"
check "the file serving going leaves the name to the other" wait_for 5 e_is e.sites.test
rm -f "$T/sites/e.sites.test.pem" "$T/sites/e.sites.test.key"
e_gone() { [[ "$(sclient "$P" -servername e.sites.test)" == *"alert number 112"* ]]; }
check "both gone: alert 112" wait_for 5 e_gone

# ---------------------------------------------------------------- 5-7. directories replaced
# served NAME: the handshake for NAME shows its own certificate.
served() { [[ "$(sclient "$P" -servername "$1")" == *"subject=CN = $1"* ]]; }
refused() { [[ "$(sclient "$P" -servername "$1")" == *"alert number 112"* ]]; }
cp "$PKI/f.swap.test.pem" "$PKI/f.swap.test.key" "$T/swap/"
check "5. path \"swap/\": files dropped in are served" wait_for 5 served f.swap.test
resc0=$(log_count '"event":"certificates_rescanned"')
mkdir "$T/swap.new"
cp "$PKI/g.swap.test.pem" "$PKI/g.swap.test.key" "$T/swap.new/"
mv "$T/swap" "$T/swap.old"; mv "$T/swap.new" "$T/swap"
check "6. the directory replaced by rename: the new one's files are served" wait_for 5 served g.swap.test
check "   the old one's are not" wait_for 5 refused f.swap.test
assert_ge "   certificates_rescanned logged" "$(log_count '"event":"certificates_rescanned"')" $((resc0 + 1))
cp "$PKI/h.swap.test.pem" "$PKI/h.swap.test.key" "$T/swap/"
check "   files dropped into the new one are served" wait_for 5 served h.swap.test
check "7. a symlinked directory: its files are served" served j.link.test
ln -s v2 "$T/live.tmp"; mv -T "$T/live.tmp" "$T/live"
check "   the link swapped: the new target's files are served" wait_for 5 served k.link.test
check "   the old target's are not" wait_for 5 refused j.link.test
cp "$PKI/l.link.test.pem" "$PKI/l.link.test.key" "$T/v2/"
check "   files dropped into the new target are served" wait_for 5 served l.link.test
check "   the named certificate in it is served" served m.link.test
# 8. The next target's named certificate is expired: the rescan is refused.
mkdir "$T/v3"
cp "$PKI/n.link.test.pem" "$PKI/n.link.test.key" "$T/v3/"
cp "$T/expired.pem" "$T/v3/m.link.test.crt"; cp "$T/expired.key" "$T/v3/m.link.test.k"
ref0=$(log_count '"event":"rescan_refused"')
ln -s v3 "$T/live.tmp"; mv -T "$T/live.tmp" "$T/live"
check "8. a rescan with an expired named certificate: rescan_refused" wait_log_count '"event":"rescan_refused"' $((ref0 + 1)) 5
check "   n.link.test not served yet" refused n.link.test
# Meanwhile files change elsewhere: each is still reloaded on its own (the
# refused rescan, tried again, holds nothing back), and a burst of them is
# not as many rescans of every certificate.
resc8=$(log_count '"event":"certificates_rescanned"')
cp "$PKI/d.sites.test.pem" "$PKI/d.sites.test.key" "$T/sites/"
for i in $(seq 1 30); do echo x >"$T/sites/junk$i.txt"; done
check "   meanwhile a directory certificate dropped in is served" wait_for 5 served d.sites.test
sleep 1
rescans=$(( $(log_count '"event":"certificates_rescanned"') - resc8 ))
check "   a burst of 32 files: at most a few rescans ($rescans)" test "$rescans" -le 3
cp "$PKI/m.link.test.pem" "$T/v3/.m.crt.new"; cp "$PKI/m.link.test.key" "$T/v3/.m.k.new"
mv "$T/v3/.m.k.new" "$T/v3/m.link.test.k"; mv "$T/v3/.m.crt.new" "$T/v3/m.link.test.crt"
check "   the named certificate fixed: the rescan is tried again, n.link.test served" wait_for 5 served n.link.test
check "   and m.link.test" served m.link.test
assert_contains "a.test still served" "$(lcurl a.test "$P")" "backend=app"
assert_eq "no reload at any point: generation unchanged" "$gen0" "$(stats generation)"
finish
