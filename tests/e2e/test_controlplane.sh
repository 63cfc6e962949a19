#!/usr/bin/env bash
# The control-plane process, from outside: traffic never depends on it.
#
# 1. Under load (full TLS handshakes + one request each, bounded), the
#    control-plane child is SIGKILLed: no connection fails; the dataplane logs
#    controlplane_exited, starts a new one (controlplane_started) that
#    re-attaches (control_plane_attached) with a full segment above the
#    generation in service (snapshot_generation grows); the stats count 2
#    starts and >= 2 attaches; a new handshake works. Killed twice in a row
#    quickly (the second before it is settled): still serving, attaches again.
# 2. A restarted control plane re-attaches with the configuration in service,
#    not the file on disk: the file is broken (no SIGHUP), the control plane
#    SIGKILLed; it comes back (controlplane_reattaching) and traffic is
#    unaffected; SIGHUP then refuses the broken file (reload_refused naming
#    it); fixed, SIGHUP reloads.
# 3. Corrupted segments are refused and the last good generation stays: a
#    fake control plane (python3, stdlib) connects to the control socket,
#    reads the hello and sends kSegment messages with (a) an unsealed memfd
#    holding a valid segment, (b) a sealed memfd of random bytes, (c) a sealed
#    memfd with a valid header but a bad checksum, (d) a sealed, well-formed
#    segment (right checksum) that is not a usable full snapshot (no config
#    record); each gets a kNack; segments_refused grows by 4,
#    snapshot_generation does not move, segment_refused events give reasons,
#    TLS keeps working; after the fake leaves, the displaced real control
#    plane exits, is restarted and re-attaches; traffic never failed.
#    The socket is 0600: another uid cannot connect (EACCES); made 0666 by
#    hand, the dataplane's SO_PEERCRED check still refuses that uid.
source "$(dirname "$0")/lib.sh"
e2e_begin controlplane 120
make_pki a.test

P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
cp "$T/lode.toml" "$T/good.toml"
start_lodestone "$T/lode.toml" --workers 2
SOCK=$(grep -F '"event":"start"' "$LLOG" | head -n 1 | jfield control_socket)

# The pid of the latest control plane the dataplane started.
cp_pid() { last_log '"event":"controlplane_started"' | jfield pid; }
# is_cp_child PID: a live `lodestone controlplane` whose parent is $LPID
# (never signal a recycled pid).
is_cp_child() {
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  [ "$(awk '{print $4}' "/proc/$1/stat" 2>/dev/null)" = "$LPID" ] && [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" == *controlplane* ]]
}
# kill_cp: SIGKILL the current control plane; prints its pid ("none" if no
# live control plane child was found).
kill_cp() {
  local p; p=$(cp_pid)
  if is_cp_child "$p"; then kill -KILL "$p"; echo "$p"; else echo none; fi
}
attached_pid() { grep -cF "\"event\":\"control_plane_attached\",\"pid\":$1," "$LLOG"; }
attached_pid_ge1() { [ "$(attached_pid "$1")" -ge 1 ]; }
# started_after N: a controlplane_started event beyond the first N.
started_after() { [ "$(log_count '"event":"controlplane_started"')" -gt "$1" ]; }
cur_stat() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2],""))' "$STATS" "$1" 2>/dev/null; }
# wait_stat_gt FIELD VALUE SECONDS
wait_stat_gt() { local end=$(( $(now_ms) + $3 * 1000 )); while [ "$(now_ms)" -lt $end ]; do
  [ "$(cur_stat "$1")" -gt "$2" ] 2>/dev/null && return 0; sleep 0.2; done; return 1; }
load() {  # load OUTFILE SECONDS: bounded request loop in the background (sets LOADPID)
  NETCLIENT_TIMEOUT=$(($2 + 20)) netclient loop --port "$P" --sni a.test --ca "$PKI/ca.pem" --threads 4 \
    --seconds "$2" --max 20000 >"$1" 2>&1 &
  LOADPID=$!; PIDS+=("$LOADPID")
}
load_report() {  # load_report NAME OUTFILE: no failure, and real load
  local out; out=$(cat "$2"); echo "   $1: $(tr '\n' ' ' <<<"$out")"
  assert_contains "$1: no connection failed" "$out" "failed=0"
  assert_ge "$1: the load was real (>= 50 requests)" "$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)" 50
}
request_ok() { [[ "$(netclient request --port "$P" --sni a.test --ca "$PKI/ca.pem" 2>&1)" == *"status=200"* ]]; }

assert_eq "one control plane started" 1 "$(stats controlplane_starts)"
check "the control plane is a child of the dataplane" is_cp_child "$(cp_pid)"
gen0=$(stats generation); snap0=$(stats snapshot_generation)

