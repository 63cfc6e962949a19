#!/usr/bin/env python3
"""Clients for the end-to-end tests (python3 standard library only).

Every command is bounded in time and prints key=value lines that the shell
tests grep. TLS clients verify the server against --ca and the SNI name
(unless --no-verify).

  hello     --sni NAME [--alpn a,b] [--tls12] --out FILE
            write a real ClientHello (Python's OpenSSL) to FILE
  mutate    IN OUT OP   rewrite a ClientHello (one TLS record) with OP:
            ext-len+1          the extensions block length off by one
            dup-ext            the last extension sent twice
            two-names          server_name lists two host names
            name-nul           a NUL byte inside the host name
            set-name:HEX       the host name replaced by these bytes
            record-overflow    record length 0x4801 (> 2^14)
            byte:OFF:HEX       set the byte at OFF
            truncate:N         keep the first N bytes
  raw       --port P (--file F | --text S | --hex H) [--shut-wr] [--close]
            [--wait S]          send bytes, read until the server ends the
            connection; prints end=eof|reset|timeout, hex=, text=, seconds=
  slow      --port P --file F [--interval S] [--max-seconds S]
            send F one byte per interval (slowloris); prints end=, seconds=, sent=
  abort-handshake --port P --sni NAME
            full ClientHello, read the server's first flight, then close
  request   --port P --sni NAME --ca CA [--alpn a,b] [--tls12] [--path /]
            one HTTP/1.1 request over TLS; prints alpn=, status=, body=
  shaped    --port P --sni NAME --ca CA [--segment N] [--records K]
            [--proxy v1|v2 --proxy-src IP:PORT]
            one HTTP/1.1 request over TLS driven through memory BIOs, so the
            first flight can be shaped: a PROXY header in front, the
            ClientHello cut into K TLS records and/or sent N bytes per TCP
            segment; prints alpn=, status=, body=
  bulk      --port P --sni NAME --ca CA --mb N [--seconds S]
            send N MiB through TLS to an echo backend, read them back,
            compare SHA-256, then close cleanly (close_notify both ways)
  concurrent --port P --sni NAME --ca CA --n N [--hold S]
            open N TLS connections at once, then one request on each
  loop      --port P --sni NAME --ca CA [--threads T] [--seconds S] [--max N]
            requests on fresh connections until S seconds or N requests
  keepalive --port P --sni NAME --ca CA --requests N --gap S [--hold S]
            N requests on one connection, S seconds apart; with --hold, stay
            connected (idle) up to S seconds and report how the server ended it
  stream    --port P --sni NAME --ca CA [--seconds S] [--started FILE]
            echo traffic until the connection ends; touches FILE once 1 MiB
            came back; prints end=, seconds_after_start=, ended_at= (epoch)
"""
import argparse
import asyncio
import hashlib
import os
import resource
import select
import socket
import ssl
import struct
import sys
import threading
import time


def out(**kv):
    print(" ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


def tls_ctx(args, alpn=None):
    if getattr(args, "no_verify", False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=args.ca)
    if getattr(args, "tls12", False):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn.split(","))
    return ctx


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


# --------------------------------------------------------------- hellos

def make_hello(sni, alpn=None, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn.split(","))
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outg.read()


def split_hello(b):
    """One-record ClientHello -> (head fields, [(type, data)])."""
    assert b[0] == 0x16 and b[5] == 0x01, "not a one-record ClientHello"
    body = b[9:9 + int.from_bytes(b[6:9], "big")]
    p = 2 + 32
    p += 1 + body[p]                                   # session id
    p += 2 + int.from_bytes(body[p:p + 2], "big")      # cipher suites
    p += 1 + body[p]                                   # compression
    head = body[:p]
    ext_len = int.from_bytes(body[p:p + 2], "big")
    exts, q = [], p + 2
    while q < p + 2 + ext_len:
        t = int.from_bytes(body[q:q + 2], "big")
        n = int.from_bytes(body[q + 2:q + 4], "big")
        exts.append((t, body[q + 4:q + 4 + n]))
        q += 4 + n
    return b[1:3], head, exts


def join_hello(rec_ver, head, exts, ext_len_delta=0):
    eb = b"".join(struct.pack(">HH", t, len(d)) + d for t, d in exts)
    body = head + struct.pack(">H", len(eb) + ext_len_delta) + eb
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + rec_ver + struct.pack(">H", len(hs)) + hs


