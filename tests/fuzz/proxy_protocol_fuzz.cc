// libFuzzer target for the PROXY protocol parser and writer.
//
// 1. Parses the whole input.
// 2. Parses it again fed in growing prefixes (split points taken from the
//    input's bytes), each prefix in a freshly allocated buffer, so a parser
//    that kept a pointer between calls reads freed memory under ASan; the
//    outcome (status, error, header length, addresses, TLV views) must equal
//    the whole-input parse.
// 3. A parsed header is written again (write_v2, and write_v1 for v1) and
//    parsed back to the same values.
// Any difference aborts. Also built without libFuzzer as
// proxy_protocol_fuzz_replay and run over the committed corpus by ctest.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/tls/proxy_protocol.h"

namespace {

using lode::ParseStatus;
using namespace lode::proxy;

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

// A view compared by position in its own buffer and by content.
template <class View>
bool same_view(const std::optional<View>& a, const uint8_t* base_a, const std::optional<View>& b,
               const uint8_t* base_b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  const auto* pa = reinterpret_cast<const uint8_t*>(a->data());
  const auto* pb = reinterpret_cast<const uint8_t*>(b->data());
  if (a->size() != b->size()) return false;
  return a->empty() || (pa - base_a == pb - base_b && std::memcmp(pa, pb, a->size()) == 0);
}

template <class View>
bool same_content(const std::optional<View>& a, const std::optional<View>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a || a->empty()) return !a || b->empty();
  return a->size() == b->size() && std::memcmp(a->data(), b->data(), a->size()) == 0;
}

bool same_ssl(const std::optional<SslTlv>& a, const uint8_t* base_a, const std::optional<SslTlv>& b,
              const uint8_t* base_b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->client == b->client && a->verify == b->verify &&
         same_view(a->version, base_a, b->version, base_b) &&
         same_view(a->cn, base_a, b->cn, base_b) &&
         same_view(a->cipher, base_a, b->cipher, base_b) &&
         same_view(a->sig_alg, base_a, b->sig_alg, base_b) &&
         same_view(a->key_alg, base_a, b->key_alg, base_b);
}

bool same_ssl_content(const std::optional<SslTlv>& a, const std::optional<SslTlv>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->client == b->client && a->verify == b->verify && same_content(a->version, b->version) &&
         same_content(a->cn, b->cn) && same_content(a->cipher, b->cipher) &&
         same_content(a->sig_alg, b->sig_alg) && same_content(a->key_alg, b->key_alg);
}

void check_same_outcome(const ProxyHeaderParser& a, const uint8_t* base_a,
                        const ProxyHeaderParser& b, const uint8_t* base_b) {
  FUZZ_CHECK(a.status() == b.status());
  if (a.status() == ParseStatus::kError) {
    FUZZ_CHECK(a.error().code == b.error().code);
    FUZZ_CHECK(a.error().offset == b.error().offset);
    return;
  }
  if (a.status() != ParseStatus::kDone) return;
  const ProxyHeader& x = a.header();
  const ProxyHeader& y = b.header();
  FUZZ_CHECK(x.version == y.version && x.command == y.command && x.family == y.family &&
             x.transport == y.transport && x.header_len == y.header_len);
  FUZZ_CHECK(x.source == y.source && x.destination == y.destination);
  FUZZ_CHECK(x.source.unix_path.empty() ||
             x.source.unix_path.data() - base_a == y.source.unix_path.data() - base_b);
  const Tlvs& s = x.tlvs;
  const Tlvs& t = y.tlvs;
  FUZZ_CHECK(same_view(s.alpn, base_a, t.alpn, base_b));
  FUZZ_CHECK(same_view(s.authority, base_a, t.authority, base_b));
  FUZZ_CHECK(same_view(s.unique_id, base_a, t.unique_id, base_b));
  FUZZ_CHECK(same_view(s.netns, base_a, t.netns, base_b));
  FUZZ_CHECK(same_ssl(s.ssl, base_a, t.ssl, base_b));
  FUZZ_CHECK(s.crc32c == t.crc32c && s.noop_count == t.noop_count &&
             s.unknown_count == t.unknown_count);
  FUZZ_CHECK(same_view(std::optional(s.raw), base_a, std::optional(t.raw), base_b));
}

// Invariants of one parse of `input`.
void check_invariants(const ProxyHeaderParser& p, std::span<const uint8_t> input,
                      const ProxyLimits& limits) {
  const auto kind = ProxyHeaderParser::detect(input);
  if (kind == ProxyHeaderParser::Kind::kNotProxy) {
    FUZZ_CHECK(p.status() == ParseStatus::kError && p.error().code == ProxyErrorCode::kNotProxy);
  }
  if (kind == ProxyHeaderParser::Kind::kNeedMore) FUZZ_CHECK(p.status() == ParseStatus::kNeedMore);
  switch (p.status()) {
    case ParseStatus::kDone: {
      const ProxyHeader& h = p.header();
      FUZZ_CHECK(h.header_len <= input.size());
      FUZZ_CHECK(h.version == 1 ? h.header_len <= kV1MaxLen : h.header_len <= limits.max_v2_len);
      FUZZ_CHECK(h.version == 1 ? kind == ProxyHeaderParser::Kind::kV1
                                : kind == ProxyHeaderParser::Kind::kV2);
      break;
    }
    case ParseStatus::kNeedMore:
      // Capped: a parser never waits past its caps.
      switch (kind) {
        case ProxyHeaderParser::Kind::kNeedMore:
          FUZZ_CHECK(input.size() < 12);
          break;
        case ProxyHeaderParser::Kind::kV1:
          FUZZ_CHECK(input.size() < kV1MaxLen);
          break;
        case ProxyHeaderParser::Kind::kV2:
          FUZZ_CHECK(input.size() < std::max(limits.max_v2_len, kV2HeaderLen));
          break;
        case ProxyHeaderParser::Kind::kNotProxy:
          FUZZ_CHECK(false);
          break;
      }
      break;
    case ParseStatus::kError:
      FUZZ_CHECK(p.error().code != ProxyErrorCode::kNone);
      FUZZ_CHECK(p.error().offset < input.size() || p.error().code == ProxyErrorCode::kNotProxy);
      break;
  }
}