# ---------------------------------------------------------------- 1. SIGKILL under load
load "$T/load1.out" 9
sleep 2
exited0=$(log_count '"event":"controlplane_exited"'); started0=$(log_count '"event":"controlplane_started"')
killed=$(kill_cp)
check "found the control plane to kill (pid $killed)" test "$killed" != none
check "controlplane_exited logged" wait_log_count '"event":"controlplane_exited"' $((exited0 + 1)) 5
assert_contains "the exit names the killed pid and SIGKILL" "$(last_log '"event":"controlplane_exited"')" "\"pid\":$killed,\"signal\":\"Killed\""
check "a new controlplane_started" wait_for 10 started_after "$started0"
new=$(cp_pid)
check "the new control plane ($new) is another process" test "$new" != "$killed"
check "control_plane_attached from the new control plane" wait_for 10 attached_pid_ge1 "$new"
check "snapshot_generation increased (a full segment above the one in service)" wait_stat_gt snapshot_generation "$snap0" 10
ex=$(grep -nF '"event":"controlplane_exited"' "$LLOG" | tail -n 1 | cut -d: -f1)
st=$(grep -nF '"event":"controlplane_started"' "$LLOG" | tail -n 1 | cut -d: -f1)
at=$(grep -nF "\"event\":\"control_plane_attached\",\"pid\":$new," "$LLOG" | tail -n 1 | cut -d: -f1)
check "log order: exited (line $ex) < started (line $st) < attached (line $at)" test "$ex" -lt "$st" -a "$st" -lt "$at"
assert_eq "stats: controlplane_starts" 2 "$(stats controlplane_starts)"
assert_ge "stats: controlplane_attaches" "$(stats controlplane_attaches)" 2
assert_eq "the re-attach did not rebuild the runtime (generation unchanged)" "$gen0" "$(stats generation)"
check "a new handshake + request after the re-attach" request_ok
snap1=$(cur_stat snapshot_generation)

# Twice in a row, quickly: the second dies before it has settled.
started1=$(log_count '"event":"controlplane_started"')
k1=$(kill_cp)
check "a third control plane is started" wait_for 10 started_after "$started1"
k2=$(kill_cp)  # at once: it may still be loading
check "killed twice in a row ($k1, then $k2 at once)" test "$k1" != none -a "$k2" != none -a "$k1" != "$k2"
check "a fourth control plane is started" wait_for 10 started_after $((started1 + 1))
last=$(cp_pid)
check "the fourth control plane ($last) attaches" wait_for 10 attached_pid_ge1 "$last"
check "snapshot_generation increased again" wait_stat_gt snapshot_generation "$snap1" 10
check "still serving: a new handshake + request" request_ok
assert_eq "stats: controlplane_starts after three kills" 4 "$(stats controlplane_starts)"
wait "$LOADPID"
load_report "load across three SIGKILLs" "$T/load1.out"
assert_eq "no controlplane_error event (every restarted control plane connected)" 0 "$(log_count '"event":"controlplane_error"')"

# ---------------------------------------------------------------- 2. restart keeps the config in service
check "the configuration in service is saved beside the socket" test -s "$SOCK.config"
printf 'this is = not [ toml\n' >>"$T/lode.toml"
reatt0=$(log_count '"event":"controlplane_reattaching"'); started2=$(log_count '"event":"controlplane_started"')
snap2=$(stats snapshot_generation); gen2=$(cur_stat generation)  # stats: a fresh rewrite
load "$T/load2.out" 5
sleep 1
k3=$(kill_cp)
check "control plane killed with a broken config on disk ($k3)" test "$k3" != none
check "it is restarted" wait_for 10 started_after "$started2"
check "controlplane_reattaching (with the configuration in service)" wait_log_count '"event":"controlplane_reattaching"' $((reatt0 + 1)) 10
r3=$(cp_pid)
check "the restarted control plane ($r3) attaches despite the broken file" wait_for 10 attached_pid_ge1 "$r3"
check "snapshot_generation increased" wait_stat_gt snapshot_generation "$snap2" 10
assert_eq "no reload happened (generation unchanged)" "$gen2" "$(stats generation)"
check "the restarted control plane is still alive" is_cp_child "$r3"
wait "$LOADPID"
load_report "load across a restart with a broken file" "$T/load2.out"
check "serving after the restart" request_ok
assert_eq "SIGHUP with the broken file: reload_refused" reload_refused "$(reload)"
assert_match "the refusal names the broken file (and line)" "$(last_log '"event":"reload_refused"')" 'lode\.toml:[0-9]+'
check "still serving after the refused reload" request_ok
cp "$T/good.toml" "$T/lode.toml"
assert_eq "SIGHUP with the file fixed: reloaded" reloaded "$(reload)"
check "serving after the reload" request_ok

