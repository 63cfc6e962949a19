#!/usr/bin/env python3
"""The bookkeeping of bench/compare_nginx.sh (python3 stdlib only).

  compare_nginx_report.py record RUNS TEST SERVER REP OPS TICKS HZ LOAD [KB [WAKEUPS]]
      checks one lodeload report (LOAD, its JSON) against what the test asked
      for and appends one line to RUNS (JSON lines): server CPU per operation
      (TICKS at HZ per second over OPS operations: the process CPU clock in
      ns, HZ 1000000000; for the idle test KB, the VmRSS growth per
      connection, instead; KB "-" for none), wake-ups per operation (WAKEUPS,
      the server threads' voluntary context switches in the run), achieved
      rate, latency percentiles of every lodeload histogram. Exits 1, saying why, when the
      run is not clean (errors, short counts, refused resumptions).
      The h2load tests' LOAD is h2load's text output (every request must
      have succeeded with a 2xx); their rate is h2load's own req/s.
  compare_nginx_report.py reference OUT REP BOUND CEILING
      checks the outputs of bench/crypto_bound and bench/openssl_ceiling (JSON
      files) and appends one line to OUT: per test the crypto bound and the
      OpenSSL ceiling in µs per operation, the primitives' figures.
  compare_nginx_report.py syscalls OUT TEST SERVER OPS STRACE
      reads `strace -c -f` output (STRACE) and appends one line to OUT: system
      calls in all, per operation, io_uring_enter among them (io_uring
      submissions count as calls), the five most frequent.
  compare_nginx_report.py summary RUNS SYSCALLS REFERENCE META JSON_OUT
      prints the tables (markdown) and writes JSON_OUT: every run, and per
      test and server min/median/max of CPU per operation and of the latency
      percentiles, the per-run ratios, p99 added latency against the direct
      run, wake-ups and system calls per operation, and for the TLS tests the ceiling and
      the bound with each server's cost as a multiple of them, rep by rep.
      Refuses (exit 1) when a TLS test has no reference measured in the run.
"""
import json
import re
import statistics
import sys

SERVERS = ("lodestone", "nginx", "haproxy")
NAMES = {"lodestone": "Lodestone", "nginx": "nginx", "haproxy": "HAProxy", "direct": "direct"}

# test -> (label, unit of the CPU figure, the lodeload histogram shown in the
# latency table or None, what an operation is)
TESTS = {
    "full": ("full TLS 1.3 handshake + 100 B echo, ECDSA P-256", "µs", "handshake", "connection"),
    "full-rsa": ("full handshake + 100 B echo, RSA-2048", "µs", "handshake", "connection"),
    "resumed": ("resumed handshake + 100 B echo", "µs", "handshake", "connection"),
    "requests": ("100 B request/response, kept connections", "µs", "response", "request"),
    "bulk": ("bulk through the relay, per MB moved", "µs", None, "MB moved"),
    "pass-conn": ("SNI passthrough, new connection + 100 B echo", "µs", "handshake", "connection"),
    "pass": ("SNI passthrough bulk, per MB moved", "µs", None, "MB moved"),
    "idle": ("idle TLS connection: RSS growth", "KB", None, "connection"),
    "idle-pass": ("idle SNI passthrough connection: RSS growth", "KB", None, "connection"),
    "requests-max": ("100 B request/response, kept connections, lodeload as fast as it goes", "µs", "response",
                     "request"),
    "h2load": ("HTTP/1.1 GET, kept connections, h2load at the requests test's rate", "µs", None, "request"),
    "h2load-max": ("HTTP/1.1 GET, kept connections, h2load as fast as it goes", "µs", None, "request"),
}
H2LOAD_TESTS = ("h2load", "h2load-max")
# The request tests side by side in the cross-check table: (test, tool, load).
CROSS_CHECK = (("requests", "lodeload", "fixed rate"), ("h2load", "h2load --h1", "fixed rate"),
               ("requests-max", "lodeload", "closed loop"), ("h2load-max", "h2load --h1", "closed loop"))
