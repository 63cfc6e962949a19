#!/usr/bin/env bash
# The admin API from outside: `lodectl` against a running lodestone
# (controlplane/admin_server.h, tools/lodectl/admin.h), and Prometheus /metrics.
#
# 1. `lodectl status` (human and --json): generation, workers 2, the kernel
#    front; handshakes made with s_client are counted, and agree with the
#    stats file. /metrics at the same moment: well-formed by a strict checker
#    (python3, below; itself shown to refuse bad documents) and by
#    `promtool check metrics` (Debian's prometheus package, installed here
#    when missing); its handshake total equals lodectl's; the certificate's
#    expiry is positive; other paths 404, POST 405.
# 2. `certs list`: the name, its names, days to expiry; an unknown name exits
#    1 naming it. `ocsp status` of a certificate without OCSP: "unchecked";
#    `ocsp refresh` of it exits 1.
# 3. `tickets rotate`: exit 0, a new snapshot (status generation grows).
# 4. `routes reload --dry-run` after adding a certificate + route: reports the
#    certificate, changes nothing (generation, the name is not served);
#    `routes reload` applies it (generation grows, the name is served, a
#    reloaded event); a config naming an unknown pool: exit 1 naming `pool`,
#    nothing changes, still serving.
# 5. Refusals: another uid cannot reach the 0600 socket (exit 4 / EACCES);
#    the socket made 0666 by hand, the server's SO_PEERCRED check refuses it
#    (exit 4, "permission denied"); usage errors exit 2; no daemon exits 3.
# 6. A second lodestone with [tls] ticket_key_file and an OCSP certificate
#    (tools/make-ocsp-pki.sh, an `openssl ocsp` responder): `tickets rotate`
#    exits 1 saying to rotate the file; `ocsp status` shows it good and
#    stapled; `ocsp refresh` makes the responder's request count grow.
source "$(dirname "$0")/lib.sh"

# promtool comes with Debian's prometheus package (its service is not started
# by the install). Installed before the test's clock starts; without root or
# a candidate version, only the python checker runs, and this says so.
PROMTOOL_NOTE=""
PROMTOOL_FAIL=""
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    PROMTOOL_NOTE="not root: cannot install the prometheus package for promtool"
  else
    candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p'; }
    c=$(candidate)
    if [ -z "$c" ] || [ "$c" = "(none)" ]; then
      timeout 120 apt-get update -qq >/dev/null 2>&1
      c=$(candidate)
    fi
    if [ -z "$c" ] || [ "$c" = "(none)" ]; then
      PROMTOOL_NOTE="the prometheus package has no candidate version in the apt sources here"
    else
      echo "(installing prometheus $c for promtool)"
      if ! timeout 240 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
          -o DPkg::Lock::Timeout=60 prometheus >/tmp/lode-e2e-admin-apt.log 2>&1 || ! command -v promtool >/dev/null; then
        PROMTOOL_FAIL="apt-get install prometheus failed: $(tail -n 3 /tmp/lode-e2e-admin-apt.log | tr '\n' ' ')"
      fi
      rm -f /tmp/lode-e2e-admin-apt.log
    fi
  fi
fi

e2e_begin admin 120
[ -n "$PROMTOOL_FAIL" ] && fail "promtool: $PROMTOOL_FAIL"
make_pki a.test b.test

P=$(free_port); PA=$(free_port); MP=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
printf '\n[admin]\nmetrics = "127.0.0.1:%s"\n' "$MP" >>"$T/lode.toml"
cp "$T/lode.toml" "$T/base.toml"
start_lodestone "$T/lode.toml" --workers 2
SOCK="$T/run/admin.sock"
assert_eq "the start event names the admin socket (run dir)" "$SOCK" "$(grep -F '"event":"start"' "$LLOG" | head -n 1 | jfield admin_socket)"
assert_eq "the admin socket is mode 600" 600 "$(stat -c %a "$SOCK" 2>&1)"

# ctl ARGS...: lodectl on $SOCK; sets OUT, ERR, RC.
ctl() {
  OUT=$(timeout 10 "$LODECTL" --socket "$SOCK" "$@" 2>"$T/ctl.err"); RC=$?
  ERR=$(cat "$T/ctl.err")
}
# st FIELD: one field of `lodectl --json status`
st() { timeout 10 "$LODECTL" --socket "$SOCK" --json status 2>/dev/null | jfield "$1"; }
st_gt() { [ "$(st "$1")" -gt "$2" ] 2>/dev/null; }  # st_gt FIELD VALUE
st_ge() { [ "$(st "$1")" -ge "$2" ] 2>/dev/null; }
served_cn() { peer_cert "$P" -servername "$1" | sed -n 's/^subject=.*CN *= *//p'; }  # served_cn SNI

