// Lodestone's record layer (dataplane/worker/record_layer.h) on its own:
// records it seals open again, in order only; every kind of bad record gets
// its alert without moving the sequence number; nothing is read past the
// input. That the records are the ones real OpenSSL peers write and read is
// proven end to end in worker_own_records_test.cc (the six suites, KeyUpdate,
// tickets) and tests/worker/ktls_test.cc (the keys themselves).
#include "dataplane/worker/record_layer.h"

#include <gtest/gtest.h>
#include <linux/tls.h>
#include <openssl/evp.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace lode::worker::records {
namespace {

using Status = Opened::Status;

struct Case {
  const char* name;
  uint16_t version;
  uint16_t cipher;
};

ktls::CryptoState state_for(const Case& c, uint8_t fill) {
  ktls::CryptoState s;
  s.version = c.version;
  s.cipher = c.cipher;
  for (size_t i = 0; i < sizeof s.key; ++i) s.key[i] = static_cast<uint8_t>(fill + i);
  for (size_t i = 0; i < sizeof s.salt; ++i) s.salt[i] = static_cast<uint8_t>(0x40 + fill + i);
  for (size_t i = 0; i < sizeof s.iv; ++i) s.iv[i] = static_cast<uint8_t>(0x80 + fill + i);
  s.seq = 0;
  return s;
}

std::vector<uint8_t> seal_one(Keys& k, uint8_t type, const std::vector<uint8_t>& plain) {
  std::vector<uint8_t> out(plain.size() + overhead(k.state));
  const size_t n = seal(k, type, plain, out.data());
  out.resize(n);
  return out;
}

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

class RecordLayer : public ::testing::TestWithParam<Case> {
 protected:
  // A sealing and an opening end with the same key, as the two peers hold.
  void SetUp() override {
    tx_.set(state_for(GetParam(), 1));
    rx_.set(state_for(GetParam(), 1));
  }
  Opened open_into(std::span<const uint8_t> in, std::vector<uint8_t>& plain) {
    plain.assign(kMaxCiphertext12, 0);
    Opened o = open(rx_, in, plain.data(), plain.size());
    plain.resize(o.status == Status::kRecord ? o.len : 0);
    return o;
  }
  bool tls13() const { return GetParam().version == TLS_1_3_VERSION; }
  Keys tx_, rx_;
};

TEST_P(RecordLayer, SealedRecordsOpenInOrderWithTheirTypesAndSizes) {
  for (size_t n : {0u, 1u, 100u, 16383u, 16384u}) {
    for (uint8_t type : {ktls::kApplicationData, ktls::kAlert, ktls::kHandshake}) {
      const auto plain = bytes(n, static_cast<uint8_t>(n + type));
      const auto rec = seal_one(tx_, type, plain);
      ASSERT_EQ(rec.size(), plain.size() + overhead(tx_.state)) << n;
      EXPECT_EQ(rec[0], tls13() ? ktls::kApplicationData : type) << "the outer type";
      EXPECT_EQ(rec[1], 3);
      EXPECT_EQ(rec[2], 3);
      EXPECT_EQ(size_t{rec[3]} << 8 | rec[4], rec.size() - kHeader);
      std::vector<uint8_t> got;
      const Opened o = open_into(rec, got);
      ASSERT_EQ(o.status, Status::kRecord) << n << " alert " << int(o.alert);
      EXPECT_EQ(o.consumed, rec.size());
      EXPECT_EQ(o.type, type);
      EXPECT_EQ(got, plain);
    }
  }
  EXPECT_EQ(tx_.state.seq, 15u);
  EXPECT_EQ(rx_.state.seq, 15u);
}

TEST_P(RecordLayer, SealAllSplitsAtTwoToTheFourteenAndOpensBackWhole) {
  const auto data = bytes(100000, 3);
  std::vector<uint8_t> wire;
  size_t room = 0;
  ASSERT_TRUE(seal_all(
      tx_, ktls::kApplicationData, data,
      [&](size_t n) {
        room = n;
        wire.resize(wire.size() + n);
        return wire.data() + wire.size() - n;
      },
      [&](size_t used) { wire.resize(wire.size() - room + used); }));
  // 100000 = 6 x 16384 + 1696: seven records.
  EXPECT_EQ(tx_.state.seq, 7u);
  std::vector<uint8_t> all, got;
  std::span<const uint8_t> in = wire;
  while (!in.empty()) {
    const Opened o = open_into(in, got);
    ASSERT_EQ(o.status, Status::kRecord);
    EXPECT_LE(o.len, kMaxPlaintext);
    all.insert(all.end(), got.begin(), got.end());
    in = in.subspan(o.consumed);
  }
  EXPECT_EQ(all, data);
}

TEST_P(RecordLayer, EveryPrefixOfARecordWantsMoreAndChangesNothing) {
  const auto rec = seal_one(tx_, ktls::kApplicationData, bytes(300, 9));
  for (size_t n = 0; n < rec.size(); ++n) {
    // A copy of exactly n bytes: ASan sees a read past them.
    std::vector<uint8_t> prefix(rec.begin(), rec.begin() + static_cast<std::ptrdiff_t>(n));
    std::vector<uint8_t> got;
    const Opened o = open_into(prefix, got);
    ASSERT_EQ(o.status, Status::kNeedMore) << n;
    EXPECT_EQ(o.consumed, 0u);
    if (n >= kHeader) EXPECT_EQ(o.room, rec.size() - kHeader) << "the body's length, known from the header";
    EXPECT_EQ(rx_.state.seq, 0u);
  }
  std::vector<uint8_t> got;
  EXPECT_EQ(open_into(rec, got).status, Status::kRecord);
}

TEST_P(RecordLayer, AnyFlippedBitIsABadRecordAndTheSequenceStays) {
  const auto rec = seal_one(tx_, ktls::kApplicationData, bytes(64, 5));
  for (size_t i = 0; i < rec.size(); ++i) {
    if (i == 3 || i == 4) continue;  // the length: a framing change, below
    for (uint8_t bit : {uint8_t{0x01}, uint8_t{0x80}}) {
      auto bad = rec;
      bad[i] ^= bit;
      std::vector<uint8_t> got;
      const Opened o = open_into(bad, got);
      ASSERT_EQ(o.status, Status::kError) << "byte " << i;
      if (i == 0) {
        // Another type: one the protocol does not allow now, or (TLS 1.2:
        // 23 <-> 21/22) one whose tag was not made for it.
        EXPECT_TRUE(o.alert == kAlertUnexpectedMessage || o.alert == kAlertBadRecordMac) << int(o.alert);
      } else if (i == 1 || i == 2) {
        // TLS 1.2's additional data holds the connection's version, not the
        // header's: only this check catches a changed one.
        EXPECT_EQ(o.alert, kAlertProtocolVersion);
      } else {
        EXPECT_EQ(o.alert, kAlertBadRecordMac) << "byte " << i;
      }
      EXPECT_TRUE(got.empty());
      EXPECT_EQ(rx_.state.seq, 0u);
    }
  }
  std::vector<uint8_t> got;
  EXPECT_EQ(open_into(rec, got).status, Status::kRecord) << "the good record still opens";
}

TEST_P(RecordLayer, ReplayedReorderedOrForeignRecordsDoNotOpen) {
  const auto r0 = seal_one(tx_, ktls::kApplicationData, bytes(10, 1));
  const auto r1 = seal_one(tx_, ktls::kApplicationData, bytes(10, 2));
  std::vector<uint8_t> got;
  Opened o = open_into(r1, got);  // out of order
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertBadRecordMac);
  ASSERT_EQ(open_into(r0, got).status, Status::kRecord);
  o = open_into(r0, got);  // replayed
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertBadRecordMac);
  ASSERT_EQ(open_into(r1, got).status, Status::kRecord);
  // Another key (the other direction's, say).
  Keys other;
  other.set(state_for(GetParam(), 2));
  const auto foreign = seal_one(other, ktls::kApplicationData, bytes(10, 3));
  o = open_into(foreign, got);
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(rx_.state.seq, 2u);
}

