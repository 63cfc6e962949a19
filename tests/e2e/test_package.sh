#!/usr/bin/env bash
# The Debian package (issue 9), built, installed on this machine and run.
# Root: dpkg. Everything it installs is purged at the end, failed or not.
#
# 1. `cpack -G DEB` in the build folder it is given (LODE_BUILD_DIR, default
#    the folder of $LODESTONE; the .deb goes to the temp dir): Version is
#    project()'s and what `lodestone version` prints; Depends comes from
#    dpkg-shlibdeps (OpenSSL, liburing, toml++, libcurl, DPDK's librte-*)
#    plus adduser; the conffiles; lintian, when installed: an error fails,
#    warnings are printed.
# 2. `cmake --install` into a DESTDIR: the layout, the unit's ExecStart
#    following --prefix, and an edited /etc/lodestone/lodestone.toml kept.
# 3. `dpkg -i`: every file expected (binaries in /usr/sbin, the unit, the
#    configuration, the certificate directory, logrotate, the three man
#    pages, copyright) is in `dpkg -L` and on disk; postinst made the
#    `lodestone` system user and gave it the certificate directory; no
#    RPATH/RUNPATH, every library found on the system. An edited
#    configuration survives a reinstall.
# 4. The installed unit passes `systemd-analyze verify` (it names the
#    installed /usr/sbin/lodestone). The installed man pages pass
#    `groff -ww` and `man --warnings` without a word, and every key and
#    section that controlplane/config.cc accepts (its only_keys(...) calls)
#    is an entry of lodestone.conf(5); both checks are shown to catch a
#    broken page.
# 5. The installed /usr/sbin/lodestone runs the installed
#    /etc/lodestone/lodestone.toml as the unit would (started as root; this
#    machine has no systemd as PID 1): two certificates dropped into
#    /etc/lodestone/sites (root:lodestone 0640) are served by name, verified
#    by the test CA, and relayed to a backend on 127.0.0.1:8080; an unknown
#    name gets alert 112. Both processes run from /usr/sbin/lodestone as
#    `lodestone`, with nothing mapped from the source or build tree.
#    /usr/sbin/lodectl answers on the default admin socket. SIGTERM: exit 0.
# 6. `dpkg --purge`: the files are gone.
source "$(dirname "$0")/lib.sh"
e2e_begin package 300
[ "$(id -u)" -eq 0 ] || { echo "FAIL package: runs as root (dpkg -i, the lodestone user)"; exit 1; }
BUILD=${LODE_BUILD_DIR:-$(dirname "$LODESTONE")}
for tool in cpack dpkg-deb dpkg-shlibdeps readelf groff man systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "FAIL package: $tool is not installed (tools/install-deps.sh)"; exit 1; }
done
[ -f "$BUILD/CPackConfig.cmake" ] || { echo "FAIL package: $BUILD has no CPackConfig.cmake (configure it)"; exit 1; }
if dpkg-query -W -f='${Status}' lodestone 2>/dev/null | grep -q "installed"; then
  echo "FAIL package: a lodestone package is already installed here; this test would purge it"
  exit 1
fi

# Everything this test changes outside $T, undone in order at exit.
USER_EXISTED=0; getent passwd lodestone >/dev/null && USER_EXISTED=1
RUN_EXISTED=0; [ -e /run/lodestone ] && RUN_EXISTED=1
TEST_CONF=""
undo_install() {
  rm -f /etc/lodestone/sites/a.test.pem /etc/lodestone/sites/a.test.key \
    /etc/lodestone/sites/b.test.pem /etc/lodestone/sites/b.test.key
  [ -n "$TEST_CONF" ] && rm -f "$TEST_CONF"
  dpkg-query -W lodestone >/dev/null 2>&1 && dpkg --purge lodestone >"$T/purge-at-exit.log" 2>&1
  if [ "$USER_EXISTED" = 0 ] && getent passwd lodestone >/dev/null; then
    userdel lodestone
    getent group lodestone >/dev/null && groupdel lodestone
  fi
  [ "$RUN_EXISTED" = 0 ] && rm -rf /run/lodestone
}
ON_EXIT+=(undo_install)

