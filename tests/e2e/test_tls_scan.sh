#!/usr/bin/env bash
# Third-party scrutiny of a terminate listener with the default [tls]
# settings: Debian's sslscan enumerates protocols, suites, groups,
# renegotiation and heartbleed (its --xml output is judged by
# tls_scan_check.py, never its colours); what this machine's sslscan cannot
# offer (it links OpenSSL 3: no RC4, 3DES or export suites, no zlib) is asked
# with raw ClientHellos (tls_scan_check.py probe); client-initiated
# renegotiation is asked with `openssl s_client` ("R" after the handshake).
#
# The checks prove they can fail first: the same scan, probe and
# renegotiation attempt against a deliberately weak `openssl s_server`
# (TLS 1.0, ALL:@SECLEVEL=0, client renegotiation on) must flag it, and the
# judge must flag a saved scan with the items no live server here can show
# (SSLv3, compression, heartbleed, insecure renegotiation, 1024-bit DH).
source "$(dirname "$0")/lib.sh"
e2e_begin tls_scan 150
command -v sslscan >/dev/null || { echo "FAIL tls_scan: sslscan is not installed (tools/install-deps.sh)"; exit 1; }
CHECK="$E2E_DIR/tls_scan_check.py"
make_pki a.test

scan() {  # scan PORT SNI OUT.xml: sslscan's XML report
  timeout 120 sslscan --xml="$3" --no-colour --sni-name="$2" "127.0.0.1:$1" >"$3.txt" 2>&1
}
# renegotiation PORT SNI: "accepted", "refused" or "not_tried" (the first
# handshake did not complete, so nothing was asked).
renegotiation() {
  local out hellos
  out=$( (sleep 0.5; echo R; sleep 1.5) | timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$2" \
    -tls1_2 -msg 2>&1)
  hellos=$(grep -acE '^<<< .*, ServerHello$' <<<"$out")
  if ! grep -aq '^RENEGOTIATING' <<<"$out" || [ "$hellos" -lt 1 ]; then echo not_tried
  elif [ "$hellos" -ge 2 ]; then echo accepted
  else echo refused; fi
}

# ---- 1. the checks flag a weak server
W=$(free_port)
start_s_server weak "$W" -cert "$PKI/a.test.pem" -key "$PKI/a.test.key" -cipher 'ALL:@SECLEVEL=0' \
  -client_renegotiation -www
scan "$W" a.test "$T/weak.xml"
weak=$(python3 "$CHECK" judge "$T/weak.xml"); rc=$?
assert_eq "weak server: the judge fails it" 1 "$rc"
assert_contains "weak server: TLS 1.0 flagged" "$weak" "WEAK protocol tls 1.0 enabled"
assert_contains "weak server: TLS 1.1 flagged" "$weak" "WEAK protocol tls 1.1 enabled"
assert_match "weak server: a CBC suite flagged" "$weak" "WEAK cipher TLSv1.2 [A-Z0-9-]*-SHA(256|384)?: not AEAD"
assert_match "weak server: an anonymous suite flagged" "$weak" "WEAK cipher TLSv1.2 (ADH|AECDH)-[^:]*: (not AEAD|ADH|AECDH)"
assert_match "weak server: a curve outside X25519/P-256/P-384 flagged" "$weak" "WEAK group TLSv1.[23] (x448|secp521r1)"
probe=$(python3 "$CHECK" probe 127.0.0.1 "$W" a.test); rc=$?
assert_eq "weak server: the raw probe fails it" 1 "$rc"
assert_contains "weak server: a legacy suite accepted" "$probe" "legacy_suites accepted"
assert_eq "weak server: client renegotiation accepted" accepted "$(renegotiation "$W" a.test)"

# ---- 2. the judge flags what no live server here can show
cat >"$T/sample.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<document title="SSLScan Results" version="2.0.7" web="http://github.com/rbsec/sslscan">
 <ssltest host="127.0.0.1" sniname="a.test" port="443">
  <protocol type="ssl" version="2" enabled="0" />
  <protocol type="ssl" version="3" enabled="1" />
  <protocol type="tls" version="1.2" enabled="1" />
  <renegotiation supported="1" secure="0" />
  <compression supported="1" />
  <heartbleed sslversion="TLSv1.2" vulnerable="1" />
  <cipher status="preferred" sslversion="TLSv1.2" bits="256" cipher="DHE-RSA-AES256-GCM-SHA384" id="0x009F" strength="strong" dhebits="1024" />
  <cipher status="accepted" sslversion="SSLv3" bits="128" cipher="RC4-SHA" id="0x0005" strength="medium" />
  <cipher status="accepted" sslversion="TLSv1.2" bits="112" cipher="DES-CBC3-SHA" id="0x000A" strength="medium" />
  <cipher status="accepted" sslversion="TLSv1.2" bits="0" cipher="NULL-SHA256" id="0x003B" strength="null" />
  <cipher status="accepted" sslversion="TLSv1.2" bits="128" cipher="ECDHE-RSA-AES128-GCM-SHA256" id="0xC02F" strength="strong" curve="secp224r1" ecdhebits="224" />
  <group sslversion="TLSv1.2" bits="80" name="ffdhe1024" id="0x0100" />
 </ssltest>
</document>
XML
sample=$(python3 "$CHECK" judge "$T/sample.xml"); rc=$?
assert_eq "sample: the judge fails it" 1 "$rc"
for item in "protocol ssl 3 enabled" "insecure renegotiation supported" "TLS compression supported" \
  "heartbleed (TLSv1.2)" "DHE-RSA-AES256-GCM-SHA384: DH 1024 bits" "RC4-SHA: accepted under SSLv3" \
  "DES-CBC3-SHA: DES suite" "NULL-SHA256: NULL suite" "ECDHE-RSA-AES128-GCM-SHA256: curve secp224r1" \
  "group TLSv1.2 ffdhe1024"; do
  assert_match "sample: $item" "$(grep -F -- "$item" <<<"$sample" | head -n 1)" "^WEAK "
done
# A scan of nothing is no pass.
printf '<document><ssltest host="127.0.0.1" port="1"></ssltest></document>\n' >"$T/empty.xml"
python3 "$CHECK" judge "$T/empty.xml" >/dev/null; assert_eq "an empty scan fails" 1 "$?"

# ---- 3. Lodestone with the default [tls]
P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
start_lodestone "$T/lode.toml"
assert_contains "lodestone serves a.test" "$(lcurl a.test "$P")" "backend=app"
scan "$P" a.test "$T/lodestone.xml"
verdict=$(python3 "$CHECK" judge "$T/lodestone.xml"); rc=$?
echo "$verdict" | sed 's/^/  sslscan: /'
assert_eq "lodestone: the scan finds nothing weak" 0 "$rc"
assert_match "lodestone: the scan saw suites" "$verdict" "VERDICT clean \([1-9][0-9]* suites"
tls13=$(grep -c 'protocol type="tls" version="1.3" enabled="1"' "$T/lodestone.xml")
assert_eq "lodestone: TLS 1.3 offered" 1 "$tls13"
probe=$(python3 "$CHECK" probe 127.0.0.1 "$P" a.test); rc=$?
echo "$probe" | sed 's/^/  probe: /'
assert_eq "lodestone: the raw probe finds nothing weak" 0 "$rc"
assert_contains "lodestone: legacy suites refused" "$probe" "legacy_suites refused"
assert_contains "lodestone: no compression" "$probe" "compression null"
assert_eq "lodestone: client renegotiation refused" refused "$(renegotiation "$P" a.test)"
finish
