#include "dataplane/tls/client_hello_parser.h"

#include <gtest/gtest.h>

#include <string>

#include "dataplane/tls/client_hello_json.h"
#include "support/hello_builder.h"

namespace lode::tls {
namespace {

using test::Bytes;
using test::HelloBuilder;

Bytes as_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

struct Parsed {
  ParseStatus status;
  std::string json;
};

Parsed parse_all(const Bytes& b, ParserLimits limits = {}) {
  ClientHelloParser p(limits);
  const ParseStatus st = p.parse(b);
  return {st, hello_to_json(p)};
}

// Feeds `b` as TCP segments ending at each of `cuts` and then at the end.
Parsed parse_segments(const Bytes& b, std::initializer_list<size_t> cuts) {
  ClientHelloParser p;
  ParseStatus st = ParseStatus::kNeedMore;
  for (size_t c : cuts) {
    st = p.parse({b.data(), c});
    if (st != ParseStatus::kNeedMore) break;
  }
  if (st == ParseStatus::kNeedMore) st = p.parse(b);
  return {st, hello_to_json(p)};
}

HelloError error_of(const Bytes& b, ParserLimits limits = {}) {
  ClientHelloParser p(limits);
  EXPECT_EQ(p.parse(b), ParseStatus::kError) << hello_to_json(p);
  return p.error().code;
}

TlsAlert alert_of(const Bytes& b) {
  ClientHelloParser p;
  EXPECT_EQ(p.parse(b), ParseStatus::kError);
  return p.error().alert;
}

// ---------------------------------------------------------------- happy paths

TEST(ClientHelloParser, TypicalHelloFields) {
  const Bytes b = HelloBuilder::typical("Www.Example.COM.").records();
  ClientHelloParser p;
  ASSERT_EQ(p.parse(b), ParseStatus::kDone) << hello_to_json(p);
  const ClientHelloInfo& h = p.info();
  EXPECT_TRUE(h.has_sni);
  EXPECT_EQ(h.sni(), "www.example.com");
  ASSERT_EQ(h.alpn_count, 2);
  EXPECT_EQ(h.alpn[0], "h2");
  EXPECT_EQ(h.alpn[1], "http/1.1");
  EXPECT_TRUE(h.offers_tls13);
  EXPECT_EQ(h.max_version, 0x0304);
  EXPECT_EQ(h.legacy_version, 0x0303);
  EXPECT_EQ(h.record_version, 0x0301);
  EXPECT_TRUE(h.status_request);
  EXPECT_FALSE(h.session_ticket);  // empty session_ticket extension: no ticket
  EXPECT_FALSE(h.psk);
  EXPECT_FALSE(h.ech);
  EXPECT_FALSE(h.pq_key_share);
  ASSERT_EQ(h.key_share_count, 1);  // the GREASE share is skipped
  EXPECT_EQ(h.key_share_groups[0], 0x001d);
  EXPECT_EQ(h.cipher_suites.size(), 10u);
  EXPECT_EQ(h.records, 1u);
  EXPECT_EQ(h.end_offset, b.size());
  EXPECT_EQ(h.hello_len + 5, b.size());
  EXPECT_EQ(h.extension_count, 15);
}

TEST(ClientHelloParser, FastPathViewsPointIntoTheStream) {
  const Bytes b = HelloBuilder::typical("a.test").records();
  ClientHelloParser p;
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_GE(p.info().cipher_suites.data(), b.data());
  EXPECT_LT(p.info().cipher_suites.data(), b.data() + b.size());
  EXPECT_GE(reinterpret_cast<const uint8_t*>(p.info().alpn[0].data()), b.data());
}

TEST(ClientHelloParser, BytesAfterTheHelloAreLeftForTheRelay) {
  Bytes b = HelloBuilder::typical("a.test").records();
  const size_t hello_end = b.size();
  const Bytes early = as_bytes("\x17\x03\x03\x00\x05hello");
  b.insert(b.end(), early.begin(), early.end());
  ClientHelloParser p;
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_EQ(p.info().end_offset, hello_end);
}

TEST(ClientHelloParser, NoExtensionsAtAllIsLegalTls12) {
  HelloBuilder hb;
  hb.extensions_block = false;
  ClientHelloParser p;
  ASSERT_EQ(p.parse(hb.records()), ParseStatus::kDone);
  EXPECT_FALSE(p.info().has_sni);
  EXPECT_FALSE(p.info().extensions_present);
  EXPECT_EQ(p.info().max_version, 0x0303);
  EXPECT_FALSE(p.info().offers_tls13);
}

TEST(ClientHelloParser, EmptyExtensionsBlockMeansNoSni) {
  HelloBuilder hb;  // extensions block present, zero length
  ClientHelloParser p;
  ASSERT_EQ(p.parse(hb.records()), ParseStatus::kDone);
  EXPECT_TRUE(p.info().extensions_present);
  EXPECT_EQ(p.info().extension_count, 0);
  EXPECT_FALSE(p.info().has_sni);
}

TEST(ClientHelloParser, UpperCaseAndTrailingDotAreNormalized) {
  ClientHelloParser p;
  ASSERT_EQ(p.parse(HelloBuilder().sni("A.TEST.").records()), ParseStatus::kDone);
  EXPECT_EQ(p.info().sni(), "a.test");
}

TEST(ClientHelloParser, IpLiteralIsTreatedAsNoSni) {
  for (std::string_view ip : {"127.0.0.1", "::1", "[2001:db8::1]"}) {
    ClientHelloParser p;
    ASSERT_EQ(p.parse(HelloBuilder().sni(ip).records()), ParseStatus::kDone) << ip;
    EXPECT_FALSE(p.info().has_sni) << ip;
    EXPECT_TRUE(p.info().sni_ip_literal) << ip;
  }
}

TEST(ClientHelloParser, MaximumLengthNameIsAccepted) {
  std::string name;
  while (name.size() < 253) name += (name.empty() ? "" : ".") + std::string(std::min<size_t>(63, 252 - name.size()), 'a');
  ASSERT_EQ(name.size(), 253u);
  ClientHelloParser p;
  ASSERT_EQ(p.parse(HelloBuilder().sni(name).records()), ParseStatus::kDone) << hello_to_json(p);
  EXPECT_EQ(p.info().sni(), name);
}

TEST(ClientHelloParser, PostQuantumKeyShareAndEchAreReported) {
  HelloBuilder hb = HelloBuilder::typical("pq.test");
  hb.extensions.clear();
  hb.sni("pq.test")
      .groups({0x4a4a, 0x11ec, 0x001d})
      .key_shares({{0x4a4a, 1}, {0x11ec, 1216}, {0x001d, 32}})
      .versions({0x0304})
      .ext(0xfe0d, Bytes(200, 7));
  const Bytes b = hb.records();
  ASSERT_GT(b.size(), 1500u);  // more than one Ethernet segment
  ClientHelloParser p;
  ASSERT_EQ(parse_segments(b, {1448}).status, ParseStatus::kDone);
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_TRUE(p.info().pq_key_share);
  EXPECT_TRUE(p.info().pq_group_offered);
  EXPECT_TRUE(p.info().ech);
  EXPECT_EQ(p.info().key_share_count, 2);
}

TEST(ClientHelloParser, ResumptionSignalsAreReported) {
  HelloBuilder hb;
  hb.sni("a.test").ext(35, Bytes(100, 1)).ext(42, {}).ext(41, Bytes(40, 2));
  ClientHelloParser p;
  ASSERT_EQ(p.parse(hb.records()), ParseStatus::kDone) << hello_to_json(p);
  EXPECT_TRUE(p.info().session_ticket);
  EXPECT_TRUE(p.info().psk);
  EXPECT_TRUE(p.info().early_data);
}

TEST(ClientHelloParser, Sslv3RecordVersionIsAccepted) {
  HelloBuilder hb;
  hb.record_version = 0x0300;
  ClientHelloParser p;
  EXPECT_EQ(p.parse(hb.sni("a.test").records()), ParseStatus::kDone);
}

TEST(ClientHelloParser, GreaseVersionsDoNotWinMaxVersion) {
  ClientHelloParser p;
  ASSERT_EQ(p.parse(HelloBuilder().versions({0xfafa, 0x0303}).records()), ParseStatus::kDone);
  EXPECT_EQ(p.info().max_version, 0x0303);
  EXPECT_FALSE(p.info().offers_tls13);
}

TEST(ClientHelloParser, AnswerIsStickyAndResetReuses) {
  const Bytes b = HelloBuilder::typical("a.test").records();
  ClientHelloParser p;
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_EQ(p.parse(as_bytes("garbage")), ParseStatus::kDone);
  p.reset();
  EXPECT_EQ(p.parse(as_bytes("garbage")), ParseStatus::kError);
  EXPECT_EQ(p.parse(b), ParseStatus::kError);
  p.reset();
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_EQ(p.info().sni(), "a.test");
}

// ------------------------------------------------- truncation and fragmentation

TEST(ClientHelloParser, EveryTruncationNeedsMore) {
  const Bytes b = HelloBuilder::typical("a.test").records();
  for (size_t n = 0; n < b.size(); ++n) {
    ClientHelloParser p;
    ASSERT_EQ(p.parse({b.data(), n}), ParseStatus::kNeedMore) << "prefix " << n;
  }
}

TEST(ClientHelloParser, OneByteSegmentsGiveTheSameAnswer) {
  const Bytes b = HelloBuilder::typical("a.test").records();
  const std::string whole = parse_all(b).json;
  ClientHelloParser p;
  for (size_t n = 1; n < b.size(); ++n) ASSERT_EQ(p.parse({b.data(), n}), ParseStatus::kNeedMore);
  ASSERT_EQ(p.parse(b), ParseStatus::kDone);
  EXPECT_EQ(hello_to_json(p), whole);
}

TEST(ClientHelloParser, EverySegmentationWithOneOrTwoCuts) {
  const Bytes b = HelloBuilder::typical("a.test").records();
  const std::string whole = parse_all(b).json;
  for (size_t i = 1; i < b.size(); ++i) {
    for (size_t j = i; j < b.size(); ++j) {
      const Parsed r = parse_segments(b, {i, j});
      ASSERT_EQ(r.status, ParseStatus::kDone) << i << "," << j;
      ASSERT_EQ(r.json, whole) << i << "," << j;
    }
  }
}

// Splits the handshake message into records at the given message offsets.
Bytes split_records(const Bytes& msg, std::initializer_list<size_t> cuts) {
  Bytes out;
  size_t prev = 0;
  auto emit = [&](size_t end) {
    const Bytes part(msg.begin() + static_cast<std::ptrdiff_t>(prev), msg.begin() + static_cast<std::ptrdiff_t>(end));
    const Bytes rec = HelloBuilder::to_records(part, 1 << 14);
    out.insert(out.end(), rec.begin(), rec.end());
    prev = end;
  };
  for (size_t c : cuts) emit(c);
  emit(msg.size());
  return out;
}

// The hello's fields must not depend on how it was cut into records, except
// for the record count, the end offset and the record version line.
std::string strip_framing(std::string json) {
  for (const char* key : {"\"records\":", "\"end_offset\":"}) {
    const size_t at = json.find(key);
    if (at == std::string::npos) continue;
    const size_t end = json.find_first_of(",}", at);
    json.erase(at, end - at);
  }
  return json;
}

TEST(ClientHelloParser, EveryRecordFragmentationWithOneOrTwoCuts) {
  const Bytes msg = HelloBuilder::typical("a.test").message();
  const std::string whole = strip_framing(parse_all(HelloBuilder::to_records(msg, 1 << 14)).json);
  for (size_t i = 1; i < msg.size(); ++i) {
    const Parsed one = parse_all(split_records(msg, {i}));
    ASSERT_EQ(one.status, ParseStatus::kDone) << i << one.json;
    ASSERT_EQ(strip_framing(one.json), whole) << i;
    for (size_t j = i + 1; j < msg.size(); ++j) {
      const Parsed two = parse_all(split_records(msg, {i, j}));
      ASSERT_EQ(two.status, ParseStatus::kDone) << i << "," << j;
      ASSERT_EQ(strip_framing(two.json), whole) << i << "," << j;
    }
  }
}

TEST(ClientHelloParser, EveryRecordFragmentationWithThreeCutsOfACompactHello) {
  HelloBuilder hb;
  hb.session_id.clear();
  hb.cipher_suites = {0x13, 0x01};
  hb.sni("c.test").alpn({"h2"});
  const Bytes msg = hb.message();
  const std::string whole = strip_framing(parse_all(HelloBuilder::to_records(msg, 1 << 14)).json);
  size_t checked = 0;
  for (size_t i = 1; i < msg.size(); ++i) {
    for (size_t j = i + 1; j < msg.size(); ++j) {
      for (size_t k = j + 1; k < msg.size(); ++k) {
        const Parsed r = parse_all(split_records(msg, {i, j, k}));
        ASSERT_EQ(r.status, ParseStatus::kDone) << i << "," << j << "," << k;
        ASSERT_EQ(strip_framing(r.json), whole);
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10000u);
}

TEST(ClientHelloParser, RecordsAndSegmentsTogether) {
  const Bytes msg = HelloBuilder::typical("a.test").message();
  const std::string whole = strip_framing(parse_all(HelloBuilder::to_records(msg, 1 << 14)).json);
  for (size_t i = 1; i < msg.size(); i += 7) {
    const Bytes recs = split_records(msg, {i});
    for (size_t s = 1; s < recs.size(); ++s) {
      const Parsed r = parse_segments(recs, {s});
      ASSERT_EQ(r.status, ParseStatus::kDone);
      ASSERT_EQ(strip_framing(r.json), whole);
    }
  }
}

TEST(ClientHelloParser, OneByteRecordsReassemble) {
  const Bytes msg = HelloBuilder::typical("a.test").message();
  const Bytes recs = HelloBuilder::to_records(msg, 1);
  ClientHelloParser p;
  ASSERT_EQ(p.parse(recs), ParseStatus::kDone);
  EXPECT_EQ(p.info().records, msg.size());
  EXPECT_EQ(p.info().sni(), "a.test");
  EXPECT_EQ(p.info().end_offset, recs.size());
}

// ------------------------------------------------------------ not TLS at all

TEST(ClientHelloParser, Sslv2HelloIsClassified) {
  const Bytes v2 = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  EXPECT_EQ(error_of(v2), HelloError::kSslv2Hello);
  EXPECT_EQ(error_of({0x80}), HelloError::kSslv2Hello);
}

TEST(ClientHelloParser, PlainHttpIsClassified) {
  for (std::string_view req : {"GET / HTTP/1.1\r\n", "POST /x HTTP/1.1\r\n", "HEAD / HTTP/1.0\r\n",
                               "PUT /a", "DELETE /a", "OPTIONS *", "CONNECT a:443", "PATCH /",
                               "TRACE /", "PRI * HTTP/2.0\r\n"}) {
    EXPECT_EQ(error_of(as_bytes(req)), HelloError::kHttpRequest) << req;
  }
}

TEST(ClientHelloParser, PrefixOfAMethodNeedsMore) {
  for (std::string_view pre : {"G", "GE", "GET", "P", "PO", "PR", "PRI * HTTP/2.", "PROXY"}) {
    ClientHelloParser p;
    EXPECT_EQ(p.parse(as_bytes(pre)), ParseStatus::kNeedMore) << pre;
  }
}

TEST(ClientHelloParser, ProxyProtocolHeadersAreClassified) {
  EXPECT_EQ(error_of(as_bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")), HelloError::kProxyHeader);
  const Bytes v2 = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11};
  EXPECT_EQ(error_of(v2), HelloError::kProxyHeader);
}

TEST(ClientHelloParser, OtherProtocolsAreNotTls) {
  EXPECT_EQ(error_of(as_bytes("SSH-2.0-OpenSSH_9.2\r\n")), HelloError::kNotTls);
  EXPECT_EQ(error_of(as_bytes("GETX")), HelloError::kNotTls);
  EXPECT_EQ(error_of({0x00}), HelloError::kNotTls);
  EXPECT_TRUE(is_not_tls(HelloError::kNotTls));
}

TEST(ClientHelloParser, OtherTlsContentTypesFirstAreUnexpected) {
  EXPECT_EQ(error_of({21, 3, 3, 0, 2, 2, 40}), HelloError::kUnexpectedContentType);
  EXPECT_EQ(error_of({23, 3, 3, 0, 1, 0}), HelloError::kUnexpectedContentType);
  EXPECT_EQ(alert_of({20, 3, 3, 0, 1, 1}), TlsAlert::kUnexpectedMessage);
}

// --------------------------------------------------------------- record layer

TEST(ClientHelloParser, BadRecordVersionsAreRefusedEarly) {
  EXPECT_EQ(error_of({22, 2}), HelloError::kBadRecordVersion);
  EXPECT_EQ(error_of({22, 3, 5}), HelloError::kBadRecordVersion);
  EXPECT_EQ(alert_of({22, 4, 1}), TlsAlert::kProtocolVersion);
}

TEST(ClientHelloParser, OversizedRecordIsRecordOverflow) {
  EXPECT_EQ(error_of({22, 3, 1, 0x40, 0x01}), HelloError::kRecordTooLong);
  EXPECT_EQ(alert_of({22, 3, 1, 0xff, 0xff}), TlsAlert::kRecordOverflow);
}

TEST(ClientHelloParser, EmptyRecordIsRefused) { EXPECT_EQ(error_of({22, 3, 1, 0, 0}), HelloError::kEmptyRecord); }

TEST(ClientHelloParser, OtherHandshakeMessageIsRefused) {
  Bytes b = HelloBuilder().records();
  b[5] = 2;  // ServerHello
  EXPECT_EQ(error_of(b), HelloError::kNotClientHello);
  EXPECT_EQ(error_of({22, 3, 1, 0, 4, 2}), HelloError::kNotClientHello) << "decided before the record ends";
}

TEST(ClientHelloParser, HelloAboveTheCapIsRefusedBeforeItArrives) {
  const Bytes b = HelloBuilder().sni("a.test").padding(2000).records();
  ParserLimits small{1024};
  EXPECT_EQ(error_of({b.begin(), b.begin() + 9}, small), HelloError::kHelloTooLarge);
  EXPECT_EQ(error_of(b, small), HelloError::kHelloTooLarge);
  // Spread over records, the cap is checked once the handshake header is in.
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder().padding(2000).message(), 2), small),
            HelloError::kHelloTooLarge);
  // The default cap is 64 KiB: a 70 KB hello in 5 records is refused.
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder().padding(65000).ext(22, Bytes(5000, 0)).message(), 16384)),
            HelloError::kHelloTooLarge);
}

