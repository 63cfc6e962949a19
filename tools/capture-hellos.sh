#!/usr/bin/env bash
# capture-hellos.sh - reproduce the real-client TLS ClientHello fixtures.
#
# For every client: start a local TLS server on 127.0.0.1 (openssl s_server
# with a throwaway self-signed ECDSA P-256 certificate), run tshark on the
# loopback interface around one client connection, then extract the
# client->server TCP payload of the first connection up to the end of the TLS
# record(s) holding the ClientHello.
#
# Outputs (relative to the repository root):
#   tests/fixtures/client_hello/NAME.bin       raw TLS record(s) of the ClientHello
#   tests/fixtures/client_hello/NAME.segments  payload length of each client TCP
#                                              segment making up NAME.bin (one per line)
#   tests/fixtures/client_hello/README.md      generated description table
#   tests/fixtures/pcap/chromium_pq.pcap       full Chromium capture
#   tests/fixtures/pcap/clients.pcap           several flows in one capture
#
# Network isolation: if `unshare --net` works (root), the script re-executes
# itself inside a fresh, private network namespace.  Its private `lo` is set to
# MTU 1500 with TSO/GSO disabled, so TCP segments on the capture look like
# they would on a real Ethernet path (MSS 1460), and nothing on the host's
# loopback is changed.  Without a namespace (or with CAPTURE_NO_NETNS=1) it
# uses the host's lo unchanged and records whatever segmentation it gets.
#
# Requirements: bash, openssl, tshark, python3 (stdlib), curl, node, chromium;
# optional: gnutls-cli (Debian package gnutls-bin), java (>= 11).
#
# Environment knobs:
#   CAPTURE_NO_NETNS=1   do not enter a private network namespace
#   CAPTURE_PORT_BASE=N  first TCP port to use (default 44300)
#   KEEP_WORK=1          keep the temporary work directory (certs, raw pcaps, logs)

set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SELF")/.." && pwd)
FIX_DIR="$REPO/tests/fixtures/client_hello"
PCAP_DIR="$REPO/tests/fixtures/pcap"