# ---------------------------------------------------------------- 1. status, handshakes, /metrics
ctl status
assert_eq "status: exit 0" 0 "$RC"
assert_match "status: shows the generation" "$OUT" $'(^|\n)generation: [1-9][0-9]*(\n|$)'
assert_match "status: workers 2" "$OUT" $'(^|\n)workers: 2(\n|$)'
assert_match "status: the kernel front" "$OUT" $'(^|\n)front: kernel(\n|$)'
assert_match "status: the dataplane's pid" "$OUT" $'(^|\n)dataplane_pid: '"$LPID"$'(\n|$)'
ctl --json status
assert_eq "status --json: exit 0" 0 "$RC"
assert_eq "status --json: one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
assert_contains "status --json: \"ok\":true" "$OUT" '"ok":true'
assert_eq "status --json: parses; workers 2, front kernel" "2 kernel" \
  "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v["workers"], v["front"])' "$OUT" 2>&1)"
assert_eq "\$LODESTONE_ADMIN_SOCKET is used" 0 \
  "$(LODESTONE_ADMIN_SOCKET="$SOCK" timeout 10 "$LODECTL" status >/dev/null 2>&1; echo $?)"
assert_eq "--socket wins over \$LODESTONE_ADMIN_SOCKET" 0 \
  "$(LODESTONE_ADMIN_SOCKET="$T/nowhere.sock" timeout 10 "$LODECTL" --socket "$SOCK" status >/dev/null 2>&1; echo $?)"

h0=$(st handshakes)
N=6
ok=0
for _ in $(seq 1 $N); do
  [[ "$(sclient "$P" -servername a.test)" == *"Verify return code: 0 (ok)"* ]] && ok=$((ok + 1))
done
assert_eq "$N s_client handshakes succeeded" "$N" "$ok"
check "status counts the $N handshakes (from $h0)" wait_for 5 st_ge handshakes $((h0 + N))
# No traffic from here to the /metrics check: every number must agree.
file_hs=$(stats handshakes)  # the next rewrite of the stats file
ctl --json status; status_line=$OUT
hs=$(jfield handshakes <<<"$status_line")
assert_eq "status handshakes = the stats file's" "$file_hs" "$hs"
assert_eq "status accepted = the stats file's" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$STATS")" \
  "$(jfield accepted <<<"$status_line")"

cat >"$T/check_metrics.py" <<'PY'
# A strict reader of the Prometheus text format (0.0.4): prints problems and
# exits 1, or prints totals: handshakes=<sum of lodestone_handshakes_total>,
# expiry_a=<lodestone_certificate_expiry_seconds{certificate="name:a"}>,
# series=<count>.
import math, re, sys
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
problems, types, helps, series, done_families = [], {}, set(), {}, set()
current = None

def family_of(name):
    if name in types: return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"): return base
    return None

def parse_value(s):
    if s in ("NaN", "+Inf", "-Inf"): return float(s)
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s): raise ValueError(f"bad value {s!r}")
    return float(s)

def parse_sample(line):
    m = NAME.match(line)
    if not m: raise ValueError("no metric name")
    name, i, labels = m.group(0), m.end(), []
    if i < len(line) and line[i] == "{":
        i += 1
        while True:
            if i < len(line) and line[i] == "}": i += 1; break
            lm = LABEL.match(line, i)
            if not lm: raise ValueError(f"bad label name at {line[i:]!r}")
            lname, i = lm.group(0), lm.end()
            if line[i:i + 2] != '="': raise ValueError(f"expected =\" after label {lname}")
            i += 2
            val = []
            while True:
                if i >= len(line): raise ValueError("unterminated label value")
                c = line[i]
                if c == "\\":
                    e = line[i + 1:i + 2]
                    if e not in ("\\", '"', "n"): raise ValueError(f"bad escape \\{e} in label {lname}")
                    val.append({"\\": "\\", '"': '"', "n": "\n"}[e]); i += 2
                elif c == '"': i += 1; break
                else: val.append(c); i += 1
            if lname in (l for l, _ in labels): raise ValueError(f"label {lname} twice")
            labels.append((lname, "".join(val)))
            if i < len(line) and line[i] == ",": i += 1; continue
            if i < len(line) and line[i] == "}": i += 1; break
            raise ValueError(f"expected , or }} after label {lname}")
    rest = line[i:]
    if not rest.startswith(" ") or rest.startswith("  ") or rest.endswith(" "):
        raise ValueError("expected one space, then the value")
    parts = rest[1:].split(" ")
    if len(parts) > 2: raise ValueError("too many fields")
    value = parse_value(parts[0])
    if len(parts) == 2 and not re.fullmatch(r"-?\d+", parts[1]): raise ValueError("bad timestamp")
    return name, tuple(sorted(labels)), value

