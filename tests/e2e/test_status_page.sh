#!/usr/bin/env bash
# The status page (GET /status on the admin HTTP address) in Debian's headless
# chromium, driven by playwright-core (tests/e2e/browser/status_page.mjs;
# tools/install-deps.sh installs both).
#
# A lodestone with two terminate routes (a.test, and ocsp-good.test stapled
# from an `openssl ocsp` responder), one backend, two workers; curl and
# s_client connect; a raw ClientHello names `<script>alert(1)</script>`.
# Then the page is loaded and judged:
# 1. it renders: title, every table, no console or page error, no dialog, no
#    request but GETs of /status, /metrics and /status.json on the admin
#    address; served with a CSP that allows only its own script;
# 2. its numbers are those of the /metrics body it rendered (the page numbers
#    its scrapes; the driver keeps every body): generation, per-worker
#    counters and their sum, certificate expiry days, staple ages,
#    revocation, per-route and per-backend families (or "—" where /metrics
#    has none); the page's own parser unescapes label values as the
#    exposition format says and refuses malformed lines;
# 3. the hostile name is shown as that text in the recently-refused table,
#    with no element or script made of it and no dialog;
# 4. a screenshot is kept: $LODE_ARTIFACT_DIR (default: Testing/status-page
#    beside the lodestone binary), the path is printed;
# 5. it refreshes itself: a reload that adds a route (SIGHUP) shows up as a
#    new generation and a new route row, in the same window, no navigation.
source "$(dirname "$0")/lib.sh"
BROWSER_DIR="$E2E_DIR/browser"
ARTIFACTS=${LODE_ARTIFACT_DIR:-$(dirname "$LODESTONE")/Testing/status-page}
CHROMIUM=${LODE_CHROMIUM:-/usr/bin/chromium}

e2e_begin status_page 150
command -v node >/dev/null || { fail "node is not installed (tools/install-deps.sh)"; finish; }
[ -x "$CHROMIUM" ] || { fail "$CHROMIUM is not installed (tools/install-deps.sh)"; finish; }
[ -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] ||
  { fail "playwright-core is not installed in $BROWSER_DIR (tools/install-deps.sh)"; finish; }

# ---------------------------------------------------------------- a running lodestone
make_pki a.test
OP=$(free_port); CP=$(free_port); RP=$(free_port)
OPKI="$T/opki"
OCSP_PORT=$OP CRL_PORT=$CP ROOT_OCSP_PORT=$RP "$LODE_SOURCE_DIR/tools/make-ocsp-pki.sh" "$OPKI" >/dev/null 2>&1 ||
  { fail "make-ocsp-pki.sh"; finish; }
openssl ocsp -index "$OPKI/index.txt" -port "$OP" -rsigner "$OPKI/ocsp-responder.pem" \
  -rkey "$OPKI/ocsp-responder.key" -CA "$OPKI/intermediate.pem" -ndays 1 >"$T/responder.log" 2>&1 &
PIDS+=($!)
wait_for 5 grep -q "waiting for OCSP client" "$T/responder.log" || { fail "the OCSP responder did not start"; finish; }
# shellcheck disable=SC2153  # PKI is set by make_pki
cat "$PKI/ca.pem" "$OPKI/ca.pem" >"$T/trusted.pem"

P=$(free_port); PA=$(free_port); MP=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
ocsp_route_config "$T/lode.toml" "$MP"
start_lodestone "$T/lode.toml" --workers 2

N=4
ok=0
for _ in $(seq 1 $N); do [[ "$(lcurl a.test "$P")" == *backend=app* ]] && ok=$((ok + 1)); done
assert_eq "$N curl requests through route a reach the backend" "$N" "$ok"
assert_contains "ocsp-good.test: handshake with a staple" \
  "$(PKI=$OPKI sclient "$P" -servername ocsp-good.test -status)" "Cert Status: good"
check "the stats count the $((N + 1)) handshakes" wait_stat handshakes $((N + 1)) 5
fetch_metrics() { curl -s --max-time 5 -o "$T/metrics.txt" "http://127.0.0.1:$MP/metrics" && grep -q "^$1" "$T/metrics.txt"; }
check "/metrics has the staple's age" wait_for 10 fetch_metrics lodestone_ocsp_staple_age_seconds

