#!/usr/bin/env python3
"""Test clients for the end-to-end tests (python3 standard library only).

  clients.py bulk-tls PORT SNI CA MB        send MB to an echo backend through
                                            TLS termination, read it back,
                                            compare SHA-256 both ways
  clients.py bulk-raw PORT HELLO_FILE MB    the same through passthrough: a
                                            real ClientHello first, then bytes
  clients.py concurrent PORT SNI CA N       open N TLS connections at once, one
                                            request each, count successes
  clients.py loop PORT SNI CA SECONDS       sequential requests for SECONDS,
                                            print "ok N failed M"
Every call is bounded in time and prints one line.
"""
import asyncio, hashlib, select, socket, ssl, sys, time

def tls_ctx(ca):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx

def pump(sock, payload, deadline):
    """Sends payload and reads back as many bytes, without threads."""
    sock.setblocking(False)
    view = memoryview(payload); sent = 0; got = hashlib.sha256(); n = 0
    while n < len(payload) and time.time() < deadline:
        r, w, _ = select.select([sock], [sock] if sent < len(payload) else [], [], 1)
        if w:
            try:
                sent += sock.send(view[sent:sent + (1 << 20)])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
        while True:
            try:
                b = sock.recv(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            if not b:
                return got.hexdigest(), n
            got.update(b); n += len(b)
    return got.hexdigest(), n

def bulk_tls(port, sni, ca, mb):
    payload = bytes(range(256)) * (4096 * mb)
    s = tls_ctx(ca).wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=sni)
    t0 = time.time()
    digest, n = pump(s, payload, t0 + 120)
    ok = digest == hashlib.sha256(payload).hexdigest()
    print(f"{'equal' if ok else 'DIFFERENT'} bytes={n} seconds={time.time() - t0:.2f}")
    return 0 if ok else 1

def bulk_raw(port, hello_file, mb):
    payload = open(hello_file, "rb").read() + bytes(range(256)) * (4096 * mb)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.time()
    digest, n = pump(s, payload, t0 + 120)
    ok = digest == hashlib.sha256(payload).hexdigest()
    print(f"{'equal' if ok else 'DIFFERENT'} bytes={n} seconds={time.time() - t0:.2f}")
    return 0 if ok else 1

async def one(port, sni, ctx, hold):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni), 20)
        await hold.wait()
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(r.read(200), 20)
        w.close()
        return b"backend=" in data
    except Exception:
        return False

async def concurrent(port, sni, ca, n):
    ctx = tls_ctx(ca)
    hold = asyncio.Event()
    tasks = [asyncio.create_task(one(port, sni, ctx, hold)) for _ in range(n)]
    # Every connection opens (and completes its handshake) before any
    # request is sent, so N are open at once.
    await asyncio.sleep(3)
    hold.set()
    res = await asyncio.gather(*tasks)
    ok = sum(res)
    print(f"ok {ok} failed {n - ok}")
    return 0 if ok == n else 1

def loop(port, sni, ca, seconds):
    ctx = tls_ctx(ca); ok = failed = 0; end = time.time() + seconds
    while time.time() < end:
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname=sni)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(200)
            s.close()
            if b"backend=" in data: ok += 1
            else: failed += 1
        except Exception:
            failed += 1
    print(f"ok {ok} failed {failed}")
    return 0 if failed == 0 else 1

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "bulk-tls": sys.exit(bulk_tls(int(args[0]), args[1], args[2], int(args[3])))
    if cmd == "bulk-raw": sys.exit(bulk_raw(int(args[0]), args[1], int(args[2])))
    if cmd == "concurrent": sys.exit(asyncio.run(concurrent(int(args[0]), args[1], args[2], int(args[3]))))
    if cmd == "loop": sys.exit(loop(int(args[0]), args[1], args[2], float(args[3])))
    sys.exit(2)