text = open(sys.argv[1], encoding="utf-8").read()
if not text.endswith("\n"): problems.append("the last line has no newline")
for n, line in enumerate(text.split("\n")[:-1], 1):
    where = f"line {n}: {line[:120]!r}"
    if line == "": continue
    if line.startswith("#"):
        f = line.split(" ", 3)
        if len(f) >= 3 and f[1] in ("TYPE", "HELP"):
            name = f[2]
            if not NAME.fullmatch(name): problems.append(f"{where}: bad metric name"); continue
            if f[1] == "TYPE":
                if len(f) != 4 or f[3] not in TYPES: problems.append(f"{where}: bad type"); continue
                if name in types: problems.append(f"{where}: second TYPE for {name}")
                if any(s[0] == name or family_of(s[0]) == name for s in series): problems.append(f"{where}: TYPE after samples")
                types[name] = f[3]
            else:
                if name in helps: problems.append(f"{where}: second HELP for {name}")
                helps.add(name)
            if name in done_families: problems.append(f"{where}: {name} is not contiguous")
            if current is not None and current != name: done_families.add(current)
            current = name
        continue
    try:
        name, labels, value = parse_sample(line)
    except ValueError as e:
        problems.append(f"{where}: {e}"); continue
    fam = family_of(name)
    if fam is None: problems.append(f"{where}: {name} has no preceding # TYPE"); continue
    if fam in done_families or (current is not None and fam != current):
        problems.append(f"{where}: samples of {fam} are not contiguous")
    if types[fam] == "counter":
        if not name.endswith("_total"): problems.append(f"{where}: counter {name} does not end in _total")
        if not value >= 0: problems.append(f"{where}: negative counter")
    if (name, labels) in series: problems.append(f"{where}: duplicate series")
    series[(name, labels)] = value
if problems:
    print("\n".join(problems[:40])); sys.exit(1)
hs = sum(v for (name, _), v in series.items() if name == "lodestone_handshakes_total")
exp = series.get(("lodestone_certificate_expiry_seconds", (("certificate", "name:a"),)), "missing")
print(f"handshakes={int(hs)} expiry_a={int(exp) if exp != 'missing' else exp} series={len(series)}")
PY
# The checker refuses bad documents (it can fail), and accepts escaped labels.
selftest=$(python3 - "$T/check_metrics.py" <<'PY' 2>&1
import subprocess, sys, tempfile
bad = ['foo_total 1\n',                                         # no TYPE
       '# TYPE 1foo gauge\n1foo 1\n',                           # bad name
       '# TYPE foo counter\nfoo 1\n',                           # counter without _total
       '# TYPE foo gauge\nfoo{a="x\\q"} 1\n',                  # bad escape
       '# TYPE foo gauge\nfoo{a="x"y"} 1\n',                    # unescaped quote
       '# TYPE foo gauge\nfoo{a="x\ny"} 1\n',                   # raw newline in a value
       '# TYPE foo gauge\nfoo{a="1"} 1\nfoo{a="1"} 2\n',        # duplicate series
       '# TYPE foo gauge\nfoo{b="2",a="1"} 1\nfoo{a="1",b="2"} 2\n',  # the same, reordered
       '# TYPE foo gauge\nfoo 1x\n',                            # bad value
       '# TYPE foo gauge\nfoo{a="1",a="2"} 1\n',                # label twice
       '# TYPE foo gauge\nfoo 1\n# TYPE bar gauge\nbar 1\nfoo{a="2"} 1\n',  # not contiguous
       '# TYPE foo gauge\nfoo  1\n',                            # two spaces
       '# TYPE foo gauge\nfoo{a=1} 1\n',                        # unquoted label value
       '# TYPE foo_total counter\nfoo_total -1\n',              # negative counter
       '# TYPE foo gauge\nfoo 1',                                # no final newline
       '# TYPE foo gauge\n# TYPE foo counter\nfoo 1\n',         # two TYPEs
       'foo 1\n# TYPE foo gauge\n',                              # TYPE after the sample
       '# TYPE foo gauge\nfoo{1a="x"} 1\n']                     # bad label name
good = ['# HELP foo_total x\n# TYPE foo_total counter\nfoo_total{a="q\\"x\\\\y\\nz",b="}, "} 1\n'
        'foo_total{a="2"} 3 1700000000000\n# TYPE g gauge\ng -1.5e3\ng{x="y"} NaN\n']
def accepted(doc):
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write(doc); f.flush()
        return subprocess.run([sys.executable, sys.argv[1], f.name], capture_output=True).returncode == 0
wrong = [repr(d) for d in bad if accepted(d)] + [repr(d) for d in good if not accepted(d)]
print(f"bad={len(bad)} wrong={len(wrong)}", *wrong)
PY
)
assert_eq "the metrics checker refuses 18 bad documents and accepts escaped labels" "bad=18 wrong=0" "$selftest"