TEST_P(RecordLayer, OversizedShortAndMisversionedRecordsAreRefusedFromTheirHeaders) {
  const size_t limit = tls13() ? kMaxCiphertext13 : kMaxCiphertext12;
  std::vector<uint8_t> got;
  const std::vector<uint8_t> over = {23, 3, 3, static_cast<uint8_t>((limit + 1) >> 8), static_cast<uint8_t>(limit + 1)};
  Opened o = open_into(over, got);
  EXPECT_EQ(o.status, Status::kError) << "no body wanted: the header says enough";
  EXPECT_EQ(o.alert, kAlertRecordOverflow);
  const std::vector<uint8_t> at_limit = {23, 3, 3, static_cast<uint8_t>(limit >> 8), static_cast<uint8_t>(limit)};
  EXPECT_EQ(open_into(at_limit, got).status, Status::kNeedMore);
  // A body shorter than the tag (and explicit nonce, and inner type).
  std::vector<uint8_t> shortrec = {23, 3, 3, 0, 15};
  shortrec.resize(5 + 15, 0);
  o = open_into(shortrec, got);
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertBadRecordMac);
  for (const auto& [major, minor] : {std::pair{2, 0}, std::pair{3, 1}, std::pair{3, 4}}) {
    std::vector<uint8_t> v = {23, static_cast<uint8_t>(major), static_cast<uint8_t>(minor), 0, 40};
    v.resize(45, 0);
    o = open_into(v, got);
    EXPECT_EQ(o.status, Status::kError);
    EXPECT_EQ(o.alert, kAlertProtocolVersion) << major << "." << minor;
  }
  // Types the protocol does not carry now: ChangeCipherSpec always; TLS 1.3
  // a plaintext alert or handshake too; unknown types.
  for (uint8_t type : {uint8_t{20}, uint8_t{21}, uint8_t{22}, uint8_t{24}, uint8_t{0}, uint8_t{255}}) {
    if (!tls13() && (type == 21 || type == 22)) continue;
    std::vector<uint8_t> r = {type, 3, 3, 0, 40};
    r.resize(45, 0);
    o = open_into(r, got);
    EXPECT_EQ(o.status, Status::kError) << int(type);
    EXPECT_EQ(o.alert, kAlertUnexpectedMessage) << int(type);
  }
  EXPECT_EQ(rx_.state.seq, 0u);
}

