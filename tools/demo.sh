#!/usr/bin/env bash
# Lodestone's main job on a built-in demo (stone's senri/asao example):
# one port, two names, each with its own certificate and its own backend.
#
#   tools/demo.sh                 runs until Ctrl-C
#   DEMO_SECONDS=30 tools/demo.sh stops by itself
#   DEMO_PORT=8443                the port Lodestone listens on (127.0.0.1)
#   DEMO_BIN=build/mine           use binaries already built there (no
#                                 install, no build; the e2e test does this)
#
# Exits 1 if a name does not get its own certificate and backend, or an
# unknown name is not refused.
# Installs what is missing, builds the release configuration, makes demo
# certificates (a test CA, a.test and b.test), starts two demo backends and
# Lodestone (kernel front), then shows with curl and openssl s_client that
# each name gets its own certificate and its own backend.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
port=${DEMO_PORT:-8443}
seconds=${DEMO_SECONDS:-0}

if [ -n "${DEMO_BIN:-}" ]; then
  bin=$(cd "$DEMO_BIN" && pwd)
else
  tools/install-deps.sh
  cmake --preset release >/dev/null
  cmake --build --preset release -j "$(nproc)"
  bin="$root/build/release"
fi

demo=$(mktemp -d /tmp/lodestone-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$demo"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

tools/make-test-pki.sh "$demo/pki" a.test b.test >/dev/null
mkdir -p "$demo/certs"
cp "$demo/pki/a.test.pem" "$demo/pki/a.test.key" "$demo/pki/b.test.pem" "$demo/pki/b.test.key" "$demo/certs/"

# Two plaintext backends: "senri" and "asao".
"$bin/lode-backend" --listen 127.0.0.1:$((port + 1)) --name senri 2>"$demo/senri.log" &
pids+=($!)
"$bin/lode-backend" --listen 127.0.0.1:$((port + 2)) --name asao 2>"$demo/asao.log" &
pids+=($!)

cat >"$demo/lodestone.toml" <<TOML
# One listener, two names, each terminated with its own certificate (found by
# name in certs/, stone's certpat mode) and relayed to its own backend.
[[listener]]
name = "https"
listen = ["127.0.0.1:$port"]

[[pool]]
name = "senri"
backends = ["127.0.0.1:$((port + 1))"]

[[pool]]
name = "asao"
backends = ["127.0.0.1:$((port + 2))"]

[[certificate_dir]]
name = "sites"
path = "certs"

[[route]]
name = "senri"
names = ["a.test"]
action = "terminate"
pool = "senri"
certificate = "sites"

[[route]]
name = "asao"
names = ["b.test"]
action = "terminate"
pool = "asao"
certificate = "sites"

[tls]
alpn = ["http/1.1"]

[log]
access = "$demo/access.log"
TOML

"$bin/lodestone" check "$demo/lodestone.toml"
"$bin/lodestone" run "$demo/lodestone.toml" 2>"$demo/lodestone.log" &
pids+=($!)
for _ in $(seq 1 50); do
  grep -q '"event":"start"' "$demo/lodestone.log" 2>/dev/null && break
  sleep 0.1
done
head -n 1 "$demo/lodestone.log"

# expect COMMAND PATTERN...: shows COMMAND and its answer; a line of the
# answer must match each PATTERN (grep -E), else the demo fails once
# everything is shown.
failed=0
expect() {
  local cmd=$1 out pattern
  shift
  echo
  echo "\$ $cmd"
  out=$(eval "$cmd" 2>&1 || true)
  printf '%s\n' "$out"
  for pattern in "$@"; do
    if ! printf '%s\n' "$out" | grep -Eq "$pattern"; then
      echo "demo: expected an answer matching /$pattern/" >&2
      failed=1
    fi
  done
}
ca="$demo/pki/ca.pem"
echo
echo "== Two names on one port, two certificates, two backends"
expect "curl -sS --cacert $ca --resolve a.test:$port:127.0.0.1 https://a.test:$port/" '^backend=senri '
expect "curl -sS --cacert $ca --resolve b.test:$port:127.0.0.1 https://b.test:$port/" '^backend=asao '
expect "openssl s_client -connect 127.0.0.1:$port -servername a.test -CAfile $ca </dev/null 2>/dev/null | grep -E '^subject=|^Verify return code'" '^subject=CN = a\.test$' '^Verify return code: 0 \(ok\)$'
expect "openssl s_client -connect 127.0.0.1:$port -servername b.test -CAfile $ca </dev/null 2>/dev/null | grep -E '^subject=|^Verify return code'" '^subject=CN = b\.test$' '^Verify return code: 0 \(ok\)$'
echo
echo "== An unknown name gets TLS alert 112 (unrecognized_name), never another tenant's certificate"
expect "openssl s_client -connect 127.0.0.1:$port -servername c.test </dev/null 2>&1 | grep -o 'alert unrecognized name\|SSL alert number 112' | head -n 1" '112|unrecognized name'
echo
echo "== The access log (one JSON line per connection)"
sleep 0.3
cat "$demo/access.log"
echo
if [ "$failed" != 0 ]; then
  echo "demo: FAILED (an answer above is not what Lodestone should give); its log:" >&2
  cat "$demo/lodestone.log" >&2
  exit 1
fi
if [ "$seconds" -gt 0 ]; then
  echo "Lodestone is serving https://a.test:$port and https://b.test:$port for ${seconds}s (CA: $ca)"
  sleep "$seconds"
else
  echo "Lodestone is serving https://a.test:$port and https://b.test:$port (CA: $ca). Ctrl-C stops it."
  wait "${pids[-1]}"
fi
