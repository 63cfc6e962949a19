#!/usr/bin/env python3
"""Greps outputs for the bytes of private keys (tests/e2e/test_no_key_leak.sh).

  key_leak_scan.py --key KEY.pem [--key ...] [--exclude PATH ...] OUTPUT...

OUTPUT: files, or directories walked recursively. For every key it looks for
  - each line of the PEM body that holds secret bytes;
  - every 16-character base64 window of the PEM body that covers secret bytes
    (the EC scalar, or RSA's private exponent and primes; not the public key
    or the algorithm header every key of that type shares, which certificates
    hold too);
  - the base64 and base64url of each secret alone, in 16-character windows;
  - each secret in hex (lower, upper, colon-separated as `openssl -text`
    prints it), in 16-byte windows, and the whole DER in hex;
  - each secret's raw bytes, in 16-byte windows (binary outputs).
Text is searched as written and again with whitespace and JSON escapes
("\\n", "\\/") removed, so a key re-wrapped or quoted in JSON is still found.
Prints one "LEAK file: key kind" line per finding and exits 1 if any; prints
how many needles and bytes it searched ("scanned ...") otherwise.
"""
import argparse
import base64
import os
import re
import subprocess
import sys

SECRET_FIELDS = ("priv", "privateExponent", "prime1", "prime2")


def pem_body(text):
    lines = [l.strip() for l in text.splitlines()]
    begin = next(i for i, l in enumerate(lines) if l.startswith("-----BEGIN"))
    end = next(i for i, l in enumerate(lines) if l.startswith("-----END") and i > begin)
    return [l for l in lines[begin + 1:end] if l and ":" not in l]


def secrets_of(path):
    """The secret integers of the key, as big-endian bytes (openssl pkey -text)."""
    out = subprocess.run(["openssl", "pkey", "-in", path, "-noout", "-text"], capture_output=True,
                         text=True, check=True).stdout
    found, field, hexes = [], None, []
    for line in out.splitlines() + ["end:"]:
        m = re.match(r"^(\w+):", line)
        if m:
            if field in SECRET_FIELDS and hexes:
                found.append(bytes.fromhex("".join(hexes)).lstrip(b"\x00"))
            field, hexes = m.group(1), []
            continue
        if field in SECRET_FIELDS:
            hexes += [h for h in line.strip().split(":") if h]
    if not found:
        raise SystemExit(f"key_leak_scan: no secret found in {path} (openssl pkey -text)")
    return found


def windows(s, size, step):
    return {s[i:i + size] for i in range(0, max(len(s) - size, 0) + 1, step)} if len(s) >= size else {s}


def needles_of(path):
    """(text needles, byte needles): kind -> set."""
    text = open(path).read()
    body = pem_body(text)
    b64 = "".join(body)
    der = base64.b64decode(b64)
    t = {"pem line": set(), "der hex": {der.hex(), der.hex().upper()}}
    raw = set()
    for s in secrets_of(path):
        at = der.find(s)
        if at >= 0:
            # base64 characters [4*ceil(at/3), 4*floor((at+len)/3)) encode secret bytes only.
            lo, hi = 4 * -(-at // 3), 4 * ((at + len(s)) // 3)
            t.setdefault("pem base64", set()).update(w for w in windows(b64[lo:hi], 16, 4) if len(w) == 16)
            # A body line that holds none of them holds public bytes only (a
            # P-256 key's last line is its public key, which the certificate has).
            start = 0
            for line in body:
                if start < hi and lo < start + len(line) and len(line) >= 16:
                    t["pem line"].add(line)
                start += len(line)
        for name, enc in (("base64", base64.b64encode(s).decode()),
                          ("base64url", base64.urlsafe_b64encode(s).decode().rstrip("="))):
            t.setdefault(name, set()).update(windows(enc, 16, 4))
        h = s.hex()
        t.setdefault("hex", set()).update(windows(h, 32, 2) | windows(h.upper(), 32, 2))
        colon = ":".join(h[i:i + 2] for i in range(0, len(h), 2))
        t.setdefault("hex colon", set()).update(windows(colon, 47, 3) | windows(colon.upper(), 47, 3))
        raw |= windows(s, 16, 1)
    return t, raw


def normalize(text):
    return re.sub(r"\s+", "", text.replace("\\n", "").replace("\\r", "").replace("\\/", "/"))


def files_under(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in sorted(names):
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", action="append", required=True)
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("outputs", nargs="+")
    a = ap.parse_args()
    excluded = {os.path.realpath(p) for p in a.exclude + a.key}
    keys = {k: needles_of(k) for k in a.key}
    leaks, scanned, size, count = 0, 0, 0, sum(len(v) for t, r in keys.values() for v in t.values()) + sum(
        len(r) for _, r in keys.values())
    for f in files_under(a.outputs):
        real = os.path.realpath(f)
        if real in excluded or any(real.startswith(e + os.sep) for e in excluded):
            continue
        if not os.path.isfile(f):
            continue  # sockets, fifos
        data = open(f, "rb").read()
        scanned += 1
        size += len(data)
        text = data.decode("latin-1")
        flat = normalize(text)
        for k, (tn, raw) in keys.items():
            hits = sorted({kind for kind, ns in tn.items() for n in ns if n in text or n in flat})
            if any(n in data for n in raw):
                hits.append("raw bytes")
            for kind in hits:
                print(f"LEAK {f}: {os.path.basename(k)} ({kind})")
                leaks += 1
    print(f"scanned {scanned} files, {size} bytes, for {count} needles of {len(keys)} keys")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
