#!/usr/bin/env bash
# Runs one program inside a VM whose kernel has kTLS (Debian's 6.1 kernel,
# prepared by tools/ktls-vm/prepare.sh), under qemu-system-x86_64 with TCG
# (no KVM needed), and returns its exit status.
#
#   tools/ktls-vm/run.sh [OPTIONS] CACHE_DIR -- PROGRAM [ARGS...]
#
#   --timeout S        hard limit for the whole VM run (default 120); qemu is
#                      killed by PID after it, and run.sh returns 124
#   --file PATH        copy PATH (a file or a folder) into the guest at the same
#                      absolute path; ELF files bring their shared libraries
#                      (ldd). Repeatable.
#   --env NAME=VALUE   set in the program's environment. Repeatable.
#   --cmdline ARGS     more kernel command-line arguments (e.g.
#                      module_blacklist=tls: that module is then not loaded)
#   --mem MB           guest memory (default 512)
#   --log FILE         also write the raw serial console to FILE
#   --verbose          the kernel's boot messages on the console (no `quiet`)
#
# PROGRAM (a path, or a name found on PATH) is copied in like --file; a script
# gets its interpreter unless busybox provides it (/bin/sh is busybox ash).
# The guest: a busybox-static initramfs (its root is writable: files copied
# under /tmp stay visible), proc, sysfs, devtmpfs,
# `lo` up, the prepared modules loaded in dependency order (tls.ko among them:
# /proc/net/tls_stat exists), then PROGRAM runs as root in /tmp with stdin from
# /dev/null and its output on the serial console, which run.sh prints. After
# it, the guest prints /proc/net/tls_stat and reports the status to qemu through
# `-device isa-debug-exit` (qemu exits with (status << 1) | 1).
#
# Exit status: PROGRAM's (0..126; 127 and more read 127), 124 when the VM ran
# past --timeout, 125 when the VM reported no status (it did not boot, panicked,
# or a module failed to load).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=120
mem=512
cmdline_extra=""
log=""
quiet="quiet"
files=()
envs=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "ktls-vm: $*" >&2; exit 125; }
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --file) files+=("${2:?}"); shift 2 ;;
    --env) [[ "${2:?}" == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE, got '$2'"; envs+=("$2"); shift 2 ;;
    --cmdline) cmdline_extra="$cmdline_extra ${2:?}"; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --log) log=${2:?}; shift 2 ;;
    --verbose) quiet=""; shift ;;
    -h|--help) usage ;;
    --) die "CACHE_DIR is missing before --" ;;
    -*) echo "ktls-vm: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ] || [ "$2" != "--" ]; then usage; fi
cache=$1
shift 2
program=$1
shift

for tool in qemu-system-x86_64 cpio ldd timeout; do
  command -v "$tool" >/dev/null || die "$tool is missing (tools/install-deps.sh installs qemu-system-x86, cpio)"
done
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox is missing (package busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked: install busybox-static"

"$here/prepare.sh" "$cache" >/dev/null || die "tools/ktls-vm/prepare.sh $cache failed"
cache=$(cd "$cache" && pwd)
# shellcheck disable=SC1091
. "$cache/prepared.env"

case "$program" in
  /*) ;;
  */*) program="$(cd "$(dirname "$program")" && pwd)/$(basename "$program")" ;;
  *) found=$(type -P "$program") || die "$program: not found on PATH"; program=$found ;;
esac
[ -f "$program" ] || die "$program: not a file"

work=$(mktemp -d "${TMPDIR:-/tmp}/ktls-vm.XXXXXX")
tpid=""
qpid=""
# shellcheck disable=SC2317  # runs from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # qemu by its recorded PID; then the timeout wrapping it (which passes TERM
  # on to a qemu that had not written its PID yet) is reaped.
  if [ -n "$tpid" ]; then
    [ -s "$work/qemu.pid" ] && qpid=$(cat "$work/qemu.pid")
    [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
    kill -TERM "$tpid" 2>/dev/null
    wait "$tpid" 2>/dev/null
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the root
root="$work/root"
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,tmp,run,etc,root,ktls-vm/modules}
# Debian's merged /usr: the paths ldd prints (/lib/x86_64-linux-gnu/...) work.
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
cp "$busybox" "$root/usr/bin/busybox"
while read -r applet; do
  [ "$(basename "$applet")" == busybox ] && continue  # not a link onto itself
  [ -e "$root/$applet" ] || ln -s /usr/bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