code=$(curl -sS --max-time 5 -o "$T/metrics.txt" -w '%{http_code}' "http://127.0.0.1:$MP/metrics" 2>&1)
ctl --json status; hs_after=$(jfield handshakes <<<"$OUT")
assert_eq "/metrics: 200" 200 "$code"
res=$(python3 "$T/check_metrics.py" "$T/metrics.txt" 2>&1); rc=$?
assert_eq "/metrics: the strict checker accepts it" 0 "$rc"
[ "$rc" -ne 0 ] && echo "$res" | sed 's/^/   /'
echo "   metrics: $res"
m_hs=$(sed -n 's/.*handshakes=\([0-9]*\).*/\1/p' <<<"$res")
assert_eq "metrics' handshake total = lodectl status's at the same moment" "$hs_after" "$m_hs"
assert_eq "and = the status taken before (no traffic in between)" "$hs" "$m_hs"
assert_ge "lodestone_certificate_expiry_seconds{certificate=\"name:a\"} is positive" \
  "$(sed -n 's/.*expiry_a=\(-\{0,1\}[0-9]*\).*/\1/p' <<<"$res")" 1
assert_contains "metrics: HELP and TYPE of the handshakes counter" "$(cat "$T/metrics.txt")" \
  $'# TYPE lodestone_handshakes_total counter\nlodestone_handshakes_total{worker="0"}'
assert_contains "metrics: the snapshot generation = status's" "$(cat "$T/metrics.txt")" \
  "lodestone_snapshot_generation $(jfield generation <<<"$OUT")"
if command -v promtool >/dev/null; then
  pt=$(timeout 20 promtool check metrics <"$T/metrics.txt" 2>&1); prc=$?
  assert_eq "promtool check metrics: no problem (rc 0)" "0" "$prc${pt:+: $pt}"
else
  echo "note: promtool not available ($PROMTOOL_NOTE${PROMTOOL_FAIL}): only the python checker ran"
fi
assert_eq "GET / is 404" 404 "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/" 2>&1)"
assert_eq "GET /metrics/x is 404" 404 "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/metrics/x" 2>&1)"
assert_eq "POST /metrics is 405" 405 "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -d x "http://127.0.0.1:$MP/metrics" 2>&1)"

# ---------------------------------------------------------------- 2. certs list, ocsp
ctl certs list
assert_eq "certs list: exit 0" 0 "$RC"
assert_match "certs list: name:a, served, its expiry in days and its names" "$OUT" \
  '(^|'$'\n'')name:a +serve +expires in [0-9]+ days +names: a\.test( |$)'
days=$(sed -n 's/^name:a .*expires in \([0-9]*\) days.*/\1/p' <<<"$OUT")
assert_ge "certs list: days to expiry (test PKI: a year)" "$days" 300
ctl --json certs list a
assert_eq "certs list a (by certificate name): exit 0" 0 "$RC"
assert_eq "certs list --json: the key, names, days" "name:a ['a.test'] $days" \
  "$(python3 -c 'import json,sys; c=json.loads(sys.argv[1])["certificates"]; print(len(c) == 1 and c[0]["key"], c[0]["names"], c[0]["expires_in_days"])' "$OUT" 2>&1)"
