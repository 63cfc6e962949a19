#!/usr/bin/env python3
"""The TLS-scan policy of tests/e2e/test_tls_scan.sh, in one place.

  tls_scan_check.py judge SCAN.xml     sslscan --xml output -> one line per
                                       weak item ("WEAK ..."), then a verdict;
                                       exit 1 if anything is weak or the scan
                                       saw no server at all
  tls_scan_check.py probe HOST PORT SNI  raw ClientHellos for what this
                                       machine's sslscan cannot offer (it
                                       links OpenSSL 3, which has no RC4,
                                       3DES or export suites and no zlib):
                                       "legacy_suites refused|accepted 0x....",
                                       "compression null|deflate"; exit 1 if weak

The policy (issue 9): TLS 1.2 and 1.3 only; AEAD suites only (no CBC, RC4,
3DES, NULL, export, anonymous); no compression; no insecure renegotiation;
groups X25519, P-256, P-384 or finite-field groups of >= 2048 bits;
ephemeral DH >= 2048 bits; not vulnerable to heartbleed.
"""
import os
import socket
import struct
import sys
import xml.etree.ElementTree as ET

ALLOWED_CURVES = {"x25519", "25519", "secp256r1", "prime256v1", "p-256", "secp384r1", "p-384"}
WEAK_PROTOCOLS = {("ssl", "2"), ("ssl", "3"), ("tls", "1.0"), ("tls", "1.1")}
WEAK_STRENGTHS = {"null", "weak", "medium", "anonymous"}
AEAD_MARKS = ("GCM", "CHACHA20-POLY1305", "CCM")


def curve_ok(name):
    # sslscan writes "secp256r1 (NIST P-256)" for groups and "25519" or
    # "P-256" for a suite's curve: any spelling of an allowed one passes.
    words = name.replace("(", " ").replace(")", " ").lower().split()
    return any(w in ALLOWED_CURVES for w in words)


def group_ok(name):
    n = name.lower()
    if n.startswith("ffdhe"):
        try:
            return int(n[len("ffdhe"):].split()[0]) >= 2048
        except ValueError:
            return False
    return curve_ok(name)


def cipher_problems(c):
    version = c.get("sslversion", "")
    name = c.get("cipher", "")
    out = []
    if version not in ("TLSv1.2", "TLSv1.3"):
        out.append(f"accepted under {version}")
    # TLS 1.3 suites are all AEAD; TLS 1.2 names say their mode.
    if version != "TLSv1.3" and not any(m in name for m in AEAD_MARKS):
        out.append("not AEAD")
    for bad in ("NULL", "RC4", "DES", "EXP", "ADH", "AECDH", "anon"):
        if bad in name:
            out.append(f"{bad} suite")
    if c.get("strength", "") in WEAK_STRENGTHS:
        out.append(f"strength {c.get('strength')}")
    if c.get("dhebits") and int(c.get("dhebits")) < 2048:
        out.append(f"DH {c.get('dhebits')} bits")
    if c.get("curve") and not curve_ok(c.get("curve")):
        out.append(f"curve {c.get('curve')}")
    return [f"cipher {version} {name}: {p}" for p in out]


def judge(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"ERROR cannot read the scan: {e}")
        return 1
    test = root.find("ssltest")
    if test is None:
        print("ERROR the scan has no <ssltest>: sslscan reached no server")
        return 1
    weak, notes = [], []
    for p in test.findall("protocol"):
        if p.get("enabled") == "1" and (p.get("type"), p.get("version")) in WEAK_PROTOCOLS:
            weak.append(f"protocol {p.get('type')} {p.get('version')} enabled")
    ciphers = test.findall("cipher")
    for c in ciphers:
        weak += cipher_problems(c)
    for g in test.findall("group"):
        if not group_ok(g.get("name", "")):
            weak.append(f"group {g.get('sslversion')} {g.get('name')}")
    for r in test.findall("renegotiation"):
        if r.get("supported") == "1" and r.get("secure") != "1":
            weak.append("insecure renegotiation supported")
    comp = test.findall("compression")
    for c in comp:
        if c.get("supported") == "1":
            weak.append("TLS compression supported")
    if not comp:
        notes.append("compression not probed by this sslscan build (its OpenSSL has none): see the raw probe")
    for h in test.findall("heartbleed"):
        if h.get("vulnerable") == "1":
            weak.append(f"heartbleed ({h.get('sslversion')})")
    # A scan that found no suite at all scanned nothing: that is no pass.
    if not ciphers:
        weak.append("no cipher suite accepted: the scan did not reach a TLS server")
    for n in notes:
        print(f"NOTE {n}")
    for w in weak:
        print(f"WEAK {w}")
    print(f"VERDICT {'weak' if weak else 'clean'} ({len(ciphers)} suites, {len(test.findall('group'))} groups)")
    return 1 if weak else 0


