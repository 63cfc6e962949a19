#!/usr/bin/env bash
# Lodestone's main job on a built-in demo. Installs what is missing, builds
# the release configuration, then shows the SNI routing core at work: the
# route each real client's ClientHello takes under a demo config (lodectl
# explain), and the parser and route-table benchmarks against their baselines.
# (The TLS workers of issue 3 replace this with a live proxy.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
cat >"$demo/demo.toml" <<'TOML'
[[listener]]
name = "https"
listen = ["127.0.0.1:44312"]
default_route = "fallback"

[[pool]]
name = "senri"
backends = ["127.0.0.1:9001"]

[[pool]]
name = "asao"
backends = ["127.0.0.1:9002"]

[[certificate_dir]]
name = "sites"
path = "certs"

[[route]]
name = "senri"
names = ["a.test", "*.senri.test"]
action = "terminate"
pool = "senri"
certificate = "sites"

[[route]]
name = "asao"
names = ["b.test"]
action = "passthrough"
pool = "asao"

[[route]]
name = "fallback"
action = "reject"
TOML

echo "== configuration check"
build/release/lodectl check "$demo/demo.toml"
echo "== where real clients' hellos go (tests/fixtures/pcap/clients.pcap)"
build/release/lodectl explain --config "$demo/demo.toml" --pcap tests/fixtures/pcap/clients.pcap |
  sed -E 's/.*"client":"([^"]*)".*"sni":("[^"]*"|null).*"why":"([^"]*)".*/  \1  sni=\2  ->  \3/'
echo "== ClientHello parse vs OpenSSL (ratio = how many times faster)"
build/release/bench/client_hello_bench --benchmark_min_time=0.2 2>/dev/null | sed -n '/comparison/,$p'
echo "== route lookup"
build/release/bench/route_bench --benchmark_min_time=0.1 --benchmark_filter='Lookup' 2>/dev/null | tail -n +4
