#!/usr/bin/env bash
# Every header of the project compiles on its own (STYLE.md): each is
# included alone in an empty translation unit and syntax-checked.
#   tools/check-headers.sh [CXX]
set -uo pipefail
cd "$(dirname "$0")/.."
cxx=${1:-g++}
flags="-std=c++20 -fsyntax-only -I. -Iinclude $(pkg-config --cflags tomlplusplus liburing 2>/dev/null)"
tu=$(mktemp --suffix=.cc)
trap 'rm -f "$tu"' EXIT
ok=0
bad=0
for h in $(git ls-files 'include/*.h' 'dataplane/*.h' 'controlplane/*.h' 'tools/*.h' 2>/dev/null ||
           find include dataplane controlplane tools -name '*.h'); do
  echo "#include \"$h\"" >"$tu"
  if $cxx $flags "$tu" 2>/tmp/check-headers.err; then
    ok=$((ok + 1))
  else
    bad=$((bad + 1))
    echo "FAIL $h"
    head -n 5 /tmp/check-headers.err
  fi
done
echo "$ok passed, $bad failed"
[ "$bad" -eq 0 ]