# ---------------------------------------------------------------- raw probe
# RFC 5246 7.4.1.2:
#   struct { ProtocolVersion client_version; Random random;
#            SessionID session_id<0..32>; CipherSuite cipher_suites<2..2^16-2>;
#            CompressionMethod compression_methods<1..2^8-1>;
#            Extension extensions<0..2^16-1>; } ClientHello;
LEGACY_SUITES = [
    0x0004, 0x0005, 0xC011, 0xC007,          # RC4
    0x000A, 0x0016, 0xC012, 0xC008,          # 3DES
    0x0003, 0x0006, 0x0008, 0x0014, 0x0062,  # export
    0x0001, 0x0002, 0x003B, 0xC010, 0xC006,  # NULL
    0x0018, 0x001B, 0x0034, 0xC018,          # anonymous
    0x002F, 0x0035, 0x003C, 0xC013, 0xC014, 0xC027, 0xC009, 0xC00A,  # CBC
]
AEAD_SUITES = [0xC02F, 0xC030, 0xC02B, 0xC02C, 0xCCA8, 0xCCA9]


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(sni, suites, compression):
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    groups = struct.pack("!H", 6) + struct.pack("!HHH", 0x001D, 0x0017, 0x0018)
    sigalgs = [0x0804, 0x0805, 0x0403, 0x0503, 0x0401, 0x0501]
    exts = (ext(0, server_name) + ext(10, groups) + ext(11, b"\x01\x00")
            + ext(13, struct.pack("!H", 2 * len(sigalgs)) + struct.pack(f"!{len(sigalgs)}H", *sigalgs))
            + ext(0xFF01, b"\x00"))
    body = (b"\x03\x03" + os.urandom(32) + b"\x00"
            + struct.pack("!H", 2 * len(suites)) + struct.pack(f"!{len(suites)}H", *suites)
            + bytes([len(compression)]) + bytes(compression)
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def first_answer(host, port, hello):
    """('hello', suite, compression) | ('alert', description) | ('closed', None)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(hello)
        head = read_exact(s, 5)
        if head is None:
            return ("closed", None)
        kind, _, length = struct.unpack("!BHH", head)
        body = read_exact(s, length)
        if body is None:
            return ("closed", None)
        if kind == 21:
            return ("alert", body[1] if len(body) > 1 else None)
        if kind != 22 or len(body) < 4 or body[0] != 2:
            return ("other", kind)
        # ServerHello: version(2) random(32) session_id<0..32> suite(2) compression(1)
        at = 4 + 2 + 32
        at += 1 + body[at]
        suite, comp = struct.unpack("!HB", body[at:at + 3])
        return ("hello", suite, comp)


def probe(host, port, sni):
    weak = False
    a = first_answer(host, int(port), client_hello(sni, LEGACY_SUITES, [0]))
    if a[0] == "hello":
        print(f"legacy_suites accepted 0x{a[1]:04X}")
        weak = True
    else:
        print(f"legacy_suites refused ({a[0]} {a[1]})")
    # DEFLATE first: a server willing to compress takes it.
    a = first_answer(host, int(port), client_hello(sni, AEAD_SUITES, [1, 0]))
    if a[0] != "hello":
        print(f"compression unknown: no ServerHello to an AEAD hello ({a[0]} {a[1]})")
        return 1
    print("compression " + ("null" if a[2] == 0 else f"method {a[2]}"))
    weak = weak or a[2] != 0
    return 1 if weak else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "judge":
        sys.exit(judge(sys.argv[2]))
    if len(sys.argv) == 5 and sys.argv[1] == "probe":
        sys.exit(probe(*sys.argv[2:]))
    sys.exit(__doc__)