# A ClientHello (Python's OpenSSL) whose server_name is markup: refused (not a
# host name), and remembered among the recently refused names.
HOSTILE='<script>alert(1)</script>'
python3 - "$NETCLIENT" "$HOSTILE" "$T/hostile.bin" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("netclient", sys.argv[1])
nc = importlib.util.module_from_spec(spec); spec.loader.exec_module(nc)
rec_ver, head, exts = nc.split_hello(nc.make_hello("x.test"))
exts = [(t, nc.sni_ext(sys.argv[2].encode()) if t == 0 else d) for t, d in exts]
open(sys.argv[3], "wb").write(nc.join_hello(rec_ver, head, exts))
PY
out=$(netclient raw --port "$P" --file "$T/hostile.bin" --wait 3)
assert_match "the hostile hello is refused (alert or close, no handshake)" "$out" 'end=(eof|reset)'

# ---------------------------------------------------------------- the page, in chromium
mkdir -p "$ARTIFACTS"
cat >"$T/reload.sh" <<SH
cat >>"$T/lode.toml" <<'TOML'

[[route]]
name = "added-by-reload"
names = ["c.test"]
action = "reject"
TOML
kill -HUP $LPID
SH
timeout 90 node "$BROWSER_DIR/status_page.mjs" --url "http://127.0.0.1:$MP/status?refresh=1" --out "$T" \
  --reload-cmd "bash $T/reload.sh" --chromium "$CHROMIUM" --limit-s 80 >"$T/driver.log" 2>&1
rc=$?
assert_eq "the browser driver ran to its end" "0" "$rc"
[ "$rc" = 0 ] || tail -n 30 "$T/driver.log"
[ -f "$T/result.json" ] || { fail "the driver wrote no result"; finish; }
check "the reload was applied" grep -q '"event":"reloaded"' "$LLOG"
for f in status-page.png status-page-after-reload.png; do
  [ -f "$T/$f" ] && cp "$T/$f" "$ARTIFACTS/$f"
done
cp "$T/result.json" "$ARTIFACTS/result.json"
echo "  screenshots and the driver's result: $ARTIFACTS/"

# judge.py RESULT ADMIN_ORIGIN HOSTILE BACKEND: "ok NAME" / "bad NAME: why"
# per check, comparing the page with the /metrics bodies it rendered, read
# by a parser of its own (not the page's).
cat >"$T/judge.py" <<'PY'
import json, math, re, sys
res = json.load(open(sys.argv[1]))
origin, hostile, backend = sys.argv[2], sys.argv[3], sys.argv[4]
DASH = "\u2014"