log() { printf '[capture] %s\n' "$*" >&2; }
die() { printf '[capture] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Private network namespace (re-exec once).
# ---------------------------------------------------------------------------
if [[ -z "${LODESTONE_CAPTURE_IN_NETNS:-}" && "${CAPTURE_NO_NETNS:-0}" != 1 ]]; then
    if command -v unshare >/dev/null && timeout 10 unshare --net true 2>/dev/null; then
        export LODESTONE_CAPTURE_IN_NETNS=1
        exec unshare --net "$SELF" "$@"
    fi
    log "unshare --net unavailable; capturing on the host loopback unchanged"
fi

NET_ENV="host loopback"
if [[ "${LODESTONE_CAPTURE_IN_NETNS:-}" == 1 ]]; then
    ip link set lo up
    ip link set lo mtu 1500
    offload="TSO/GSO left on"
    if command -v ethtool >/dev/null && ethtool -K lo tso off gso off >/dev/null 2>&1; then
        offload="TSO/GSO off"
    fi
    NET_ENV="private network namespace (unshare --net), lo MTU 1500, $offload"
else
    NET_ENV="host loopback, lo MTU $(cat /sys/class/net/lo/mtu 2>/dev/null || echo '?'), offloads unchanged"
fi
log "network: $NET_ENV"

# Clients must talk straight to 127.0.0.1.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

for tool in openssl tshark python3 curl ss; do
    command -v "$tool" >/dev/null || die "required tool '$tool' not found"
done
SYS_PY=/usr/bin/python3
[[ -x "$SYS_PY" ]] || SYS_PY=$(command -v python3)

# ---------------------------------------------------------------------------
# Work dir, process bookkeeping, cleanup.
# ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/lodestone-hellos.XXXXXX)
PIDS=()      # every background process we start (each one a process-group leader via `timeout`)

cleanup() {
    local rc=$? pid i
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            # `timeout` puts itself in its own process group: signal the group
            # (this also reaches e.g. Chromium's helper processes), fall back to the PID.
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# bg_start CMD...: run CMD in the background, record its PID in LAST_PID and PIDS.
bg_start() {
    "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# stop_pid PID [SIGNAL]: signal one of our processes (its group) and wait for it (bounded).
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Throwaway certificate (ECDSA P-256, self-signed, *.test).
# ---------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 \
    -subj "/CN=lodestone-fixture.test" \
    -addext "subjectAltName=DNS:*.test,DNS:a.test,DNS:pq.test" >/dev/null 2>&1 \
    || die "certificate generation failed"

# ---------------------------------------------------------------------------
# Python helper: pcap -> .bin/.segments, ClientHello verification, README.
# ---------------------------------------------------------------------------
cat >"$WORK/hello.py" <<'PYEOF'
import json, os, struct, sys

PQ_GROUPS = {0x11EC: "X25519MLKEM768", 0x6399: "X25519Kyber768Draft00"}
GROUP_NAMES = {0x0017: "secp256r1", 0x0018: "secp384r1", 0x0019: "secp521r1",
               0x001D: "x25519", 0x001E: "x448", 0x0100: "ffdhe2048",
               0x0101: "ffdhe3072", 0x0102: "ffdhe4096", 0x0103: "ffdhe6144",
               0x0104: "ffdhe8192", **PQ_GROUPS}
VERSION_NAMES = {0x0304: "1.3", 0x0303: "1.2", 0x0302: "1.1", 0x0301: "1.0"}


def is_grease(v):
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


# ---------------------------------------------------------------- pcap
def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file (write with -F pcap)")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        yield linktype, data[off:off + incl]
        off += incl


def parse_tcp(linktype, frame):
    """Return (src, sport, dst, dport, seq, flags, payload) or None."""
    if linktype == 1:            # Ethernet
        if len(frame) < 14:
            return None
        etype, off = struct.unpack("!H", frame[12:14])[0], 14
        while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            etype, off = struct.unpack("!H", frame[off + 2:off + 4])[0], off + 4
    elif linktype == 113:        # Linux cooked v1
        etype, off = struct.unpack("!H", frame[14:16])[0], 16
    elif linktype == 276:        # Linux cooked v2
        etype, off = struct.unpack("!H", frame[0:2])[0], 20
    elif linktype == 0:          # BSD loopback
        fam = struct.unpack("<I", frame[:4])[0]
        etype, off = (0x0800 if fam == 2 else 0x86DD), 4
    elif linktype in (101, 12, 14):  # raw IP
        etype = 0x0800 if frame[0] >> 4 == 4 else 0x86DD
        off = 0
    else:
        return None
    ip = frame[off:]
    if etype == 0x0800:
        if len(ip) < 20 or ip[9] != 6:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        src, dst = ip[12:16], ip[16:20]
        tcp = ip[ihl:total] if total else ip[ihl:]
    elif etype == 0x86DD:
        if len(ip) < 40 or ip[6] != 6:   # no extension-header support needed here
            return None
        plen = struct.unpack("!H", ip[4:6])[0]
        src, dst = ip[8:24], ip[24:40]
        tcp = ip[40:40 + plen]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    doff = (tcp[12] >> 4) * 4
    flags = tcp[13]
    return src, sport, dst, dport, seq, flags, tcp[doff:]


# ---------------------------------------------------------------- TLS
def hello_end(stream):
    """Offset just past the last TLS record that carries the ClientHello."""
    off, hs = 0, b""
    while True:
        if off + 5 > len(stream):
            raise ValueError("stream ends inside a TLS record header")
        ctype = stream[off]
        rlen = struct.unpack("!H", stream[off + 3:off + 5])[0]
        if ctype != 22:
            raise ValueError(f"record at offset {off} has content type {ctype}, not handshake")
        if off + 5 + rlen > len(stream):
            raise ValueError("stream ends inside a TLS record body")
        hs += stream[off + 5:off + 5 + rlen]
        off += 5 + rlen
        if len(hs) >= 4:
            need = 4 + int.from_bytes(hs[1:4], "big")
            if len(hs) >= need:
                if len(hs) > need:
                    raise ValueError("record carries handshake bytes beyond the ClientHello")
                return off


def extract(pcap, port, out_bin, out_seg):
    port = int(port)
    conn = None
    segs = {}
    for linktype, frame in read_pcap(pcap):
        p = parse_tcp(linktype, frame)
        if p is None:
            continue
        src, sport, dst, dport, seq, flags, payload = p
        syn, ack = flags & 0x02, flags & 0x10
        if conn is None:
            if syn and not ack and dport == port:
                conn = (src, sport, dst, dport)
                isn = seq
            continue
        if (src, sport, dst, dport) != conn:
            continue
        if syn and not ack:      # port reuse: a new connection, stop
            break
        if payload:
            rel = (seq - isn - 1) & 0xFFFFFFFF
            if rel not in segs or len(payload) > len(segs[rel]):
                segs[rel] = payload
    if conn is None:
        raise SystemExit(f"{pcap}: no SYN to port {port} found")
    stream, lens = b"", []
    for rel in sorted(segs):
        pl = segs[rel]
        if rel > len(stream):
            break                 # gap: stop at what is contiguous
        new = pl[len(stream) - rel:]
        if not new:
            continue              # pure retransmission
        stream += new
        lens.append(len(new))
    end = hello_end(stream)
    out, acc = [], 0
    for n in lens:
        if acc >= end:
            break
        take = min(n, end - acc)
        if take != n:
            print(f"warning: {pcap}: last segment carries {n - take} bytes after the ClientHello "
                  f"(recorded as {take})", file=sys.stderr)
        out.append(take)
        acc += take
    with open(out_bin, "wb") as f:
        f.write(stream[:end])
    with open(out_seg, "w") as f:
        f.write("".join(f"{n}\n" for n in out))


def parse_hello(path, data=None):
    if data is None:
        data = open(path, "rb").read()
    info = {"file": os.path.basename(path), "size": len(data), "errors": []}
    err = info["errors"].append
    if not data or data[0] != 0x16:
        err("first byte is not 0x16")
    off, hs, versions = 0, b"", []
    while off < len(data):
        if off + 5 > len(data):
            err("truncated record header"); break
        ctype, ver, rlen = data[off], struct.unpack("!H", data[off + 1:off + 3])[0], \
            struct.unpack("!H", data[off + 3:off + 5])[0]
        if ctype != 22:
            err(f"record content type {ctype}")
        if ver not in (0x0301, 0x0303):
            err(f"record version 0x{ver:04x}")
        versions.append(ver)
        if off + 5 + rlen > len(data):
            err("record length runs past end of file"); break
        hs += data[off + 5:off + 5 + rlen]
        off += 5 + rlen
    info["records"] = len(versions)
    info["record_versions"] = ",".join(f"0x{v:04x}" for v in versions)
    if off != len(data):
        err("record lengths do not add up to file size")
    if len(hs) < 4 or hs[0] != 1:
        err("handshake type is not 1 (ClientHello)")
        return info
    hlen = int.from_bytes(hs[1:4], "big")
    if 4 + hlen != len(hs):
        err(f"handshake length {hlen} != record payload {len(hs) - 4}")
    b = hs[4:4 + hlen]
    try:
        info["legacy_version"] = f"0x{struct.unpack('!H', b[0:2])[0]:04x}"
        p = 34
        sid = b[p]; p += 1 + sid
        cs_len = struct.unpack("!H", b[p:p + 2])[0]; p += 2
        suites = [struct.unpack("!H", b[p + i:p + i + 2])[0] for i in range(0, cs_len, 2)]
        p += cs_len
        comp = b[p]; p += 1 + comp
        info["cipher_suites"] = len(suites)
        info["sni"], info["alpn"], info["groups"], info["key_shares"] = None, [], [], []
        info["versions"], info["ext"] = [], []
        if p < len(b):
            elen = struct.unpack("!H", b[p:p + 2])[0]; p += 2
            if p + elen != len(b):
                err("extensions length mismatch")
            end = p + elen
            while p + 4 <= end:
                et, el = struct.unpack("!HH", b[p:p + 4]); p += 4
                ed = b[p:p + el]; p += el
                info["ext"].append(et)
                if et == 0:
                    q = 2
                    while q + 3 <= len(ed):
                        nt, nl = ed[q], struct.unpack("!H", ed[q + 1:q + 3])[0]
                        if nt == 0:
                            info["sni"] = ed[q + 3:q + 3 + nl].decode("ascii", "replace")
                        q += 3 + nl
                elif et == 16:
                    q = 2
                    while q < len(ed):
                        n = ed[q]; info["alpn"].append(ed[q + 1:q + 1 + n].decode("ascii", "replace")); q += 1 + n
                elif et == 10:
                    info["groups"] = [struct.unpack("!H", ed[q:q + 2])[0] for q in range(2, len(ed), 2)]
                elif et == 51:
                    q = 2
                    while q + 4 <= len(ed):
                        g, kl = struct.unpack("!HH", ed[q:q + 4])
                        info["key_shares"].append((g, kl)); q += 4 + kl
                elif et == 43:
                    info["versions"] = [struct.unpack("!H", ed[q:q + 2])[0] for q in range(1, len(ed), 2)]
    except (IndexError, struct.error) as e:
        err(f"ClientHello parse error: {e}")
    return info


def describe(info):
    ext = info.get("ext", [])
    pq_ks = [g for g, _ in info.get("key_shares", []) if g in PQ_GROUPS]
    pq_g = [g for g in info.get("groups", []) if g in PQ_GROUPS]
    if pq_ks:
        pq = "yes (key_share " + ",".join(f"0x{g:04x} {PQ_GROUPS[g]}" for g in pq_ks) + ")"
    elif pq_g:
        pq = "offered in supported_groups only (" + ",".join(f"0x{g:04x}" for g in pq_g) + ")"
    else:
        pq = "no"
    vers = [VERSION_NAMES.get(v, f"0x{v:04x}") for v in info.get("versions", []) if not is_grease(v)]
    notes = []
    notes.append("TLS " + "/".join(vers) if vers else "no supported_versions (TLS 1.2 max)")
    ks = [GROUP_NAMES.get(g, f"0x{g:04x}") for g, _ in info.get("key_shares", []) if not is_grease(g)]
    if ks:
        notes.append("key_share " + "+".join(ks))
    if 41 in ext:
        notes.append("pre_shared_key")
    if 42 in ext:
        notes.append("early_data")
    if 35 in ext:
        notes.append("session_ticket")
    if 5 in ext:
        notes.append("status_request")
    if 0xFE0D in ext:
        notes.append("ECH (0xfe0d, GREASE)")
    if 21 in ext:
        notes.append("padding")
    if any(is_grease(e) for e in ext):
        notes.append("GREASE")
    notes.append(f"{len(ext)} extensions")
    return pq, "; ".join(notes)


def read_segments(path):
    try:
        return [int(x) for x in open(path).read().split()]
    except OSError:
        return None


def verify(paths):
    """Print a summary table; exit 1 if any file fails."""
    bad = 0
    rows = []
    for path in paths:
        info = parse_hello(path)
        segs = read_segments(path[:-4] + ".segments")
        if segs is None:
            info["errors"].append("missing .segments")
        elif sum(segs) != info["size"]:
            info["errors"].append(f".segments sum {sum(segs)} != size {info['size']}")
        pq, _ = describe(info)
        rows.append((info["file"], str(info["size"]), str(len(segs or [])),
                     ",".join(map(str, segs or [])), info.get("record_versions", "?"),
                     info.get("sni") or "-", ",".join(info.get("alpn") or []) or "-",
                     "yes" if pq.startswith("yes") else "no",
                     "OK" if not info["errors"] else "FAIL: " + "; ".join(info["errors"])))
        bad += bool(info["errors"])
    head = ("file", "size", "segs", "segment sizes", "rec ver", "SNI", "ALPN", "PQ", "check")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    return bad


def md(s):
    return str(s).replace("|", "\\|")


def readme(meta_path, fix_dir, net_env, pcap_notes_path):
    metas = [json.loads(l) for l in open(meta_path) if l.strip()]
    pcap_notes = open(pcap_notes_path).read() if os.path.exists(pcap_notes_path) else ""
    out = []
    w = out.append
    w("# Real-client TLS ClientHello fixtures\n")
    w("Generated by `tools/capture-hellos.sh` (do not edit by hand; rerun the script).\n")
    w("Each `NAME.bin` holds the raw bytes of the TLS record(s) carrying one ClientHello "
      "exactly as the client sent them on the wire: it starts at the first byte of the TCP "
      "stream (`0x16`) and ends at the end of the last record holding the ClientHello "
      "handshake message, so the record lengths add up to the file size. `NAME.segments` has "
      "one line per client TCP segment that carried those bytes (its payload length, in "
      "sequence order); the lines sum to the `.bin` size.\n")
    w(f"Capture environment: {net_env}. "
      + ("With MTU 1500 and segmentation offloads off, the MSS is 1460 and each segment carries "
         "at most 1448 payload bytes (TCP timestamps on), which is the shape these hellos have on "
         "a real Ethernet path; on the default loopback (MTU 65536, GSO) every hello would be a "
         "single segment. The host's `lo` is not touched.\n"
         if "MTU 1500" in net_env else "Segmentation is whatever the host loopback produced.\n"))
    w("Servers: `openssl s_server -www -quiet` on 127.0.0.1 with a throwaway self-signed "
      "ECDSA P-256 certificate (no ALPN configured on the server, so none is negotiated). "
      "`P` in the commands is the TCP port the script used. Random values, key shares, "
      "session IDs, GREASE values and extension order (Chromium permutes) differ on every "
      "run, so rerunning the script changes the bytes but not the shape.\n")
    w("PQ = a post-quantum hybrid key share is sent: X25519MLKEM768 (group 0x11ec) or "
      "X25519Kyber768Draft00 (0x6399).\n")
    w("| file | client / command | SNI | ALPN | size (bytes) | TCP segments | PQ | client version | other |")
    w("|---|---|---|---|---|---|---|---|---|")
    for m in metas:
        name = m["name"]
        path = os.path.join(fix_dir, name + ".bin")
        if m.get("status") != "ok":
            w(f"| `{name}.bin` | {md(m['client'])}: `{md(m['cmd'])}` | | | | | | {md(m.get('version',''))} | "
              f"**not captured**: {md(m.get('status'))}"
              + (" (an older file from a previous run is left in place)" if os.path.exists(path) else "") + " |")
            continue
        info = parse_hello(path)
        segs = read_segments(path[:-4] + ".segments") or []
        pq, notes = describe(info)
        seg_txt = f"{len(segs)} (" + " + ".join(map(str, segs)) + ")" if len(segs) > 1 else str(len(segs))
        w(f"| `{name}.bin` | {md(m['client'])}: `{md(m['cmd'])}` | {md(info.get('sni') or '(none)')} | "
          f"{md(','.join(info.get('alpn') or []) or '(none)')} | {info['size']} | {seg_txt} | {md(pq)} | "
          f"{md(m.get('version',''))} | {md(notes + ('; ' + m['note'] if m.get('note') else ''))} |")
    w("")
    w(pcap_notes)
    with open(os.path.join(fix_dir, "README.md"), "w") as f:
        f.write("\n".join(out).rstrip() + "\n")


def pcap_snis(pcap):
    """SNI of each ClientHello in capture order (per connection)."""
    conns, order = {}, []
    for linktype, frame in read_pcap(pcap):
        p = parse_tcp(linktype, frame)
        if p is None:
            continue
        src, sport, dst, dport, seq, flags, payload = p
        key = (src, sport, dst, dport)
        if flags & 0x02 and not flags & 0x10:
            conns[key] = [seq, {}]
            order.append(key)
        elif key in conns and payload:
            conns[key][1].setdefault((seq - conns[key][0] - 1) & 0xFFFFFFFF, payload)
    res = []
    for key in order:
        isn, segs = conns[key]
        stream = b""
        for rel in sorted(segs):
            if rel > len(stream):
                break
            stream += segs[rel][len(stream) - rel:]
        try:
            end = hello_end(stream)
        except ValueError:
            continue
        info = parse_hello("-", stream[:end])
        res.append((key[1], info.get("sni") or "(none)", info["size"]))
    for sport, sni, size in res:
        print(f"{sport}\t{sni}\t{size}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "extract":
        extract(*args)
    elif cmd == "verify":
        sys.exit(1 if verify(args) else 0)
    elif cmd == "info":
        info = parse_hello(args[0]); pq, notes = describe(info)
        print(json.dumps({"sni": info.get("sni"), "alpn": info.get("alpn"), "pq": pq,
                          "notes": notes, "ext": info.get("ext"), "errors": info["errors"]}))
    elif cmd == "readme":
        readme(*args)
    elif cmd == "snis":
        pcap_snis(args[0])
    else:
        raise SystemExit(f"unknown command {cmd}")
PYEOF
HELPER=(python3 "$WORK/hello.py")

# ---------------------------------------------------------------------------
# Server / capture / client plumbing.
# ---------------------------------------------------------------------------
PORT=${CAPTURE_PORT_BASE:-44300}
OUT="$WORK/out"
mkdir -p "$OUT"
: >"$WORK/meta.jsonl"

next_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        PORT=$((PORT + 1))
        if [[ -z "$(ss -Htan "( sport = :$PORT or dport = :$PORT )" 2>/dev/null)" ]]; then
            return 0
        fi
    done
    die "no free TCP port found"
}

wait_listen() {   # wait_listen PORT PID
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]] && return 0
        kill -0 "$2" 2>/dev/null || die "server on port $1 exited early (see $WORK/*.server.log)"
        sleep 0.1
    done
    die "server on port $1 did not start listening"
}

SERVER_PID=
start_server() {  # start_server PORT LOGNAME [extra s_server args]
    local port=$1 name=$2; shift 2
    bg_start timeout 300 openssl s_server -accept "127.0.0.1:$port" \
        -cert "$WORK/cert.pem" -key "$WORK/key.pem" -www -quiet "$@" \
        </dev/null >"$WORK/$name.server.log" 2>&1
    SERVER_PID=$LAST_PID
    wait_listen "$port" "$SERVER_PID"
}

CAP_PID=
start_capture() { # start_capture PORT PCAPFILE
    local port=$1 file=$2 i
    rm -f "$file"
    bg_start timeout -s INT 300 tshark -q -i lo -f "tcp port $port" -F pcap -w "$file" \
        </dev/null >"$file.log" 2>&1
    CAP_PID=$LAST_PID
    for ((i = 0; i < 150; i++)); do
        grep -q "Capturing on" "$file.log" 2>/dev/null && break
        kill -0 "$CAP_PID" 2>/dev/null || die "tshark exited: $(cat "$file.log")"
        sleep 0.1
    done
    grep -q "Capturing on" "$file.log" || die "tshark did not start: $(cat "$file.log")"
    sleep 0.5   # let dumpcap attach the filter
}

stop_capture() {
    sleep 0.7   # let the last packets reach the capture
    stop_pid "$CAP_PID" INT
    [[ -s "$2" ]] || die "capture $2 is empty"
}

# run_client NAME TIMEOUT CMD... : run a client, bounded, output to a log; never fails.
run_client() {
    local name=$1 t=$2; shift 2
    timeout -k 5 "$t" "$@" </dev/null >"$WORK/$name.client.log" 2>&1 || true
}

# meta NAME STATUS CLIENT CMD VERSION [NOTE]
meta() {
    python3 -c 'import json,sys; k=("name","status","client","cmd","version","note"); print(json.dumps(dict(zip(k, sys.argv[1:]))))' \
        "$@" >>"$WORK/meta.jsonl"
}

# finish_capture NAME PORT PCAP: extract .bin/.segments from a pcap.
finish_capture() {
    local name=$1 port=$2 pcap=$3
    "${HELPER[@]}" extract "$pcap" "$port" "$OUT/$name.bin" "$OUT/$name.segments" \
        || die "$name: extraction failed (pcap kept in $pcap if KEEP_WORK=1)"
    log "$name: $(stat -c %s "$OUT/$name.bin") bytes, segments: $(tr '\n' ' ' <"$OUT/$name.segments")"
}

# capture_simple NAME CLIENT VERSION DISPLAYCMD TIMEOUT CMD... (CMD may use @PORT@)
capture_simple() {
    local name=$1 client=$2 version=$3 display=$4 t=$5; shift 5
    local args=() a
    next_port
    for a in "$@"; do args+=("${a//@PORT@/$PORT}"); done
    start_server "$PORT" "$name"
    start_capture "$PORT" "$WORK/$name.pcap"
    run_client "$name" "$t" "${args[@]}"
    stop_capture "$name" "$WORK/$name.pcap"
    stop_pid "$SERVER_PID"
    finish_capture "$name" "$PORT" "$WORK/$name.pcap"
    meta "$name" ok "$client" "${display//@PORT@/$PORT}" "$version"
}

# ---------------------------------------------------------------------------
# Client versions.
# ---------------------------------------------------------------------------
V_OPENSSL=$(openssl version)
V_CURL=$(curl --version | head -n1)
V_PY=$("$SYS_PY" -c 'import sys, ssl; print("Python", sys.version.split()[0], "/", ssl.OPENSSL_VERSION)')

# ---------------------------------------------------------------------------
# Captures.
# ---------------------------------------------------------------------------
S="openssl s_client"
capture_simple openssl_tls13 "OpenSSL s_client" "$V_OPENSSL" \
    "$S -connect 127.0.0.1:@PORT@ -servername a.test -tls1_3 -alpn h2,http/1.1 </dev/null" 20 \
    openssl s_client -connect "127.0.0.1:@PORT@" -servername a.test -tls1_3 -alpn h2,http/1.1

capture_simple openssl_tls12 "OpenSSL s_client" "$V_OPENSSL" \
    "$S -connect 127.0.0.1:@PORT@ -servername b.test -tls1_2 </dev/null" 20 \
    openssl s_client -connect "127.0.0.1:@PORT@" -servername b.test -tls1_2

capture_simple openssl_nosni "OpenSSL s_client" "$V_OPENSSL" \
    "$S -connect 127.0.0.1:@PORT@ -noservername </dev/null" 20 \
    openssl s_client -connect "127.0.0.1:@PORT@" -noservername

capture_simple openssl_status "OpenSSL s_client" "$V_OPENSSL" \
    "$S -connect 127.0.0.1:@PORT@ -servername a.test -status </dev/null" 20 \
    openssl s_client -connect "127.0.0.1:@PORT@" -servername a.test -status

# --- openssl_resume: get a TLS 1.3 ticket, then capture the resumption hello.
next_port
start_server "$PORT" openssl_resume
# The HTTP request makes s_client stay until s_server -www answers and closes,
# so the NewSessionTicket messages (sent after the handshake) are read and saved.
printf 'GET / HTTP/1.0\r\n\r\n' >"$WORK/get.txt"
timeout -k 5 20 openssl s_client -connect "127.0.0.1:$PORT" -servername a.test -tls1_3 \
    -ign_eof -sess_out "$WORK/sess.pem" <"$WORK/get.txt" >"$WORK/openssl_resume.first.log" 2>&1 || true
[[ -s "$WORK/sess.pem" ]] || die "openssl_resume: first s_client saved no session (-sess_out)"
start_capture "$PORT" "$WORK/openssl_resume.pcap"
run_client openssl_resume 20 openssl s_client -connect "127.0.0.1:$PORT" -servername a.test -tls1_3 \
    -sess_in "$WORK/sess.pem"
stop_capture openssl_resume "$WORK/openssl_resume.pcap"
stop_pid "$SERVER_PID"
finish_capture openssl_resume "$PORT" "$WORK/openssl_resume.pcap"
grep -q '^Reused' "$WORK/openssl_resume.client.log" && resumed="server accepted the PSK (Reused)" \
    || resumed="server did not report reuse"
meta openssl_resume ok "OpenSSL s_client (2nd run, resumption)" \
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | $S -connect 127.0.0.1:$PORT -servername a.test -tls1_3 -ign_eof -sess_out sess.pem; then (captured): $S -connect 127.0.0.1:$PORT -servername a.test -tls1_3 -sess_in sess.pem </dev/null" \
    "$V_OPENSSL" "ticket from the same s_server process; $resumed"

# --- curl
capture_simple curl "curl" "$V_CURL" \
    "curl -sk --resolve a.test:@PORT@:127.0.0.1 https://a.test:@PORT@/ -o /dev/null" 20 \
    curl -sk --max-time 15 --resolve "a.test:@PORT@:127.0.0.1" "https://a.test:@PORT@/" -o /dev/null

# --- Python ssl (system interpreter)
PY_CODE='import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="c.test") as t:
        print(t.version(), t.cipher())'
capture_simple python_ssl "Python ssl ($SYS_PY)" "$V_PY" \
    "$SYS_PY -c \"\$PY_CODE\" @PORT@  (see Client programs below)" 20 \
    "$SYS_PY" -c "$PY_CODE" "@PORT@"

# --- GnuTLS (optional)
if command -v gnutls-cli >/dev/null; then
    V_GNUTLS=$(gnutls-cli --version 2>/dev/null | head -n1)
    capture_simple gnutls "gnutls-cli" "$V_GNUTLS" \
        "gnutls-cli --insecure --sni-hostname=d.test --port=@PORT@ 127.0.0.1 </dev/null" 20 \
        gnutls-cli --insecure --sni-hostname=d.test "--port=@PORT@" 127.0.0.1
else
    log "gnutls-cli not found (apt-get install gnutls-bin): skipping gnutls"
    meta gnutls "skipped: gnutls-cli not installed (Debian package gnutls-bin)" "gnutls-cli" \
        "gnutls-cli --insecure --sni-hostname=d.test --port=P 127.0.0.1" ""
fi

# --- Node.js
NODE_CODE='const tls = require("tls");
const s = tls.connect({host: "127.0.0.1", port: +process.argv[1], servername: "e.test",
                       rejectUnauthorized: false}, () => { console.log(s.getProtocol()); s.end(); });
s.on("error", e => { console.error(e.message); process.exit(0); });
setTimeout(() => process.exit(0), 10000).unref();'
if command -v node >/dev/null; then
    V_NODE=$(node -p '"node " + process.version + " / OpenSSL " + process.versions.openssl')
    capture_simple nodejs "Node.js tls" "$V_NODE" \
        "node -e \"\$NODE_CODE\" @PORT@  (see Client programs below)" 20 \
        node -e "$NODE_CODE" "@PORT@"
else
    meta nodejs "skipped: node not installed" "Node.js tls" "tls.connect({servername: 'e.test'})" ""
fi

# --- Java (optional; single-file source launch, Java >= 11)
if command -v java >/dev/null; then
    mkdir -p "$WORK/java"
    cat >"$WORK/java/Hello.java" <<'JEOF'
import javax.net.ssl.*;
import java.security.cert.X509Certificate;
import java.util.List;

public class Hello {
    public static void main(String[] a) throws Exception {
        TrustManager[] trustAll = { new X509TrustManager() {
            public void checkClientTrusted(X509Certificate[] c, String t) {}
            public void checkServerTrusted(X509Certificate[] c, String t) {}
            public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
        } };
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, trustAll, null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", Integer.parseInt(a[0]))) {
            s.setSoTimeout(10000);
            SSLParameters p = s.getSSLParameters();
            p.setServerNames(List.of(new SNIHostName("f.test")));
            s.setSSLParameters(p);
            s.startHandshake();
            System.out.println(s.getSession().getProtocol());
        }
    }
}
JEOF
    V_JAVA=$(java -version 2>&1 | sed -n 2p)
    capture_simple java "Java SSLSocket (JSSE)" "$V_JAVA" \
        "java Hello.java @PORT@  (see Client programs below)" 60 \
        java "$WORK/java/Hello.java" "@PORT@"