# ---------------------------------------------------------------- 3. corrupted segments, other uids
cat >"$T/fake_cp.py" <<'PY'
# A fake control plane: connects, reads the hello, sends bad segments, reads
# the nacks. Prints key=value lines.
import fcntl, os, socket, struct, sys, time
path = sys.argv[1]
MAGIC, M64 = 0x43444f4c, (1 << 64) - 1
HELLO, ACK, NACK, SEGMENT = 1, 2, 3, 4

def msg(t, gen, val=0):
    return struct.pack("<IHHQQ", MAGIC, 1, t, gen, val)

def checksum(b):  # include/lodestone/snapshot.h
    h = 0x243f6a8885a308d3 ^ len(b)
    i = 0
    while i + 8 <= len(b):
        h = ((h ^ int.from_bytes(b[i:i + 8], "little")) * 0x9e3779b97f4a7c15) & M64
        h ^= h >> 29
        i += 8
    h = ((h ^ int.from_bytes(b[i:].ljust(8, b"\0"), "little")) * 0xd6e8feb86659fd93) & M64
    return h ^ (h >> 32)

def segment(gen, bad_checksum=False):
    body = bytes(range(256)) * 2  # no records; opaque bytes after the header
    c = checksum(body) ^ (0x5a if bad_checksum else 0)
    head = struct.pack("<8sIIQQQQIIQ", b"LODESNAP", 1, 64, gen, 0, 64 + len(body), c, 0, 0,
                       int(time.time() * 1000))
    assert len(head) == 64
    return head + body