def check(name, cond, why=""):
    print(f"ok {name}" if cond else f"bad {name}: " + str(why).replace("\n", " | "))

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')
def unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
def parse(body):
    out = []
    for line in body.splitlines():
        if not line.strip() or line.startswith("#"): continue
        m = SAMPLE.match(line)
        if not m: raise ValueError(f"unparsed /metrics line: {line!r}")
        labels = {k: unescape(v) for k, v in LABEL.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out
def by(samples, name, key, where=lambda l: True):
    got = {}
    for n, l, v in samples:
        if n == name and where(l) and key(l) is not None:
            got[key(l)] = got.get(key(l), 0) + v
    return got
def has(samples, name): return any(n == name for n, _, _ in samples)
def num(v): return str(int(round(v)))

# ---- 1. rendered
first, second = res.get("first"), res.get("second")
check("driver: no error", "driver_error" not in res, res.get("driver_error", "")[:600])
if not first: sys.exit(0)
check("page: HTTP 200, text/html", res.get("page_status") == 200 and
      res.get("page_headers", {}).get("content-type", "").startswith("text/html"), str(res.get("page_headers")))
csp = res.get("page_headers", {}).get("content-security-policy", "")
check("page: CSP allows only its own script (by hash) and same-origin fetches",
      "default-src 'none'" in csp and re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", csp) and
      "connect-src 'self'" in csp and "unsafe" not in csp, csp)
check("page: title", first["title"] == "Lodestone status", first["title"])
tables = first["tables"]
for t in ["listeners", "routes", "certificates", "backends", "workers", "errors", "refused"]:
    rows = tables.get(t, [])
    check(f"page: table {t} rendered with rows", rows and (t == "refused" or rows[0]["key"] is not None),
          json.dumps(rows)[:300])
check("page: no console error (CSP violations included)", not res["console_errors"], str(res["console_errors"])[:800])
check("page: no script error", not res["page_errors"], str(res["page_errors"])[:800])
check("page: no dialog", not res["dialogs"], str(res["dialogs"]))
check("page: no request to another host", not res["foreign_requests"], str(res["foreign_requests"]))
bad_req = [r for r in res["requests"] if not re.fullmatch(
    re.escape("GET " + origin) + r"/(status(\?refresh=1)?|metrics\?scrape=\d+|status\.json\?scrape=\d+)", r)]
check("page: only GETs of /status, /metrics and /status.json on the admin address", not bad_req, str(bad_req[:5]))
check("page: no error banner", first["error_banner"] is None, str(first["error_banner"]))
check("page: only its own script; no element made of data", first["scripts"] == 1 and first["elements_in_cells"] == 0,
      f"scripts={first['scripts']} elements in cells={first['elements_in_cells']}")

# ---- 2. the numbers are those of the /metrics body rendered
body = res["metrics_bodies"].get(str(first["scrape"]))
check(f"the /metrics body of the rendered scrape ({first['scrape']}) was captured", body is not None,
      str(list(res["metrics_bodies"])))
if body is None: sys.exit(0)
s = parse(body)
ov = first["overview"]
gen = by(s, "lodestone_snapshot_generation", lambda l: "")
check("generation = lodestone_snapshot_generation", ov.get("generation") == num(gen.get("", -1)),
      f"page {ov.get('generation')}, /metrics {gen}")

w = lambda l: l.get("worker")
rows = {r["key"]: r["cells"] for r in tables["workers"]}
hs = by(s, "lodestone_handshakes_total", w)
check("workers: one row per worker of /metrics", set(rows) == set(hs) and len(hs) == 2, f"{sorted(rows)} vs {sorted(hs)}")
for col, family in [("handshakes", "lodestone_handshakes_total"), ("accepted", "lodestone_accepted_total"),
                    ("active", "lodestone_active_connections"), ("resumed", "lodestone_handshakes_resumed_total"),
                    ("handshake_errors", "lodestone_handshake_errors_total"), ("ktls_tx", "lodestone_ktls_tx_total")]:
    want = {k: num(v) for k, v in by(s, family, w).items()}
    got = {k: rows[k].get(col) for k in want if k in rows}
    check(f"workers: {col} = {family}", want and got == want, f"page {got}, /metrics {want}")
check("overview: handshakes = the sum over workers", ov.get("handshakes") == num(sum(hs.values())),
      f"{ov.get('handshakes')} vs {sum(hs.values())}")
check(f"overview: handshakes >= {sys.argv[5]} (the connections made)", sum(hs.values()) >= int(sys.argv[5]),
      str(sum(hs.values())))
check("overview: connections open = sum of lodestone_active_connections",
      ov.get("active") == num(sum(by(s, "lodestone_active_connections", w).values())), str(ov.get("active")))

c = lambda l: l.get("certificate")
certs = {r["key"]: r["cells"] for r in tables["certificates"]}
expiry = by(s, "lodestone_certificate_expiry_seconds", c)
check("certificates: one row per certificate of /metrics", set(certs) == set(expiry) and len(expiry) >= 2,
      f"{sorted(certs)} vs {sorted(expiry)}")
want = {k: str(math.floor(v / 86400)) for k, v in expiry.items()}
check("certificates: days to expiry = floor(lodestone_certificate_expiry_seconds / 86400)",
      {k: certs.get(k, {}).get("expiry_days") for k in want} == want, f"{certs} vs {want}")
age = by(s, "lodestone_ocsp_staple_age_seconds", c)
check("certificates: a stapled one", any("good" in k for k in age), str(age))
want = {k: num(age[k]) if k in age else DASH for k in expiry}
check("certificates: staple age = lodestone_ocsp_staple_age_seconds (\u2014 without staple)",
      {k: certs.get(k, {}).get("staple_age") for k in want} == want, f"{ {k: v.get('staple_age') for k, v in certs.items()} } vs {want}")
status = {l["certificate"]: l["status"] for n, l, v in s if n == "lodestone_revocation_status" and v == 1}
check("certificates: revocation = lodestone_revocation_status",
      status and all(certs.get(k, {}).get("revocation") == v for k, v in status.items()), f"{status}")
served = by(s, "lodestone_certificate_served", c)
check("certificates: served = lodestone_certificate_served",
      all(certs.get(k, {}).get("served") == ("yes" if v == 1 else "withheld") for k, v in served.items()), str(served))

r = lambda l: l.get("route")
routes = {x["key"]: x["cells"] for x in tables["routes"]}
check("routes: a and good", {"a", "good"} <= set(routes), str(sorted(routes)))
for col, family, where in [
        ("connections", "lodestone_route_connections_total", lambda l: True),
        ("active", "lodestone_route_active_connections", lambda l: True),
        ("full", "lodestone_route_handshakes_total", lambda l: l.get("kind") == "full"),
        ("resumed", "lodestone_route_handshakes_total", lambda l: l.get("kind") == "resumed"),
        ("ktls", "lodestone_route_ktls_connections_total", lambda l: True),
        ("failures", "lodestone_route_handshake_failures_total", lambda l: True),
        ("rejects", "lodestone_route_rejects_total", lambda l: True)]:
    vals = by(s, family, r, where)
    want = {k: num(vals.get(k, 0)) if has(s, family) else DASH for k in ("a", "good")}
    got = {k: routes.get(k, {}).get(col) for k in want}
    check(f"routes: {col} = {family}" + ("" if has(s, family) else " (absent: \u2014)"), got == want,
          f"page {got}, /metrics {want}")

plain = [x["cells"] for x in tables["errors"] if "{" not in x["cells"].get("counter", "{")]
want = {x["counter"]: num(sum(by(s, x["counter"], lambda l: "").values())) for x in plain}
check("refusals and errors: totals = the workers' counters", plain and {x["counter"]: x["total"] for x in plain} == want,
      f"page { {x['counter']: x['total'] for x in plain} }, /metrics {want}")

backends = {tuple(json.loads(x["key"])): x["cells"] for x in tables["backends"] if x["key"]}
b = ("app", backend)
check(f"backends: {b} shown", b in backends, str(list(backends)))
pb = lambda l: (l.get("pool"), l.get("backend"))
for col, family, show in [
        ("health", "lodestone_backend_up", lambda v: "up" if v >= 1 else "down"),
        ("draining", "lodestone_backend_draining", lambda v: "draining" if v >= 1 else "no"),
        ("active", "lodestone_backend_active_connections", num),
        ("connect_failures", "lodestone_backend_connect_failures_total", num)]:
    vals = by(s, family, pb)
    want = show(vals[b]) if b in vals else DASH
    got = backends.get(b, {}).get(col)
    check(f"backends: {col} = {family}" + ("" if b in vals else " (absent: \u2014)"), got == want,
          f"page {got}, /metrics {want}")

p = res["parser"]
x = {e["labels"].get("certificate"): e for e in p["x"]}
check("page parser: \\\\ \\\" \\n unescaped in label values", "a\\b\"c\nd" in x and
      x["a\\b\"c\nd"]["labels"].get("other") == "<script>alert(1)</script>" and x["a\\b\"c\nd"]["value"] == "7",
      json.dumps(p))
check("page parser: exponents, +Inf, a trailing comma and a timestamp",
      x.get("plain", {}).get("value") == "1500" and x.get("inf", {}).get("value") == "Infinity" and
      p["y"] == [{"labels": {"a": "1"}, "value": 2}], json.dumps(p))
check("page parser: malformed lines refused", p["errors"] == 6 and "bad" not in p["names"], json.dumps(p))

# ---- 3. the hostile name, as text
refused = [x["cells"] for x in tables["refused"]]
check("recently refused: the hostile SNI shown as its text", any(x.get("sni") == hostile for x in refused),
      json.dumps(refused)[:600])

# ---- 5. refreshed in place
check("refresh: the generation changed without a reload of the page", "refresh_error" not in res and second and
      second["overview"].get("generation") != ov.get("generation"), res.get("refresh_error", ""))
if second:
    body2 = res["metrics_bodies"].get(str(second["scrape"]))
    gen2 = by(parse(body2), "lodestone_snapshot_generation", lambda l: "") if body2 else {}
    check("refresh: the new generation = that scrape's lodestone_snapshot_generation, higher than before",
          body2 is not None and second["overview"].get("generation") == num(gen2.get("", -1)) and
          gen2.get("", -1) > gen.get("", -1), f"{second['overview'].get('generation')} vs {gen2}")
    check("refresh: the route the reload added has a row",
          any(x["key"] == "added-by-reload" for x in second["tables"]["routes"]),
          str([x["key"] for x in second["tables"]["routes"]]))
check("refresh: same window (marker kept, no navigation)",
      res.get("marker") == "kept" and res.get("navigations_during_refresh") == 0,
      f"marker {res.get('marker')}, navigations {res.get('navigations_during_refresh')}")
check("refresh: still no console error, dialog or foreign request",
      not res["console_errors"] and not res["dialogs"] and not res["foreign_requests"], "")
PY
while IFS= read -r line; do
  case $line in
    "ok "*) pass "${line#ok }" ;;
    "bad "*) fail "${line#bad }" ;;
    *) fail "judge.py: $line" ;;
  esac
done < <(python3 "$T/judge.py" "$T/result.json" "http://127.0.0.1:$MP" "$HOSTILE" "127.0.0.1:$PA" $((N + 1)) 2>&1)

# ---- 4. the screenshot
check "screenshot kept: $ARTIFACTS/status-page.png (a PNG)" \
  python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); sys.exit(0 if d[:8] == b"\x89PNG\r\n\x1a\n" and len(d) > 10000 else 1)' \
  "$ARTIFACTS/status-page.png"
finish
