#!/usr/bin/env bash
# The Grafana dashboard (tools/grafana/lodestone-dashboard.json) queries only
# metrics that a running Lodestone exports.
#
# 1. The dashboard: JSON, schemaVersion 36 or later, every query on the
#    ${DS_PROMETHEUS} data source variable, unique panel ids, every panel
#    with a query; every expression parses (`promtool check rules`, when
#    Debian's prometheus package is installed: tests/e2e/test_admin.sh
#    installs it).
# 2. The metric-name extractor (python3, below) on known PromQL: strings,
#    label matchers, ranges and subqueries, by/without/on/group_left label
#    lists, functions, keywords, offsets, numbers and Grafana variables are
#    not metric names; an unknown function is an error.
# 3. A lodestone with two terminate routes: a.test (tools/make-test-pki.sh)
#    and ocsp-good.test (tools/make-ocsp-pki.sh, stapled from an `openssl
#    ocsp` responder, so the OCSP and revocation families have samples).
#    The pool is health-checked (tcp); curl and s_client connect, one
#    s_client asks for an unknown name and curl speaks plain HTTP (so alert,
#    hello-reason and health families have samples); /metrics is fetched; every metric name in
#    every PromQL expression of the dashboard (panel targets, template
#    variable queries, anywhere an "expr" sits) has a sample in it.
# 4. The check can fail: a copy of the dashboard with one more panel that
#    queries lodestone_no_such_metric_total is refused, naming that metric.
#
# LODE_DASHBOARD=FILE checks another dashboard file against the same run.
source "$(dirname "$0")/lib.sh"
DASHBOARD=${LODE_DASHBOARD:-$LODE_SOURCE_DIR/tools/grafana/lodestone-dashboard.json}

e2e_begin dashboard 90
[ -f "$DASHBOARD" ] || { fail "no dashboard at $DASHBOARD"; finish; }

cat >"$T/check_dashboard.py" <<'PY'
# check_dashboard.py structure DASHBOARD      the dashboard's own shape
# check_dashboard.py self-test                the extractor on known PromQL
# check_dashboard.py rules DASHBOARD OUT      its expressions as a rules file
# check_dashboard.py metrics DASHBOARD METRICS  every metric it queries has a
#   sample in METRICS (Prometheus text): prints "missing: NAME (why; at WHERE:
#   EXPR)" for each that has none, then "checked=<names> exprs=<n>" and the
#   exported families it does not use; exits 1 when one is missing.
import json, re, sys