copy_one() {  # copy_one PATH: at the same absolute path, symlinks followed
  local dest="$root$1"
  mkdir -p "$(dirname "$dest")"
  rm -f "$dest"  # a busybox applet link of the same name
  cp -L "$1" "$dest"
}
copy_libs() {  # copy_libs ELF: its shared libraries, as ldd resolves them
  local lib
  while read -r lib; do
    [ -e "$root$lib" ] || copy_one "$lib"
  done < <(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}
copy_in() {  # copy_in PATH: a file with its libraries (or interpreter), or a folder
  local path=$1 f
  [ -e "$path" ] || die "$path: no such file"
  case "$path" in /*) ;; *) path="$(cd "$(dirname "$path")" && pwd)/$(basename "$path")" ;; esac
  if [ -d "$path" ]; then
    while IFS= read -r -d '' f; do copy_in "$f"; done < <(find "$path" -type f -print0)
    return
  fi
  copy_one "$path"
  if [ "$(head -c 4 "$path" | od -An -c | tr -d ' ')" == '177ELF' ]; then
    copy_libs "$path"
  elif [ "$(head -c 2 "$path")" == '#!' ]; then
    local interp
    read -r interp _ < <(head -n 1 "$path" | sed 's/^#! *//')
    [ "$(basename "$interp")" == env ] && { read -r _ interp _ < <(head -n 1 "$path" | sed 's/^#! *//'); interp=$(command -v "$interp" || echo "$interp"); }
    if [ ! -e "$root$interp" ] && [ -e "$interp" ]; then copy_in "$interp"; fi
  fi
}
copy_in "$program"
for f in "${files[@]}"; do copy_in "$f"; done

cp "$cache/modules.list" "$root/ktls-vm/modules.list"
while read -r m; do cp "$cache/modules/$m" "$root/ktls-vm/modules/$m"; done <"$cache/modules.list"

quote() {  # quote WORD: one word for sh, single-quoted
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
command_line=$(quote "$program")
for a in "$@"; do command_line="$command_line $(quote "$a")"; done
env_lines=""
for e in "${envs[@]}"; do env_lines="${env_lines}export ${e%%=*}=$(quote "${e#*=}")"$'\n'; done

cat >"$root/init" <<INIT
#!/bin/sh
# The guest's PID 1, written by tools/ktls-vm/run.sh.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
stty -onlcr 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm

report() {  # report STATUS: qemu exits with (STATUS << 1) | 1
  sync
  printf "\\\\\$(printf %03o "\$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
  echo "ktls-vm: isa-debug-exit did not stop the VM"
  poweroff -f
}
echo "ktls-vm: init at uptime \$(cut -d' ' -f1 /proc/uptime) s, kernel \$(uname -r)"
ip link set lo up || { echo "ktls-vm: ip link set lo up failed"; report 125; }
blacklist=" \$(tr ' ' '\\n' </proc/cmdline | sed -n 's/^module_blacklist=//p' | tr ',' ' ') "
while read -r m; do
  name=\${m%.ko}
  case "\$blacklist" in *" \$name "*|*" \$(echo "\$name" | tr - _) "*) echo "ktls-vm: \$m blacklisted, not loaded"; continue ;; esac
  insmod /ktls-vm/modules/\$m || { echo "ktls-vm: insmod \$m failed"; report 125; }
done </ktls-vm/modules.list
echo "ktls-vm: modules loaded; running the program at uptime \$(cut -d' ' -f1 /proc/uptime) s"
cd /tmp
(
$env_lines  exec $command_line
) </dev/null
status=\$?
[ \$status -gt 127 ] && status=127
echo "ktls-vm: program exited with status \$status at uptime \$(cut -d' ' -f1 /proc/uptime) s"
if [ -r /proc/net/tls_stat ]; then
  echo "ktls-vm: /proc/net/tls_stat:"
  sed 's/^/ktls-vm:   /' /proc/net/tls_stat
fi
report \$status
INIT
chmod 0755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null --quiet -o -H newc -R 0:0) >"$work/initramfs.cpio"

# ---------------------------------------------------------------- the VM
[ -n "$log" ] && : >"$log"
logfile="$work/console.log"
start=$(date +%s.%N)
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp 1 -m "$mem" \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$KTLS_VM_KERNEL" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 panic=-1 $quiet$cmdline_extra" \
  -chardev "stdio,id=console,signal=off,logfile=$logfile" -serial chardev:console \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -pidfile "$work/qemu.pid" </dev/null &
tpid=$!
set +e
wait "$tpid"
qrc=$?
set -e
tpid=""
qpid=""
[ -n "$log" ] && cp "$logfile" "$log"
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
  echo "ktls-vm: timed out after ${timeout_s} s; qemu killed" >&2
  exit 124
fi
# The guest's status line backs the exit code: qemu exits 1 on its own errors
# too, which would read as status 0.
said=$(tr -d '\r' <"$logfile" | sed -n 's/^ktls-vm: program exited with status \([0-9]*\) .*/\1/p' | tail -n 1)
if [ $((qrc & 1)) -eq 1 ] && [ "$said" == "$((qrc >> 1))" ]; then
  echo "ktls-vm: VM ran ${elapsed} s; program status $said" >&2
  exit "$said"
fi
if [ $qrc -eq 251 ]; then  # (125 << 1) | 1: the guest's init gave up
  echo "ktls-vm: the guest's init failed after ${elapsed} s (see the console above)" >&2
else
  echo "ktls-vm: qemu exited with $qrc after ${elapsed} s and no status from the guest (no boot? panic? qemu error?)" >&2
fi
exit 125