def sni_ext(*names):
    entries = b"".join(b"\x00" + struct.pack(">H", len(n)) + n for n in names)
    return struct.pack(">H", len(entries)) + entries


def mutate(b, op):
    if op.startswith("byte:"):
        _, off, hx = op.split(":")
        b = bytearray(b)
        b[int(off)] = int(hx, 16)
        return bytes(b)
    if op.startswith("truncate:"):
        return b[:int(op.split(":")[1])]
    if op == "record-overflow":
        return b[:3] + b"\x48\x01" + b[5:]
    ver, head, exts = split_hello(b)
    if op == "ext-len+1":
        return join_hello(ver, head, exts, ext_len_delta=1)
    if op == "dup-ext":
        # Duplicate an extension that is not pre_shared_key (which must be last).
        i = next(i for i, (t, _) in enumerate(exts) if t != 41)
        return join_hello(ver, head, exts[:i + 1] + [exts[i]] + exts[i + 1:])
    if op.startswith("set-name:"):
        # The host name replaced by these bytes (hex), whatever they are.
        i = next(i for i, (t, _) in enumerate(exts) if t == 0)
        exts[i] = (0, sni_ext(bytes.fromhex(op.split(":", 1)[1])))
        return join_hello(ver, head, exts)
    if op in ("two-names", "name-nul"):
        i = next(i for i, (t, _) in enumerate(exts) if t == 0)
        name = exts[i][1][5:]
        data = sni_ext(name, b"other." + name) if op == "two-names" else sni_ext(name[:1] + b"\x00" + name[2:])
        exts[i] = (0, data)
        return join_hello(ver, head, exts)
    raise SystemExit(f"unknown mutation {op}")


# --------------------------------------------------------------- raw bytes

def read_until_end(s, deadline):
    """Reads until EOF, reset or the deadline; returns (bytes, how)."""
    got = b""
    while True:
        left = deadline - time.time()
        if left <= 0:
            return got, "timeout"
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return got, "reset"
        except socket.timeout:
            return got, "timeout"
        except OSError as e:
            return got, f"error:{e.errno}"
        if not d:
            return got, "eof"
        got += d


def cmd_raw(a):
    if a.file:
        data = open(a.file, "rb").read()
    elif a.hex:
        data = bytes.fromhex(a.hex)
    else:
        data = a.text.encode().decode("unicode_escape").encode("latin-1")
    t0 = time.time()
    s = connect(a.port)
    try:
        s.sendall(data)
    except OSError as e:
        out(end=f"send_error:{e.errno}", seconds=f"{time.time() - t0:.2f}")
        return 0
    if a.close:
        s.close()
        out(end="closed_by_client", sent=len(data))
        return 0
    if a.shut_wr:
        s.shutdown(socket.SHUT_WR)
    got, how = read_until_end(s, t0 + a.wait)
    s.close()
    out(end=how, seconds=f"{time.time() - t0:.2f}", bytes=len(got), hex=got[:64].hex() or "-")
    text = "".join(ch if 32 <= ord(ch) < 127 else {"\r": "\\r", "\n": "\\n"}.get(ch, ".")
                   for ch in got[:300].decode("latin-1"))
    print("text=" + text, flush=True)
    return 0


def cmd_slow(a):
    data = open(a.file, "rb").read()
    t0 = time.time()
    s = connect(a.port)
    sent = 0
    how = "timeout"
    while time.time() - t0 < a.max_seconds:
        if sent < len(data):
            try:
                s.send(data[sent:sent + 1])
                sent += 1
            except ConnectionResetError:
                how = "reset"
                break
            except OSError as e:
                how = f"send_error:{e.errno}"
                break
        r, _, _ = select.select([s], [], [], a.interval)
        if r:
            try:
                d = s.recv(4096)
            except ConnectionResetError:
                how = "reset"
                break
            if not d:
                how = "eof"
                break
    s.close()
    out(end=how, seconds=f"{time.time() - t0:.2f}", sent=sent)
    return 0


def cmd_abort_handshake(a):
    s = connect(a.port)
    s.sendall(make_hello(a.sni))
    s.settimeout(5)
    try:
        got = s.recv(65536)
    except OSError:
        got = b""
    s.close()
    out(server_first_flight=len(got))
    return 0


# --------------------------------------------------------------- TLS requests

