#!/usr/bin/env python3
"""A small backend for the end-to-end tests (python3 standard library only).

  backend_server.py --listen 127.0.0.1:PORT --name NAME
                    [--cert PEM --key KEY | --plain]
                    [--mode echo|http|close|blackhole] [--rst-after BYTES]

TLS (with --cert/--key; the PEM may carry the chain, leaf first) or plain TCP.
  echo  sends back every byte until the peer ends its stream, then ends its own
  http  answers each HTTP/1.x request with "tls_backend=NAME sni=SNI ..."
  close  reads what the peer sends first, then closes (FIN) without a word
  blackhole  never accepts, and its accept queue is full: connects to it get
        no answer at all (the kernel drops the SYNs), as with a dead host
--rst-after N: once N bytes have been received on a connection, abort it with a
TCP reset (SO_LINGER 0), the "backend RST mid-stream" case.

Prints "backend_server NAME listening on ADDR" on stderr when ready and one
"conn sni=NAME" line per accepted TLS connection (the SNI Lodestone sent).
One thread per connection; every socket has a timeout, nothing blocks forever.
"""
import argparse
import socket
import ssl
import struct
import sys
import threading
import time


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def abort(raw):
    """Closes with a TCP reset."""
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    raw.close()


def serve(conn, raw, args, sni):
    got = 0
    try:
        if args.mode == "echo":
            while True:
                data = conn.recv(256 * 1024)
                if not data:
                    break
                got += len(data)
                if args.rst_after and got >= args.rst_after:
                    abort(raw)
                    return
                conn.sendall(data)
            # The peer finished: end our stream too (close_notify on TLS).
            if isinstance(conn, ssl.SSLSocket):
                try:
                    conn.unwrap()
                except (OSError, ssl.SSLError):
                    pass
            else:
                conn.shutdown(socket.SHUT_WR)
            return
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(16384)
                if not data:
                    return
                got += len(data)
                if args.rst_after and got >= args.rst_after:
                    abort(raw)
                    return
                pending += data
            head, pending = pending.split(b"\r\n\r\n", 1)
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            body = f'tls_backend={args.name} sni={sni or "-"} request="{line}"\n'.encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
    except (OSError, ssl.SSLError) as e:
        log(f"conn error: {e}")
    finally:
        try:
            conn.close()
        except OSError:
            pass


def handle(raw, ctx, args):
    raw.settimeout(60)
    if args.mode == "close":
        try:
            raw.recv(65536)
        except OSError:
            pass
        raw.close()
        log("conn closed after the first bytes")
        return
    conn = raw
    if ctx is not None:
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log(f"conn handshake failed: {e}")
            raw.close()
            return
    sni = getattr(conn, "lode_sni", None)
    log(f"conn sni={sni or '-'}")
    serve(conn, raw, args, sni)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--name", default="tlsbackend")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--mode", choices=["echo", "http", "close", "blackhole"], default="echo")
    ap.add_argument("--rst-after", type=int, default=0)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    if args.mode == "blackhole":
        ls = socket.socket()
        ls.bind((host, int(port)))
        ls.listen(0)  # room for one connection, never accepted
        filler = socket.create_connection((host, int(port)), timeout=5)
        log(f"backend_server {args.name} listening on {args.listen} (blackhole)")
        while filler:  # holds the queued connection until killed
            time.sleep(3600)
    ctx = None
    if not args.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)

        def on_sni(sslsock, name, _ctx):
            sslsock.lode_sni = name  # the SSLSocket: read back after the handshake

        ctx.sni_callback = on_sni
    ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host.strip("[]"), int(port)))
    ls.listen(1024)
    log(f"backend_server {args.name} listening on {args.listen}")
    while True:
        raw, _ = ls.accept()
        threading.Thread(target=handle, args=(raw, ctx, args), daemon=True).start()


if __name__ == "__main__":
    main()
