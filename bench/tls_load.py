#!/usr/bin/env python3
"""A small load client for bench/compare_nginx.sh (python3 stdlib only).

  tls_load.py handshakes PORT SNI CA N [resumed]   N sequential connections:
      TLS handshake (full, or resumed from the first session), one HTTP/1.0
      request, read the answer, close. Prints "ok N failed M seconds S".
  tls_load.py bulk-raw PORT HELLO_FILE MB          a captured ClientHello,
      then MB megabytes; reads as many back (an echo backend behind a
      passthrough route). Prints "equal|DIFFERENT bytes N seconds S".
Bounded: every socket has a 10 s timeout.
"""
import hashlib, select, socket, ssl, sys, time

def handshakes(port, sni, ca, n, resumed):
    ctx = ssl.create_default_context(cafile=ca)
    sess = None; ok = failed = 0; t0 = time.time()
    for _ in range(n):
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as curl and browsers do
            s = ctx.wrap_socket(raw, server_hostname=sni, session=sess if resumed else None)
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b: break
                data += b
                if b"\r\n\r\n" in data and b"backend=" in data: break
            if resumed and sess is None: sess = s.session
            s.close()
            ok += 1 if b"200 OK" in data else 0
            failed += 0 if b"200 OK" in data else 1
        except Exception:
            failed += 1
    print(f"ok {ok} failed {failed} seconds {time.time() - t0:.3f}")

def bulk_raw(port, hello_file, mb):
    payload = open(hello_file, "rb").read() + bytes(range(256)) * (4096 * mb)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setblocking(False)
    view = memoryview(payload); sent = 0; got = hashlib.sha256(); n = 0; t0 = time.time()
    while n < len(payload) and time.time() - t0 < 120:
        r, w, _ = select.select([s], [s] if sent < len(payload) else [], [], 1)
        if w:
            try: sent += s.send(view[sent:sent + (1 << 20)])
            except BlockingIOError: pass
        while True:
            try: b = s.recv(1 << 20)
            except BlockingIOError: break
            if not b: break
            got.update(b); n += len(b)
    ok = got.hexdigest() == hashlib.sha256(payload).hexdigest()
    print(f"{'equal' if ok else 'DIFFERENT'} bytes {n} seconds {time.time() - t0:.3f}")

if __name__ == "__main__":
    c, a = sys.argv[1], sys.argv[2:]
    if c == "handshakes": handshakes(int(a[0]), a[1], a[2], int(a[3]), len(a) > 4 and a[4] == "resumed")
    elif c == "bulk-raw": bulk_raw(int(a[0]), a[1], int(a[2]))
    else: sys.exit(2)