else
    meta java "skipped: java not installed" "Java SSLSocket" "java Hello.java P" ""
fi

# --- Chromium (PQ hello, GREASE ECH)
CHROMIUM_OK=0
if command -v chromium >/dev/null; then
    V_CHROMIUM=$(chromium --version 2>/dev/null | tail -n1)
    next_port
    start_server "$PORT" chromium_pq
    start_capture "$PORT" "$WORK/chromium_pq.pcap"
    CHROME_PROFILE=$(mktemp -d "$WORK/chromium-profile.XXXXXX")
    CHROME_FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --ignore-certificate-errors "--host-resolver-rules=MAP pq.test 127.0.0.1"
        "--user-data-dir=$CHROME_PROFILE" --dump-dom "https://pq.test:$PORT/")
    # `timeout` makes its own process group; Chromium and all its helper
    # processes stay in it, so the whole group is killed afterwards.
    bg_start timeout -k 5 60 chromium "${CHROME_FLAGS[@]}" </dev/null \
        >"$WORK/chromium_pq.dom.html" 2>"$WORK/chromium_pq.client.log"
    CHROME_PID=$LAST_PID
    wait "$CHROME_PID" 2>/dev/null || true
    # Chromium exited (or timeout killed it); end any helper left in its group.
    kill -TERM -- "-$CHROME_PID" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 -- "-$CHROME_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CHROME_PID" 2>/dev/null || true
    stop_capture chromium_pq "$WORK/chromium_pq.pcap"
    stop_pid "$SERVER_PID"
    finish_capture chromium_pq "$PORT" "$WORK/chromium_pq.pcap"
    meta chromium_pq ok "Debian Chromium (headless)" \
        "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync --ignore-certificate-errors --host-resolver-rules='MAP pq.test 127.0.0.1' --user-data-dir=\$(mktemp -d) --dump-dom https://pq.test:$PORT/" "$V_CHROMIUM" \
        "first TCP connection of the page load; full capture in ../pcap/chromium_pq.pcap"
    CHROMIUM_OK=1