// TLS 1.3's inner plaintext (content, type, zero padding): its own suites.
class RecordLayer13 : public RecordLayer {};

TEST_P(RecordLayer13, InnerPlaintextOfZerosOrOverTheLimitIsRefused) {
  ASSERT_TRUE(tls13());
  std::vector<uint8_t> got;
  // Type 0 and no content: the inner plaintext is all zeros.
  auto rec = seal_one(tx_, 0, {});
  Opened o = open_into(rec, got);
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertUnexpectedMessage);
  // Padding is allowed: content, type, zeros (sealed as data whose last
  // bytes are a type and zeros, under an inner type 0 that the zeros hide).
  auto padded = bytes(100, 4);
  padded.push_back(ktls::kApplicationData);
  padded.insert(padded.end(), 50, 0);
  rec = seal_one(tx_, 0, padded);
  o = open_into(rec, got);
  ASSERT_EQ(o.status, Status::kRecord);
  EXPECT_EQ(o.type, ktls::kApplicationData);
  EXPECT_EQ(got, bytes(100, 4));
  // 2^14 + 1 bytes of content: seal() refuses to make it, so it is sealed
  // here with EVP (RFC 8446 5.2: nonce = iv XOR seq, the header as AAD).
  EXPECT_EQ(seal(tx_, ktls::kApplicationData, bytes(kMaxPlaintext + 1, 6), std::vector<uint8_t>(20000).data()), 0u);
  auto inner = bytes(kMaxPlaintext + 1, 6);
  inner.push_back(ktls::kApplicationData);
  const ktls::CryptoState& st = tx_.state;
  const size_t body = inner.size() + kTag;
  std::vector<uint8_t> over = {23, 3, 3, static_cast<uint8_t>(body >> 8), static_cast<uint8_t>(body)};
  over.resize(kHeader + body);
  uint8_t nonce[12];
  st.nonce_base(nonce);
  for (int i = 0; i < 8; ++i) nonce[4 + i] ^= static_cast<uint8_t>(st.seq >> (56 - 8 * i));
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const EVP_CIPHER* c = st.cipher == TLS_CIPHER_AES_GCM_128   ? EVP_aes_128_gcm()
                        : st.cipher == TLS_CIPHER_AES_GCM_256 ? EVP_aes_256_gcm()
                                                              : EVP_chacha20_poly1305();
  int n = 0;
  ASSERT_EQ(EVP_EncryptInit_ex(ctx, c, nullptr, st.key, nonce), 1);
  ASSERT_EQ(EVP_EncryptUpdate(ctx, nullptr, &n, over.data(), kHeader), 1);
  ASSERT_EQ(EVP_EncryptUpdate(ctx, over.data() + kHeader, &n, inner.data(), static_cast<int>(inner.size())), 1);
  ASSERT_EQ(EVP_EncryptFinal_ex(ctx, over.data() + kHeader + n, &n), 1);
  ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTag, over.data() + kHeader + inner.size()), 1);
  EVP_CIPHER_CTX_free(ctx);
  o = open_into(over, got);
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertRecordOverflow);
}