TEST(ClientHelloParser, NonHandshakeRecordInTheMiddleIsRefused) {
  const Bytes msg = HelloBuilder::typical("a.test").message();
  Bytes b = split_records(msg, {100});
  b[5 + 100] = 23;  // second record's type: application data
  EXPECT_EQ(error_of(b), HelloError::kUnexpectedContentType);
}

TEST(ClientHelloParser, SecondRecordWithBadVersionIsRefused) {
  const Bytes msg = HelloBuilder::typical("a.test").message();
  Bytes b = split_records(msg, {100});
  b[5 + 100 + 1] = 2;
  EXPECT_EQ(error_of(b), HelloError::kBadRecordVersion);
}

TEST(ClientHelloParser, GarbageAfterTheHelloInItsRecordIsRefused) {
  Bytes msg = HelloBuilder::typical("a.test").message();
  msg.push_back(0x00);
  EXPECT_EQ(error_of(HelloBuilder::to_records(msg, 1 << 14)), HelloError::kTrailingHandshakeData);
  EXPECT_EQ(error_of(split_records(msg, {50})), HelloError::kTrailingHandshakeData);
}

// ----------------------------------------------------------- ClientHello body

TEST(ClientHelloParser, LengthsRunningPastTheMessageAreTruncation) {
  const Bytes body = HelloBuilder().body();
  for (size_t n : {0, 1, 2, 20, 34, 35, 50, 68, 70, 73}) {
    const Bytes cut(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(std::min(n, body.size())));
    ClientHelloParser p;
    ASSERT_EQ(p.parse(HelloBuilder::to_records(HelloBuilder::wrap_message(cut), 1 << 14)), ParseStatus::kError)
        << "body cut at " << n;
    EXPECT_TRUE(p.error().in_message);
    EXPECT_EQ(p.error().alert, TlsAlert::kDecodeError);
  }
}