else
    meta chromium_pq "skipped: chromium not installed" "Chromium" "chromium --headless ... https://pq.test:P/" ""
fi

# --- Combined pcap: several clients against one server in one tshark session.
next_port
start_server "$PORT" clients
start_capture "$PORT" "$WORK/clients.pcap"
run_client clients.1 20 openssl s_client -connect "127.0.0.1:$PORT" -servername a.test -tls1_3 -alpn h2,http/1.1
run_client clients.2 20 openssl s_client -connect "127.0.0.1:$PORT" -servername b.test -tls1_2
run_client clients.3 20 curl -sk --max-time 15 --resolve "a.test:$PORT:127.0.0.1" "https://a.test:$PORT/" -o /dev/null
run_client clients.4 20 "$SYS_PY" -c "$PY_CODE" "$PORT"
stop_capture clients "$WORK/clients.pcap"
stop_pid "$SERVER_PID"
CLIENTS_PORT=$PORT

# ---------------------------------------------------------------------------
# Verify, install, README, summary.
# ---------------------------------------------------------------------------
mkdir -p "$FIX_DIR" "$PCAP_DIR"
if ! "${HELPER[@]}" verify "$OUT"/*.bin >"$WORK/verify.txt"; then
    cat "$WORK/verify.txt" >&2
    die "verification failed; fixtures not installed"
fi

# Sanity checks on specific features.
chk() { "${HELPER[@]}" info "$OUT/$1.bin" | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($2) else 1)"; }
chk openssl_resume '41 in d["ext"]' || die "openssl_resume: no pre_shared_key extension"
chk openssl_status '5 in d["ext"]' || die "openssl_status: no status_request extension"
chk openssl_nosni 'd["sni"] is None' || die "openssl_nosni: SNI present"
if [[ $CHROMIUM_OK == 1 ]]; then
    chk chromium_pq 'd["pq"].startswith("yes")' || log "WARNING: chromium_pq carries no PQ key share"
fi

for f in "$OUT"/*.bin "$OUT"/*.segments; do
    install -m 0644 "$f" "$FIX_DIR/"
done
[[ $CHROMIUM_OK == 1 ]] && install -m 0644 "$WORK/chromium_pq.pcap" "$PCAP_DIR/chromium_pq.pcap"
install -m 0644 "$WORK/clients.pcap" "$PCAP_DIR/clients.pcap"

{
    echo "## Packet captures (\`../pcap/\`)"
    echo
    echo "Classic pcap (libpcap) files, link type Ethernet (Linux loopback), 127.0.0.1 only."
    echo
    if [[ $CHROMIUM_OK == 1 ]]; then
        n=$(python3 "$WORK/hello.py" snis "$PCAP_DIR/chromium_pq.pcap" | wc -l)
        echo "- \`chromium_pq.pcap\` ($(stat -c %s "$PCAP_DIR/chromium_pq.pcap") bytes): the whole Chromium page load" \
             "against \`openssl s_server -www\` (TLS 1.3 handshakes completed, x25519 chosen by the server" \
             "since OpenSSL 3.0 has no ML-KEM); $n TLS connection(s). \`chromium_pq.bin\` is the ClientHello of the first one."
    fi
    echo "- \`clients.pcap\` ($(stat -c %s "$PCAP_DIR/clients.pcap") bytes): one tshark session, one \`openssl s_server -www\`" \
         "on 127.0.0.1:$CLIENTS_PORT, four complete connections, in this order:"
    echo
    echo "  | # | client port | client | SNI | ClientHello size |"
    echo "  |---|---|---|---|---|"
    clients=("openssl s_client -tls1_3 -alpn h2,http/1.1" "openssl s_client -tls1_2" "curl" "Python ssl")
    i=0
    while IFS=$'\t' read -r sport sni size; do
        echo "  | $((i + 1)) | $sport | ${clients[$i]:-?} | $sni | $size |"
        i=$((i + 1))
    done < <(python3 "$WORK/hello.py" snis "$PCAP_DIR/clients.pcap")
    echo
    echo "## Client programs"
    echo
    echo "Exact code run for the library clients (the last argument is the port)."
    echo
    echo "\`python_ssl.bin\` / \`clients.pcap\` #4: \`$SYS_PY -c \"\$PY_CODE\" P\` with"
    echo
    echo '```python'
    echo "$PY_CODE"
    echo '```'
    echo
    echo "\`nodejs.bin\`: \`node -e \"\$NODE_CODE\" P\` with"
    echo
    echo '```js'
    echo "$NODE_CODE"
    echo '```'
    if [[ -f "$WORK/java/Hello.java" ]]; then
        echo
        echo "\`java.bin\`: \`java Hello.java P\` (single-file source launch) with"
        echo
        echo '```java'
        cat "$WORK/java/Hello.java"
        echo '```'
    fi
    echo
    echo "## Regenerating"
    echo
    echo '```sh'
    echo 'sudo tools/capture-hellos.sh     # root: needs unshare --net and packet capture'
    echo '```'
    echo
    echo "Needs openssl, tshark, python3, curl, node, chromium; optionally gnutls-cli" \
         "(\`apt-get install gnutls-bin\`) and java. All traffic stays on 127.0.0.1."
} >"$WORK/pcap_notes.md"

python3 "$WORK/hello.py" readme "$WORK/meta.jsonl" "$FIX_DIR" "$NET_ENV" "$WORK/pcap_notes.md"

echo
echo "Network: $NET_ENV"
echo
"${HELPER[@]}" verify "$FIX_DIR"/*.bin || die "installed fixtures fail verification"
echo
echo "pcaps:"
ls -l "$PCAP_DIR"/*.pcap | awk '{print "  " $5 "\t" $NF}'
skipped=$(python3 -c 'import json,sys; [print("  " + m["name"] + ": " + m["status"]) for m in map(json.loads, open(sys.argv[1])) if m["status"] != "ok"]' "$WORK/meta.jsonl")
[[ -n "$skipped" ]] && { echo "skipped:"; echo "$skipped"; }
exit 0