# PromQL functions and aggregation operators (Prometheus 2.x/3.x).
FUNCS = set("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort
sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
time timestamp vector year
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
""".split())
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "atan2", "inf", "nan", "start", "end"}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME_MATCHER = re.compile(r'__name__\s*(=~|!=|!~|=)\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')

def metric_names(expr):
    """(names, problems) of one PromQL expression."""
    names, problems = set(), []
    for op, lit in NAME_MATCHER.findall(expr):
        if op == "=": names.add(lit[1:-1])
        else: problems.append(f"cannot check a metric name matched with {op}: {lit}")
    s = STRING.sub(" ", expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)            # Grafana variables ($__rate_interval, ${x})
    s = re.sub(r"\{[^{}]*\}", " ", s)                     # label matchers
    s = re.sub(r"\[[^\[\]]*\]", " ", s)                   # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)  # label lists
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", s):
        tok = m.group(0)
        if tok.lower() in KEYWORDS: continue
        if s[m.end():].lstrip().startswith("("):
            if tok not in FUNCS: problems.append(f"unknown function {tok}()")
            continue
        names.add(tok)
    return names, problems

def template_query_names(q):
    """A Grafana Prometheus variable query: label_values(SELECTOR, LABEL),
    label_values(LABEL), label_names(...), metrics(REGEX), query_result(PROMQL)."""
    q = q.strip()
    m = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\s*\)", q, re.S)
    if m: return metric_names(m.group(1))
    if re.fullmatch(r"label_values\(\s*[A-Za-z_]\w*\s*\)", q) or q.startswith("label_names("):
        return set(), []
    if q.startswith("metrics("): return set(), [f"cannot check a metrics() variable: {q}"]
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    return metric_names(m.group(1) if m else q)

def queries(dash):
    """Every PromQL text in the dashboard: (where, text, is_template)."""
    out = []
    def walk(v, where):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "expr" and isinstance(x, str): out.append((where, x, False))
                else: walk(x, where + "." + k)
        elif isinstance(v, list):
            for i, x in enumerate(v): walk(x, f"{where}[{i}]")
    walk({k: v for k, v in dash.items() if k != "templating"}, "$")
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query": continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q
        if q: out.append((f"templating.{var.get('name')}", q, True))
    return out

def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # the panels of a collapsed row

def structure(path):
    problems = []
    dash = json.load(open(path))
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')} (36 or later wanted)")
    ds = [v for v in dash.get("templating", {}).get("list", [])
          if v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not ds: problems.append("no templating variable DS_PROMETHEUS of type datasource (prometheus)")
    ids = [p.get("id") for p in all_panels(dash)]
    if len(ids) != len(set(ids)) or None in ids: problems.append(f"panel ids not unique: {ids}")
    panels = 0
    for p in all_panels(dash):
        if p.get("type") == "row": continue
        panels += 1
        title = p.get("title", "?")
        if "gridPos" not in p: problems.append(f"panel '{title}': no gridPos")
        targets = p.get("targets") or []
        if not targets or not all(t.get("expr", "").strip() for t in targets):
            problems.append(f"panel '{title}': a panel without a PromQL expr")
        for d in [p.get("datasource")] + [t.get("datasource") for t in targets]:
            if d != {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}:
                problems.append(f"panel '{title}': data source {d}, not ${{DS_PROMETHEUS}}")
    for p in problems: print(p)
    if not problems: print(f"panels={panels}")
    return 1 if problems else 0

def self_test():
    cases = [
        ('sum by (instance, worker) (rate(lodestone_handshakes_total{instance=~"$instance"}[$__rate_interval]))',
         {"lodestone_handshakes_total"}),
        ('sum(rate(a_total[5m])) / sum without (le) (rate(b_total[5m]))', {"a_total", "b_total"}),
        ('a * on (instance) group_left (certificate, status) b', {"a", "b"}),
        ('a * ignoring(worker) group_right b > bool 0', {"a", "b"}),
        ('count (m{x="y", z!~"in{}valid"} == 0) or vector(0)', {"m"}),
        ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{route="r"}[5m])))', {"h_bucket"}),
        ('m offset 5m + max_over_time(n[1h:5m]) - 1e3 * 0x1f', {"m", "n"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)") and n unless o', {"m", "n", "o"}),
        ('{__name__="named_total", job="x"} + Inf', {"named_total"}),
        ('topk(5, sum_by_me)', {"sum_by_me"}),
        ('lodestone_${kind}_total', {"lodestone_", "_total"}),
    ]
    bad = 0
    for expr, want in cases:
        got, problems = metric_names(expr)
        if got != want or problems:
            print(f"self-test: {expr!r}: want {sorted(want)}, got {sorted(got)} {problems}"); bad += 1
    for expr in ['frobnicate(m)', 'sum(m) by (x) + nosuch (n)']:
        if not any("unknown function" in p for p in metric_names(expr)[1]):
            print(f"self-test: {expr!r}: the unknown function went unnoticed"); bad += 1
    if not any("=~" in p for p in metric_names('{__name__=~"lode.*"}')[1]):
        print("self-test: a __name__ regex went unnoticed"); bad += 1
    for q, want in [('label_values(lodestone_workers{job="x"}, instance)', {"lodestone_workers"}),
                    ('label_values(instance)', set()),
                    ('query_result(topk(3, lodestone_active_connections))', {"lodestone_active_connections"})]:
        if template_query_names(q) != (want, []):
            print(f"self-test: template {q!r}: {template_query_names(q)}"); bad += 1
    print(f"self-test: {len(cases) + 6} cases, {bad} wrong")
    return 1 if bad else 0

def check_metrics(path, metrics_path):
    dash = json.load(open(path))
    samples = set()
    for line in open(metrics_path):
        if line.startswith("#") or not line.strip(): continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if m: samples.add(m.group(0))
    declared = set(re.findall(r"^# TYPE (\S+)", open(metrics_path).read(), re.M))
    used, bad = set(), 0
    qs = queries(dash)
    for where, text, is_template in qs:
        names, problems = template_query_names(text) if is_template else metric_names(text)
        for p in problems:
            print(f"problem: {p} (at {where}: {text})"); bad += 1
        if not names:
            print(f"problem: no metric name in {text} (at {where})"); bad += 1
        for n in sorted(names):
            used.add(n)
            if n not in samples:
                why = "declared but no sample" if n in declared else "not exported"
                print(f"missing: {n} ({why}; at {where}: {text})"); bad += 1
    if not qs:
        print("problem: no PromQL expression in the dashboard"); bad += 1
    print(f"checked={','.join(sorted(used))} exprs={len(qs)}")
    unused = sorted(f for f in declared if f not in used)
    if unused: print(f"not on the dashboard: {' '.join(unused)}")
    return 1 if bad else 0

def rules(path, out_path):
    """Every PromQL expression as a recording rule (JSON is YAML), for
    `promtool check rules` to parse; Grafana's interval variables become 5m."""
    exprs = []
    for where, text, is_template in queries(json.load(open(path))):
        if is_template:
            m = re.fullmatch(r"(?:label_values|query_result)\((.*?)(?:,\s*[A-Za-z_]\w*\s*)?\)", text.strip(), re.S)
            if not m: continue
            text = m.group(1)
        exprs.append(re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", text))
    json.dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}, open(out_path, "w"), indent=1)
    print(f"exprs={len(exprs)}")
    return 0

