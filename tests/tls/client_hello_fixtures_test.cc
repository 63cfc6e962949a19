// Real ClientHellos captured from real clients (tests/fixtures/client_hello,
// see its README for the command that captured each).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dataplane/tls/client_hello_json.h"
#include "dataplane/tls/client_hello_parser.h"
#include "support/fixtures.h"
#include "support/hello_builder.h"

namespace lode::tls {
namespace {

struct Expect {
  const char* file;
  const char* sni;  // nullptr: none
  std::vector<std::string> alpn;
  bool tls13;
  bool pq;
  bool status_request;
  bool psk;
  bool ech;
};

const std::vector<Expect>& expectations() {
  static const std::vector<Expect> e = {
      {"openssl_tls13", "a.test", {"h2", "http/1.1"}, true, false, false, false, false},
      {"openssl_tls12", "b.test", {}, false, false, false, false, false},
      {"openssl_nosni", nullptr, {}, true, false, false, false, false},
      {"openssl_status", "a.test", {}, true, false, true, false, false},
      {"openssl_resume", "a.test", {}, true, false, false, true, false},
      {"curl", "a.test", {"h2", "http/1.1"}, true, false, false, false, false},
      {"python_ssl", "c.test", {}, true, false, false, false, false},
      {"gnutls", "d.test", {}, true, false, true, false, false},
      {"nodejs", "e.test", {}, true, false, false, false, false},
      {"java", "f.test", {}, true, false, true, false, false},
      {"chromium_pq", "pq.test", {"h2", "http/1.1"}, true, true, true, false, true},
  };
  return e;
}

class RealHello : public ::testing::TestWithParam<Expect> {
 protected:
  std::vector<uint8_t> bytes() const { return test::read_fixture(std::string("client_hello/") + GetParam().file + ".bin"); }
};

TEST_P(RealHello, ParsesToWhatTheClientSent) {
  const Expect& x = GetParam();
  const auto b = bytes();
  ClientHelloParser p;
  ASSERT_EQ(p.parse(b), ParseStatus::kDone) << hello_to_json(p);
  const ClientHelloInfo& h = p.info();
  if (x.sni == nullptr) {
    EXPECT_FALSE(h.has_sni);
  } else {
    EXPECT_EQ(h.sni(), x.sni);
  }
  ASSERT_EQ(h.alpn_count, x.alpn.size());
  for (size_t i = 0; i < x.alpn.size(); ++i) EXPECT_EQ(h.alpn[i], x.alpn[i]);
  EXPECT_EQ(h.offers_tls13, x.tls13);
  EXPECT_EQ(h.pq_key_share, x.pq);
  EXPECT_EQ(h.status_request, x.status_request);
  EXPECT_EQ(h.psk, x.psk);
  EXPECT_EQ(h.ech, x.ech);
  EXPECT_EQ(h.end_offset, b.size());
}

TEST_P(RealHello, EveryTruncationNeedsMore) {
  const auto b = bytes();
  ClientHelloParser p;
  for (size_t n = 0; n < b.size(); ++n) {
    ASSERT_EQ(p.parse({b.data(), n}), ParseStatus::kNeedMore) << n;
  }
  EXPECT_EQ(p.parse(b), ParseStatus::kDone);
}

TEST_P(RealHello, TheCapturedSegmentationParsesTheSame) {
  const auto b = bytes();
  const auto segs = test::read_segments(std::string("client_hello/") + GetParam().file + ".segments");
  ClientHelloParser whole;
  ASSERT_EQ(whole.parse(b), ParseStatus::kDone);
  ClientHelloParser p;
  size_t n = 0;
  ParseStatus st = ParseStatus::kNeedMore;
  for (size_t s : segs) {
    n += s;
    ASSERT_EQ(st, ParseStatus::kNeedMore);
    st = p.parse({b.data(), n});
  }
  EXPECT_EQ(n, b.size());
  ASSERT_EQ(st, ParseStatus::kDone);
  EXPECT_EQ(hello_to_json(p), hello_to_json(whole));
}

TEST_P(RealHello, ReframedIntoSmallRecordsParsesTheSame) {
  const auto b = bytes();
  ClientHelloParser whole;
  ASSERT_EQ(whole.parse(b), ParseStatus::kDone);
  ASSERT_EQ(whole.info().records, 1u);
  const std::vector<uint8_t> msg(b.begin() + 5, b.end());
  for (size_t frag : {1, 2, 3, 5, 64, 512, 1400}) {
    const auto recs = test::HelloBuilder::to_records(msg, frag);
    ClientHelloParser p;
    ASSERT_EQ(p.parse(recs), ParseStatus::kDone) << frag;
    EXPECT_EQ(p.info().sni(), whole.info().sni());
    EXPECT_EQ(p.info().alpn_count, whole.info().alpn_count);
    EXPECT_EQ(p.info().extension_count, whole.info().extension_count);
    EXPECT_EQ(p.info().pq_key_share, whole.info().pq_key_share);
    EXPECT_EQ(p.info().records, (msg.size() + frag - 1) / frag);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RealHello, ::testing::ValuesIn(expectations()),
                         [](const auto& info) { return std::string(info.param.file); });

// Exhaustive for the real TLS 1.3 hello: every split of its message into 2 or
// 3 records, and every TCP segmentation with 1 or 2 cuts.
TEST(RealHelloExhaustive, EveryRecordSplitWithOneOrTwoCuts) {
  const auto b = test::read_fixture("client_hello/openssl_tls13.bin");
  const std::vector<uint8_t> msg(b.begin() + 5, b.end());
  ClientHelloParser whole;
  ASSERT_EQ(whole.parse(b), ParseStatus::kDone);
  auto record = [](std::vector<uint8_t>& out, const uint8_t* p, size_t n) {
    const auto r = test::HelloBuilder::to_records(std::vector<uint8_t>(p, p + n), 1 << 14);
    out.insert(out.end(), r.begin(), r.end());
  };
  std::vector<uint8_t> recs;
  for (size_t i = 1; i < msg.size(); ++i) {
    for (size_t j = i; j < msg.size(); ++j) {
      recs.clear();
      record(recs, msg.data(), i);
      if (j > i) record(recs, msg.data() + i, j - i);
      record(recs, msg.data() + j, msg.size() - j);
      ClientHelloParser p;
      ASSERT_EQ(p.parse(recs), ParseStatus::kDone) << i << "," << j;
      ASSERT_EQ(p.info().sni(), "a.test");
      ASSERT_EQ(p.info().alpn_count, 2);
      ASSERT_EQ(p.info().records, j > i ? 3u : 2u);
      ASSERT_EQ(p.info().extension_count, whole.info().extension_count);
    }
  }
}

TEST(RealHelloExhaustive, EverySegmentationWithOneOrTwoCuts) {
  const auto b = test::read_fixture("client_hello/chromium_pq.bin");
  ClientHelloParser whole;
  ASSERT_EQ(whole.parse(b), ParseStatus::kDone);
  const std::string expect = hello_to_json(whole);
  // 1979 bytes: ~2M two-cut segmentations; cover every first cut and a
  // stride of second cuts, plus every single cut.
  for (size_t i = 1; i < b.size(); ++i) {
    ClientHelloParser p;
    ASSERT_EQ(p.parse({b.data(), i}), ParseStatus::kNeedMore);
    ASSERT_EQ(p.parse(b), ParseStatus::kDone);
    ASSERT_EQ(hello_to_json(p), expect);
    for (size_t j = i + 1; j < b.size(); j += 97) {
      ClientHelloParser q;
      ASSERT_EQ(q.parse({b.data(), i}), ParseStatus::kNeedMore);
      ASSERT_EQ(q.parse({b.data(), j}), ParseStatus::kNeedMore);
      ASSERT_EQ(q.parse(b), ParseStatus::kDone);
    }
  }
}

}  // namespace
}  // namespace lode::tls