# ---------------------------------------------------------------- 1. the .deb
VERSION=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD/CMakeCache.txt")
(cd "$BUILD" && cpack -G DEB -B "$T/deb") >"$T/cpack.log" 2>&1
check "cpack -G DEB" grep -q "package: .*\.deb generated" "$T/cpack.log"
DEB=$(ls "$T"/deb/lodestone_*.deb 2>/dev/null | head -n 1)
[ -f "$DEB" ] || { echo "FAIL package: no .deb in $T/deb"; cat "$T/cpack.log"; exit 1; }
echo "  $(basename "$DEB"), $(stat -c %s "$DEB") bytes"
field() { dpkg-deb -f "$DEB" "$1"; }
DEPENDS=$(field Depends)
echo "  Depends: $DEPENDS"
assert_eq "Version is project()'s" "$VERSION" "$(field Version)"
assert_eq "lodestone version prints it too" "lodestone $VERSION" "$("$LODESTONE" version | cut -d' ' -f1-2)"
assert_eq "Package" lodestone "$(field Package)"
for dep in adduser libssl3 liburing2 libtomlplusplus3 libcurl4 librte-eal23 librte-ethdev23 libc6 'libstdc\+\+6'; do
  assert_match "Depends: ${dep//\\/}" "$DEPENDS" "(^|, )$dep( |,|$)"
done
assert_not_contains "Depends: no -dev package" "$DEPENDS" "-dev"
dpkg-deb -e "$DEB" "$T/control"
assert_eq "conffiles" "/etc/lodestone/lodestone.toml /etc/logrotate.d/lodestone" "$(tr '\n' ' ' <"$T/control/conffiles" | sed 's/ $//')"
for s in postinst prerm postrm; do
  check "maintainer script $s: executable, sh -n" bash -c "[ -x '$T/control/$s' ] && sh -n '$T/control/$s'"
done
assert_match "postinst makes the lodestone system user" "$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$T/control/postinst")" \
  "adduser .*--system.* lodestone"
check "postinst touches systemd only where it runs" grep -q '\[ -d /run/systemd/system \]' "$T/control/postinst"
if command -v lintian >/dev/null; then
  lintian --info "$DEB" >"$T/lintian.log" 2>&1
  grep -E '^(W|I|P): ' "$T/lintian.log" | sed 's/^/  lintian: /'
  assert_eq "lintian: no error" "" "$(grep -E '^E: ' "$T/lintian.log")"
else
  echo "  note: lintian is not installed (tools/install-deps.sh installs it): not run"
fi

# ---------------------------------------------------------------- 2. cmake --install
D="$T/destdir"
DESTDIR="$D" cmake --install "$BUILD" --prefix /opt/lode >"$T/install-1.log" 2>&1
for f in opt/lode/sbin/lodestone opt/lode/sbin/lodectl lib/systemd/system/lodestone.service \
  etc/lodestone/lodestone.toml etc/logrotate.d/lodestone opt/lode/share/man/man5/lodestone.conf.5.gz; do
  check "cmake --install: $f" test -f "$D/$f"
done
assert_contains "cmake --install --prefix /opt/lode: the unit runs /opt/lode/sbin/lodestone" \
  "$(grep '^ExecStart=' "$D/lib/systemd/system/lodestone.service")" "ExecStart=/opt/lode/sbin/lodestone run "
echo "# edited by the operator" >>"$D/etc/lodestone/lodestone.toml"
DESTDIR="$D" cmake --install "$BUILD" --prefix /opt/lode >"$T/install-2.log" 2>&1
check "cmake --install again: the edited configuration is kept" grep -q "edited by the operator" "$D/etc/lodestone/lodestone.toml"
check "cmake --install again: says so" grep -q "Kept: .*/etc/lodestone/lodestone.toml" "$T/install-2.log"

# ---------------------------------------------------------------- 3. dpkg -i
dpkg -i "$DEB" </dev/null >"$T/dpkg-i.log" 2>&1
check "dpkg -i: exit 0" test $? -eq 0
LIST=$(dpkg -L lodestone)
packaged() { grep -qx -- "$1" <<<"$LIST" && test -e "$1"; }
for f in /usr/sbin/lodestone /usr/sbin/lodectl /lib/systemd/system/lodestone.service /etc/lodestone/lodestone.toml \
  /etc/lodestone/sites /etc/logrotate.d/lodestone /usr/share/man/man8/lodestone.8.gz /usr/share/man/man8/lodectl.8.gz \
  /usr/share/man/man5/lodestone.conf.5.gz /usr/share/doc/lodestone/copyright /usr/share/doc/lodestone/changelog.gz \
  /usr/share/doc/lodestone/README.md /usr/share/doc/lodestone/examples/lodestone.toml \
  /usr/share/doc/lodestone/examples/lodestone-dpdk.conf; do
  check "packaged and installed: $f" packaged "$f"
