#!/usr/bin/env python3
"""ctest tools.bench_chart: bench/bench_chart.py draws the fixed JSON of
tests/tools/bench_chart/ with gnuplot, and every series and bar is in the SVG
at the height its value says; a JSON without a field the chart needs is
refused with the field's name and no chart. Also compare_nginx_report.py's
checks on the reference columns and on h2load's report.

  python3 tests/tools/bench_chart_test.py      (needs python3 and gnuplot)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

SRC = os.environ.get("LODE_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(SRC, "bench", "bench_chart.py")
REPORT = os.path.join(SRC, "bench", "compare_nginx_report.py")
FIXTURES = os.path.join(SRC, "tests", "tools", "bench_chart")
SVG = "{http://www.w3.org/2000/svg}"


def series(svg_path):
    """{key title: [bar heights in drawing units]} of every plot in the SVG,
    a title drawn in both panels of a chart with the second panel's bars
    after the first's. gnuplot writes each plot as <g id="gnuplot_plot_N...">
    holding its key text and one polygon per bar after the key's sample."""
    out = {}
    for g in ET.parse(svg_path).iter(SVG + "g"):
        if not g.get("id", "").startswith("gnuplot_plot_"):
            continue
        texts = [t.text for t in g.iter(SVG + "text") if t.text]
        polys = [p.get("points") for p in g.iter(SVG + "polygon")]
        heights = []
        for pts in polys[1:]:
            ys = [float(xy.split(",")[1]) for xy in pts.split()]
            heights.append(max(ys) - min(ys))
        out.setdefault(texts[0], []).extend(heights)
    return out


class ChartTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lode-chart-test.")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def draw(self, kind, doc_or_fixture):
        if isinstance(doc_or_fixture, str):
            path = os.path.join(FIXTURES, doc_or_fixture)
        else:
            path = os.path.join(self.dir, "in.json")
            with open(path, "w") as f:
                json.dump(doc_or_fixture, f)
        out = os.path.join(self.dir, "chart")
        r = subprocess.run([sys.executable, CHART, kind, path, out], capture_output=True, text=True, timeout=120)
        return r, out

    def fixture(self, name):
        with open(os.path.join(FIXTURES, name)) as f:
            return json.load(f)

    def test_compare_chart_has_every_series_at_its_value(self):
        r, out = self.draw("compare", "compare.json")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out + ".png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        s = series(out + ".svg")
        for name in ("nginx", "HAProxy", "Lodestone", "crypto bound (EVP)", "OpenSSL ceiling (libssl, memory BIOs)"):
            self.assertIn(name, s)
        # Panel 1: one bar per test (full, requests, bulk, idle) and server,
        # relative to nginx: full 400 / 500 / 200 µs -> 1 : 1.25 : 0.5.
        self.assertEqual(len(s["HAProxy"]), 4)
        self.assertEqual(len(s["Lodestone"]), 4 + 3)  # panel 1, then panel 2's
        self.assertEqual(len(s["nginx"]), 4 + 3)
        nginx_full = s["nginx"][0]
        self.assertAlmostEqual(s["HAProxy"][0] / nginx_full, 1.25, delta=0.01)
        self.assertAlmostEqual(s["Lodestone"][0] / nginx_full, 0.5, delta=0.01)
        self.assertAlmostEqual(s["Lodestone"][3] / s["nginx"][3], 23.4 / 39.4, delta=0.01)  # idle, KB
        # Panel 2: full, requests, bulk; the requests test has no crypto bound.
        self.assertEqual(len(s["OpenSSL ceiling (libssl, memory BIOs)"]), 3)
        self.assertEqual(len(s["crypto bound (EVP)"]), 2)
        # Log scale: bulk's bars, Lodestone 933 against the ceiling 240.
        ceiling_bulk = s["OpenSSL ceiling (libssl, memory BIOs)"][2]
        bound_bulk, lode_bulk = s["crypto bound (EVP)"][1], s["Lodestone"][4 + 2]
        self.assertGreater(lode_bulk, ceiling_bulk)
        self.assertGreater(ceiling_bulk, bound_bulk)

    def test_dpdk_chart(self):
        r, out = self.draw("dpdk", "dpdk.json")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = series(out + ".svg")
        lode, pmd = s["Lodestone flow engine"], s["dpdk-testpmd io forwarding (same run)"]
        self.assertEqual((len(lode), len(pmd)), (3, 3))
        self.assertAlmostEqual(lode[2] / pmd[2], 13.3 / 38.0, delta=0.01)
        self.assertEqual(len(s["dpdk front (flow engine)"]), 1)
        self.assertEqual(len(s["kernel front (Lodestone worker)"]), 1)

    def refused(self, kind, doc, field):
        r, out = self.draw(kind, doc)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(field, r.stderr)
        self.assertIn("refusing", r.stderr)
        self.assertFalse(os.path.exists(out + ".svg") or os.path.exists(out + ".png"))

    def test_refuses_json_without_a_needed_field(self):
        doc = self.fixture("compare.json")
        del doc["tests"]["full"]["reference"]["ceiling_us"]
        self.refused("compare", doc, "tests.full.reference.ceiling_us")
        doc = self.fixture("compare.json")
        del doc["tests"]["bulk"]["reference"]["bound_us"]
        self.refused("compare", doc, "tests.bulk.reference.bound_us")
        doc = self.fixture("compare.json")
        del doc["tests"]["idle"]["servers"]["haproxy"]
        self.refused("compare", doc, "tests.idle.servers.haproxy")
        doc = self.fixture("compare.json")
        doc["tests"]["full"]["servers"]["lodestone"]["cpu_us_per_op"]["median"] = "fast"
        self.refused("compare", doc, "tests.full.servers.lodestone.cpu_us_per_op.median (not a number)")
        doc = self.fixture("compare.json")
        del doc["meta"]["date"]
        self.refused("compare", doc, "meta.date")
        doc = self.fixture("dpdk.json")
        del doc["new_flow"]["kernel_ns"]
        self.refused("dpdk", doc, "new_flow.kernel_ns")
        doc = self.fixture("dpdk.json")
        doc["forwarding"][1]["testpmd_mpps"] = 0
        self.refused("dpdk", doc, "forwarding.1.testpmd_mpps (not positive)")
        self.refused("dpdk", {"meta": {"date": "x"}, "forwarding": [], "new_flow": {}}, "forwarding (no row)")

    def test_bad_usage(self):
        r = subprocess.run([sys.executable, CHART, "pie", "x.json", "out"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


class ReportTest(unittest.TestCase):
    """compare_nginx_report.py: what it refuses from the reference programs and h2load."""

    BOUND = {"primitives": {p: {"us": 10.0, "per_s": 100000} for p in (
        "ecdsa_p256_sign", "rsa2048_pss_sign", "x25519_keygen_derive", "aes256gcm_seal_mib", "aes256gcm_open_mib")},
        "bound_us": {"full": 60.0, "full-rsa": 250.0, "resumed": 46.0, "bulk": 185.0}}
    CEILING = {"protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "group": "x25519",
               "server_us": {"full": 170.0, "full-rsa": 380.0, "resumed": 135.0, "requests": 1.5, "bulk": 240.0}}
    H2LOAD = """finished in 2.00s, 2499.80 req/s, 1.00MB/s
requests: 5000 total, 5000 started, 5000 done, 5000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 5000 2xx, 0 3xx, 0 4xx, 0 5xx
"""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lode-report-test.")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    @staticmethod
    def read_line(path):
        with open(path) as f:
            return json.loads(f.read())

    def reference(self, bound, ceiling):
        out = os.path.join(self.dir, "ref.jsonl")
        r = subprocess.run([sys.executable, REPORT, "reference", out, "1", self.write("b.json", bound),
                            self.write("c.json", ceiling)], capture_output=True, text=True)
        return r, out

    def test_reference_recorded(self):
        r, out = self.reference(self.BOUND, self.CEILING)
        self.assertEqual(r.returncode, 0, r.stderr)
        line = self.read_line(out)
        self.assertEqual(line["ceiling_us"]["full"], 170.0)
        self.assertEqual(line["bound_us"]["resumed"], 46.0)

    def test_reference_refused(self):
        ceiling = json.loads(json.dumps(self.CEILING))
        del ceiling["server_us"]["resumed"]
        r, _ = self.reference(self.BOUND, ceiling)
        self.assertEqual(r.returncode, 1)
        self.assertIn("server_us.resumed", r.stderr)
        bound = json.loads(json.dumps(self.BOUND))
        bound["bound_us"]["full"] = 0
        r, _ = self.reference(bound, self.CEILING)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bound_us.full", r.stderr)
        r, _ = self.reference(self.BOUND, dict(self.CEILING, protocol="TLSv1.2"))
        self.assertEqual(r.returncode, 1)

    def h2load(self, text, ops="5000"):
        out = os.path.join(self.dir, "runs.jsonl")
        r = subprocess.run([sys.executable, REPORT, "record", out, "h2load", "lodestone", "1", ops, "25", "100",
                            self.write("h2load.txt", text)], capture_output=True, text=True)
        return r, out

    def test_h2load_recorded(self):
        r, out = self.h2load(self.H2LOAD)
        self.assertEqual(r.returncode, 0, r.stderr)
        line = self.read_line(out)
        self.assertEqual(line["rate_per_s"], 2499.8)
        self.assertEqual(line["cpu_us_per_op"], 50.0)  # 25 ticks of 10 ms over 5,000 requests

    def lodeload(self, elapsed_ms, p99):
        lat = {"count": 1000, "p50": p99 // 2, "p90": p99 - 10, "p99": p99, "p99_9": p99 + 10, "max": p99 + 20}
        return {"errors": {"total": 0}, "error_samples": {}, "elapsed_ms": elapsed_ms,
                "handshakes": {"total": 1000, "full": 1000, "resumed": 0, "resumptions_refused": 0},
                "requests": {"completed": 1000}, "tls": {"versions": {"TLSv1.3": 1000}},
                "latency_us": {h: dict(lat) for h in ("connect", "handshake", "ttfb", "response")}}

    def test_cpu_in_ns_and_wakeups_per_operation(self):
        """The process CPU clock (ns) and the voluntary context switches of a
        run become µs and wake-ups per operation, and a table of their own."""
        runs = os.path.join(self.dir, "runs.jsonl")
        for rep, (ns, wakes) in enumerate(((412_345_678, 6040), (398_000_000, 6020)), 1):
            for server, k in (("lodestone", 1.0), ("nginx", 0.9), ("haproxy", 1.1)):
                r = subprocess.run([sys.executable, REPORT, "record", runs, "pass-conn", server, str(rep), "1000",
                                    str(int(ns * k)), "1000000000",
                                    self.write(f"l-{server}-{rep}.json", self.lodeload(1300, 400)), "-",
                                    str(int(wakes * k))], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
        with open(runs) as f:
            first = json.loads(f.readline())
        self.assertEqual(first["cpu_us_per_op"], 412.3)  # not a multiple of 10 µs, as ticks would give
        self.assertEqual(first["wakeups_per_op"], 6.04)
        self.assertNotIn("kb_per_conn", first)
        meta = {"nginx": "n", "haproxy": "h", "reps": 2, "handshakes": 1000, "requests": 0, "request_rate": 0,
                "request_concurrency": 4, "mb": 0, "idle": 0, "seconds": 1, "loadavg_start": "0",
                "loadavg_end": "0"}
        out = os.path.join(self.dir, "summary.json")
        r = subprocess.run([sys.executable, REPORT, "summary", runs, os.path.join(self.dir, "none"),
                            os.path.join(self.dir, "none"), self.write("meta.json", meta), out],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("| SNI passthrough, new connection + 100 B echo | 6.02/6.03/6.04 | 5.42/5.43/5.44 "
                      "| 6.62/6.63/6.64 | 0.90 | 1.10 |", r.stdout)
        with open(out) as f:
            entry = json.load(f)["tests"]["pass-conn"]
        self.assertEqual(entry["wakeups_per_op"]["lodestone"]["runs"], [6.04, 6.02])
        self.assertEqual(entry["wakeups_per_op"]["nginx"]["median"], 5.43)

    def test_h2load_failures_refused(self):
        r, _ = self.h2load(self.H2LOAD.replace("5000 succeeded, 0 failed", "4990 succeeded, 10 failed"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("4990 of 5000 succeeded", r.stderr)
        r, _ = self.h2load(self.H2LOAD.replace("5000 2xx, 0 3xx, 0 4xx", "4000 2xx, 0 3xx, 1000 4xx"))
        self.assertEqual(r.returncode, 1)
        r, _ = self.h2load("connect: Connection refused\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not h2load's report", r.stderr)


if __name__ == "__main__":
    if shutil.which("gnuplot") is None:
        print("FAIL: gnuplot is not installed (tools/install-deps.sh: gnuplot-nox)")
        sys.exit(1)
    unittest.main(verbosity=2)