TEST(ClientHelloParser, EveryInnerTruncationIsAnError) {
  // The message header claims exactly the bytes present, so every cut inside
  // the body is a structural error, never a crash or a success.
  const Bytes body = HelloBuilder::typical("a.test").body();
  for (size_t n = 0; n < body.size(); ++n) {
    const Bytes cut(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
    ClientHelloParser p;
    const ParseStatus st = p.parse(HelloBuilder::to_records(HelloBuilder::wrap_message(cut), 1 << 14));
    // A cut exactly after compression_methods is a legal hello with no extensions.
    if (st == ParseStatus::kDone) {
      EXPECT_FALSE(p.info().extensions_present) << n;
      continue;
    }
    ASSERT_EQ(st, ParseStatus::kError) << n;
  }
}

TEST(ClientHelloParser, BadLegacyVersion) {
  HelloBuilder hb;
  hb.legacy_version = 0x0200;
  EXPECT_EQ(error_of(hb.records()), HelloError::kBadLegacyVersion);
}

TEST(ClientHelloParser, SessionIdLongerThan32) {
  HelloBuilder hb;
  hb.session_id = Bytes(33, 1);
  EXPECT_EQ(error_of(hb.records()), HelloError::kBadSessionId);
  EXPECT_EQ(alert_of(hb.records()), TlsAlert::kIllegalParameter);
}

TEST(ClientHelloParser, CipherSuitesEmptyOrOdd) {
  HelloBuilder hb;
  hb.cipher_suites = {};
  EXPECT_EQ(error_of(hb.records()), HelloError::kBadCipherSuites);
  hb.cipher_suites = {0x13, 0x01, 0x13};
  EXPECT_EQ(error_of(hb.records()), HelloError::kBadCipherSuites);
}

TEST(ClientHelloParser, NoCompressionMethods) {
  HelloBuilder hb;
  hb.compression = {};
  EXPECT_EQ(error_of(hb.records()), HelloError::kBadCompression);
}

TEST(ClientHelloParser, OneStrayByteWhereExtensionsWouldStart) {
  HelloBuilder hb;
  hb.extensions_block = false;
  Bytes body = hb.body();
  body.push_back(0);
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder::wrap_message(body), 1 << 14)), HelloError::kBadExtensions);
}

