// libFuzzer target for the ClientHello parser. Beyond "no crash", it checks
// that the answer does not depend on how the bytes arrive:
//  - fed one byte at a time, and cut at pseudo-random points, the stream
//    parses to exactly what the whole buffer parses to;
//  - a hello that parsed is re-framed into records of another size and must
//    give the same fields (the reassembly path against the in-place path).
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

#include "dataplane/tls/client_hello_json.h"
#include "dataplane/tls/client_hello_parser.h"
#include "support/hello_builder.h"

namespace {

using lode::ParseStatus;
using lode::tls::ClientHelloParser;
using lode::tls::hello_to_json;

[[noreturn]] void mismatch(const char* what, const std::string& a, const std::string& b) {
  std::fprintf(stderr, "MISMATCH (%s)\n whole: %s\n other: %s\n", what, a.c_str(), b.c_str());
  std::abort();
}

std::string strip_framing(std::string json) {
  for (const char* key : {"\"records\":", "\"end_offset\":", "\"record_version\":"}) {
    const size_t at = json.find(key);
    if (at == std::string::npos) continue;
    json.erase(at, json.find_first_of(",}", at) - at);
  }
  return json;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 256 * 1024) return 0;
  const std::span<const uint8_t> all(data, size);

  ClientHelloParser whole;
  const ParseStatus st = whole.parse(all);
  const std::string expect = hello_to_json(whole);
  // The end offset never runs past the input, the hello never past the cap.
  if (st == ParseStatus::kDone && (whole.info().end_offset > size || whole.info().hello_len > 64 * 1024)) {
    mismatch("end offset", expect, "");
  }

  // Fed one byte at a time: the first non-NeedMore answer must be the same
  // as the whole buffer's (a decision can only come earlier, never differ).
  {
    ClientHelloParser p;
    ParseStatus s = ParseStatus::kNeedMore;
    for (size_t n = 1; n <= size && s == ParseStatus::kNeedMore; ++n) s = p.parse(all.first(n));
    if (s != st || hello_to_json(p) != expect) mismatch("byte by byte", expect, hello_to_json(p));
  }

  // Cut at points taken from a hash of the input.
  {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
    ClientHelloParser p;
    ParseStatus s = ParseStatus::kNeedMore;
    size_t n = 0;
    while (s == ParseStatus::kNeedMore && n < size) {
      h = h * 6364136223846793005ull + 1442695040888963407ull;
      n = std::min(size, n + 1 + static_cast<size_t>((h >> 33) % 600));
      s = p.parse(all.first(n));
    }
    if (s != st || hello_to_json(p) != expect) mismatch("random cuts", expect, hello_to_json(p));
  }

  // Re-frame a parsed hello into records of 1..N bytes.
  if (st == ParseStatus::kDone && whole.info().records == 1) {
    const uint8_t* msg = data + 5;
    const std::vector<uint8_t> m(msg, msg + whole.info().hello_len);
    for (size_t frag : {size_t{1}, size_t{7}, size_t{200}, m.size() - 1}) {
      if (frag == 0) continue;
      const auto recs = lode::test::HelloBuilder::to_records(m, frag);
      ClientHelloParser p;
      if (p.parse(recs) != ParseStatus::kDone || strip_framing(hello_to_json(p)) != strip_framing(expect)) {
        mismatch("re-framed", expect, hello_to_json(p));
      }
    }
  }
  return 0;
}