done
assert_eq "nothing from the test tools is packaged" "" "$(grep -E 'lodeload|lode-backend' <<<"$LIST")"
check "postinst: the lodestone system user" bash -c '[ "$(id -u lodestone)" -lt 1000 ] && [ "$(getent passwd lodestone | cut -d: -f7)" = /usr/sbin/nologin ]'
assert_eq "postinst: /etc/lodestone/sites is root:lodestone 0750" "root:lodestone 750" "$(stat -c '%U:%G %a' /etc/lodestone/sites)"
assert_eq "postinst: /var/lib/lodestone is lodestone's" "lodestone" "$(stat -c %U /var/lib/lodestone 2>&1)"
for b in /usr/sbin/lodestone /usr/sbin/lodectl; do
  assert_eq "$b: no RPATH/RUNPATH" "" "$(readelf -d "$b" | grep -E 'RPATH|RUNPATH')"
  assert_eq "$b: every library found" "" "$(ldd "$b" | grep 'not found')"
  assert_eq "$b: no library from the source or build tree" "" "$(ldd "$b" | grep -F -e "$LODE_SOURCE_DIR" -e "$BUILD")"
done
cp /etc/lodestone/lodestone.toml "$T/shipped.toml"
echo "# edited by the operator" >>/etc/lodestone/lodestone.toml
dpkg -i "$DEB" </dev/null >"$T/dpkg-reinstall.log" 2>&1
check "dpkg -i again: exit 0, no question asked" test $? -eq 0
check "dpkg -i again: the edited conffile is kept" grep -q "edited by the operator" /etc/lodestone/lodestone.toml
cp "$T/shipped.toml" /etc/lodestone/lodestone.toml

# ---------------------------------------------------------------- 4. unit and man pages
verify=$(systemd-analyze verify --man=no /lib/systemd/system/lodestone.service 2>&1); rc=$?
assert_eq "the installed unit: systemd-analyze verify, no warning" "rc=0 " "rc=$rc $verify"
assert_eq "the installed unit runs the installed binary" \
  "ExecStart=/usr/sbin/lodestone run /etc/lodestone/lodestone.toml" "$(grep '^ExecStart=' /lib/systemd/system/lodestone.service)"

# man_warnings PAGE.gz: whatever groff -ww and man --warnings say (nothing for a clean page).
man_warnings() {
  zcat "$1" | groff -man -ww -z 2>&1
  MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 "$1" 2>&1 >/dev/null
}
for page in /usr/share/man/man8/lodestone.8.gz /usr/share/man/man8/lodectl.8.gz /usr/share/man/man5/lodestone.conf.5.gz; do
  assert_eq "$(basename "$page"): no groff or man warning" "" "$(man_warnings "$page")"
done
assert_eq "the man pages carry the version" "3" \
  "$(zcat /usr/share/man/man8/lodestone.8.gz /usr/share/man/man8/lodectl.8.gz /usr/share/man/man5/lodestone.conf.5.gz |
     grep -c "^\.TH .*\"lodestone $VERSION\"")"
zcat /usr/share/man/man8/lodestone.8.gz | sed 's/^\.SH DESCRIPTION$/.SH DESCRIPTION\n.XX undefined/' | gzip >"$T/broken.8.gz"
assert_contains "the man check flags a broken page" "$(man_warnings "$T/broken.8.gz")" "XX"
assert_contains "man finds lodestone.conf(5)" "$(MANWIDTH=80 man 5 lodestone.conf 2>&1 | head -n 5)" "LODESTONE.CONF(5)"

# conf_keys CONFIG_CC PAGE: every key of every only_keys(...) call in
# config.cc is the tag of an entry (.TP, then .B/.BR KEY) of the page, and
# every top-level table a section (.SH [NAME] or .SH [[NAME]]). Prints what
# is missing; fails if anything is, or if config.cc's calls were not found.
conf_keys() {
  python3 - "$1" "$2" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
page = open(sys.argv[2]).read().splitlines()
calls = re.findall(r'(?<!void )only_keys\(([^{]*)\{([^}]*)\}', src)
tags, sections = set(), set()
for i, line in enumerate(page):
    if i > 0 and page[i - 1].startswith('.TP'):
        m = re.match(r'\.BR? (\S+)', line)
        if m: tags.add(m.group(1))
    m = re.match(r'\.SH (\[\[?[a-z_]+\]\]?)$', line)
    if m: sections.add(m.group(1).strip('[]'))
missing, nkeys = [], 0
for where, keys in calls:
    top = where.strip().startswith('root,')
    for k in re.findall(r'"([a-z_0-9]+)"', keys):
        nkeys += 1
        if top and k != 'front':
            if k not in sections: missing.append('section [' + k + ']')
        elif k not in tags:
            missing.append('key ' + k + ' (only_keys(' + where.strip().rstrip(',') + ', ...))')
print('%d only_keys calls, %d keys' % (len(calls), nkeys))
for m in missing: print('missing in lodestone.conf(5):', m)
sys.exit(1 if missing or len(calls) < 20 or nkeys < 80 else 0)
PY
}
zcat /usr/share/man/man5/lodestone.conf.5.gz >"$T/lodestone.conf.5"
out=$(conf_keys "$LODE_SOURCE_DIR/controlplane/config.cc" "$T/lodestone.conf.5"); rc=$?
echo "  $out" | head -n 20
check "lodestone.conf(5) documents every key and section config.cc accepts" test $rc -eq 0
sed 's/^\.BR steer /.BR steering /; s/^\.SH \[ocsp\]$/.SH OCSP/' "$T/lodestone.conf.5" >"$T/broken.5"
out=$(conf_keys "$LODE_SOURCE_DIR/controlplane/config.cc" "$T/broken.5")
assert_contains "the key check flags a missing key" "$out" "key steer"
assert_contains "the key check flags a missing section" "$out" "section [ocsp]"

