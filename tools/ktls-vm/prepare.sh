#!/usr/bin/env bash
# Prepares the kernel of the kTLS VM (tools/ktls-vm/run.sh): Debian's own
# kernel, which has `tls` as a module, and the modules kTLS needs, in a cache
# folder. The host's /boot and module tree are never touched and the package
# is never installed: it is downloaded with `apt-get download` and unpacked
# with `dpkg -x`.
#
#   tools/ktls-vm/prepare.sh [CACHE_DIR]        (default: build/ktls-vm)
#
# Idempotent: does nothing when CACHE_DIR already holds the kernel that
# `linux-image-amd64` depends on, with the same module set. Needs apt-get,
# dpkg and kmod (depmod, modprobe); the network only on the first run (or
# after the kernel package changes).
#
# CACHE_DIR/linux-image-*.deb   the downloaded package (kept: re-preparing needs no download)
# CACHE_DIR/vmlinuz             the kernel image
# CACHE_DIR/modules/*.ko        the modules, uncompressed
# CACHE_DIR/modules.list        their file names, in load (dependency) order
# CACHE_DIR/prepared.env        what was prepared: package, version, kernel release, modules
#
# KTLS_VM_MODULES (environment) replaces the default list of modules to load
# (their dependencies are added): kTLS itself and the AEAD implementations its
# ciphers use (gcm(aes), ccm(aes), rfc7539(chacha20,poly1305)). The kernel looks
# algorithms up by name at setsockopt(TLS_TX/TLS_RX) time; with no modprobe in
# the guest they must be loaded before.
set -euo pipefail

root_dir=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-$root_dir/build/ktls-vm}
modules_wanted=${KTLS_VM_MODULES:-"tls aesni-intel gcm ctr ghash-generic ghash-clmulni-intel ccm chacha20poly1305 chacha-x86_64 chacha-generic poly1305-x86_64 poly1305-generic"}

die() { echo "ktls-vm prepare: $*" >&2; exit 1; }
for tool in apt-cache apt-get dpkg dpkg-deb depmod modprobe flock; do
  command -v "$tool" >/dev/null || die "$tool is missing (tools/install-deps.sh installs kmod, dpkg, apt)"
done

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
exec 9>"$cache/.lock"
flock 9  # two runs at once prepare once

# The versioned package behind the metapackage, e.g. linux-image-6.1.0-56-amd64.
resolve_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
package=$(resolve_package)
if [ -z "$package" ]; then
  echo "ktls-vm prepare: linux-image-amd64 unknown to apt-cache; running apt-get update"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  package=$(resolve_package)
  [ -n "$package" ] || die "apt-cache depends linux-image-amd64 names no linux-image-<version> package"
fi

if [ -f "$cache/prepared.env" ]; then
  # shellcheck disable=SC1091
  prepared=$(. "$cache/prepared.env" && echo "$KTLS_VM_PACKAGE|$KTLS_VM_MODULES_WANTED")
  if [ "$prepared" == "$package|$modules_wanted" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/modules.list" ]; then
    missing=0
    while read -r m; do [ -f "$cache/modules/$m" ] || missing=1; done <"$cache/modules.list"
    if [ $missing -eq 0 ]; then
      echo "ktls-vm prepare: $package already prepared in $cache"
      exit 0
    fi
  fi
fi

deb=$(find "$cache" -maxdepth 1 -name "${package}_*.deb" | sort | tail -n 1)
if [ -z "$deb" ]; then
  echo "ktls-vm prepare: downloading $package"
  sandbox=()
  # As root apt drops to _apt, which cannot write into a root-owned folder.
  [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$cache" && apt-get download -q "${sandbox[@]}" "$package") ||
    die "apt-get download $package failed (network? run apt-get update?)"
  deb=$(find "$cache" -maxdepth 1 -name "${package}_*.deb" | sort | tail -n 1)
  [ -n "$deb" ] || die "apt-get download left no ${package}_*.deb in $cache"
fi
# Older kernels' packages from earlier runs.
find "$cache" -maxdepth 1 -name 'linux-image-*.deb' ! -name "${package}_*.deb" -delete
version=$(dpkg-deb -f "$deb" Version)

tree="$cache/tree"
rm -rf "$tree" "$cache/modules" "$cache/prepared.env"
trap 'rm -rf "$tree"' EXIT
echo "ktls-vm prepare: unpacking $(basename "$deb")"
dpkg -x "$deb" "$tree"
kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
[ -n "$kernel" ] || die "no boot/vmlinuz-* in $deb"
kver=${kernel##*/vmlinuz-}
[ -d "$tree/lib/modules/$kver" ] || die "no lib/modules/$kver in $deb"
depmod -b "$tree" "$kver"

mkdir -p "$cache/modules"
: >"$cache/modules.list.new"
declare -A seen=()
for want in $modules_wanted; do
  deps=$(modprobe -d "$tree" -S "$kver" --show-depends "$want" 2>&1) || die "modprobe --show-depends $want: $deps"
  while read -r kind path _; do
    [ "$kind" == "insmod" ] || continue  # "builtin NAME": nothing to load
    name=$(basename "$path")
    [ -n "${seen[$name]:-}" ] && continue
    seen[$name]=1
    case "$name" in
      *.ko) cp "$path" "$cache/modules/$name" ;;
      *) die "$name: compressed module (expected plain .ko files in $package)" ;;
    esac
    echo "$name" >>"$cache/modules.list.new"
  done <<<"$deps"
done
grep -qx 'tls.ko' "$cache/modules.list.new" || die "tls.ko is not among the modules prepared"
mv "$cache/modules.list.new" "$cache/modules.list"
cp "$kernel" "$cache/vmlinuz"

cat >"$cache/prepared.env" <<ENV
# Written by tools/ktls-vm/prepare.sh; read by tools/ktls-vm/run.sh.
KTLS_VM_PACKAGE='$package'
KTLS_VM_VERSION='$version'
KTLS_VM_KERNEL_RELEASE='$kver'
KTLS_VM_KERNEL='$cache/vmlinuz'
KTLS_VM_MODULES_WANTED='$modules_wanted'
KTLS_VM_MODULES='$(tr '\n' ' ' <"$cache/modules.list" | sed 's/ $//')'
ENV
echo "ktls-vm prepare: $package $version (kernel $kver) in $cache"
echo "ktls-vm prepare: modules: $(tr '\n' ' ' <"$cache/modules.list")"
