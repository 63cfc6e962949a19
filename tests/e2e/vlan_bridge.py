#!/usr/bin/env python3
"""An 802.1Q trunk to access-port bridge for the dpdk front's VLAN test.

The test machine's kernel has no 8021q module, so the VLAN devices a switch
would give are made here, in user space, with packet sockets:

  --trunk IFACE           the tagged side (the dpdk front's tap)
  --access VID:IFACE ...  an untagged port per VLAN (a veth end)

A frame from the trunk with VLAN VID (tagged inline, or untagged by the
kernel into the packet's auxiliary data) goes out of VID's access port
without its tag; a frame from an access port goes out of the trunk with its
VLAN's tag. Untagged trunk frames and unknown VLANs are dropped and counted.
Runs until SIGTERM or --seconds, then prints its counts to stdout.
"""
import argparse
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
PACKET_OUTGOING = 4
TPID = 0x8100


def open_port(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, 0))
    s.setblocking(False)
    return s


def vlan_of(frame, ancdata):
    """(vid, untagged frame) of a received frame; vid 0 when untagged."""
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
            status, _, _, _, _, tci, _ = struct.unpack("=IIIHHHH", data[:20])
            if status & TP_STATUS_VLAN_VALID or tci:
                return tci & 0x0FFF, frame
    if len(frame) >= 18 and struct.unpack("!H", frame[12:14])[0] == TPID:
        tci = struct.unpack("!H", frame[14:16])[0]
        return tci & 0x0FFF, frame[:12] + frame[16:]
    return 0, frame


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trunk", required=True)
    ap.add_argument("--access", action="append", default=[], help="VID:IFACE")
    ap.add_argument("--seconds", type=float, default=300)
    a = ap.parse_args()
    trunk = open_port(a.trunk)
    by_vid, by_sock = {}, {}
    for spec in a.access:
        vid, iface = spec.split(":", 1)
        s = open_port(iface)
        by_vid[int(vid)] = s
        by_sock[s] = int(vid)
    counts = {"tagged_in": 0, "tagged_out": 0, "dropped": 0}
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    print("bridging", flush=True)
    end = time.monotonic() + a.seconds
    socks = [trunk] + list(by_sock)
    while not stop[0] and time.monotonic() < end:
        ready, _, _ = select.select(socks, [], [], 0.2)
        for s in ready:
            while True:
                try:
                    frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(32))
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # what this program sent out of that port
                if s is trunk:
                    vid, bare = vlan_of(frame, anc)
                    out = by_vid.get(vid)
                    if out is None:
                        counts["dropped"] += 1
                        continue
                    out.send(bare)
                    counts["tagged_in"] += 1
                else:
                    vid = by_sock[s]
                    trunk.send(frame[:12] + struct.pack("!HH", TPID, vid) + frame[12:])
                    counts["tagged_out"] += 1
    print(" ".join("%s=%d" % kv for kv in counts.items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