def memfd(data, seal):
    fd = os.memfd_create("fake-segment", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    os.write(fd, data)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd

s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(path)
h = s.recv(64)
magic, ver, typ, gen, val = struct.unpack("<IHHQQ", h)
print(f"hello len={len(h)} magic={magic:#x} version={ver} type={typ} in_service={val}", flush=True)
# Then the dataplane's counters (kStats, a memfd to map read-only).
st, fds, _, _ = socket.recv_fds(s, 64, 1)
for f in fds:
    os.close(f)
print(f"stats type={struct.unpack('<IHHQQ', st)[2]} fds={len(fds)}", flush=True)
g = val + 100
cases = [("a_unsealed", memfd(segment(g), False)),
         ("b_random", memfd(os.urandom(4096), True)),
         ("c_bad_checksum", memfd(segment(g, bad_checksum=True), True)),
         ("d_no_config", memfd(segment(g), True))]
for name, fd in cases:
    socket.send_fds(s, [msg(SEGMENT, g)], [fd])
    os.close(fd)
    r = s.recv(64)
    if len(r) != 24:
        print(f"case={name} reply=none len={len(r)}", flush=True)
        continue
    magic, ver, typ, rgen, code = struct.unpack("<IHHQQ", r)
    print(f"case={name} reply={'nack' if typ == NACK else typ} generation_matches={'yes' if rgen == g else 'no'} code={code}",
          flush=True)
s.close()
print("done", flush=True)
PY
cat >"$T/peer.py" <<'PY'
# connect to the control socket as uid/gid 65534 (dropped from root here, so
# no other interpreter is needed); prints result=...
import errno, os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("result=EACCES"); sys.exit(0)
except OSError as e:
    print(f"result=connect_error:{errno.errorcode.get(e.errno, e.errno)}"); sys.exit(0)
try:
    d = s.recv(64)
    print("result=closed" if d == b"" else f"result=got_{len(d)}_bytes")
except ConnectionResetError:
    print("result=closed")
except OSError as e:
    print(f"result=recv_error:{e}")
PY
assert_eq "the control socket is mode 600" 600 "$(stat -c %a "$SOCK")"
assert_eq "the control socket is owned by the dataplane's uid" "$(id -u)" "$(stat -c %u "$SOCK")"

real=$(cp_pid)
check "a live control plane ($real) before the fake one" is_cp_child "$real"
# (stats waits for the next rewrite of the stats file: the SIGHUP just before
# moved both generations; cur_stat then reads that fresh file)
refused0=$(stats segments_refused); snap3=$(cur_stat snapshot_generation); gen3=$(cur_stat generation)
attaches3=$(cur_stat controlplane_attaches); started3=$(log_count '"event":"controlplane_started"')
segref0=$(log_count '"event":"segment_refused"')
load "$T/load3.out" 6
sleep 1
# The real control plane is paused while the fake one holds the socket, so that
# its restarted successor (which would displace the fake: newest wins) cannot
# come back in the middle; resumed at once afterwards.
kill -STOP "$real"
timeout 15 python3 "$T/fake_cp.py" "$SOCK" >"$T/fake.out" 2>&1
fake_rc=$?
# Read while the real control plane is still stopped: once resumed it finds
# itself displaced and exits, and its successor publishes a new generation
# (1.6 s later by then): a read after that would race with it.
snap_after_fake=$(stats snapshot_generation)
kill -CONT "$real"
fake=$(cat "$T/fake.out"); echo "   fake control plane: $(tr '\n' ' ' <<<"$fake")"
assert_eq "the fake control plane ran to its end" 0 "$fake_rc"
assert_contains "it got the hello (24 bytes, magic LODC, version 1, type 1)" "$fake" "hello len=24 magic=0x43444f4c version=1 type=1 in_service=$snap3"
assert_contains "then the counters' memfd (kStats, type 5)" "$fake" "stats type=5 fds=1"
for c in a_unsealed b_random c_bad_checksum d_no_config; do
  assert_match "segment $c: nack for that generation" "$fake" "case=$c reply=nack generation_matches=yes code=[0-9]+"
done
check "segment_refused events for the four" wait_log_count '"event":"segment_refused"' $((segref0 + 4)) 5
refusals=$(grep -F '"event":"segment_refused"' "$LLOG" | tail -n 4)
assert_contains "reason (a): not sealed" "$refusals" "not sealed"
assert_contains "reason (b): bad magic" "$refusals" "bad magic"
assert_contains "reason (c): checksum mismatch" "$refusals" "checksum mismatch"
assert_contains "reason (d): a full segment without a config record" "$refusals" "full segment without a config record"
assert_match "each refusal says which generation stays in service" "$(tail -n 1 <<<"$refusals")" "\"in_service\":${snap3}[,}]"
assert_eq "stats: segments_refused grew by 4" $((refused0 + 4)) "$(stats segments_refused)"
assert_eq "stats: snapshot_generation unchanged by the refused segments" "$snap3" "$snap_after_fake"
check "TLS still works after the refused segments" request_ok
check "the displaced real control plane exits" wait_for 10 bash -c "! kill -0 $real"
check "and a new one is started" wait_for 10 started_after "$started3"
r4=$(cp_pid)
check "the restarted control plane ($r4) re-attaches" wait_for 10 attached_pid_ge1 "$r4"
check "snapshot_generation increased (a real full segment)" wait_stat_gt snapshot_generation "$snap3" 10
assert_ge "stats: controlplane_attaches counts the fake and the re-attach" "$(stats controlplane_attaches)" $((attaches3 + 2))
assert_eq "no reload happened (generation unchanged)" "$gen3" "$(cur_stat generation)"
wait "$LOADPID"
load_report "load across the fake control plane" "$T/load3.out"
check "serving after it all" request_ok

# Another uid: 0600 keeps it out (EACCES). Made reachable by hand (0666), the
# dataplane's SO_PEERCRED check refuses it.
if [ "$(id -u)" != 0 ]; then
  echo "note: not root: the other-uid checks are skipped (they drop to uid 65534)"
else
  chmod o+x "$T" "$(dirname "$SOCK")"
  out=$(timeout 10 python3 "$T/peer.py" "$SOCK" 2>&1)
  assert_eq "uid 65534 cannot connect to the 0600 socket" "result=EACCES" "$out"
  pr0=$(log_count '"event":"control_peer_refused"'); att0=$(cur_stat controlplane_attaches)
  chmod 666 "$SOCK"
  out=$(timeout 10 python3 "$T/peer.py" "$SOCK" 2>&1)
  chmod 600 "$SOCK"
  assert_eq "socket made 0666: uid 65534 is closed without a hello" "result=closed" "$out"
  check "control_peer_refused logged" wait_log_count '"event":"control_peer_refused"' $((pr0 + 1)) 5
  assert_contains "the refusal names uid 65534" "$(last_log '"event":"control_peer_refused"')" '"uid":65534'
  assert_eq "the refused peer did not attach" "$att0" "$(stats controlplane_attaches)"
fi
check "the real control plane is still attached (alive)" is_cp_child "$(cp_pid)"

# A saved configuration that cannot be read (here a FIFO, which is never
# waited on): the restarted control plane starts from the file, and says so
# (before, silently: the file's configuration may not be the one in service).
rm -f "$SOCK.config"; mkfifo "$SOCK.config"
started5=$(log_count '"event":"controlplane_started"')
k5=$(kill_cp)
check "control plane killed with an unreadable saved configuration ($k5)" test "$k5" != none
check "controlplane_saved_config_unreadable logged" wait_log_count '"event":"controlplane_saved_config_unreadable"' 1 15
ev=$(last_log '"event":"controlplane_saved_config_unreadable"')
assert_contains "  ... naming what is wrong with it" "$ev" "a FIFO, not a regular file"
assert_contains "  ... and the file started from" "$ev" "\"config\":\"$T/lode.toml\""
check "a new one is started" wait_for 10 started_after "$started5"
r5=$(cp_pid)
check "it ($r5) attaches" wait_for 15 attached_pid_ge1 "$r5"
check "the configuration in service is saved again (the FIFO replaced)" wait_for 10 test -f "$SOCK.config"
check "serving at the end" request_ok
finish
