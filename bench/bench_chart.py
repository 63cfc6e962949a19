#!/usr/bin/env python3
"""Charts of the benchmark JSON, drawn by gnuplot (Debian `gnuplot-nox`), as SVG and PNG.

  bench_chart.py compare JSON OUT   bench/compare_nginx.sh's JSON: per test, the
      server CPU (idle: memory) per operation of nginx, HAProxy and Lodestone
      relative to nginx; then, in µs on a log scale, Lodestone and nginx against
      the OpenSSL ceiling and the crypto bound measured in the same run.
  bench_chart.py dpdk JSON OUT      bench/dpdk_front_bench.sh's JSON: forwarding
      Mpps against dpdk-testpmd, and a new flow's cost against the kernel front.

Writes OUT.svg and OUT.png. Refuses (exit 1, naming the file and the missing
key) a JSON without a field the chart needs: a chart never silently drops a
series. Exit 2 on bad usage.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

SERVERS = (("nginx", "nginx"), ("haproxy", "HAProxy"), ("lodestone", "Lodestone"))
# The tests with reference columns, in the table's order.
REFERENCE_TESTS = ("full", "full-rsa", "resumed", "requests", "bulk")


class Missing(Exception):
    pass


def need(obj, *path):
    """obj[path[0]][path[1]]..., or Missing naming the whole path."""
    cur = obj
    for i, k in enumerate(path):
        if not isinstance(cur, dict) or k not in cur:
            raise Missing(".".join(str(p) for p in path[: i + 1]))
        cur = cur[k]
    return cur


def number(obj, *path):
    v = need(obj, *path)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise Missing(".".join(path) + " (not a number)")
    return float(v)


def positive(obj, *path):
    v = number(obj, *path)
    if v <= 0:
        raise Missing(".".join(path) + " (not positive)")
    return v


def printable(s):
    """s with control characters (a newline would end a gnuplot command) as '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(s))


def quote(s):
    """A gnuplot single-quoted string."""
    return "'" + printable(s).replace("'", "''") + "'"


def datablock(name, rows):
    """Rows [label, value or None, ...]; no header line (gnuplot would take it
    for a first, empty, cluster)."""
    lines = [f"${name} << EOD"]
    for label, *values in rows:
        cells = ["-" if v is None else f"{v:.6g}" for v in values]
        name = printable(label).replace('"', "'").replace("\\", "/")
        lines.append(" ".join([f'"{name}"'] + cells))
    lines.append("EOD")
    return "\n".join(lines)


def bars(block, titles, first_column=2):
    """A clustered histogram of columns first_column.. of a datablock."""
    parts = []
    for i, t in enumerate(titles):
        using = f"{first_column + i}:xtic(1)" if i == 0 else f"{first_column + i}"
        parts.append(f"${block} using {using} title {quote(t)}")
    return "plot " + ", \\\n     ".join(parts)


COMMON = """set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set datafile missing '-'
set key outside right top vertical reverse Left
set grid ytics
set xtics nomirror rotate by -20
set border 3
set lmargin at screen 0.07
set rmargin at screen 0.74
"""


