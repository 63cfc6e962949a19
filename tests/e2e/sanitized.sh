#!/usr/bin/env bash
# Runs one end-to-end test against the ASan+UBSan build (the debug preset's
# lodestone, lode-backend, lodectl, lodeload) and fails when the test fails
# or when any of those processes wrote a sanitizer report — an error, a leak
# at exit (LeakSanitizer), undefined behaviour — even one the test itself
# never noticed (a report in a process that kept running, a leak found after
# the test's last check).
#   tests/e2e/sanitized.sh tests/e2e/test_NAME.sh
set -uo pipefail
script=${1:?usage: sanitized.sh tests/e2e/test_NAME.sh}
logs=$(mktemp -d /tmp/lode-sanitized.XXXXXX)
chmod 1777 "$logs"  # a process that dropped to [process] user writes here too
trap 'rm -rf "$logs"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:log_path=$logs/asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:log_path=$logs/ubsan"
bash "$script"
rc=$?
reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
  for f in "${reports[@]}"; do
    echo "== sanitizer report: $(basename "$f")"
    head -c 20000 "$f"
  done
  echo "FAIL $(basename "$script"): ${#reports[@]} sanitizer report(s) above"
  exit 1
fi
exit "$rc"