# ---------------------------------------------------------------- 5. the installed lodestone
CONF=/etc/lodestone/lodestone.toml
check "lodestone check on the shipped configuration" /usr/sbin/lodestone check "$CONF"
PORT=8443 BPORT=8080
port_busy() { ss -Htln "sport = :$1" | grep -q .; }
if port_busy 8443 || port_busy 8080 || port_busy 9180; then
  # Someone else's server holds a port: the same file with free ports (in
  # /etc/lodestone: the control plane reads it as lodestone).
  PORT=$(free_port); BPORT=$(free_port)
  TEST_CONF=/etc/lodestone/lodestone-test-$$.toml
  sed "s/127.0.0.1:8443/127.0.0.1:$PORT/; s/127.0.0.1:8080/127.0.0.1:$BPORT/; s/127.0.0.1:9180/127.0.0.1:$(free_port)/" "$CONF" >"$TEST_CONF"
  chmod 0644 "$TEST_CONF"
  CONF=$TEST_CONF
  echo "  note: 8443, 8080 or 9180 is in use here: running a copy on $PORT -> $BPORT"
fi
make_pki a.test b.test
for n in a.test b.test; do
  install -m 0640 -o root -g lodestone "$PKI/$n.pem" "$PKI/$n.key" /etc/lodestone/sites/
done
start_backend local "$BPORT"
LLOG="$T/installed.log"
/usr/sbin/lodestone run "$CONF" 2>"$LLOG" >"$T/installed.out" &
LPID=$!
PIDS+=("$LPID")
wait_for 15 grep -q '"event":"start"' "$LLOG" || { fail "the installed lodestone did not start"; cat "$LLOG"; finish; }
pass "the installed lodestone started with $CONF"
for n in a.test b.test; do
  assert_contains "$n: its own certificate" "$(peer_cert "$PORT" -servername "$n")" "CN = $n"
  assert_contains "$n: verified by the test CA" "$(sclient "$PORT" -servername "$n")" "Verify return code: 0 (ok)"
  assert_contains "$n: relayed to the backend" "$(lcurl "$n" "$PORT")" "backend=local"
done
assert_match "an unknown name: alert 112" "$(sclient "$PORT" -servername c.test)" "unrecognized name|alert number 112"
check "access log: a.test by route sites, ok" wait_for 5 bash -c \
  "grep '\"sni\":\"a.test\"' '$LLOG' | grep '\"route\":\"sites\"' | grep -q '\"result\":\"ok\"'"
CPID=$(ps -o pid= --ppid "$LPID" | tr -d ' ' | head -n 1)
LUID=$(id -u lodestone)
for p in "$LPID" "${CPID:-none}"; do
  check "pid $p runs /usr/sbin/lodestone" test "$(readlink "/proc/$p/exe" 2>&1)" = /usr/sbin/lodestone
  assert_eq "pid $p is the lodestone user" "$LUID $LUID $LUID $LUID" "$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$p/status" 2>&1)"
  assert_eq "pid $p maps nothing from the source or build tree" "" \
    "$(grep -F -e "$LODE_SOURCE_DIR" -e "$BUILD" "/proc/$p/maps" 2>&1)"
done
assert_contains "/usr/sbin/lodectl status on the default socket" "$(timeout 10 /usr/sbin/lodectl --json status 2>&1)" "\"generation\""
kill -TERM "$LPID"
wait_for 20 bash -c "! kill -0 $LPID 2>/dev/null"
wait "$LPID"; rc=$?
assert_eq "SIGTERM: exit 0" 0 "$rc"

# ---------------------------------------------------------------- 6. purge
rm -f /etc/lodestone/sites/a.test.* /etc/lodestone/sites/b.test.*
[ -n "$TEST_CONF" ] && rm -f "$TEST_CONF"
dpkg --purge lodestone >"$T/purge.log" 2>&1
check "dpkg --purge: exit 0" test $? -eq 0
for f in /usr/sbin/lodestone /usr/sbin/lodectl /lib/systemd/system/lodestone.service /etc/lodestone \
  /etc/logrotate.d/lodestone /usr/share/man/man5/lodestone.conf.5.gz /var/lib/lodestone; do
  check "purged: $f" test ! -e "$f"
done
finish
