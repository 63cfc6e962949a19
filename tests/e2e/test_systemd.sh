#!/usr/bin/env bash
# The systemd unit and the readiness protocol.
#
# 1. tools/systemd/lodestone.service (with the dpdk drop-in beside it) passes
#    `systemd-analyze verify` without a single warning (verify exits 0 on
#    "unknown key, ignoring": any output fails), and the same check fails a
#    copy with an unknown key or a bad Type=; `systemd-analyze security
#    --offline` rates its exposure (printed; at most 4.0, "OK").
# 2. sd_notify, as systemd would hear it: lodestone runs with NOTIFY_SOCKET
#    naming a unix datagram socket this test reads (python3). READY=1 comes
#    after the start event (workers listening, first snapshot in service);
#    the control plane did not inherit NOTIFY_SOCKET; SIGHUP gives
#    RELOADING=1 with MONOTONIC_USEC, then READY=1 once reloaded; a refused
#    reload gives RELOADING=1 and READY=1 too (the old configuration serves),
#    within 2 s of the refusal (a broken file; changed listeners): the
#    control plane tells the dataplane (kReloadRefused), which counts it
#    (stats reloads_refused); before, READY=1 came after a fixed 5 s.
#    SIGTERM gives STOPPING=1. An abstract socket ("@name") works too; a
#    relative path is refused at start.
# 3. Each SIGHUP's READY=1 waits for that reload's own answer: the dataplane
#    numbers SIGHUPs, the control plane answers with the number (stats
#    reload_answered). With the control plane stopped (SIGSTOP) after a
#    SIGHUP, a control plane of this test's own (python3, the channel's
#    newest peer wins) answers an earlier reload: no READY=1; then that
#    SIGHUP's number: READY=1 (before, any answer released it). The stopped
#    control plane, continued, finds its channel gone and exits; the
#    restarted one answers the next SIGHUP with its number. A SIGHUP while
#    no control plane runs is answered by the next one, with its number, and
#    so is one a control plane took with it (stopped, then killed).
source "$(dirname "$0")/lib.sh"
e2e_begin systemd 120
command -v systemd-analyze >/dev/null || { echo "FAIL systemd: systemd-analyze is not installed (package systemd)"; exit 1; }
UNIT_DIR="$LODE_SOURCE_DIR/tools/systemd"

# ---------------------------------------------------------------- 1. the unit
# The unit names /usr/sbin/lodestone, which verify requires to exist: the
# build's binary stands in for it; nothing else changes.
units() {  # units DIR: the unit and its drop-in laid out as systemd reads them
  mkdir -p "$1/lodestone.service.d"
  sed "s|/usr/sbin/lodestone|$LODESTONE|g" "$UNIT_DIR/lodestone.service" >"$1/lodestone.service"
  cp "$UNIT_DIR/lodestone-dpdk.conf" "$1/lodestone.service.d/dpdk.conf"
}
verify() { systemd-analyze verify --man=no "$1/lodestone.service" 2>&1; echo "rc=$?"; }
units "$T/unit"
assert_eq "systemd-analyze verify: no warning, exit 0" "rc=0" "$(verify "$T/unit")"
units "$T/bad-key"
echo "ProtectEverything=yes" >>"$T/bad-key/lodestone.service.d/dpdk.conf"
assert_contains "verify flags an unknown key in the drop-in" "$(verify "$T/bad-key")" "Unknown key"
units "$T/bad-type"
sed -i 's/^Type=notify$/Type=notifyy/' "$T/bad-type/lodestone.service"
assert_contains "verify flags a bad Type=" "$(verify "$T/bad-type")" "service type"
sec=$(systemd-analyze security --offline=yes "$T/unit/lodestone.service" 2>&1 | grep "Overall exposure level")
echo "  $sec"
assert_le "exposure level (systemd-analyze security)" "$(grep -oE '[0-9]+\.[0-9]+' <<<"$sec" | head -n 1)" 4.0
for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
  CapabilityBoundingSet=CAP_NET_BIND_SERVICE RuntimeDirectory=lodestone StateDirectory=lodestone \
  'ExecReload=/bin/kill -HUP $MAINPID' Restart=on-failure Type=notify LimitNOFILE=; do
  check "the unit sets $d" grep -q "^$d" "$UNIT_DIR/lodestone.service"
done

