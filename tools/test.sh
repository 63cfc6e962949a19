#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs the
# packages, builds the release, fuzz, ASan+UBSan and ThreadSanitizer
# configurations, and runs the unit tests (release and sanitizers; TSan on the
# concurrency tests), the fuzz corpora, and a bounded libFuzzer pass over every
# target. Idempotent.
#   tools/test.sh            (FUZZ_SECONDS=20 by default: a smoke pass per target)
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=${FUZZ_SECONDS:-20}
jobs=${JOBS:-$(nproc)}

tools/install-deps.sh

echo "== release build and tests"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

echo "== fuzz targets: ${fuzz_seconds}s each"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
tools/fuzz-smoke.sh build/fuzz "$fuzz_seconds"

echo "== ASan+UBSan build and tests"
cmake --preset debug >/dev/null
cmake --build --preset debug -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --preset debug -j "$jobs"

echo "== ThreadSanitizer build and the concurrency tests (ctest -L tsan)"
# Only the tests whose code runs threads (tests/CMakeLists.txt, lode_tsan_tests);
# any report fails its test (exit 66). Suppressions, each a library false
# positive with its reason: tools/tsan.supp.
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$jobs"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tools/tsan.supp" \
  ctest --preset tsan -j "$jobs"
