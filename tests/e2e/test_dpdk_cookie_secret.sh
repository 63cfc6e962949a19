#!/usr/bin/env bash
# [dpdk] cookie_secret_file for real: two `lodestone run` processes (nodes A
# and B of an ECMP group), each polling its own net_tap port, same VIP. A
# client (raw frames from a network namespace holding both taps) sends its
# SYN to node A and the rest of the handshake and its ClientHello to node B,
# as happens when the group changes between the two:
#   1. different secrets: B drops the ACK silently (cookie_invalid), no answer;
#   2. B's file rewritten with A's secret, SIGHUP: B completes A's cookie and
#      answers the hello (r.test: alert 112 and FIN, at A's sequence numbers);
#   3. B's file made world-readable, SIGHUP: the reload is refused, the
#      secret in service stays (another client completes on B again);
#   4. a start with a malformed file fails, naming the key and the file, not
#      the secret.
# Needs root (tap devices, a network namespace); release build only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/dpdk_lib.sh"
e2e_begin dpdk_cookie_secret 150
dpdk_needs dpdk_cookie_secret

NS="lode-cs$$"
TAP_A="lcsa$$"
TAP_B="lcsb$$"
NET="10.$(( $$ % 200 + 20 )).78"
VIP="$NET.1"
SECRET_A=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
SECRET_B=fedcba9876543210fedcba9876543210
ON_EXIT+=("ip netns del $NS" "rm -rf /var/run/dpdk/lode-csa-$$ /var/run/dpdk/lode-csb-$$")
printf '%s\n' "$SECRET_A" >"$T/a.secret"
printf '%s\n' "$SECRET_B" >"$T/b.secret"
chmod 600 "$T/a.secret" "$T/b.secret"

node_config() {  # node_config NAME TAP SECRET_FILE
  cat <<TOML
$(dpdk_head "\"$VIP:443\"")

[[route]]
name = "r"
names = ["r.test"]
action = "reject"

[dpdk]
eal = ["-l", "0-1", "--no-huge", "--no-pci", "-m", "256", "--file-prefix=lode-cs$1-$$", "--vdev=net_tap0,iface=$2"]
cookie_secret_file = "$3"

[admin]
socket = "$T/admin-$1.sock"
TOML
}

# 4 first: a malformed secret stops the start, and says why without it.
printf 'not-hex-%s\n' "$SECRET_A" >"$T/bad.secret"
chmod 600 "$T/bad.secret"
node_config bad "lcsx$$" "$T/bad.secret" >"$T/bad.toml"
mkdir -p "$T/run"
timeout 30 "$LODESTONE" run "$T/bad.toml" --run-dir "$T/run" >"$T/bad.out" 2>"$T/bad.log"; rc=$?
assert_eq "a malformed secret file: the start fails" 1 "$rc"
assert_contains "... naming the key and the file" "$(cat "$T/bad.log")" "dpdk.cookie_secret_file: $T/bad.secret: expected 32 to 128 hex digits"
assert_not_contains "... not the secret" "$(cat "$T/bad.log")" "${SECRET_A:0:16}"

node_config a "$TAP_A" "$T/a.secret" >"$T/a.toml"
node_config b "$TAP_B" "$T/b.secret" >"$T/b.toml"
start_lodestone "$T/a.toml"
A_PID=$LPID; A_STATS=$STATS
start_lodestone "$T/b.toml"
B_PID=$LPID; B_STATS=$STATS; B_LOG=$LLOG

ip netns add "$NS"
for tap in "$TAP_A" "$TAP_B"; do
  ip link set "$tap" netns "$NS"
  ip netns exec "$NS" ip link set "$tap" up
done
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null

# handshake CLIENT_PORT: SYN on tap A, the cookie's ACK and the hello on tap
# B; prints "cookie=N answer=NONE" or "cookie=N answer=SEQ,FLAGS,HEXBYTES".
handshake() {
  ip netns exec "$NS" timeout 20 python3 - "$TAP_A" "$TAP_B" "$VIP" "$NET.2" "$1" <<'PY'
import socket, ssl, struct, sys, time
tap_a, tap_b, vip, client, sport = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
MY_MAC = bytes.fromhex("0200000000aa")
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def sock(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0)); s.settimeout(0.2)
    return s
def frames(s, until):
    while time.time() < until:
        try: yield s.recv(2048)
        except socket.timeout: pass