# ---------------------------------------------------------------- 2. sd_notify
# listen_notify ADDRESS LOG: one line per datagram ("|" for its newlines).
listen_notify() {
  python3 -u - "$1" "$2" <<'PY' &
import socket, sys
addr, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
with open(log, "a") as out:
    print("listening", file=out, flush=True)
    while True:
        print(s.recv(4096).decode(errors="replace").replace("\n", "|"), file=out, flush=True)
PY
  PIDS+=($!)
  wait_for 5 grep -q listening "$2" || { echo "FAIL systemd: the notify listener did not start"; exit 1; }
}
NLOG="$T/notify.log"
notes() { grep -v '^listening' "$NLOG" | tr '\n' ' '; }
notes_ge() { [ "$(grep -c -- "$1" "$NLOG")" -ge "$2" ]; }

make_pki a.test
P=$(free_port); PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
listen_notify "$T/notify.sock" "$NLOG"
export NOTIFY_SOCKET="$T/notify.sock"
start_lodestone "$T/lode.toml"
unset NOTIFY_SOCKET
check "READY=1 once started" wait_for 5 notes_ge '^READY=1$' 1
assert_eq "nothing before READY=1" "READY=1 " "$(notes)"
assert_contains "a.test served once READY" "$(lcurl a.test "$P")" "backend=app"
CPID=$(ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1)
check "the control plane runs (pid ${CPID:-none})" test -n "$CPID"
check "the control plane did not inherit NOTIFY_SOCKET" bash -c "! tr '\\0' '\\n' </proc/$CPID/environ | grep -q ^NOTIFY_SOCKET="

assert_eq "SIGHUP: reloaded" reloaded "$(reload)"
check "SIGHUP: READY=1 after the reload" wait_for 5 notes_ge '^READY=1$' 2
assert_match "SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1" "$(notes)" \
  "^READY=1 RELOADING=1\|MONOTONIC_USEC=[1-9][0-9]* READY=1 $"

cp "$T/lode.toml" "$T/good.toml"
echo "this is not TOML" >>"$T/lode.toml"
assert_eq "SIGHUP with a broken file: refused" reload_refused "$(reload)"
check "refused reload: READY=1 within 2 s (the old configuration serves)" wait_for 2 notes_ge '^READY=1$' 3
assert_eq "refused reload: two RELOADING=1 so far" 2 "$(grep -c '^RELOADING=1' "$NLOG")"
assert_eq "stats: one reload refused by the control plane" 1 "$(stats reloads_refused)"
# A valid file whose listeners changed: refused too (a restart is needed).
sed "s/127.0.0.1:$P\"/127.0.0.1:$(free_port)\"/" "$T/good.toml" >"$T/lode.toml"
assert_eq "SIGHUP with changed listeners: refused" reload_refused "$(reload)"
assert_contains "it says a restart is needed" "$(last_log reload_refused)" "restart Lodestone"
check "refused reload: READY=1 within 2 s again" wait_for 2 notes_ge '^READY=1$' 4
assert_eq "stats: two reloads refused by the control plane" 2 "$(stats reloads_refused)"
cp "$T/good.toml" "$T/lode.toml"
assert_contains "a.test still served" "$(lcurl a.test "$P")" "backend=app"
assert_eq "stats: SIGHUPs 1 to 3 answered" 3 "$(stats reload_answered)"