ctl certs list nosuch
assert_eq "certs list nosuch: exit 1" 1 "$RC"
assert_contains "certs list nosuch: names it" "$ERR" "no certificate named 'nosuch'"
assert_eq "certs list nosuch: nothing on stdout" "" "$OUT"

ctl ocsp status
assert_eq "ocsp status: exit 0" 0 "$RC"
assert_match "ocsp status: name:a has no source: unchecked" "$OUT" 'name:a +revocation: none unchecked'
ctl --json ocsp status name:a
assert_eq "ocsp status --json name:a: status unchecked, not stapled" "unchecked False" \
  "$(python3 -c 'import json,sys; c=json.loads(sys.argv[1])["certificates"][0]; print(c["status"], c["stapled"])' "$OUT" 2>&1)"
ctl ocsp refresh a
assert_eq "ocsp refresh a (no OCSP URL): exit 1" 1 "$RC"
assert_contains "ocsp refresh a: says why" "$ERR" "no certificate named 'a' with an OCSP or CRL source"
ctl ocsp refresh nosuch
assert_eq "ocsp refresh nosuch: exit 1" 1 "$RC"
ctl ocsp refresh
assert_eq "ocsp refresh (all; none has a source): exit 0" 0 "$RC"
assert_contains "ocsp refresh (all): nothing to refresh" "$OUT" "refreshing: 0"

# ---- certs replace: a pushed certificate is validated like a file and served at once
NEWD="$T/pushed"; mkdir -p "$NEWD"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$NEWD/a.key" 2>/dev/null
openssl req -new -key "$NEWD/a.key" -subj "/CN=a.test" -out "$NEWD/a.csr" 2>/dev/null
openssl x509 -req -in "$NEWD/a.csr" -CA "$T/pki/intermediate.pem" -CAkey "$T/pki/intermediate.key" -set_serial 4242 \
  -days 30 -extfile <(printf 'subjectAltName=DNS:a.test\nbasicConstraints=CA:FALSE\n') -out "$NEWD/a.leaf.pem" 2>/dev/null
cat "$NEWD/a.leaf.pem" "$T/pki/intermediate.pem" >"$NEWD/a.pem"
serial_of() { PKI="$T/pki" sclient "$1" -servername a.test | openssl x509 -noout -serial 2>/dev/null; }
before_serial=$(serial_of "$P")
ctl certs replace a --cert "$NEWD/a.pem" --key "$T/pki/b-wrong.key"
assert_eq "certs replace with an unreadable key file: exit 2" 2 "$RC"
ctl certs replace a --cert "$NEWD/a.pem" --key "$T/pki/a.test.key"
assert_eq "certs replace with a key that does not match: exit 1" 1 "$RC"
assert_contains "  ... the error says so" "$ERR" "does not match"
assert_not_contains "  ... and carries no key bytes" "$ERR" "PRIVATE KEY"
assert_eq "  ... the old certificate is still served" "$before_serial" "$(serial_of "$P")"
ctl certs replace a --cert "$NEWD/a.pem" --key "$NEWD/a.key"
assert_eq "certs replace: exit 0" 0 "$RC"
check "the pushed certificate is served (serial 4242 = 0x1092)" wait_for 5 bash -c "[ \"\$(PKI='$T/pki' timeout 10 openssl s_client -connect 127.0.0.1:$P -servername a.test -CAfile '$T/pki/ca.pem' </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null)\" = serial=1092 ]"
ctl certs replace nosuch --cert "$NEWD/a.pem" --key "$NEWD/a.key"
assert_eq "certs replace of an unknown certificate: exit 1" 1 "$RC"

# ---------------------------------------------------------------- 3. tickets rotate
g0=$(st generation); rot0=$(log_count '"event":"ticket_keys_rotated"')
ctl tickets rotate
assert_eq "tickets rotate: exit 0" 0 "$RC"
assert_match "tickets rotate: the new key plus the old one" "$OUT" $'(^|\n)keys: 2(\n|$)'
check "tickets rotate: a new snapshot generation in service (from $g0)" wait_for 5 st_gt generation "$g0"
assert_eq "tickets rotate: logged" $((rot0 + 1)) "$(log_count '"event":"ticket_keys_rotated","by":"admin"')"
assert_contains "still serving after the rotation" "$(sclient "$P" -servername a.test)" "Verify return code: 0 (ok)"