TEST(ClientHelloParser, ExtensionsBlockShorterThanTheRestIsTrailingBytes) {
  Bytes body = HelloBuilder().sni("a.test").body();
  body.push_back(0xAB);  // one byte after the extensions block
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder::wrap_message(body), 1 << 14)), HelloError::kTrailingBytes);
}

TEST(ClientHelloParser, ExtensionsBlockLongerThanTheRest) {
  Bytes body = HelloBuilder().sni("a.test").body();
  const size_t at = body.size() - HelloBuilder().sni("a.test").extensions_body().size() - 2;
  body[at + 1] = static_cast<uint8_t>(body[at + 1] + 1);
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder::wrap_message(body), 1 << 14)), HelloError::kBadExtensions);
}

TEST(ClientHelloParser, ExtensionLengthOverrunningTheBlock) {
  Bytes body = HelloBuilder().ext(23, {1, 2, 3}).body();
  body[body.size() - 4] = 0x00;
  body[body.size() - 3] = 0x09;  // claims 9 bytes, 3 remain
  EXPECT_EQ(error_of(HelloBuilder::to_records(HelloBuilder::wrap_message(body), 1 << 14)), HelloError::kBadExtensions);
}

TEST(ClientHelloParser, DuplicateServerNameExtension) {
  EXPECT_EQ(error_of(HelloBuilder().sni("a.test").sni("b.test").records()), HelloError::kDuplicateExtension);
}

