#!/usr/bin/env python3
"""bench/scaling.sh's records and report.

  scaling_report.py record RUNS TEST SERVER N REP CPU_NS WALL_NS LOAD.json...
      checks the lodeload reports of one run (no errors; resumed runs resumed
      every connection but each lodeload's first) and appends one line
  scaling_report.py report RUNS MACHINE.txt CEILING.json|- OUT.json SECONDS CONCURRENCY
      prints the tables (markdown) and writes every run and figure as JSON;
      CEILING.json is bench/openssl_ceiling's report (its server_us.full and
      .resumed: each server's CPU per handshake as a multiple of them)
"""
import json
import statistics
import sys

SERVERS = ("lodestone", "nginx", "haproxy")
TESTS = {"full": "full TLS 1.3 handshake (ECDSA P-256) + 100 B echo",
         "resumed": "resumed handshake (session ticket) + 100 B echo"}


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def record(runs, test, server, n, rep, cpu_ns, wall_ns, *loads):
    n, cpu_s, wall_s = int(n), int(cpu_ns) / 1e9, int(wall_ns) / 1e9
    where = f"{test} on {server}, N={n}, rep {rep}"
    total = full = resumed = refused = errors = 0
    for path in loads:
        with open(path) as f:
            r = json.load(f)
        hs = r["handshakes"]
        if r["errors"]["total"] != 0:
            fail(f"run failed: {where}: errors {r['errors']} {r['error_samples']}")
        if r["requests"]["completed"] != hs["total"]:
            fail(f"run failed: {where}: {hs['total']} handshakes, {r['requests']['completed']} echoes")
        total += hs["total"]
        full += hs["full"]
        resumed += hs["resumed"]
        refused += hs["resumptions_refused"]
    if total == 0:
        fail(f"run failed: {where}: no handshake completed")
    if test == "resumed" and (full != len(loads) or refused != 0):
        fail(f"run failed: {where}: {full} full handshakes (one per lodeload expected), {refused} resumptions refused")
    line = {"test": test, "server": server, "cores": n, "rep": int(rep), "load_processes": len(loads),
            "handshakes": total, "full": full, "resumed": resumed, "cpu_s": round(cpu_s, 4),
            "wall_s": round(wall_s, 4), "rate_per_s": round(total / wall_s, 1),
            "cpu_us_per_op": round(cpu_s / total * 1e6, 1), "busy": round(cpu_s / wall_s / n, 3)}
    with open(runs, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(f"  N={n} {test} {server}: {line['rate_per_s']} handshakes/s, {line['cpu_us_per_op']} us CPU each, "
          f"cores {line['busy'] * 100:.0f}% busy", file=sys.stderr)


def med(xs):
    return statistics.median(xs) if xs else None


def report(runs, machine, ceiling_path, out, secs, conc):
    with open(runs) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    lines = [x for x in lines if x["test"] in TESTS]
    with open(machine) as f:
        header = f.read().strip()
    cores = sorted({x["cores"] for x in lines})
    ceiling = {}
    if ceiling_path != "-":
        with open(ceiling_path) as f:
            c = json.load(f)
        if c.get("protocol") != "TLSv1.3":
            fail(f"openssl_ceiling negotiated {c.get('protocol')}, expected TLSv1.3")
        ceiling = {t: c["server_us"][t] for t in TESTS}
    figures = {}
    for test in TESTS:
        for n in cores:
            for s in sorted({x["server"] for x in lines}):
                rs = [x for x in lines if x["test"] == test and x["cores"] == n and x["server"] == s]
                if rs:
                    figures.setdefault(test, {}).setdefault(str(n), {})[s] = {
                        "rate_per_s": med([x["rate_per_s"] for x in rs]),
                        "rate_range": [min(x["rate_per_s"] for x in rs), max(x["rate_per_s"] for x in rs)],
                        "cpu_us_per_op": med([x["cpu_us_per_op"] for x in rs]),
                        "busy": med([x["busy"] for x in rs]), "runs": len(rs)}
    print(header)
    print(f"each run: one lodeload per load CPU, {conc} connections in flight each, {secs} s; "
          "medians of the interleaved runs (min-max of the rate)")
    if ceiling:
        print("OpenSSL ceiling (bench/openssl_ceiling, CPU 0, server CPU per handshake, no network): "
              + ", ".join(f"{t} {v:.1f} µs" for t, v in ceiling.items()))
    print()
    for test, title in TESTS.items():
        if test not in figures:
            continue
        print(f"**{title}**\n")
        print("| server cores | Lodestone handshakes/s | nginx | HAProxy | Lodestone / better peer, rate "
              "| CPU µs per handshake: Lodestone / nginx / HAProxy | cores busy: L / n / H "
              "| scaling rate(N) / (N x rate(1)): L / n / H | CPU per handshake / OpenSSL ceiling: L / n / H |")
        print("|---|---|---|---|---|---|---|---|---|")
        base = figures[test].get(str(cores[0]), {}) if cores[0] == 1 else {}
        for n in cores:
            f = figures[test].get(str(n), {})

            def cell(s, key, fmt="{:.0f}"):
                return fmt.format(f[s][key]) if s in f and f[s][key] is not None else "–"

            def vs_ceiling(s):
                return f"{f[s]['cpu_us_per_op'] / ceiling[test]:.2f}" if s in f and test in ceiling else "–"

            rates = [cell(s, "rate_per_s") + (f" ({f[s]['rate_range'][0]:.0f}–{f[s]['rate_range'][1]:.0f})"
                                              if s in f else "") for s in SERVERS]
            peers = [f[s]["rate_per_s"] for s in ("nginx", "haproxy") if s in f]
            ratio = f"{f['lodestone']['rate_per_s'] / max(peers):.2f}" if peers and "lodestone" in f else "–"
            scal = []
            for s in SERVERS:
                if s in f and s in base and base[s]["rate_per_s"]:
                    scal.append(f"{f[s]['rate_per_s'] / (n * base[s]['rate_per_s']):.2f}")
                else:
                    scal.append("–")
            print(f"| {n} | {' | '.join(rates)} | {ratio} | "
                  f"{' / '.join(cell(s, 'cpu_us_per_op', '{:.1f}') for s in SERVERS)} | "
                  f"{' / '.join(cell(s, 'busy', '{:.2f}') for s in SERVERS)} | {' / '.join(scal)} | "
                  f"{' / '.join(vs_ceiling(s) for s in SERVERS)} |")
        print()
        variants = sorted({s for fn in figures[test].values() for s in fn} - set(SERVERS))
        if variants:
            print("| server cores | " + " | ".join(f"{v}: handshakes/s, CPU µs each, busy" for v in variants)
                  + " | " + " | ".join(f"{v} / lodestone, CPU per handshake" for v in variants) + " |")
            print("|---|" + "---|" * (2 * len(variants)))
            for n in cores:
                f = figures[test].get(str(n), {})
                cells = [f"{f[v]['rate_per_s']:.0f}, {f[v]['cpu_us_per_op']:.1f}, {f[v]['busy']:.2f}"
                         if v in f else "–" for v in variants]
                rel = [f"{f[v]['cpu_us_per_op'] / f['lodestone']['cpu_us_per_op']:.2f}"
                       if v in f and "lodestone" in f else "–" for v in variants]
                print(f"| {n} | {' | '.join(cells)} | {' | '.join(rel)} |")
            print()
    with open(out, "w") as f:
        json.dump({"machine": header, "openssl_ceiling_us": ceiling, "seconds": float(secs), "concurrency": int(conc), "runs": lines,
                   "figures": figures}, f, indent=1)
    print(f"JSON: {out}")


if __name__ == "__main__":
    if len(sys.argv) >= 9 and sys.argv[1] == "record":
        record(*sys.argv[2:])
    elif len(sys.argv) == 8 and sys.argv[1] == "report":
        report(*sys.argv[2:])
    else:
        fail(__doc__)