# ---------------------------------------------------------------- 3. whose answer
# fake_cp SOCKET DIR: attaches to the control channel, then for each file
# DIR/answer-N that appears sends kReloadRefused naming reload N (and writes
# DIR/sent-N); exits when DIR/done appears.
fake_cp() {
  python3 -u - "$1" "$2" <<'PY' &
import os, socket, struct, sys, time
path, d = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(path)
open(os.path.join(d, "attached"), "w").close()
sent = set()
end = time.time() + 60
while not os.path.exists(os.path.join(d, "done")) and time.time() < end:
    for f in os.listdir(d):
        if f.startswith("answer-") and f not in sent:
            n = int(f[len("answer-"):])
            # ChannelMessage: magic "LODC", version 1, type 6 (kReloadRefused), generation, value
            s.send(struct.pack("<IHHQQ", 0x43444F4C, 1, 6, 0, n))
            sent.add(f)
            open(os.path.join(d, "sent-%d" % n), "w").close()
    time.sleep(0.02)
s.close()
PY
  PIDS+=($!)
}
CSOCK=$(last_log '"event":"start"' | jfield control_socket)
FAKE="$T/fake-cp"; mkdir -p "$FAKE"
kill -STOP "$CPID"
kill -HUP "$LPID"
check "SIGHUP 4: RELOADING=1" wait_for 5 notes_ge '^RELOADING=1' 4
fake_cp "$CSOCK" "$FAKE"
check "a control plane of our own attached" wait_for 5 test -e "$FAKE/attached"
touch "$FAKE/answer-3"
check "it answered reload 3" wait_for 5 test -e "$FAKE/sent-3"
check "the dataplane took that answer (stats reloads_refused 3)" wait_stat reloads_refused 3 5
sleep 1
assert_eq "an earlier reload's answer: no READY=1 for SIGHUP 4" 4 "$(grep -c '^READY=1$' "$NLOG")"
touch "$FAKE/answer-4"
check "SIGHUP 4's own answer: READY=1 within 2 s" wait_for 2 notes_ge '^READY=1$' 5
assert_eq "stats: SIGHUP 4 answered" 4 "$(stats reload_answered)"
touch "$FAKE/done"
starts=$(stats controlplane_starts)
kill -CONT "$CPID"
check "the stopped control plane, its channel gone, is replaced" wait_stat controlplane_starts $((starts + 1)) 15
check "the new one attached" wait_log_count '"event":"control_plane_attached"' 3 10
assert_contains "a.test still served" "$(lcurl a.test "$P")" "backend=app"
assert_eq "SIGHUP 5 (the new control plane): reloaded" reloaded "$(reload)"
check "SIGHUP 5: READY=1" wait_for 5 notes_ge '^READY=1$' 6
assert_eq "stats: SIGHUP 5 answered" 5 "$(stats reload_answered)"
# A SIGHUP while no control plane runs goes to the next one as it starts,
# which reads its number once the stats segment has come (not 0, which
# would leave READY=1 to the 30 s bound).
CPID=$(ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1)
exits=$(log_count '"event":"controlplane_exited"')
kill -KILL "$CPID"
check "the control plane's exit is seen" wait_log_count '"event":"controlplane_exited"' $((exits + 1)) 5
kill -HUP "$LPID"
check "SIGHUP 6, passed to the next control plane: READY=1 within 10 s" wait_for 10 notes_ge '^READY=1$' 7
assert_eq "stats: SIGHUP 6 answered" 6 "$(stats reload_answered)"
# A SIGHUP the control plane took with it (it was stopped with the signal
# pending, then killed): passed on to the next one, not left to the 30 s bound.
wait_stat controlplane_starts $((starts + 2)) 10
CPID=$(ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1)
kill -STOP "$CPID"
kill -HUP "$LPID"
check "SIGHUP 7: RELOADING=1" wait_for 5 notes_ge '^RELOADING=1' 7
kill -KILL "$CPID"
check "SIGHUP 7, lost with its control plane: READY=1 within 10 s" wait_for 10 notes_ge '^READY=1$' 8
assert_eq "stats: SIGHUP 7 answered" 7 "$(stats reload_answered)"

kill -TERM "$LPID"
check "SIGTERM: STOPPING=1" wait_for 10 notes_ge '^STOPPING=1$' 1
wait_for 15 bash -c "! kill -0 $LPID 2>/dev/null"
check "lodestone exited" bash -c "! kill -0 $LPID 2>/dev/null"
assert_eq "the whole conversation" \
  "READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 STOPPING=1" \
  "$(notes | sed -E 's/\|MONOTONIC_USEC=[0-9]+//g; s/ $//')"

# An abstract socket, as systemd may name one.
ABS="@lodestone-test-$$-$RANDOM"
NLOG="$T/notify-abstract.log"
listen_notify "$ABS" "$NLOG"
export NOTIFY_SOCKET="$ABS"
start_lodestone "$T/lode.toml"
unset NOTIFY_SOCKET
check "abstract socket: READY=1" wait_for 5 notes_ge '^READY=1$' 1
kill -TERM "$LPID"
check "abstract socket: STOPPING=1" wait_for 10 notes_ge '^STOPPING=1$' 1
wait_for 15 bash -c "! kill -0 $LPID 2>/dev/null"

# A NOTIFY_SOCKET that cannot be a unix socket: refused before anything starts.
err=$(NOTIFY_SOCKET=relative/path timeout 10 "$LODESTONE" run "$T/lode.toml" --run-dir "$T/run" 2>&1); rc=$?
assert_eq "a relative NOTIFY_SOCKET: exit 1" 1 "$rc"
assert_contains "a relative NOTIFY_SOCKET: says why" "$err" "NOTIFY_SOCKET=relative/path"
finish