TEST(ClientHelloParser, DuplicateOtherExtensions) {
  EXPECT_EQ(error_of(HelloBuilder().alpn({"h2"}).alpn({"h2"}).records()), HelloError::kDuplicateExtension);
  EXPECT_EQ(error_of(HelloBuilder().ext(0xfe0d, {1}).ext(0xfe0d, {1}).records()), HelloError::kDuplicateExtension);
  EXPECT_EQ(error_of(HelloBuilder().ext(0x0a0a, {}).ext(0x0a0a, {}).records()), HelloError::kDuplicateExtension);
  EXPECT_EQ(alert_of(HelloBuilder().ext(0xff01, {0}).ext(0xff01, {0}).records()), TlsAlert::kDecodeError);
}

TEST(ClientHelloParser, DifferentGreaseExtensionsAreFine) {
  ClientHelloParser p;
  EXPECT_EQ(p.parse(HelloBuilder().ext(0x0a0a, {}).sni("a.test").ext(0x1a1a, {0}).records()), ParseStatus::kDone);
}

TEST(ClientHelloParser, TooManyExtensions) {
  HelloBuilder hb;
  for (uint16_t t = 0; t < 129; ++t) hb.ext(static_cast<uint16_t>(1000 + t), {});
  EXPECT_EQ(error_of(hb.records()), HelloError::kTooManyExtensions);
}

