#!/usr/bin/env bash
# The soak (bench/soak.sh, issue 9) for 3 minutes: the same mixed load,
# reloads, certificate replacements and backend kills as the 30-minute run,
# and the same verdict (RSS, fds and open connections back to their
# baselines after the load, zero unexpected client failures). The table and
# soak.json stay in $LODE_ARTIFACT_DIR when set (ctest: BUILD/Testing/soak).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${LODE_ARTIFACT_DIR:-}" ]; then
  out=$LODE_ARTIFACT_DIR; rm -rf "$out"
else
  out=$(mktemp -d /tmp/lode-soak-ci.XXXXXX)
  trap 'rm -rf "$out"' EXIT
fi
bash "$here/../../bench/soak.sh" --minutes 3 --sample 10 --out "$out"