# The TLS tests with reference columns: (the key in crypto_bound's "bound_us"
# or None, the key in openssl_ceiling's "server_us").
REFERENCE = {"full": ("full", "full"), "full-rsa": ("full-rsa", "full-rsa"), "resumed": ("resumed", "resumed"),
             "requests": (None, "requests"), "requests-max": (None, "requests"), "bulk": ("bulk", "bulk")}
HISTOGRAMS = ("connect", "handshake", "ttfb", "response")


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def h2load_report(path, ops, where):
    """The figures of h2load's text output, or a failed run."""
    text = open(path).read()
    m = re.search(r"^finished in ([0-9.]+)(s|ms), ([0-9.]+) req/s", text, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx", text, re.M)
    if not (m and req and codes):
        fail(f"run failed: {where}: not h2load's report: {text[-2000:]}")
    succeeded, failed, errored, timeout, ok = (int(req.group(4)), int(req.group(5)), int(req.group(6)),
                                               int(req.group(7)), int(codes.group(1)))
    if succeeded != ops or ok != ops or failed or errored or timeout:
        fail(f"run failed: {where}: h2load: {succeeded} of {ops} succeeded, {ok} 2xx, {failed} failed, "
             f"{errored} errored, {timeout} timeouts")
    elapsed = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return {"elapsed_s": elapsed, "rate_per_s": float(m.group(3))}


def record(runs, test, server, rep, ops, ticks, hz, load, kb=None, wakeups=None):
    """One run: `ticks` of the server's CPU at `hz` per second (ns: hz
    1e9), `wakeups` its threads' voluntary context switches in the run."""
    ops, ticks, hz = int(ops), int(ticks), int(hz)
    kb = None if kb in (None, "-") else kb
    where = f"{test} on {server}, rep {rep}"
    if test in H2LOAD_TESTS:
        h = h2load_report(load, ops, where)
        line = {"test": test, "server": server, "rep": int(rep), "ops": ops, "cpu_s": ticks / hz,
                "elapsed_s": h["elapsed_s"], "rate_per_s": h["rate_per_s"], "latency_us": {}, "tool": "h2load",
                "cpu_us_per_op": round(ticks / hz / ops * 1e6, 1)}
        if wakeups is not None:
            line["wakeups_per_op"] = round(int(wakeups) / ops, 2)
        with open(runs, "a") as f:
            f.write(json.dumps(line) + "\n")
        return
    reports = []
    for path in load.split(","):  # the idle test: one report per batch
        with open(path) as f:
            reports.append(json.load(f))
    r = reports[0]
    if len(reports) > 1:
        for k in ("total", "full", "resumed", "resumptions_refused"):
            r["handshakes"][k] = sum(x["handshakes"][k] for x in reports)
        r["errors"]["total"] = sum(x["errors"]["total"] for x in reports)
        for x in reports[1:]:
            r["error_samples"].update(x["error_samples"])
        r["elapsed_ms"] = max(x["elapsed_ms"] for x in reports)
        r["latency_us"] = {h: {"count": 0} for h in HISTOGRAMS}  # percentiles do not add up
    if r["errors"]["total"] != 0:
        fail(f"run failed: {where}: errors {r['errors']} {r['error_samples']}")
    hs = r["handshakes"]
    if test in ("full", "full-rsa", "pass-conn") and (hs["total"] != ops or r["requests"]["completed"] != ops):
        fail(f"run failed: {where}: {hs['total']} handshakes, {r['requests']['completed']} echoes of {ops}")
    if test == "resumed" and (hs["resumed"] != ops - 1 or hs["resumptions_refused"] != 0):
        fail(f"run failed: {where}: {hs['resumed']} of {ops - 1} resumed, {hs['resumptions_refused']} refused")
    if test in ("requests", "requests-max") and r["requests"]["completed"] != ops:
        fail(f"run failed: {where}: {r['requests']['completed']} requests of {ops}")
    if test in ("bulk", "pass") and not r.get("bulk", {}).get("ok"):
        fail(f"run failed: {where}: bulk digests differ or the echo was short")
    if test.startswith("idle") and hs["full"] != ops:
        fail(f"run failed: {where}: {hs['full']} of {ops} idle connections handshaken")
    elapsed = r["elapsed_ms"] / 1000
    line = {
        "test": test, "server": server, "rep": int(rep), "ops": ops,
        "cpu_s": ticks / hz, "elapsed_s": elapsed,
        "rate_per_s": round(ops / elapsed, 1) if elapsed > 0 else None,
        "latency_us": {h: {q: r["latency_us"][h][q] for q in ("p50", "p90", "p99", "p99_9", "max")}
                       for h in HISTOGRAMS if r["latency_us"][h]["count"] > 0},
        "tls": r["tls"]["versions"], "tool": "lodeload",
    }
    if test.startswith("idle"):
        line["kb_per_conn"] = float(kb)
        line["rate_per_s"] = None
    else:
        line["cpu_us_per_op"] = round(ticks / hz / ops * 1e6, 1)
    if wakeups is not None:
        line["wakeups_per_op"] = round(int(wakeups) / ops, 2)
    with open(runs, "a") as f:
        f.write(json.dumps(line) + "\n")


def reference(out, rep, bound_path, ceiling_path):
    where = f"reference, rep {rep}"
    try:
        bound, ceiling = json.load(open(bound_path)), json.load(open(ceiling_path))
    except (OSError, ValueError) as e:
        fail(f"{where}: {e}")

    def figure(doc, name, *path):
        v = doc
        for k in path:
            if not isinstance(v, dict) or k not in v:
                fail(f"{where}: {name} reported no {'.'.join(path)}")
            v = v[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            fail(f"{where}: {name}: {'.'.join(path)} = {v!r}, expected a positive number")
        return v

    line = {"rep": int(rep), "bound_us": {}, "ceiling_us": {},
            "primitives": {p: {"us": figure(bound, "crypto_bound", "primitives", p, "us"),
                               "per_s": figure(bound, "crypto_bound", "primitives", p, "per_s")}
                           for p in ("ecdsa_p256_sign", "rsa2048_pss_sign", "x25519_keygen_derive",
                                     "aes256gcm_seal_mib", "aes256gcm_open_mib")},
            "ceiling_tls": {k: ceiling.get(k) for k in ("protocol", "cipher", "group")},
            "ceiling_counts": ceiling.get("counts")}
    if line["ceiling_tls"]["protocol"] != "TLSv1.3":
        fail(f"{where}: openssl_ceiling negotiated {line['ceiling_tls']}, expected TLSv1.3")
    for b, c in set(REFERENCE.values()):
        if b:
            line["bound_us"][b] = figure(bound, "crypto_bound", "bound_us", b)
        line["ceiling_us"][c] = figure(ceiling, "openssl_ceiling", "server_us", c)
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")


def syscalls(out, test, server, ops, strace):
    ops = int(ops)
    counts, total = {}, None
    for raw in open(strace):
        fields = raw.split()
        if len(fields) < 5 or not fields[0].replace(".", "").isdigit():
            continue
        name, calls = fields[-1], int(fields[3])
        if name == "total":
            total = calls
        else:
            counts[name] = calls
    if total is None:
        fail(f"strace on {server} during {test}: no summary in {strace} (BENCH_STRACE=0 skips the counts)")
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    line = {
        "test": test, "server": server, "ops": ops, "calls": total,
        "per_op": round(total / ops, 2),
        "io_uring_enter": counts.get("io_uring_enter", 0),
        "top": top,
    }
    with open(out, "a") as f:
        f.write(json.dumps(line) + "\n")


def mmm(v):
    return {"min": min(v), "median": statistics.median(v), "max": max(v)} if v else None


def fmt(v, digits=1):
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def trio(v, digits=1):
    return "/".join(fmt(float(x), digits) for x in (min(v), statistics.median(v), max(v)))


def ratio_runs(num, den):
    """num[rep] / den[rep] for the reps both have, and their min/median/max."""
    v = [round(num[r] / den[r], 2) for r in sorted(num) if r in den and den[r] > 0]
    return {"runs": v, **mmm(v)} if v else None


def reference_entry(t, by, refs):
    """Per TLS test: the ceiling and the bound of every rep and each server's
    cost as a multiple of them, rep by rep; None when the test has none."""
    if t not in REFERENCE:
        return None
    b, c = REFERENCE[t]
    if not refs:
        fail(f"summary: no reference (crypto bound, OpenSSL ceiling) measured for {t}")
    ceiling = {x["rep"]: x["ceiling_us"][c] for x in refs}
    bound = {x["rep"]: x["bound_us"][b] for x in refs} if b else {}
    e = {"ceiling_us": mmm(list(ceiling.values())), "ceiling_us_runs": list(ceiling.values()),
         "ceiling_test": c}
    if b:
        e["bound_us"] = mmm(list(bound.values()))
        e["bound_us_runs"] = list(bound.values())
    for s in SERVERS:
        mine = {r["rep"]: r["cpu_us_per_op"] for r in by.get((t, s), [])}
        if mine:
            e[f"{s}_over_ceiling"] = ratio_runs(mine, ceiling)
            if b:
                e[f"{s}_over_bound"] = ratio_runs(mine, bound)
    return e


def summary(runs_path, sys_path, ref_path, meta_path, out_path):
    runs = [json.loads(l) for l in open(runs_path)]
    try:
        sysc = [json.loads(l) for l in open(sys_path)]
    except FileNotFoundError:
        sysc = []
    try:
        refs = [json.loads(l) for l in open(ref_path)]
    except FileNotFoundError:
        refs = []
    meta = json.load(open(meta_path))
    tests = [t for t in TESTS if any(r["test"] == t for r in runs)]
    by = {}
    for r in runs:
        by.setdefault((r["test"], r["server"]), []).append(r)
    for v in by.values():
        v.sort(key=lambda r: r["rep"])

    out = {"meta": meta, "tests": {}, "runs": runs, "syscalls": sysc, "reference": refs}
    cpu_rows, lat_rows, sys_rows, cross_rows, wake_rows = [], [], [], [], []
    for t in tests:
        label, unit, hist, op = TESTS[t]
        key = "kb_per_conn" if t.startswith("idle") else "cpu_us_per_op"
        entry = {"label": label, "operation": op, "cpu_unit": "KB VmRSS growth per connection" if t.startswith("idle") else "µs server CPU per " + op,
                 "latency_histogram": hist, "servers": {}, "ratios": {}}
        fig = {s: [r[key] for r in by.get((t, s), [])] for s in SERVERS}
        for s in list(SERVERS) + ["direct"]:
            rs = by.get((t, s), [])
            if not rs:
                continue
            e = {"runs": len(rs)}
            if s != "direct" or t.startswith("idle"):
                e[key] = mmm([r[key] for r in rs])
                e[key + "_runs"] = [r[key] for r in rs]
            if s == "direct":
                e["cpu_us_per_op_tls_echo"] = mmm([r["cpu_us_per_op"] for r in rs])
            rates = [r["rate_per_s"] for r in rs if r["rate_per_s"] is not None]
            if rates:
                e["rate_per_s"] = mmm(rates)
            e["latency_us"] = {}
            for h in HISTOGRAMS:
                if all(h in r["latency_us"] for r in rs):
                    e["latency_us"][h] = {q: mmm([r["latency_us"][h][q] for r in rs]) for q in ("p50", "p90", "p99", "p99_9")}
            entry["servers"][s] = e
        for other in ("nginx", "haproxy"):
            pairs = list(zip(fig["lodestone"], fig[other]))
            entry["ratios"][f"{other}/lodestone"] = [round(b / a, 2) if a > 0 else None for a, b in pairs]
        # p99 added latency: each proxy's p99 minus the direct p99 of the same rep.
        if (t, "direct") in by and hist:
            direct = {r["rep"]: r["latency_us"][hist]["p99"] for r in by[(t, "direct")]}
            entry["p99_added_us"] = {}
            for s in SERVERS:
                d = [r["latency_us"][hist]["p99"] - direct[r["rep"]] for r in by.get((t, s), []) if r["rep"] in direct]
                if d:
                    entry["p99_added_us"][s] = {"runs": d, **mmm(d)}
        wk = {s: [r["wakeups_per_op"] for r in by.get((t, s), []) if "wakeups_per_op" in r] for s in SERVERS}
        if all(wk[s] for s in SERVERS):
            entry["wakeups_per_op"] = {s: {"runs": wk[s], **mmm(wk[s])} for s in SERVERS}
            med = {s: statistics.median(wk[s]) for s in SERVERS}
            r = lambda o: f"{med[o] / med['lodestone']:.2f}" if med["lodestone"] > 0 else "inf"
            wake_rows.append(f"| {label} | {trio(wk['lodestone'], 2)} | {trio(wk['nginx'], 2)} | {trio(wk['haproxy'], 2)} "
                             f"| {r('nginx')} | {r('haproxy')} |")
        sc = {x["server"]: x for x in sysc if x["test"] == t}
        if sc:
            entry["syscalls_per_op"] = {s: sc[s] for s in SERVERS if s in sc}
        ref = reference_entry(t, by, refs)
        if ref:
            entry["reference"] = ref
        out["tests"][t] = entry

        # Table rows.
        if all(fig[s] for s in SERVERS):
            def ratio(o):
                lm = statistics.median(fig["lodestone"])
                per_run = " ".join(f"{b / a:.2f}" if a > 0 else "inf" for a, b in zip(fig["lodestone"], fig[o]))
                return per_run + (f" (med {statistics.median(fig[o]) / lm:.2f})" if lm > 0 else "")
            refcells = "| – | – | – | – "
            if ref:
                multiple = lambda k: f"{ref[k]['median']:.2f} ({ref[k]['min']:.2f}–{ref[k]['max']:.2f})" if ref.get(k) else "–"
                refcells = (f"| {trio(ref['ceiling_us_runs'])} | {trio(ref['bound_us_runs']) if 'bound_us' in ref else '–'} "
                            f"| {multiple('lodestone_over_ceiling')} | {multiple('lodestone_over_bound')} ")
            cpu_rows.append(f"| {label}, {unit} | {trio(fig['lodestone'])} | {trio(fig['nginx'])} | {trio(fig['haproxy'])} "
                            f"| {ratio('nginx')} | {ratio('haproxy')} {refcells}|")
        if hist:
            cells = []
            for s in list(SERVERS) + ["direct"]:
                rs = by.get((t, s), [])
                if rs:
                    p50 = statistics.median(r["latency_us"][hist]["p50"] for r in rs)
                    p99 = statistics.median(r["latency_us"][hist]["p99"] for r in rs)
                    cells.append(f"{p50:.0f} / {p99:.0f}")
                else:
                    cells.append("–")
            added = entry.get("p99_added_us", {})
            add = ", ".join(f"{NAMES[s]} {added[s]['median']:.0f}" for s in SERVERS if s in added) or "–"
            lat_rows.append(f"| {label} ({hist}) | " + " | ".join(cells) + f" | {add} |")
        if sc and all(s in sc for s in SERVERS):
            l = sc["lodestone"]["per_op"]
            cell = lambda s: f"{sc[s]['per_op']:.1f}" + (f" ({sc[s]['io_uring_enter'] / sc[s]['ops']:.1f} io_uring_enter)"
                                                          if sc[s]["io_uring_enter"] else "")
            r = lambda o: f"{sc[o]['per_op'] / l:.2f}" if l > 0 else "inf"
            sys_rows.append(f"| {label} | {cell('lodestone')} | {cell('nginx')} | {cell('haproxy')} | {r('nginx')} | {r('haproxy')} |")

    for t, tool, load in CROSS_CHECK:
        if not all(by.get((t, s)) for s in SERVERS):
            continue
        rate = lambda s: f"{statistics.median(r['rate_per_s'] for r in by[(t, s)]):.0f}"
        cpu = lambda s: statistics.median(r["cpu_us_per_op"] for r in by[(t, s)])
        cross_rows.append(f"| {TESTS[t][0]} | {tool}, {load} | {rate('lodestone')} | {rate('nginx')} | {rate('haproxy')} "
                          f"| {cpu('lodestone'):.1f} | {cpu('nginx'):.1f} | {cpu('haproxy'):.1f} "
                          f"| {cpu('nginx') / cpu('lodestone'):.2f} |")

    with open(out_path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")

    m = meta
    print(f"Lodestone vs nginx {m['nginx']} vs HAProxy {m['haproxy']}: one worker/thread each on CPU 0, lodeload and "
          f"the backends on CPU 1; {m['reps']} interleaved runs; {m['handshakes']} handshakes, {m['requests']} requests "
          f"at {m['request_rate']}/s on {m['request_concurrency']} connections, {m['mb']} MiB each way, "
          f"{m['idle']} idle connections per run; {m['seconds']} s; load average {m['loadavg_start']} at the "
          f"start, {m['loadavg_end']} at the end"
          + (f"; Lodestone with [timeouts] half_closed_ms = {m['lodestone_half_closed_ms']}"
             if m.get("lodestone_half_closed_ms") is not None else ""))
    print()
    print("| server CPU per operation (min/median/max) | Lodestone | nginx | HAProxy | nginx / Lodestone, per run "
          "| HAProxy / Lodestone, per run | OpenSSL ceiling (libssl alone) | crypto bound | Lodestone / ceiling, "
          "median (min–max) | Lodestone / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(cpu_rows))
    if refs:
        p = lambda k, f: statistics.median(x["primitives"][k][f] for x in refs)
        c = refs[0]["ceiling_tls"]
        print()
        print(f"Crypto bound (bench/crypto_bound, libcrypto EVP, CPU 0, median of {len(refs)}): ECDSA P-256 sign "
              f"{p('ecdsa_p256_sign', 'us'):.1f} µs ({p('ecdsa_p256_sign', 'per_s'):.0f}/s), RSA-2048 PSS sign "
              f"{p('rsa2048_pss_sign', 'us'):.1f} µs ({p('rsa2048_pss_sign', 'per_s'):.0f}/s), X25519 keygen + derive "
              f"{p('x25519_keygen_derive', 'us'):.1f} µs ({p('x25519_keygen_derive', 'per_s'):.0f}/s), AES-256-GCM "
              f"{p('aes256gcm_seal_mib', 'us'):.0f} µs per MiB sealed, {p('aes256gcm_open_mib', 'us'):.0f} opened. "
              f"OpenSSL ceiling (bench/openssl_ceiling, libssl client and server over a BIO pair, server thread "
              f"CPU only): {c['protocol']} {c['cipher']} {c['group']}.")
    if cross_rows:
        print()
        print("| cross-check: requests on 4 kept connections | tool | req/s via Lodestone | via nginx | via HAProxy "
              "| Lodestone µs CPU per request | nginx | HAProxy | nginx / Lodestone |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(cross_rows))
    if lat_rows:
        print()
        print("| latency, µs, p50 / p99 (median of runs) | Lodestone | nginx | HAProxy | direct to a TLS backend | p99 added vs direct (median) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lat_rows))
    if wake_rows:
        print()
        print("| wake-ups per operation (voluntary context switches of the server's threads, min/median/max of the "
              "timed runs) | Lodestone | nginx | HAProxy | nginx / Lodestone | HAProxy / Lodestone |")
        print("|---|---|---|---|---|---|")
        print("\n".join(wake_rows))
    if sys_rows:
        print()
        print("| system calls per operation (strace -c -f, one run) | Lodestone | nginx | HAProxy | nginx / Lodestone | HAProxy / Lodestone |")
        print("|---|---|---|---|---|---|")
        print("\n".join(sys_rows))
    print()
    print(f"JSON: {out_path}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "record":
        record(*args)
    elif cmd == "reference":
        reference(*args)
    elif cmd == "syscalls":
        syscalls(*args)
    elif cmd == "summary":
        summary(*args)
    else:
        sys.exit(2)