TEST(ClientHelloParser, TwoHostNamesAreAmbiguous) {
  EXPECT_EQ(error_of(HelloBuilder().sni({"a.test", "b.test"}).records()), HelloError::kMultipleServerNames);
  EXPECT_EQ(error_of(HelloBuilder().sni({"a.test", "a.test"}).records()), HelloError::kMultipleServerNames);
  EXPECT_EQ(alert_of(HelloBuilder().sni({"a.test", "b.test"}).records()), TlsAlert::kDecodeError);
}

TEST(ClientHelloParser, HostNameFollowedByAnotherNameType) {
  Bytes d = {0x00, 0x0e, 0x00, 0x00, 0x06, 'a', '.', 't', 'e', 's', 't', 0x01, 0x00, 0x01, 'x'};
  d[1] = static_cast<uint8_t>(d.size() - 2);
  EXPECT_EQ(error_of(HelloBuilder().ext(0, d).records()), HelloError::kMultipleServerNames);
}

TEST(ClientHelloParser, OtherNameTypeOnly) {
  EXPECT_EQ(error_of(HelloBuilder().ext(0, {0x00, 0x04, 0x01, 0x00, 0x01, 'x'}).records()),
            HelloError::kBadServerName);
}

TEST(ClientHelloParser, MalformedServerNameExtensions) {
  for (const Bytes& d : {Bytes{}, Bytes{0x00}, Bytes{0x00, 0x00}, Bytes{0x00, 0x05, 0x00, 0x00, 0x06, 'a'},
                         Bytes{0x00, 0x03, 0x00, 0x00, 0x00},  // zero-length name
                         Bytes{0x00, 0x04, 0x00, 0x00, 0x01, 'a', 0x00}}) {  // trailing byte after the list
    EXPECT_EQ(error_of(HelloBuilder().ext(0, d).records()), HelloError::kBadServerName) << d.size();
  }
}