TEST_P(RecordLayer, TheSequenceNumberNeverWraps) {
  tx_.state.seq = UINT64_MAX;
  std::vector<uint8_t> out(100);
  EXPECT_EQ(seal(tx_, ktls::kApplicationData, bytes(10, 1), out.data()), 0u);
  rx_.state.seq = UINT64_MAX - 1;
  tx_.state.seq = UINT64_MAX - 1;
  const auto rec = seal_one(tx_, ktls::kApplicationData, bytes(10, 1));
  std::vector<uint8_t> got;
  ASSERT_EQ(open_into(rec, got).status, Status::kRecord);
  const Opened o = open_into(rec, got);
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertInternalError);
}

TEST_P(RecordLayer, KeysInterleavedOnOneThreadEachOpenTheirOwn) {
  // The thread's cipher contexts are keyed anew when another key comes.
  Keys a_tx, a_rx, b_tx, b_rx;
  a_tx.set(state_for(GetParam(), 10));
  a_rx.set(state_for(GetParam(), 10));
  b_tx.set(state_for(GetParam(), 20));
  b_rx.set(state_for(GetParam(), 20));
  EXPECT_NE(a_tx.id, a_rx.id) << "every key taken gets its own id";
  for (int i = 0; i < 6; ++i) {
    Keys& tx = i % 2 == 0 ? a_tx : b_tx;
    Keys& rx = i % 2 == 0 ? a_rx : b_rx;
    const auto plain = bytes(50 + i, static_cast<uint8_t>(i));
    const auto rec = seal_one(tx, ktls::kApplicationData, plain);
    std::vector<uint8_t> got(kMaxCiphertext12);
    const Opened o = open(rx, rec, got.data(), got.size());
    ASSERT_EQ(o.status, Status::kRecord) << i;
    got.resize(o.len);
    EXPECT_EQ(got, plain);
  }
}

TEST(RecordLayerKeys, WithoutAKeyNothingIsSealedOrOpened) {
  Keys none;
  std::vector<uint8_t> out(100);
  EXPECT_EQ(seal(none, ktls::kApplicationData, bytes(10, 1), out.data()), 0u);
  std::vector<uint8_t> rec = {23, 3, 3, 0, 40};
  rec.resize(45, 0);
  const Opened o = open(none, rec, out.data(), out.size());
  EXPECT_EQ(o.status, Status::kError);
  EXPECT_EQ(o.alert, kAlertInternalError);
}

TEST(RecordLayerKeys, OverheadIsWhatARecordAdds) {
  EXPECT_EQ(overhead(state_for({"", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128}, 0)), 5u + 1 + 16);
  EXPECT_EQ(overhead(state_for({"", TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256}, 0)), 5u + 8 + 16);
  EXPECT_EQ(overhead(state_for({"", TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}, 0)), 5u + 16);
}

constexpr Case kTls12[] = {{"tls12_aes128gcm", TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128},
                           {"tls12_aes256gcm", TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256},
                           {"tls12_chacha20", TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305}};
constexpr Case kTls13[] = {{"tls13_aes128gcm", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128},
                           {"tls13_aes256gcm", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256},
                           {"tls13_chacha20", TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305}};
std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(Tls12, RecordLayer, ::testing::ValuesIn(kTls12), case_name);
INSTANTIATE_TEST_SUITE_P(Tls13, RecordLayer, ::testing::ValuesIn(kTls13), case_name);
INSTANTIATE_TEST_SUITE_P(Tls13, RecordLayer13, ::testing::ValuesIn(kTls13), case_name);

}  // namespace
}  // namespace lode::worker::records