def mac_of_vip(s):  # ARP for the VIP: the node's port MAC
    req = b"\xff" * 6 + MY_MAC + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + MY_MAC + \
          socket.inet_aton(client) + b"\0" * 6 + socket.inet_aton(vip)
    for _ in range(5):
        s.send(req)
        for f in frames(s, time.time() + 1):
            if f[12:14] == b"\x08\x06" and struct.unpack("!H", f[20:22])[0] == 2 and f[28:32] == socket.inet_aton(vip):
                return f[22:28]
    sys.exit("no ARP answer for the VIP")
def tcp(dmac, seq, ack, flags, payload=b"", opts=b""):
    src, dst = socket.inet_aton(client), socket.inet_aton(vip)
    hl = 20 + len(opts)
    t = struct.pack("!HHIIBBHHH", sport, 443, seq, ack, hl // 4 << 4, flags, 64240, 0, 0) + opts + payload
    t = t[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(t)) + t)) + t[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(t), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dmac + MY_MAC + b"\x08\x00" + ip + t
def from_vip(f):
    if f[12:14] != b"\x08\x00" or f[23] != 6 or f[26:30] != socket.inet_aton(vip): return None
    ihl = (f[14] & 15) * 4
    t = f[14 + ihl:]
    if struct.unpack("!HH", t[:4]) != (443, sport): return None
    total = struct.unpack("!H", f[16:18])[0]
    seq, ack = struct.unpack("!II", t[4:12])
    return seq, ack, t[13], t[(t[12] >> 4) * 4:total - ihl]
# The ClientHello for r.test, as Python's TLS stack writes it.
ctx = ssl.create_default_context()
bio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(bio_in, bio_out, server_hostname="r.test")
try: tls.do_handshake()
except ssl.SSLWantReadError: pass
hello = bio_out.read()
a, b = sock(tap_a), sock(tap_b)
mac_a, mac_b = mac_of_vip(a), mac_of_vip(b)
isn = 1_000_000 + sport
a.send(tcp(mac_a, isn, 0, 0x02, opts=struct.pack("!BBH", 2, 4, 1460)))
cookie = None
for f in frames(a, time.time() + 3):
    r = from_vip(f)
    if r and r[2] & 0x12 == 0x12:
        cookie = r[0]; break
if cookie is None: sys.exit("no SYN-ACK from node A")
b.send(tcp(mac_b, isn + 1, cookie + 1, 0x10))
b.send(tcp(mac_b, isn + 1, cookie + 1, 0x18, hello))
answer = "NONE"
for f in frames(b, time.time() + 2):
    r = from_vip(f)
    if r and r[3]:
        answer = "%d,%d,%s" % (r[0] - cookie, r[2], r[3].hex()); break
print("cookie=%d answer=%s" % (cookie, answer))
PY
}
stat_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["front"].get(sys.argv[2], -1))' "$1" "$2"; }

# 1. Different secrets: B cannot complete A's cookie.
out=$(handshake 41001 2>&1)
assert_contains "different secrets: node A answers the SYN with a cookie" "$out" "cookie="
assert_contains "different secrets: node B drops the ACK and the hello silently" "$out" "answer=NONE"
sleep 1.2
assert_ge "different secrets: counted on B (cookie_invalid)" "$(stat_of "$B_STATS" cookie_invalid)" 1
assert_eq "different secrets: no flow on B" 0 "$(stat_of "$B_STATS" flows_created)"

# 2. B given A's secret (a reload): A's cookie completes on B.
LPID=$B_PID; LLOG=$B_LOG; STATS=$B_STATS
printf '%s\n' "$SECRET_A" >"$T/b.secret"
assert_eq "B reloads with the new secret" reloaded "$(reload)"
sleep 0.1  # the lcore picks the secret up with the runtime (every 10 ms)
out=$(handshake 41002 2>&1)
assert_contains "same secret: B completes A's cookie and answers the hello (alert 112, FIN, at A's sequence numbers)" \
  "$out" "answer=1,25,15030"
sleep 1.2
assert_eq "same secret: one flow created on B" 1 "$(stat_of "$B_STATS" flows_created)"
assert_eq "same secret: the hello rejected on B" 1 "$(stat_of "$B_STATS" rejects)"
assert_eq "node A made no flow" 0 "$(stat_of "$A_STATS" flows_created)"

# 3. A secret file others may read: the reload is refused, the secret stays.
chmod 644 "$T/b.secret"
assert_eq "B refuses a reload with a world-readable secret file" reload_refused "$(reload)"
assert_contains "... saying why" "$(last_log reload_refused)" "cookie_secret_file: $T/b.secret: mode 0644"
assert_not_contains "... without the secret" "$(cat "$B_LOG")" "${SECRET_A:0:16}"
out=$(handshake 41003 2>&1)
assert_contains "after the refused reload: A's cookies still complete on B" "$out" "answer=1,25,15030"
finish