TEST(ClientHelloParser, BadHostNames) {
  struct Case {
    std::string name;
    HostnameError why;
  };
  const Case cases[] = {
      {std::string("a\0.test", 7), HostnameError::kNul},
      {std::string("a.test\0", 7), HostnameError::kNul},
      {"caf\xc3\xa9.test", HostnameError::kNonAscii},
      {"a b.test", HostnameError::kBadChar},
      {"a/b.test", HostnameError::kBadChar},
      {"a..test", HostnameError::kEmptyLabel},
      {".a.test", HostnameError::kEmptyLabel},
      {"a.test..", HostnameError::kEmptyLabel},
      {".", HostnameError::kEmpty},
      {std::string(64, 'a') + ".test", HostnameError::kLabelTooLong},
      {std::string(250, 'a').replace(60, 1, ".").replace(120, 1, ".").replace(180, 1, ".") + ".test",
       HostnameError::kTooLong},
  };
  for (const Case& c : cases) {
    ClientHelloParser p;
    ASSERT_EQ(p.parse(HelloBuilder().sni(c.name).records()), ParseStatus::kError) << c.name;
    EXPECT_EQ(p.error().code, HelloError::kBadHostName) << c.name;
    EXPECT_EQ(p.error().alert, TlsAlert::kIllegalParameter) << c.name;
    EXPECT_EQ(p.error().hostname_error, c.why) << c.name;
  }
}

