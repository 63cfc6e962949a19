#!/usr/bin/env bash
# Installs the Debian 12 packages Lodestone's build, tests and demo need.
# Idempotent: does nothing when everything is already installed; otherwise
# runs `apt-get update` once and installs what is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev          # fuzz targets (libFuzzer) and the ASan+UBSan build
  libssl-dev openssl                # TLS (OpenSSL 3.0)
  liburing-dev                      # io_uring workers
  libdpdk-dev dpdk dpdk-dev         # the DPDK front (dpdk-dev: dpdk-testpmd, the benchmark baseline)
  libtomlplusplus-dev               # configuration files (TOML)
  libcurl4-openssl-dev              # OCSP and CRL fetches (control plane)
  libgtest-dev libgmock-dev         # unit tests
  libbenchmark-dev                  # micro-benchmarks
  curl python3                      # end-to-end tests and the demo (clients)
  strace                            # bench/compare_nginx.sh: system calls per operation
  nghttp2-client                    # h2load: its stock-tool cross-check of lodeload's request rates
  gnuplot-nox                       # the benchmark charts (bench/bench_chart.py)
  qemu-system-x86 busybox-static    # the kTLS VM (tools/ktls-vm/): Debian's kernel under TCG
  kmod cpio                         # its modules (depmod, modprobe) and initramfs
  prometheus                        # promtool: the /metrics test (its service is not started)
  iproute2 iputils-ping hping3 ethtool  # the dpdk front's namespace tests (ip netns, ping, a bounded SYN flood, offloads off)
  nginx                             # e2e.dpdk_load's TLS backend (the test runs its own, stopped by PID)
  bird2                             # scale-out: BGP announcements of the VIPs (tests/e2e/test_bgp.sh, unit tests)
  chromium nodejs                   # the status page's browser test (headless, driven by playwright-core)
  sslscan                           # the TLS configuration scan (tests/e2e/test_tls_scan.sh)
  dpkg-dev lintian groff-base man-db  # the .deb (tests/e2e/test_package.sh): dpkg-shlibdeps, lintian, man page checks
)

# playwright-core from npm, the version pinned in tests/e2e/browser/package-lock.json
# (it drives Debian's chromium; it downloads no browser).
browser_driver() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/browser"
  (cd "$dir" && npm ls playwright-core >/dev/null 2>&1) && return 0
  echo "install-deps: npm ci in $dir (playwright-core)"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts)
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)  # not a package of its own where nodejs comes from NodeSource
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  browser_driver
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
browser_driver