// Parses `input` in growing prefixes, each copied into a new buffer; the
// last buffer is returned in `keep` for the views.
void parse_incrementally(ProxyHeaderParser& p, std::span<const uint8_t> input,
                         std::unique_ptr<uint8_t[]>& keep, bool byte_at_a_time) {
  size_t n = 0;
  size_t k = 0;
  while (true) {
    if (byte_at_a_time) {
      n += 1;
    } else {
      const uint8_t step = input.empty() ? 1 : input[k++ % input.size()];
      n += 1 + (step % 23);
    }
    if (n > input.size()) n = input.size();
    auto buf = std::make_unique<uint8_t[]>(n + 1);  // never zero-sized
    if (n != 0) std::memcpy(buf.get(), input.data(), n);
    const ParseStatus st = p.parse({buf.get(), n});
    keep = std::move(buf);  // the previous buffer is freed here
    if (st != ParseStatus::kNeedMore || n == input.size()) return;
  }
}

ProxyHeaderSpec spec_from(const ProxyHeader& h) {
  ProxyHeaderSpec spec;
  spec.command = h.command;
  spec.transport = h.transport;
  spec.source = h.source;
  spec.destination = h.destination;
  spec.alpn = h.tlvs.alpn;
  spec.authority = h.tlvs.authority;
  spec.unique_id = h.tlvs.unique_id;
  spec.ssl = h.tlvs.ssl;
  spec.netns = h.tlvs.netns;
  spec.crc32c = h.tlvs.crc32c.has_value();
  return spec;
}

// Writes the parsed header again and parses it back.
void check_round_trip(const ProxyHeader& h) {
  std::vector<uint8_t> out(16 + 65535);
  const ProxyHeaderSpec spec = spec_from(h);
  const auto n = write_v2(spec, out);
  FUZZ_CHECK(n.has_value());  // the parsed fields always fit: they came from a header
  ProxyHeaderParser back(ProxyLimits{out.size()});
  FUZZ_CHECK(back.parse({out.data(), *n}) == ParseStatus::kDone);
  const ProxyHeader& r = back.header();
  FUZZ_CHECK(r.version == 2 && r.command == h.command && r.header_len == *n);
  if (h.command == Command::kProxy) {
    FUZZ_CHECK(r.source == h.source && r.destination == h.destination);
    if (h.source.family != Family::kUnspec) FUZZ_CHECK(r.family == h.family);
    if (h.version == 2) FUZZ_CHECK(r.transport == h.transport);
  }
  const Tlvs& a = h.tlvs;
  const Tlvs& b = r.tlvs;
  FUZZ_CHECK(same_content(a.alpn, b.alpn) && same_content(a.authority, b.authority));
  FUZZ_CHECK(same_content(a.unique_id, b.unique_id) && same_content(a.netns, b.netns));
  FUZZ_CHECK(same_ssl_content(a.ssl, b.ssl));
  FUZZ_CHECK(a.crc32c.has_value() == b.crc32c.has_value());
  FUZZ_CHECK(b.noop_count == 0 && b.unknown_count == 0);

  if (h.version == 1) {
    std::vector<uint8_t> line(kV1MaxLen);
    const auto m = write_v1(spec, line);
    FUZZ_CHECK(m.has_value());
    ProxyHeaderParser v1;
    FUZZ_CHECK(v1.parse({line.data(), *m}) == ParseStatus::kDone);
    FUZZ_CHECK(v1.header().family == h.family && v1.header().source == h.source &&
               v1.header().destination == h.destination && v1.header().header_len == *m);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  // The default cap, and a small one taken from the input, so the cap's edge
  // is explored too.
  const ProxyLimits limits[] = {ProxyLimits{},
                                ProxyLimits{16 + (size == 0 ? 0 : size_t{data[size - 1]} * 2)}};
  for (const ProxyLimits& lim : limits) {
    ProxyHeaderParser whole(lim);
    (void)whole.parse(input);
    check_invariants(whole, input, lim);

    for (const bool byte_at_a_time : {false, true}) {
      if (byte_at_a_time && size > 512)
        continue;  // quadratic copying; the split run covers long inputs
      ProxyHeaderParser inc(lim);
      std::unique_ptr<uint8_t[]> keep;
      parse_incrementally(inc, input, keep, byte_at_a_time);
      check_same_outcome(whole, data, inc, keep.get());
    }
    if (whole.status() == ParseStatus::kDone) check_round_trip(whole.header());
  }
  return 0;
}