TEST(ClientHelloParser, MalformedAlpn) {
  EXPECT_EQ(error_of(HelloBuilder().ext(16, {}).records()), HelloError::kBadAlpn);
  EXPECT_EQ(error_of(HelloBuilder().ext(16, {0x00, 0x00}).records()), HelloError::kBadAlpn);
  EXPECT_EQ(error_of(HelloBuilder().ext(16, {0x00, 0x01, 0x00}).records()), HelloError::kBadAlpn);  // empty name
  EXPECT_EQ(error_of(HelloBuilder().ext(16, {0x00, 0x03, 0x05, 'h', '2'}).records()), HelloError::kBadAlpn);
  EXPECT_EQ(error_of(HelloBuilder().ext(16, {0x00, 0x03, 0x02, 'h', '2', 0x00}).records()), HelloError::kBadAlpn);
}

TEST(ClientHelloParser, AlpnCapIsSixteen) {
  HelloBuilder ok;
  ok.alpn({"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"});
  ClientHelloParser p;
  ASSERT_EQ(p.parse(ok.records()), ParseStatus::kDone);
  EXPECT_EQ(p.info().alpn_count, 16);
  HelloBuilder too_many;
  too_many.alpn({"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"});
  EXPECT_EQ(error_of(too_many.records()), HelloError::kTooManyAlpn);
}

TEST(ClientHelloParser, MalformedVersionGroupAndSignatureLists) {
  EXPECT_EQ(error_of(HelloBuilder().ext(43, {0x03, 0x03, 0x04, 0x03}).records()), HelloError::kBadSupportedVersions);
  EXPECT_EQ(error_of(HelloBuilder().ext(43, {0x00}).records()), HelloError::kBadSupportedVersions);
  EXPECT_EQ(error_of(HelloBuilder().ext(43, {0x02, 0x03, 0x04, 0x00}).records()), HelloError::kBadSupportedVersions);
  EXPECT_EQ(error_of(HelloBuilder().ext(10, {0x00, 0x03, 0x00, 0x1d, 0x00}).records()), HelloError::kBadSupportedGroups);
  EXPECT_EQ(error_of(HelloBuilder().ext(10, {0x00, 0x00}).records()), HelloError::kBadSupportedGroups);
  EXPECT_EQ(error_of(HelloBuilder().ext(13, {0x00, 0x02, 0x04}).records()), HelloError::kBadSignatureAlgorithms);
}

TEST(ClientHelloParser, MalformedKeyShares) {
  EXPECT_EQ(error_of(HelloBuilder().ext(51, {0x00, 0x04, 0x00, 0x1d, 0x00, 0x00}).records()), HelloError::kBadKeyShare);
  EXPECT_EQ(error_of(HelloBuilder().ext(51, {0x00, 0x05, 0x00, 0x1d, 0x00, 0x02, 0x01}).records()),
            HelloError::kBadKeyShare);
  EXPECT_EQ(error_of(HelloBuilder().ext(51, {0x00, 0x01, 0x00}).records()), HelloError::kBadKeyShare);
}

TEST(ClientHelloParser, PreSharedKeyMustBeLast) {
  EXPECT_EQ(error_of(HelloBuilder().ext(41, {1, 2}).sni("a.test").records()), HelloError::kPskNotLast);
  EXPECT_EQ(alert_of(HelloBuilder().ext(41, {1, 2}).sni("a.test").records()), TlsAlert::kIllegalParameter);
}

TEST(ClientHelloParser, EmptyStatusRequestIsMalformed) {
  EXPECT_EQ(error_of(HelloBuilder().ext(5, {}).records()), HelloError::kBadExtensions);
}

TEST(ClientHelloParser, ErrorOffsetsPointAtTheFault) {
  ClientHelloParser p;
  ASSERT_EQ(p.parse(HelloBuilder().sni({"a.test", "b.test"}).records()), ParseStatus::kError);
  // header 4 + version 2 + random 32 + sid 33 + suites 12 + compression 2 +
  // ext block length 2 + ext header 4 + list length 2 + first entry 9.
  EXPECT_EQ(p.error().offset, 4u + 2 + 32 + 33 + 12 + 2 + 2 + 4 + 2 + 9);
  EXPECT_TRUE(p.error().in_message);
}

}  // namespace
}  // namespace lode::tls