if __name__ == "__main__":
    cmd = sys.argv[1]
    sys.exit(structure(sys.argv[2]) if cmd == "structure" else self_test() if cmd == "self-test"
             else rules(sys.argv[2], sys.argv[3]) if cmd == "rules" else check_metrics(sys.argv[2], sys.argv[3]))
PY
cdash() { python3 "$T/check_dashboard.py" "$@" 2>&1; }

# ---------------------------------------------------------------- 1. the dashboard's shape
out=$(cdash structure "$DASHBOARD"); rc=$?
assert_eq "dashboard: JSON, schemaVersion >= 36, \${DS_PROMETHEUS} everywhere, a query per panel" "0" "$rc"
[ "$rc" = 0 ] || echo "$out"
assert_match "dashboard: has panels" "$out" '^panels=[1-9][0-9]*$'

if command -v promtool >/dev/null; then
  cdash rules "$DASHBOARD" "$T/dashboard-rules.yml" >/dev/null
  out=$(promtool check rules "$T/dashboard-rules.yml" 2>&1); rc=$?
  assert_eq "dashboard: every expression parses as PromQL (promtool check rules)" "0" "$rc"
  [ "$rc" = 0 ] || echo "$out" | head -n 20
else
  echo "note: promtool is not installed (Debian's prometheus package): PromQL syntax not checked"
fi

# ---------------------------------------------------------------- 2. the extractor
out=$(cdash self-test); rc=$?
assert_eq "metric-name extractor: known PromQL" "0" "$rc"
[ "$rc" = 0 ] || echo "$out"

# ---------------------------------------------------------------- 3. a running lodestone
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
# A health-checked pool, so the health-check families have samples.
sed -i 's|^backends = \["127.0.0.1:'"$PA"'"\]$|&\nhealth = { type = "tcp", interval_ms = 200, timeout_ms = 100 }|' "$T/lode.toml"
ocsp_route_config "$T/lode.toml" "$MP"
start_lodestone "$T/lode.toml" --workers 2

N=4
ok=0
for _ in $(seq 1 $N); do [[ "$(lcurl a.test "$P")" == *backend=app* ]] && ok=$((ok + 1)); done
assert_eq "$N curl requests through the terminate route reach the backend" "$N" "$ok"
assert_contains "ocsp-good.test: handshake with a staple" \
  "$(PKI=$OPKI sclient "$P" -servername ocsp-good.test -status)" "Cert Status: good"
check "the stats count the $((N + 1)) handshakes" wait_stat handshakes $((N + 1)) 5
# An unknown name (an unrecognized_name alert) and plain HTTP (a hello refused
# for its reason): the alert and hello-reason families have samples.
sclient "$P" -servername unknown.test >/dev/null
assert_contains "plain HTTP on the TLS port is refused" "$(timeout 10 curl -s "http://127.0.0.1:$P/" 2>&1)" "This port speaks TLS"

# fetch_metrics NAME: /metrics into $T/metrics.txt; true when NAME has a sample.
fetch_metrics() { curl -s --max-time 5 -o "$T/metrics.txt" "http://127.0.0.1:$MP/metrics" && grep -q "^$1" "$T/metrics.txt"; }
check "/metrics answers, with the staple's age" wait_for 5 fetch_metrics lodestone_ocsp_staple_age_seconds
handshakes=$(awk '/^lodestone_handshakes_total\{/ { s += $2 } END { print s + 0 }' "$T/metrics.txt")
assert_ge "/metrics: lodestone_handshakes_total sums to the $((N + 1)) handshakes" "$handshakes" $((N + 1))

out=$(cdash metrics "$DASHBOARD" "$T/metrics.txt"); rc=$?
assert_eq "every metric the dashboard queries has a sample in /metrics" "0" "$rc"
echo "  ${out//$'\n'/$'\n'  }"
assert_contains "  ... the check saw the handshake counter" "$out" "lodestone_handshakes_total"

# ---------------------------------------------------------------- 4. the check can fail
python3 - "$DASHBOARD" "$T/bad-dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
d["panels"].append({"type": "timeseries", "id": 9999, "title": "Not a Lodestone metric", "datasource": ds,
                    "gridPos": {"h": 8, "w": 12, "x": 0, "y": 999},
                    "targets": [{"datasource": ds, "refId": "A",
                                 "expr": 'sum by (worker) (rate(lodestone_no_such_metric_total{instance=~"$instance"}[$__rate_interval]))'}]})
json.dump(d, open(sys.argv[2], "w"), indent=2)
PY
out=$(cdash metrics "$T/bad-dashboard.json" "$T/metrics.txt"); rc=$?
assert_eq "a dashboard with a panel on lodestone_no_such_metric_total: refused" "1" "$rc"
assert_contains "  ... naming the metric" "$out" "missing: lodestone_no_such_metric_total (not exported"
assert_eq "  ... and only that one" 1 "$(grep -c '^missing:' <<<"$out")"
finish
