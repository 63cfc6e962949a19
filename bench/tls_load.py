#!/usr/bin/env python3
"""A small load client for bench/compare_nginx.sh (python3 stdlib only).

  tls_load.py handshakes PORT SNI CA N [resumed]   N sequential connections:
      TLS handshake (full, or resumed from the first session), one HTTP/1.0
      request, read the answer, close. Prints "ok N failed M seconds S".
  tls_load.py bulk-raw PORT HELLO_FILE MB          a captured ClientHello,
      then MB megabytes; reads as many back (an echo backend behind a
      passthrough route). Prints "equal|DIFFERENT bytes N seconds S".
  tls_load.py idle PORT SNI CA N PID[,PID...]      VmRSS of each PID
      (/proc/PID/status), then N TLS connections opened and handshaken (full),
      then held idle for 1 s, VmRSS again, then all closed. Prints
      "ok N failed M kb_per_conn K rss_before_kb B rss_after_kb A seconds S"
      (RSS summed over the PIDs). Bounded: 10 s per connection, 120 s in all.
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

def rss_kb(pids):
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"): total += int(line.split()[1])
    return total

def idle(port, sni, ca, n, pids):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64: resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    ctx = ssl.create_default_context(cafile=ca)
    before = rss_kb(pids); conns = []; failed = 0; t0 = time.time()
    try:
        for _ in range(n):
            if time.time() - t0 > 120: failed += 1; continue
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10)
                conns.append(ctx.wrap_socket(raw, server_hostname=sni))
            except Exception:
                failed += 1
        time.sleep(1.0)  # let the server finish its side (TLS 1.3 tickets, backend connects)
        after = rss_kb(pids)
    finally:
        for c in conns:
            try: c.close()
            except Exception: pass
    ok = len(conns)
    kb = (after - before) / ok if ok else 0.0
    print(f"ok {ok} failed {failed} kb_per_conn {kb:.2f} rss_before_kb {before} rss_after_kb {after} seconds {time.time() - t0:.3f}")

if __name__ == "__main__":
    c, a = sys.argv[1], sys.argv[2:]
    if c == "handshakes": handshakes(int(a[0]), a[1], a[2], int(a[3]), len(a) > 4 and a[4] == "resumed")
    elif c == "bulk-raw": bulk_raw(int(a[0]), a[1], int(a[2]))
    elif c == "idle": idle(int(a[0]), a[1], a[2], int(a[3]), [int(x) for x in a[4].split(",")])
    else: sys.exit(2)
