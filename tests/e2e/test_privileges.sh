#!/usr/bin/env bash
# Least privilege: [process] user = "nobody". Started as root, lodestone hands
# run_dir and [control] state_dir to nobody, binds
# a listener on a port below 1024 (which needs root or CAP_NET_BIND_SERVICE),
# then the dataplane becomes nobody:nogroup with no capability (CapEff,
# CapPrm 0) and no_new_privs; the control plane is nobody:nogroup from its
# start, so it reads the keys as nobody. TLS is served, a reload is applied,
# and a control plane killed and restarted by the (now unprivileged)
# dataplane comes back as nobody and serves the next reload. Without
# [process] the same start stays root (a control that the checks can fail).
# A user that does not exist is refused at start. What nobody may put in
# run_dir or the log directory (links to root's files, a FIFO) is never
# followed, chowned, emptied or blocked on by root.
source "$(dirname "$0")/lib.sh"
e2e_begin privileges 120
[ "$(id -u)" -eq 0 ] || { echo "FAIL privileges: runs as root (it checks the drop from root)"; exit 1; }
make_pki a.test
# A port below 1024 nobody uses now.
P=$(python3 -c 'import random, socket
for p in random.sample(range(600, 1000), 400):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()')
PA=$(free_port)
start_backend app "$PA"
a_test_config "$T/lode.toml" "$P" "$PA"
# Keys and the run directory readable by nobody (the control plane reads
# the keys as nobody); the stats file is written after the drop.
chown -R nobody:nogroup "$T"

ids() {  # ids PID: "Uid Gid CapEff CapPrm NoNewPrivs" of /proc/PID/status
  awk '/^Uid:/ {u=$2"/"$3"/"$4"/"$5} /^Gid:/ {g=$2"/"$3"/"$4"/"$5} /^CapEff:/ {e=$2} /^CapPrm:/ {p=$2}
       /^NoNewPrivs:/ {n=$2} END {print u, g, e, p, n}' "/proc/$1/status"
}
# threads_with_caps PID: threads of PID with any effective or permitted
# capability (capabilities are per thread; /proc/PID/status shows the main one).
threads_with_caps() {
  local n=0 t
  for t in /proc/"$1"/task/*; do
    awk '/^Cap(Eff|Prm):/ && $2 != "0000000000000000" {bad=1} END {exit bad ? 0 : 1}' "$t/status" && n=$((n + 1))
  done
  echo "$n"
}
cp_pid() { ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1; }
NOBODY="65534/65534/65534/65534 65534/65534/65534/65534 0000000000000000 0000000000000000 1"

# ---- the control: without [process], root stays root
start_lodestone "$T/lode.toml"
assert_match "without [process]: the dataplane is root" "$(ids "$LPID")" "^0/0/0/0 "
assert_ge "without [process]: its threads keep root's capabilities" "$(threads_with_caps "$LPID")" 1
kill -TERM "$LPID"; wait_for 15 bash -c "! kill -0 $LPID 2>/dev/null"

printf '\n[process]\nuser = "nobody"\ngroup = "nogroup"\n\n[control]\nstate_dir = "%s"\n\n[log]\naccess = "%s"\n' \
  "$T/state" "$T/logs/access.log" >>"$T/lode.toml"
mkdir -p "$T/state"  # root's: the OCSP cache directory the control plane must be able to write
mkdir -p "$T/logs"   # root's, 0755, like /var/log/lodestone under systemd's LogsDirectory=
chown root:root "$T/logs"; chmod 0755 "$T/logs"
start_lodestone "$T/lode.toml"
assert_eq "the state directory is handed to nobody" nobody:nogroup "$(stat -c %U:%G "$T/state")"
check "the drop is logged" grep -q '"event":"privileges_dropped","user":"nobody:nogroup"' "$LLOG"
assert_eq "dataplane: nobody, no capability, no_new_privs" "$NOBODY" "$(ids "$LPID")"
CPID=$(cp_pid)
assert_eq "control plane: nobody, no capability, no_new_privs" "$NOBODY" "$(ids "$CPID")"
assert_ge "dataplane threads" "$(ls /proc/"$LPID"/task | wc -l)" 4
assert_eq "no dataplane thread has a capability" 0 "$(threads_with_caps "$LPID")"
assert_eq "no control plane thread has a capability" 0 "$(threads_with_caps "$CPID")"
check "the listener on port $P (< 1024) was bound" bash -c "ss -ltnH 'sport = :$P' | grep -q LISTEN"
assert_contains "TLS served on port $P" "$(lcurl a.test "$P")" "backend=app"
assert_eq "SIGHUP: reloaded" reloaded "$(reload)"
assert_contains "served after the reload" "$(lcurl a.test "$P")" "backend=app"
status=$(timeout 10 "$LODECTL" --socket "$T/run/admin.sock" --json status 2>&1)
assert_contains "lodectl (root) talks to the control plane (nobody)" "$status" '"generation"'

# The access log (opened as root) is handed to nobody, so SIGUSR1 can reopen
# it after the drop; a rotation (rename, then the new file made for the user,
# as logrotate's `create` does) is followed too.
assert_eq "the access log file is handed to nobody" nobody:nogroup "$(stat -c %U:%G "$T/logs/access.log")"
kill -USR1 "$LPID"
check "SIGUSR1 as nobody: the same path reopened" wait_log_count '"event":"access_log_reopened"' 1 10
mv "$T/logs/access.log" "$T/logs/access.log.1"
install -o nobody -g nogroup -m 0640 /dev/null "$T/logs/access.log"
kill -USR1 "$LPID"
check "SIGUSR1 after a rotation: reopened" wait_log_count '"event":"access_log_reopened"' 2 10
lcurl a.test "$P" >/dev/null
check "the next connection is logged in the new file" wait_for 10 grep -q '"sni":"a.test"' "$T/logs/access.log"

# The control plane dies; the unprivileged dataplane restarts it.
kill -KILL "$CPID"
check "the control plane is restarted and attaches" wait_log_count '"event":"control_plane_attached"' 2 15
NEW=$(cp_pid)
check "a new control plane (pid ${NEW:-none}, was $CPID)" test -n "$NEW" -a "$NEW" != "$CPID"
assert_eq "restarted control plane: nobody too" "$NOBODY" "$(ids "$NEW")"
assert_eq "SIGHUP after the restart: reloaded" reloaded "$(reload)"
assert_contains "served after the restart" "$(lcurl a.test "$P")" "backend=app"
kill -TERM "$LPID"; wait_for 15 bash -c "! kill -0 $LPID 2>/dev/null"
check "stopped" bash -c "! kill -0 $LPID 2>/dev/null"

# ---- run_dir and the logs are nobody's: what nobody put there is not
# followed by root. A dead Lodestone's certificate store that is a link to a
# directory of root's is left alone (its files stay, a warning names it); a
# dead one's real store (nobody's, 0700) is removed; the control socket is
# nobody's. An access log that is a symlink to a root file, or a FIFO with
# no reader, is refused at start, naming the path (no hang); the file stays
# root's. So is a state_dir that is a link (root gave its target away).
mkdir -p "$T/victim"; echo keep >"$T/victim/keep"; chown -R root:root "$T/victim"; chmod 0700 "$T/victim"
DEAD=$(sh -c 'echo $$')   # a PID that was, and is gone
ln -s "$T/victim" "$T/run/lodestone-$DEAD.sock.certs"
DEAD2=$(sh -c 'echo $$')
install -d -o nobody -g nogroup -m 0700 "$T/run/lodestone-$DEAD2.sock.certs"
install -o nobody -g nogroup -m 0600 /dev/null "$T/run/lodestone-$DEAD2.sock.certs/a.key"
start_lodestone "$T/lode.toml"
check "a dead store that is a symlink to root's directory: its files stay" test -f "$T/victim/keep"
check "... and a warning names it" grep -q "\"event\":\"cert_store_not_removed\".*lodestone-$DEAD.sock.certs" "$LLOG"
check "a dead store of nobody's: removed" test ! -e "$T/run/lodestone-$DEAD2.sock.certs"
assert_eq "the control socket is nobody's" nobody:nogroup "$(stat -c %U:%G "$T/run/lodestone-$LPID.sock")"
kill -TERM "$LPID"; wait_for 15 bash -c "! kill -0 $LPID 2>/dev/null"
rm -f "$T/run/lodestone-$DEAD.sock.certs"
mv "$T/logs/access.log" "$T/logs/access.log.2"
ln -s "$T/victim/keep" "$T/logs/access.log"
err=$(timeout 10 "$LODESTONE" run "$T/lode.toml" --run-dir "$T/run" 2>&1); rc=$?
assert_eq "an access log that is a symlink: exit 1" 1 "$rc"
assert_contains "an access log that is a symlink: says so" "$err" "$T/logs/access.log: a symbolic link to a regular file: refused"
assert_eq "the link's target stays root's" root:root "$(stat -c %U:%G "$T/victim/keep")"
rm -f "$T/logs/access.log"; mkfifo "$T/logs/access.log"
err=$(timeout 10 "$LODESTONE" run "$T/lode.toml" --run-dir "$T/run" 2>&1); rc=$?
assert_eq "an access log that is a FIFO with no reader: exit 1 (124: it blocked)" 1 "$rc"
assert_contains "an access log that is a FIFO with no reader: says so" "$err" "$T/logs/access.log: a FIFO with no reader"
rm -f "$T/logs/access.log"
mv "$T/logs/access.log.2" "$T/logs/access.log"
# state_dir replaced by a link to root's directory (by whoever may write its
# parent): refused, naming it; the link's target stays root's.
mv "$T/state" "$T/state.real"; ln -s "$T/victim" "$T/state"
err=$(timeout 10 "$LODESTONE" run "$T/lode.toml" --run-dir "$T/run" 2>&1); rc=$?
assert_eq "a state_dir that is a symlink: exit 1" 1 "$rc"
assert_contains "a state_dir that is a symlink: says so" "$err" "$T/state: a symbolic link: refused"
assert_eq "the link's target stays root's" root:root "$(stat -c %U:%G "$T/victim")"
rm -f "$T/state"; mv "$T/state.real" "$T/state"

# ---- a user that does not exist
sed -i 's/^user = "nobody"/user = "no-such-user-lodestone"/' "$T/lode.toml"
err=$(timeout 10 "$LODESTONE" run "$T/lode.toml" --run-dir "$T/run" 2>&1); rc=$?
assert_eq "an unknown user: exit 1" 1 "$rc"
assert_contains "an unknown user: says so" "$err" 'user "no-such-user-lodestone": no such user'
finish
