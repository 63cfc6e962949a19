#!/usr/bin/env python3
"""The client side of tests/e2e/test_bgp.sh (python3 standard library only).

Runs in the client namespace against the VIP, which the router spreads over
the nodes by ECMP. Which node served a connection is told by the terminate
route's backend (one lode-backend per node, "backend=nodeA"); which backend
a passthrough connection reached, by backend_server.py ("tls_backend=k2").
Between namespaces a packet keeps the flow hash its socket gave it (veth does
not clear it) and the router's L4 multipath hash uses that hash when present:
so a flow's node is fixed for the connection but not by its source port.

  bgp_client.py probe VIP PORT CA FIRST COUNT      {"sport": "nodeA", ...}
  bgp_client.py resume VIP PORT CA                  a ticket from one node, resumed on the other
  bgp_client.py passthrough VIP PORT COUNT          {"n": "k2", ...}
  bgp_client.py load VIP PORT CA COUNT CONCURRENCY PROGRESS_FILE
      COUNT new connections (handshake, one request); the summary counts
      connect failures (refused, no answer) apart from failures after the
      connection was established.

Every socket has a timeout; a probe's socket is closed with a reset (SO_LINGER
0) so that its 4-tuple can be used again at once (no TIME_WAIT).
"""
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time

TIMEOUT = 5.0


def connect(vip, port, sport=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if sport is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
    s.connect((vip, port))
    return s


def read_until(conn, pattern):
    data = b""
    end = time.time() + TIMEOUT
    while time.time() < end:
        m = re.search(pattern, data)
        if m:
            return m.group(1).decode()
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    raise OSError("no %r in the answer: %r" % (pattern, data[:200]))


def reset_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def tls_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx


def terminate_request(vip, port, ca, sport=None, session=None, ctx=None):
    """One request on t.test: (node, session, reused)."""
    ctx = ctx or tls_context(ca)
    raw = connect(vip, port, sport)
    try:
        conn = ctx.wrap_socket(raw, server_hostname="t.test", session=session)
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        node = read_until(conn, rb"backend=(\w+)")
        return node, conn.session, conn.session_reused
    finally:
        reset_close(raw)


def probe(vip, port, ca, first, count):
    out = {}
    for sport in range(first, first + count):
        try:
            node, _, _ = terminate_request(vip, port, ca, sport)
            out[str(sport)] = node
        except OSError as e:
            out[str(sport)] = "error: %s" % e
    print(json.dumps(out))


def resume(vip, port, ca):
    """A full handshake, then new connections offering its ticket until one
    lands on the other node (30 tries at most); every one must resume."""
    ctx = tls_context(ca)
    first, session, _ = terminate_request(vip, port, ca, ctx=ctx)
    out = {"first": first, "second": None, "reused": False, "tries": 0, "all_reused": True,
           "ticket": session is not None and session.has_ticket}
    for _ in range(30):
        node, _, reused = terminate_request(vip, port, ca, session=session, ctx=ctx)
        out["tries"] += 1
        out["all_reused"] = out["all_reused"] and reused
        if node != first:
            out["second"], out["reused"] = node, reused
            break
    print(json.dumps(out))


def passthrough(vip, port, count):
    # The backends have their own certificates (the client talks TLS to them
    # through the node); only which one answered matters here.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = {}
    for n in range(count):
        raw = None
        try:
            raw = connect(vip, port)
            conn = ctx.wrap_socket(raw, server_hostname="p.test")
            conn.sendall(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n")
            out[str(n)] = read_until(conn, rb"tls_backend=(\w+)")
        except OSError as e:
            out[str(n)] = "error: %s" % e
        finally:
            if raw is not None:
                reset_close(raw)
    print(json.dumps(out))


def load(vip, port, ca, count, concurrency, progress):
    ctx = tls_context(ca)
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "connect_failures": 0, "later_failures": 0, "nodes": {}, "errors": [],
             "last_nodes": []}
    deadline = time.time() + 120

    def worker():
        while time.time() < deadline:
            with lock:
                if state["next"] >= count:
                    return
                state["next"] += 1
            raw = None
            try:
                raw = connect(vip, port)
            except OSError as e:
                # A reset while connecting is a connection the router's change
                # of next hops cut in flight (its SYN went to one node, its
                # ACK to the other, which has no such connection and resets
                # it before connect() returns): counted with the later cuts.
                # Refused or unanswered is a failure of the nodes.
                cut = isinstance(e, ConnectionResetError)
                with lock:
                    state["later_failures" if cut else "connect_failures"] += 1
                    state["done"] += 1
                    state["errors"].append("connect: %s" % e)
                continue
            try:
                conn = ctx.wrap_socket(raw, server_hostname="t.test")
                conn.sendall(b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
                node = read_until(conn, rb"backend=(\w+)")
                conn.close()
                with lock:
                    state["nodes"][node] = state["nodes"].get(node, 0) + 1
                    state["last_nodes"] = (state["last_nodes"] + [node])[-20:]
            except (OSError, ValueError) as e:
                with lock:
                    state["later_failures"] += 1
                    state["errors"].append("after connect: %s" % e)
                raw.close()
            with lock:
                state["done"] += 1
                if state["done"] % 10 == 0:
                    with open(progress, "w") as f:
                        f.write("%d\n" % state["done"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state["errors"] = state["errors"][:10]
    del state["next"]
    print(json.dumps(state))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "probe":
        probe(args[0], int(args[1]), args[2], int(args[3]), int(args[4]))
    elif cmd == "resume":
        resume(args[0], int(args[1]), args[2])
    elif cmd == "passthrough":
        passthrough(args[0], int(args[1]), int(args[2]))
    elif cmd == "load":
        load(args[0], int(args[1]), args[2], int(args[3]), int(args[4]), args[5])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