# ---------------------------------------------------------------- 4. routes reload
cat >>"$T/lode.toml" <<TOML

[[certificate]]
name = "b"
cert = "pki/b.test.pem"
key = "pki/b.test.key"

[[route]]
name = "b"
names = ["b.test"]
action = "terminate"
pool = "app"
certificate = "b"
TOML
cp "$T/lode.toml" "$T/with-b.toml"
g1=$(st generation); rel0=$(log_count '"event":"reloaded"'); reloads0=$(st reloads)
assert_eq "before: b.test is not served" "" "$(served_cn b.test)"
ctl routes reload --dry-run
assert_eq "routes reload --dry-run: exit 0" 0 "$RC"
assert_match "routes reload --dry-run: reports certificates_added name:b" "$OUT" $'(^|\n)certificates_added: name:b(\n|$)'
assert_match "routes reload --dry-run: says it is a dry run" "$OUT" $'(^|\n)dry_run: true(\n|$)'
ctl --json routes reload --dry-run
assert_eq "routes reload --dry-run --json: added, config changed" "['name:b'] [] True True" \
  "$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v["certificates_added"], v["certificates_removed"], v["config_changed"], v["dry_run"])' "$OUT" 2>&1)"
sleep 0.5
assert_eq "dry run: generation unchanged" "$g1" "$(st generation)"
assert_eq "dry run: b.test is still not served" "" "$(served_cn b.test)"
assert_eq "dry run: no reloaded event" "$rel0" "$(log_count '"event":"reloaded"')"
assert_eq "dry run: not counted as a reload" "$reloads0" "$(st reloads)"
ctl certs list b
assert_eq "dry run: certs list b still exits 1" 1 "$RC"

ctl routes reload
assert_eq "routes reload: exit 0" 0 "$RC"
assert_match "routes reload: reports certificates_added name:b" "$OUT" $'(^|\n)certificates_added: name:b(\n|$)'
check "routes reload: the generation grows (from $g1)" wait_for 5 st_gt generation "$g1"
check "routes reload: a reloaded event" wait_log_count '"event":"reloaded"' $((rel0 + 1)) 5
assert_eq "routes reload: b.test is served with its certificate" "b.test" "$(served_cn b.test)"
assert_eq "routes reload: a.test still served" "a.test" "$(served_cn a.test)"
assert_eq "routes reload: counted" $((reloads0 + 1)) "$(st reloads)"
ctl certs list b
assert_eq "certs list b now exits 0" 0 "$RC"

cat >>"$T/lode.toml" <<TOML

[[route]]
name = "c"
names = ["c.test"]
action = "terminate"
pool = "nosuch"
certificate = "b"
TOML
g2=$(st generation); refused0=$(st reloads_refused); rel1=$(log_count '"event":"reloaded"')
ctl routes reload --dry-run
assert_eq "broken config, dry run: exit 1" 1 "$RC"
assert_contains "broken config, dry run: the error names the key" "$ERR" "pool"
ctl routes reload
assert_eq "broken config: exit 1" 1 "$RC"
assert_contains "broken config: the error names the key (pool)" "$ERR" "pool"
assert_contains "broken config: the error names the unknown pool" "$ERR" "nosuch"
assert_eq "broken config: nothing on stdout" "" "$OUT"
sleep 0.5
assert_eq "broken config: generation unchanged" "$g2" "$(st generation)"
assert_eq "broken config: counted as refused" $((refused0 + 1)) "$(st reloads_refused)"
assert_eq "broken config: no reloaded event" "$rel1" "$(log_count '"event":"reloaded"')"
assert_eq "broken config: still serving a.test" "a.test" "$(served_cn a.test)"
assert_eq "broken config: still serving b.test" "b.test" "$(served_cn b.test)"
cp "$T/with-b.toml" "$T/lode.toml"

# ---------------------------------------------------------------- 5. other uids, usage, no daemon
cat >"$T/as_nobody.py" <<'PY'
# As uid/gid 65534 (dropped from root here): "connect SOCK" prints result=...,
# "exec PROGRAM ARGS..." runs it.
import errno, os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
if sys.argv[1] == "exec":
    os.execv(sys.argv[2], sys.argv[2:])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[2])
except PermissionError:
    print("result=EACCES"); sys.exit(0)
except OSError as e:
    print(f"result=connect_error:{errno.errorcode.get(e.errno, e.errno)}"); sys.exit(0)
