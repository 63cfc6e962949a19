#!/usr/bin/env bash
# No key material in logs, error messages, the admin API or core dumps.
#
# 1. The scanner (key_leak_scan.py) finds a key where one is: the PEM in a
#    log line, in a JSON string, the scalar in hex and in raw bytes; and finds
#    nothing in the public half of the PKI (certificates).
# 2. A Lodestone with two certificates serves connections, reloads (SIGHUP,
#    `lodectl routes reload`, one refused), refuses a certificate replace with a
#    mismatched key and a key given as the certificate, refuses configurations
#    naming a wrong key file or holding a key pasted where its path goes
#    (`lodestone check` and a SIGHUP), and answers
#    `lodectl status / certs list / routes show / backends list / ocsp status`
#    (text and --json), /metrics, /status.json, /status, SIGUSR2. Everything
#    it and lodectl wrote (its stderr with the control plane's events, the
#    access log, the stats file, every answer) is then grepped for every
#    private key of the test PKI.
# 3. Core dumps: both processes run as nobody here, because proc(5) says the
#    files in /proc/PID (not the directory itself) belong to root:root when
#    the process is not dumpable (prctl(PR_SET_DUMPABLE, 0)) and to its user
#    otherwise: that ownership is the one outside view of PR_GET_DUMPABLE (a
#    root test would see root either way; a control process started the same
#    way shows nobody). The snapshot mappings (memfd "lodestone-snapshot",
#    which hold the keys) carry VmFlags "dd" (MADV_DONTDUMP) in
#    /proc/PID/smaps: the dataplane's, which stay mapped, and any the control
#    plane holds (it maps a segment only while writing it).
source "$(dirname "$0")/lib.sh"
e2e_begin no_key_leak 150
command -v setpriv >/dev/null || { echo "FAIL no_key_leak: setpriv (util-linux) is not installed"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "FAIL no_key_leak: runs as root (it starts Lodestone as nobody)"; exit 1; }
SCAN="$E2E_DIR/key_leak_scan.py"
make_pki a.test b.test
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/wrong.key" 2>/dev/null
KEYS=()
for k in "$PKI"/*.key; do KEYS+=(--key "$k"); done
assert_eq "the test PKI has its six private keys" 6 "$(( ${#KEYS[@]} / 2 ))"

# ---------------------------------------------------------------- 1. the scanner can fail
mkdir -p "$T/canary"
printf '{"event":"oops","key":"%s"}\n' "$(sed -z 's/\n/\\n/g' "$PKI/a.test.key")" >"$T/canary/json.log"
sed -n 2,3p "$PKI/b.test.key" | tr -d '\n' >"$T/canary/rewrapped.log"
openssl pkey -in "$PKI/ca.key" -noout -text 2>/dev/null >"$T/canary/text.log"
{ printf 'core\0'; openssl pkey -in "$PKI/intermediate.key" -outform DER 2>/dev/null; printf '\0dump'; } >"$T/canary/raw.bin"
canary=$(python3 "$SCAN" "${KEYS[@]}" "$T/canary"); rc=$?
assert_eq "scanner: a leak fails it" 1 "$rc"
assert_contains "scanner: the PEM in a JSON string" "$canary" "json.log: a.test.key"
assert_contains "scanner: a re-wrapped PEM body" "$canary" "rewrapped.log: b.test.key"
assert_contains "scanner: the scalar in openssl -text hex" "$canary" "text.log: ca.key (hex colon)"
assert_contains "scanner: raw bytes" "$canary" "raw.bin: intermediate.key (raw bytes)"
clean=$(python3 "$SCAN" "${KEYS[@]}" "$PKI"/*.pem); rc=$?
assert_eq "scanner: certificates are not key material ($clean)" 0 "$rc"
rm -rf "$T/canary"

# ---------------------------------------------------------------- 2. everything it says
P=$(free_port); PA=$(free_port); MP=$(free_port)
start_backend app "$PA"
write_config() {  # write_config FILE A_KEY
  cat >"$1" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P"]

[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]

[[certificate]]
name = "a"
cert = "pki/a.test.pem"
key = "$2"

[[certificate]]
name = "b"
cert = "pki/b.test.pem"
key = "pki/b.test.key"

[[route]]
name = "a"
names = ["a.test"]
action = "terminate"
pool = "app"
certificate = "a"

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "b"

[control]
trusted_ca = "pki/ca.pem"

[admin]
metrics = "127.0.0.1:$MP"

[log]
access = "$T/access.log"
TOML
}
write_config "$T/lode.toml" pki/a.test.key
write_config "$T/wrong-key.toml" pki/wrong.key
write_config "$T/key-as-cert.toml" pki/a.test.key
sed -i 's|cert = "pki/b.test.pem"|cert = "pki/b.test.key"|' "$T/key-as-cert.toml"
# The key itself pasted where its path goes: the error must not echo it.
# (Inputs holding keys live in $T/in, which the grep skips.)
mkdir -p "$T/in"
write_config "$T/in/key-inline.toml" "__KEY__"
python3 - "$T/in/key-inline.toml" "$PKI/a.test.key" <<'PY'
import sys
cfg, key = sys.argv[1], open(sys.argv[2]).read()
q = "'" * 3  # a TOML multi-line literal string
text = open(cfg).read().replace('"__KEY__"', q + key + q)
text = text.replace('"pki/', '"../pki/')
open(cfg, "w").write(text)
PY
# The run directory and the keys belong to nobody, who runs Lodestone.
mkdir -p "$T/run" "$T/out"
chown -R nobody:nogroup "$T"
AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all)
printf '#!/bin/sh\nexec %s %s "$@"\n' "${AS_NOBODY[*]}" "$LODESTONE" >"$T/lodestone-as-nobody"
chmod 755 "$T/lodestone-as-nobody"
REAL_LODESTONE=$LODESTONE
LODESTONE="$T/lodestone-as-nobody" start_lodestone "$T/lode.toml"
LODESTONE=$REAL_LODESTONE
SOCK="$T/run/admin.sock"
n=0
out() {  # out NAME COMMAND...: stdout and stderr into $T/out/N-NAME.txt
  local name
  name=$(printf '%s' "$1" | tr -c 'a-zA-Z0-9.-' '_' | cut -c1-40); shift
  n=$((n + 1))
  "$@" >"$T/out/$n-$name.txt" 2>&1
}
ctl() { out "ctl-$*" timeout 10 "$LODECTL" --socket "$SOCK" "$@"; }

assert_contains "a.test served" "$(lcurl a.test "$P")" "backend=app"
assert_contains "b.test served" "$(lcurl b.test "$P")" "backend=app"
out sclient-unknown sclient "$P" -servername unknown.test
for q in status "certs list" "certs list a" "routes show" "routes show a.test" "backends list" "ocsp status"; do
  # shellcheck disable=SC2086  # the words of the command
  ctl $q
  # shellcheck disable=SC2086
  ctl --json $q
done
check "lodectl --json status answered" grep -q '"generation"' "$T"/out/*-ctl---json_status.txt
for path in metrics status.json status; do out "http-$path" curl -sS --max-time 10 "http://127.0.0.1:$MP/$path"; done
check "/metrics answered" grep -q '^lodestone_' "$T"/out/*http-metrics.txt
assert_eq "SIGHUP: reloaded" reloaded "$(reload)"
ctl routes reload
ctl --json routes reload --dry-run
ctl --json tickets rotate
# Refusals that name keys.
ctl certs replace a --cert "$PKI/a.test.pem" --key "$PKI/wrong.key"
assert_contains "certs replace with a mismatched key: refused" "$(cat "$T"/out/*-ctl-certs_replace_a*.txt)" "key"
ctl --json certs replace a --cert "$PKI/a.test.key" --key "$PKI/a.test.key"
ctl --json certs add c --cert "$PKI/b.test.pem" --key "$PKI/a.test.key"
out check-wrong-key "$LODESTONE" check "$T/wrong-key.toml"
out check-key-as-cert "$LODESTONE" check "$T/key-as-cert.toml"
out check-key-inline "$LODESTONE" check "$T/in/key-inline.toml"
assert_match "lodestone check: a mismatched key refused" "$(cat "$T"/out/*check-wrong-key.txt)" "wrong.key|key"
assert_contains "lodestone check: a pasted key refused" "$(cat "$T"/out/*check-key-inline.txt)" "saw PEM text"
cp "$T/lode.toml" "$T/good.toml"
cp "$T/wrong-key.toml" "$T/lode.toml"
assert_eq "SIGHUP with a mismatched key: refused" reload_refused "$(reload)"
cp "$T/key-as-cert.toml" "$T/lode.toml"
assert_eq "SIGHUP with a key as certificate: refused" reload_refused "$(reload)"
sed 's|"../pki/|"pki/|g' "$T/in/key-inline.toml" >"$T/lode.toml"
assert_eq "SIGHUP with a pasted key: refused" reload_refused "$(reload)"
cp "$T/good.toml" "$T/lode.toml"
assert_eq "SIGHUP back to the good configuration" reloaded "$(reload)"
assert_contains "a.test still served" "$(lcurl a.test "$P")" "backend=app"
kill -USR2 "$LPID"
wait_log_count '"accepted"' 1 5

# ---------------------------------------------------------------- 3. core dumps
CPID=$(ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1)
check "the control plane runs (pid ${CPID:-none})" test -n "$CPID"
"${AS_NOBODY[@]}" sleep 30 &
CONTROL=$!
PIDS+=("$CONTROL")
sleep 0.2
assert_eq "control: a dumpable process of nobody owns its /proc/PID/status" nobody "$(stat -c %U "/proc/$CONTROL/status")"
for who in "dataplane:$LPID" "control plane:$CPID"; do
  name=${who%%:*} pid=${who#*:}
  assert_eq "$name runs as nobody" 65534 "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
  assert_eq "$name is not dumpable (/proc/$pid/status owned by root)" root "$(stat -c %U "/proc/$pid/status")"
  dd=$(python3 - "$pid" <<'PY'
import sys
maps, current = [], None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    fields = line.split()
    if "-" in fields[0] and len(fields) >= 5 and not line.startswith("VmFlags"):
        current = fields[5] if len(fields) > 5 else ""
    elif line.startswith("VmFlags:") and current.startswith("/memfd:lodestone-snapshot"):
        maps.append("dd" in fields[1:])
print(f"{len(maps)} {sum(maps)}")
PY
)
  read -r total with_dd <<<"$dd"
  # The control plane maps a segment only while it writes it
  # (SegmentBuilder::seal); the dataplane keeps the ones in service mapped.
  [ "$name" = dataplane ] && assert_ge "$name maps snapshots" "${total:-0}" 1
  assert_eq "$name: every snapshot mapping ($total) is MADV_DONTDUMP" "$total" "$with_dd"
done

# ---------------------------------------------------------------- the grep
kill -TERM "$LPID"
wait_for 15 bash -c "! kill -0 $LPID"
check "lodestone stopped" bash -c "! kill -0 $LPID 2>/dev/null"
files=$(find "$T" -type f ! -path "$PKI/*" ! -path "$T/in/*" ! -name '*.toml' ! -name 'lodestone-as-nobody' | wc -l)
assert_ge "outputs collected" "$files" 30
leaks=$(python3 "$SCAN" "${KEYS[@]}" --exclude "$PKI" --exclude "$T/in" "$T"); rc=$?
echo "$leaks" | tail -n 20 | sed 's/^/  /'
assert_eq "no key material in any log or answer" 0 "$rc"
assert_match "the grep read something" "$leaks" "scanned [3-9][0-9]+ files"
finish
