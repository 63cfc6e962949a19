// PROXY protocol parse and write costs: the per-connection work a TLS worker
// behind the dpdk front (or a load balancer) pays before the ClientHello.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "dataplane/tls/proxy_protocol.h"

namespace {

using lode::ParseStatus;
using namespace lode::proxy;

ProxyHeaderSpec typical_spec(bool crc) {
  ProxyHeaderSpec spec;
  spec.source = Address::inet({203, 0, 113, 77}, 51234);
  spec.destination = Address::inet({192, 0, 2, 10}, 443);
  spec.alpn = "h2";
  spec.authority = "www.example.com";
  spec.crc32c = crc;
  return spec;
}

std::vector<uint8_t> typical_v2(bool crc) {
  std::vector<uint8_t> buf(256);
  const auto n = write_v2(typical_spec(crc), buf);
  if (!n) std::abort();
  buf.resize(*n);
  return buf;
}

void BM_ParseV2AlpnAuthority(benchmark::State& state) {
  const std::vector<uint8_t> hdr = typical_v2(state.range(0) != 0);
  for (auto _ : state) {
    ProxyHeaderParser p;
    const ParseStatus st = p.parse(hdr);
    if (st != ParseStatus::kDone) std::abort();
    benchmark::DoNotOptimize(p.header().tlvs.authority->data());
  }
  state.SetLabel(state.range(0) ? "with CRC32C" : "no CRC32C");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * hdr.size()));
}
BENCHMARK(BM_ParseV2AlpnAuthority)->Arg(0)->Arg(1);

// The same header arriving one byte per segment: linear, not quadratic.
void BM_ParseV2ByteAtATime(benchmark::State& state) {
  const std::vector<uint8_t> hdr = typical_v2(false);
  for (auto _ : state) {
    ProxyHeaderParser p;
    ParseStatus st = ParseStatus::kNeedMore;
    for (size_t n = 1; n <= hdr.size() && st == ParseStatus::kNeedMore; ++n)
      st = p.parse({hdr.data(), n});
    if (st != ParseStatus::kDone) std::abort();
    benchmark::DoNotOptimize(p.header().header_len);
  }
}
BENCHMARK(BM_ParseV2ByteAtATime);

void BM_ParseV1Tcp4(benchmark::State& state) {
  constexpr std::string_view kLine = "PROXY TCP4 203.0.113.77 192.0.2.10 51234 443\r\n";
  const std::span<const uint8_t> line(reinterpret_cast<const uint8_t*>(kLine.data()), kLine.size());
  for (auto _ : state) {
    ProxyHeaderParser p;
    if (p.parse(line) != ParseStatus::kDone) std::abort();
    benchmark::DoNotOptimize(p.header().source.port);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kLine.size()));
}
BENCHMARK(BM_ParseV1Tcp4);

void BM_WriteV2AlpnAuthority(benchmark::State& state) {
  const ProxyHeaderSpec spec = typical_spec(state.range(0) != 0);
  uint8_t out[256];
  for (auto _ : state) {
    const auto n = write_v2(spec, out);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetLabel(state.range(0) ? "with CRC32C" : "no CRC32C");
}
BENCHMARK(BM_WriteV2AlpnAuthority)->Arg(0)->Arg(1);

void BM_WriteV1Tcp4(benchmark::State& state) {
  const ProxyHeaderSpec spec = typical_spec(false);
  uint8_t out[kV1MaxLen];
  for (auto _ : state) {
    const auto n = write_v1(spec, out);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_WriteV1Tcp4);

}  // namespace

BENCHMARK_MAIN();