try:
    s.sendall(b'{"v":1,"cmd":"status"}\n')
except BrokenPipeError:
    pass  # a refusal may come before the request is sent: read it below
data = b""
try:
    while True:
        d = s.recv(4096)
        if not d: break
        data += d
except OSError as e:
    print(f"result=recv_error:{e}"); sys.exit(0)
print("result=answer " + data.decode(errors="replace").strip())
PY
if [ "$(id -u)" != 0 ]; then
  fail "other uids: the test must run as root to act as uid 65534"
else
  chmod o+x "$T" "$T/run"
  # a copy uid 65534 can run wherever the build tree is (it may sit in a 0700 home)
  cp "$LODECTL" "$T/lodectl" && chmod 755 "$T/lodectl"
  assert_eq "uid 65534 cannot connect to the 0600 socket" "result=EACCES" \
    "$(timeout 10 python3 "$T/as_nobody.py" connect "$SOCK" 2>&1)"
  out=$(timeout 10 python3 "$T/as_nobody.py" exec "$T/lodectl" --socket "$SOCK" status 2>&1); rc=$?
  assert_eq "lodectl as uid 65534: exit 4" 4 "$rc"
  assert_contains "lodectl as uid 65534: permission denied" "$out" "permission denied"
  chmod 666 "$SOCK"
  out=$(timeout 10 python3 "$T/as_nobody.py" connect "$SOCK" 2>&1)
  assert_contains "socket made 0666: the server refuses uid 65534 itself" "$out" \
    'result=answer {"v":1,"ok":false,"error":"permission denied'
  assert_not_contains "the refused peer learns nothing" "$out" "generation"
  out=$(timeout 10 python3 "$T/as_nobody.py" exec "$T/lodectl" --socket "$SOCK" --json status 2>&1); rc=$?
  assert_eq "socket made 0666: lodectl as uid 65534 exits 4" 4 "$rc"
  assert_contains "socket made 0666: lodectl says permission denied" "$out" "permission denied"
  chmod 600 "$SOCK"
  chmod o-x "$T" "$T/run"
fi
ctl status
assert_eq "root still gets status" 0 "$RC"

usage_rc=""
for args in "" "status extra" "certs" "certs remove" "certs list a b" "ocsp" "ocsp bogus" "ocsp status a b" \
  "tickets" "tickets rotate now" "routes" "routes reload now" "routes check" "--json" "frobnicate"; do
  # shellcheck disable=SC2086  # the words are split on purpose
  timeout 10 "$LODECTL" --socket "$SOCK" $args >/dev/null 2>"$T/usage.err"; r=$?
  [ "$r" = 2 ] || usage_rc+=" [$args]=$r"
done
assert_eq "usage errors exit 2" "" "$usage_rc"
assert_contains "a usage error prints the usage" "$(cat "$T/usage.err")" "usage:"
assert_eq "lodectl --socket (no path): exit 2" 2 "$(timeout 10 "$LODECTL" --socket >/dev/null 2>&1; echo $?)"
assert_eq "lodectl frobnicate: exit 2" 2 "$(timeout 10 "$LODECTL" frobnicate >/dev/null 2>&1; echo $?)"
assert_eq "a usage error with no daemon is still 2 (not 3)" 2 \
  "$(timeout 10 "$LODECTL" --socket "$T/nowhere.sock" status extra >/dev/null 2>&1; echo $?)"

out=$(timeout 10 "$LODECTL" --socket "$T/nowhere.sock" status 2>&1); rc=$?
assert_eq "no socket at the path: exit 3" 3 "$rc"
assert_contains "no socket at the path: not running" "$out" "not running"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$T/stale.sock"
out=$(timeout 10 "$LODECTL" --socket "$T/stale.sock" status 2>&1); rc=$?
assert_eq "a stale socket nobody listens on: exit 3" 3 "$rc"
assert_contains "a stale socket: not running" "$out" "not running"

stop_lodestone() {  # SIGTERM and wait for it to exit (10 s at most)
  kill -TERM "$LPID"
  for _ in $(seq 1 100); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.1; done
  wait "$LPID" 2>/dev/null
}
stop_lodestone
out=$(timeout 10 "$LODECTL" --socket "$SOCK" status 2>&1); rc=$?
assert_eq "lodestone stopped: exit 3" 3 "$rc"
assert_contains "lodestone stopped: not running" "$out" "not running"
assert_eq "lodestone stopped: /metrics is gone" 000 "$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MP/metrics" 2>/dev/null)"