def http_exchange(t, path="/", host="x"):
    """One HTTP/1.1 request on an established TLS socket; returns (status, body)."""
    t.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = t.recv(16384)
        if not d:
            raise EOFError("closed before the response headers")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1]
    length = None
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None:
        raise ValueError("no Content-Length")
    while len(body) < length:
        d = t.recv(16384)
        if not d:
            raise EOFError("closed inside the response body")
        body += d
    return status, body[:length].decode("latin-1")


def cmd_request(a):
    try:
        with connect(a.port) as s, tls_ctx(a, a.alpn).wrap_socket(s, server_hostname=a.sni) as t:
            status, body = http_exchange(t, a.path)
            out(alpn=t.selected_alpn_protocol() or "-", version=t.version(), status=status)
            print("body=" + body.strip(), flush=True)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        out(error=type(e).__name__, detail=str(e).replace(" ", "_")[:200])
        return 1
    return 0


def proxy_header(version, src, dst):
    sip, sport = src.rsplit(":", 1)
    dip, dport = dst
    if version == "v1":
        return f"PROXY TCP4 {sip} {dip} {sport} {dport}\r\n".encode()
    addrs = socket.inet_aton(sip) + socket.inet_aton(dip) + struct.pack(">HH", int(sport), int(dport))
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs


def reframe(first_flight, records):
    """Cuts the ClientHello handshake message across `records` TLS records."""
    assert first_flight[0] == 0x16
    n = int.from_bytes(first_flight[3:5], "big")
    msg, rest = first_flight[5:5 + n], first_flight[5 + n:]
    size = -(-len(msg) // records)
    out_b = b""
    for i in range(0, len(msg), size):
        frag = msg[i:i + size]
        out_b += first_flight[:3] + struct.pack(">H", len(frag)) + frag
    return out_b + rest


def cmd_shaped(a):
    try:
        s = connect(a.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if a.proxy:
            s.sendall(proxy_header(a.proxy, a.proxy_src, ("127.0.0.1", a.port)))
        inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = tls_ctx(a, a.alpn).wrap_bio(inc, outg, server_hostname=a.sni)
        deadline = time.time() + 10
        first = True

        def pump_in():
            s.settimeout(max(0.1, deadline - time.time()))
            d = s.recv(65536)
            if not d:
                raise EOFError("server closed")
            inc.write(d)

        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            data = outg.read()
            if data:
                if first:
                    first = False
                    if a.records > 1:
                        data = reframe(data, a.records)
                    step = a.segment or len(data)
                    for i in range(0, len(data), step):
                        s.sendall(data[i:i + step])
                        if a.segment:
                            time.sleep(0.002)  # each piece in its own TCP segment
                else:
                    s.sendall(data)
            if done:
                break
            if time.time() > deadline:
                raise TimeoutError("handshake")
            pump_in()
        obj.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(outg.read())
        buf = b""
        while b"backend=" not in buf or not buf.endswith(b"\n"):
            try:
                buf += obj.read(65536)
            except ssl.SSLWantReadError:
                pump_in()
            if time.time() > deadline:
                raise TimeoutError("response")
        body = buf.split(b"\r\n\r\n", 1)[-1].decode("latin-1")
        out(alpn=obj.selected_alpn_protocol() or "-", version=obj.version(),
            status=buf.split(b" ", 2)[1].decode())
        print("body=" + body.strip(), flush=True)
        s.close()
        return 0
    except Exception as e:  # noqa: BLE001 - reported, not raised
        out(error=type(e).__name__, detail=str(e).replace(" ", "_")[:200])
        return 1


def cmd_bulk(a):
    payload = os.urandom(1 << 20) * a.mb  # 1 MiB of random bytes, repeated
    want = hashlib.sha256(payload).hexdigest()
    t0 = time.time()
    deadline = t0 + a.seconds
    t = tls_ctx(a).wrap_socket(connect(a.port), server_hostname=a.sni)
    t.setblocking(False)
    view = memoryview(payload)
    sent = n = 0
    got = hashlib.sha256()
    how = "timeout"
    while time.time() < deadline:
        wl = [t] if sent < len(payload) else []
        r, w, _ = select.select([t], wl, [], 1)
        if w:
            try:
                sent += t.send(view[sent:sent + (256 << 10)])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
        ended = False
        while True:
            try:
                d = t.recv(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except (OSError, ssl.SSLError) as e:
                how = f"error:{type(e).__name__}"
                ended = True
                break
            if not d:
                how = "eof"
                ended = True
                break
            got.update(d)
            n += len(d)
        if ended or n >= len(payload):
            if n >= len(payload):
                how = "complete"
            break
    seconds = time.time() - t0
    same = got.hexdigest() == want and n == len(payload)
    # A clean end: our close_notify goes out, the echo backend ends its stream,
    # and the peer's close_notify comes back.
    clean = "no"
    if how == "complete":
        t.setblocking(True)
        t.settimeout(10)
        try:
            t.unwrap()
            clean = "yes"
        except (OSError, ssl.SSLError) as e:
            clean = f"no:{type(e).__name__}"
    t.close()
    out(result="equal" if same else "DIFFERENT", end=how, sent=sent, received=n,
        seconds=f"{seconds:.2f}", clean_close=clean,
        mbps=f"{2 * n / (1 << 20) / max(seconds, 1e-6):.0f}")
    return 0 if same else 1


async def one_conn(port, sni, ctx, hold, errors):
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni), 30)
    except Exception as e:  # noqa: BLE001
        errors.append(f"connect:{type(e).__name__}")
        return False
    try:
        await hold.wait()
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"backend=" not in data:
            d = await asyncio.wait_for(r.read(4096), 30)
            if not d:
                break
            data += d
        return b"backend=" in data
    except Exception as e:  # noqa: BLE001
        errors.append(f"request:{type(e).__name__}")
        return False
    finally:
        w.close()


async def concurrent(a):
    ctx = tls_ctx(a)
    hold = asyncio.Event()
    errors = []
    tasks = [asyncio.create_task(one_conn(a.port, a.sni, ctx, hold, errors)) for _ in range(a.n)]
    # Every connection completes its handshake before any request is sent,
    # so all N are open at the same time.
    await asyncio.sleep(a.hold)
    hold.set()
    res = await asyncio.gather(*tasks)
    ok = sum(res)
    kinds = {}
    for e in errors:
        kinds[e] = kinds.get(e, 0) + 1
    out(ok=ok, failed=a.n - ok, errors=",".join(f"{k}:{v}" for k, v in kinds.items()) or "-")
    return 0 if ok == a.n else 1


def cmd_concurrent(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, a.n + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return asyncio.run(concurrent(a))


def cmd_loop(a):
    ctx = tls_ctx(a)
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    errors = []
    end = time.time() + a.seconds

    def worker():
        while time.time() < end:
            with lock:
                if counts["ok"] + counts["failed"] >= a.max:
                    return
            try:
                with connect(a.port, 5) as s, ctx.wrap_socket(s, server_hostname=a.sni) as t:
                    status, body = http_exchange(t)
                    good = status == "200" and "backend=" in body
            except Exception as e:  # noqa: BLE001
                good = False
                with lock:
                    errors.append(f"{type(e).__name__}:{e}"[:120])
            with lock:
                counts["ok" if good else "failed"] += 1

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out(ok=counts["ok"], failed=counts["failed"], seconds=f"{time.time() - t0:.2f}")
    for e in errors[:5]:
        print("error=" + e.replace(" ", "_"), flush=True)
    return 0 if counts["failed"] == 0 else 1


def cmd_keepalive(a):
    ok = failed = 0
    try:
        with connect(a.port) as s, tls_ctx(a).wrap_socket(s, server_hostname=a.sni) as t:
            t.settimeout(10)
            for i in range(a.requests):
                if i:
                    time.sleep(a.gap)
                try:
                    status, body = http_exchange(t)
                    good = status == "200" and "backend=" in body
                except Exception as e:  # noqa: BLE001
                    print(f"error={type(e).__name__}", flush=True)
                    good = False
                print(f"request={i} ok={'yes' if good else 'no'}", flush=True)
                if good:
                    ok += 1
                else:
                    failed += 1
                    break
            if a.hold > 0 and failed == 0:
                # Stay connected and idle; report when the server ends it.
                t0 = time.time()
                t.settimeout(a.hold)
                try:
                    d = t.recv(1)
                    how = "eof" if not d else "data"
                except socket.timeout:
                    how = "timeout"
                except (OSError, ssl.SSLError) as e:
                    how = f"error:{type(e).__name__}"
                out(server_end=how, held=f"{time.time() - t0:.2f}")
    except Exception as e:  # noqa: BLE001
        print(f"error={type(e).__name__}", flush=True)
        failed += 1
    out(ok=ok, failed=failed)
    return 0 if failed == 0 else 1


def cmd_stream(a):
    t0 = time.time()
    t = tls_ctx(a).wrap_socket(connect(a.port), server_hostname=a.sni)
    t.setblocking(False)
    chunk = os.urandom(64 << 10)
    sent = n = 0
    started_at = None
    how = "timeout"
    while time.time() - t0 < a.seconds:
        r, w, _ = select.select([t], [t], [], 0.5)
        try:
            if w and sent - n < (4 << 20):  # keep at most 4 MiB in flight
                sent += t.send(chunk)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except ConnectionResetError:
            how = "reset"
            break
        except (OSError, ssl.SSLError) as e:
            how = f"error:{type(e).__name__}"
            break
        try:
            d = t.recv(1 << 20)
            if not d:
                how = "eof"
                break
            n += len(d)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except ConnectionResetError:
            how = "reset"
            break
        except (OSError, ssl.SSLError) as e:
            how = f"error:{type(e).__name__}"
            break
        if started_at is None and n >= (1 << 20):
            started_at = time.time()
            if a.started:
                open(a.started, "w").close()
        if a.pace:
            time.sleep(a.pace)
    ended_at = time.time()
    t.close()
    after = ended_at - started_at if started_at else -1
    out(end=how, seconds_after_start=f"{after:.2f}", ended_at=f"{ended_at:.3f}", sent=sent, received=n)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    def tls_args(p):
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--sni", required=True)
        p.add_argument("--ca")
        p.add_argument("--no-verify", action="store_true")

    p = sub.add_parser("hello")
    p.add_argument("--sni", required=True)
    p.add_argument("--alpn")
    p.add_argument("--tls12", action="store_true")
    p.add_argument("--out", required=True)
    p = sub.add_parser("mutate")
    p.add_argument("inp")
    p.add_argument("outp")
    p.add_argument("op")
    p = sub.add_parser("raw")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file")
    p.add_argument("--text")
    p.add_argument("--hex")
    p.add_argument("--shut-wr", action="store_true")
    p.add_argument("--close", action="store_true")
    p.add_argument("--wait", type=float, default=5)
    p = sub.add_parser("slow")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--interval", type=float, default=1)
    p.add_argument("--max-seconds", type=float, default=15)
    p = sub.add_parser("abort-handshake")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p = sub.add_parser("request")
    tls_args(p)
    p.add_argument("--alpn")
    p.add_argument("--tls12", action="store_true")
    p.add_argument("--path", default="/")
    p = sub.add_parser("shaped")
    tls_args(p)
    p.add_argument("--alpn")
    p.add_argument("--segment", type=int, default=0)
    p.add_argument("--records", type=int, default=1)
    p.add_argument("--proxy", choices=["v1", "v2"])
    p.add_argument("--proxy-src", default="192.0.2.7:4242")
    p = sub.add_parser("bulk")
    tls_args(p)
    p.add_argument("--mb", type=int, required=True)
    p.add_argument("--seconds", type=float, default=90)
    p = sub.add_parser("concurrent")
    tls_args(p)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--hold", type=float, default=3)
    p = sub.add_parser("loop")
    tls_args(p)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--max", type=int, default=3000)
    p = sub.add_parser("keepalive")
    tls_args(p)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--gap", type=float, default=1)
    p.add_argument("--hold", type=float, default=0)
    p = sub.add_parser("stream")
    tls_args(p)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--started")
    p.add_argument("--pace", type=float, default=0)
    a = ap.parse_args()

    if a.cmd == "hello":
        open(a.out, "wb").write(make_hello(a.sni, a.alpn, a.tls12))
        return 0
    if a.cmd == "mutate":
        open(a.outp, "wb").write(mutate(open(a.inp, "rb").read(), a.op))
        return 0
    return {
        "raw": cmd_raw, "slow": cmd_slow, "abort-handshake": cmd_abort_handshake,
        "request": cmd_request, "shaped": cmd_shaped, "bulk": cmd_bulk, "concurrent": cmd_concurrent,
        "loop": cmd_loop, "keepalive": cmd_keepalive, "stream": cmd_stream,
    }[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