def compare_script(doc):
    date, command = need(doc, "meta", "date"), need(doc, "meta", "command")
    tests = need(doc, "tests")
    if not isinstance(tests, dict) or not tests:
        raise Missing("tests (no test)")
    rel_rows, ref_rows = [], []
    for t, e in tests.items():
        try:
            key = "kb_per_conn" if t.startswith("idle") else "cpu_us_per_op"
            base = positive(e, "servers", "nginx", key, "median")
            rel_rows.append([t] + [number(e, "servers", s, key, "median") / base for s, _ in SERVERS])
            if t in REFERENCE_TESTS:
                ceiling = positive(e, "reference", "ceiling_us", "median")
                bound = None if t == "requests" else positive(e, "reference", "bound_us", "median")
                ref_rows.append([t, bound, ceiling, positive(e, "servers", "lodestone", "cpu_us_per_op", "median"),
                                 positive(e, "servers", "nginx", "cpu_us_per_op", "median")])
        except Missing as m:
            raise Missing(f"tests.{t}.{m}") from None
    ref_rows.sort(key=lambda r: REFERENCE_TESTS.index(r[0]))
    # A run of tests without TLS work of their own (BENCH_TESTS="pass idle")
    # has no reference panel; a TLS test without its reference is refused above.
    script = [COMMON, datablock("rel", rel_rows)]
    if ref_rows:
        script.append(datablock("ref", ref_rows))
    script += ["set multiplot layout " + ("2,1" if ref_rows else "1,1") + " title "
               + quote(f"Lodestone vs nginx vs HAProxy, {date}: {command}") + " font ',11'",
               "set title 'server CPU per operation (idle: memory per connection) relative to nginx, median of"
               " runs; lower is better'",
               "set yrange [0:*]",
               "set ylabel 'x nginx'",
               bars("rel", [n for _, n in SERVERS])]
    if ref_rows:
        script += ["set title 'µs of server CPU per operation (bulk: per MB moved), log scale: against libssl"
                   " alone (OpenSSL ceiling) and the crypto alone (bound)'",
                   "set logscale y",
                   "set yrange [*:*]",
                   "set ylabel 'µs'",
                   bars("ref", ["crypto bound (EVP)", "OpenSSL ceiling (libssl, memory BIOs)", "Lodestone",
                                "nginx"])]
    return "\n".join(script + ["unset multiplot"])


def dpdk_script(doc):
    date = need(doc, "meta", "date")
    fwd = need(doc, "forwarding")
    if not isinstance(fwd, list) or not fwd:
        raise Missing("forwarding (no row)")
    rows = []
    for i, f in enumerate(fwd):
        if not isinstance(f, dict):
            raise Missing(f"forwarding.{i}")
        try:
            rows.append([need(f, "name"), positive(f, "lodestone_mpps"), positive(f, "testpmd_mpps")])
        except Missing as m:
            raise Missing(f"forwarding.{i}.{m}") from None
    flow_rows = [["new flow", positive(doc, "new_flow", "dpdk_ns"), positive(doc, "new_flow", "kernel_ns")]]
    script = [COMMON,
              datablock("fwd", rows),
              datablock("flow", flow_rows),
              "set multiplot layout 2,1 title " + quote(f"Lodestone's dpdk front, one core, {date}") + " font ',11'",
              "set title 'passthrough forwarding, 1,500-byte frames'",
              "set yrange [0:*]",
              "set ylabel 'Mpps'",
              bars("fwd", ["Lodestone flow engine", "dpdk-testpmd io forwarding (same run)"]),
              "set title 'CPU per new flow (rejected), log scale'",
              "set logscale y",
              "set yrange [*:*]",
              "set ylabel 'ns per connection'",
              bars("flow", ["dpdk front (flow engine)", "kernel front (Lodestone worker)"]),
              "unset multiplot"]
    return "\n".join(script)


def main(argv):
    if len(argv) != 4 or argv[1] not in ("compare", "dpdk"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: bench_chart.py compare|dpdk JSON OUT", file=sys.stderr)
        return 2
    kind, path, out = argv[1:]
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"bench_chart: {path}: {e}", file=sys.stderr)
        return 1
    try:
        body = compare_script(doc) if kind == "compare" else dpdk_script(doc)
    except Missing as e:
        print(f"bench_chart: {path}: {kind} JSON without {e}: refusing to draw a partial chart", file=sys.stderr)
        return 1
    size = "1100,900" if kind == "compare" else "1100,760"
    with tempfile.NamedTemporaryFile("w", suffix=".gp", delete=False) as gp:
        for term, ext in (("svg size " + size + " dynamic noenhanced font 'Arial,11'", "svg"),
                          ("pngcairo size " + size + " noenhanced font 'Arial,10'", "png")):
            gp.write(f"set terminal {term}\nset output {quote(out + '.' + ext)}\n{body}\nunset output\nreset\n")
    try:
        r = subprocess.run(["gnuplot", gp.name], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        print("bench_chart: gnuplot is missing (apt-get install gnuplot-nox)", file=sys.stderr)
        return 1
    finally:
        os.unlink(gp.name)
    if r.returncode != 0:
        print(f"bench_chart: gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"chart: {out}.svg {out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