# ---------------------------------------------------------------- 6. ticket key file; OCSP
OP=$(free_port); CP=$(free_port); RP=$(free_port)
OPKI="$T/opki"
OCSP_PORT=$OP CRL_PORT=$CP ROOT_OCSP_PORT=$RP "$LODE_SOURCE_DIR/tools/make-ocsp-pki.sh" "$OPKI" >/dev/null 2>&1 ||
  { fail "make-ocsp-pki.sh"; finish; }
openssl ocsp -index "$OPKI/index.txt" -port "$OP" -rsigner "$OPKI/ocsp-responder.pem" \
  -rkey "$OPKI/ocsp-responder.key" -CA "$OPKI/intermediate.pem" -ndays 1 >"$T/responder.log" 2>&1 &
PIDS+=($!)
wait_for 5 grep -q "waiting for OCSP client" "$T/responder.log" || { fail "the OCSP responder did not start"; finish; }
requests() { grep -c "Received request" "$T/responder.log"; }
requests_gt() { [ "$(requests)" -gt "$1" ]; }
head -c 80 /dev/urandom >"$T/tickets.key"; chmod 600 "$T/tickets.key"
P2=$(free_port); MP2=$(free_port)
cat >"$T/second.toml" <<TOML
[[listener]]
name = "https"
listen = ["127.0.0.1:$P2"]
[[pool]]
name = "app"
backends = ["127.0.0.1:$PA"]
[[certificate]]
name = "good"
cert = "opki/ocsp-good.test.pem"
key = "opki/ocsp-good.test.key"
[[route]]
name = "good"
names = ["ocsp-good.test"]
action = "terminate"
pool = "app"
certificate = "good"
[control]
state_dir = "$T/state"
trusted_ca = "opki/ca.pem"
[ocsp]
timeout_ms = 1000
startup_wait_ms = 5000
[tls]
ticket_key_file = "tickets.key"
[admin]
metrics = "127.0.0.1:$MP2"
TOML
start_lodestone "$T/second.toml" --workers 2
ctl status
assert_eq "second lodestone: status exit 0 (the socket is back)" 0 "$RC"
ctl tickets rotate
assert_eq "tickets rotate with [tls] ticket_key_file: exit 1" 1 "$RC"
assert_contains "tickets rotate with a key file: says to rotate the file" "$ERR" "rotate that file"
ctl --json ocsp status good
assert_eq "ocsp status good: ocsp, good, stapled" "ocsp good True" \
  "$(python3 -c 'import json,sys; c=json.loads(sys.argv[1])["certificates"][0]; print(c["revocation_source"], c["status"], c["stapled"])' "$OUT" 2>&1)"
ctl ocsp status
assert_match "ocsp status (human): good, stapled" "$OUT" 'name:good +revocation: ocsp good \(stapled, age [0-9]+ s\)'
r0=$(requests)
ctl ocsp refresh good
assert_eq "ocsp refresh good: exit 0" 0 "$RC"
assert_contains "ocsp refresh good: one fetch started" "$OUT" "refreshing: 1"
check "ocsp refresh: the responder's request count grows (from $r0)" wait_for 5 requests_gt "$r0"
ctl ocsp refresh nosuch
assert_eq "ocsp refresh nosuch: exit 1" 1 "$RC"
assert_contains "still serving, stapled" "$(PKI=$OPKI sclient "$P2" -servername ocsp-good.test -status)" \
  "Cert Status: good"
# ---- routes show: which route, certificate and pool a name gets, and why
ctl --json routes show OCSP-Good.Test.
assert_eq "routes show: normalized, exact, terminate, certificate good, served" "ocsp-good.test exact terminate good True" \
  "$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); l=a["listeners"][0]; print(a["name"], l["match"], l["action"], l["certificate"], l["served"])' "$OUT" 2>&1)"
ctl routes show nothing.example
assert_eq "routes show an unknown name: exit 0" 0 "$RC"
assert_contains "  ... says the client gets alert 112" "$OUT" "alert unrecognized_name (112)"
ctl routes show
assert_contains "routes show without a name: the no-SNI answer" "$OUT" "no SNI"
ctl routes show 'not a name!'
assert_eq "routes show of something that is not a host name: exit 1" 1 "$RC"
assert_contains "  ... saying so" "$ERR" "is not a host name"
finish
