#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time on its
# committed corpus (tests/fuzz/corpus/NAME). New inputs go to a scratch
# directory, never into the repository. Exits non-zero on the first crash.
#   tools/fuzz-smoke.sh BUILD_DIR [SECONDS_PER_TARGET]
set -euo pipefail
build=$(cd "${1:?usage: fuzz-smoke.sh BUILD_DIR [SECONDS]}" && pwd)
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
targets=0
for bin in "$build"/tests/fuzz/*_fuzz; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$root/tests/fuzz/corpus/$name"
  mkdir -p "$scratch/$name"
  echo "fuzz-smoke: $name for ${seconds}s on $(ls "$corpus" | wc -l) seed inputs"
  if ! (cd "$scratch" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
          -print_final_stats=1 "$scratch/$name" "$corpus" 2>"$scratch/$name.log"); then
    echo "fuzz-smoke: $name FAILED; the input is in the log below"
    tail -n 60 "$scratch/$name.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$scratch/$name.log" | sed "s/^/  $name: /"
  fi
  targets=$((targets + 1))
done
[ "$targets" -gt 0 ] || { echo "fuzz-smoke: no fuzz targets in $build"; exit 1; }
echo "fuzz-smoke: $targets targets, status $status"
exit $status
