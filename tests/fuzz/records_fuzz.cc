// libFuzzer target for Lodestone's TLS record layer
// (dataplane/worker/record_layer.h): what a client may send once the worker
// opens its records itself.
//
// Input: byte 0 picks the protocol and suite (TLS 1.2 / 1.3 x AES-128-GCM,
// AES-256-GCM, ChaCha20-Poly1305, fixed test keys), byte 1 the mode, the rest
// is the payload.
// 1. The byte stream opened record by record, as the worker does: the
//    payload itself, or (mode bit 0) the payload sealed as records and then
//    changed at the places the mode's other bits and the payload's last
//    bytes name, so that libFuzzer reaches whole records with a wrong bit.
//    Invariants: a record never takes more than the input; its plaintext is
//    at most 2^14 bytes; the sequence number moves by one per record opened
//    and never on an error or a short input; a stream that was not changed
//    opens whole and equal; a changed record never opens to other bytes.
// 2. The payload sealed (seal_all) and opened back: equal, type kept.
// Any failure aborts. Also built without libFuzzer as records_fuzz_replay and
// run over the committed corpus by ctest.
#include <linux/tls.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "dataplane/worker/record_layer.h"

namespace {

using namespace lode::worker;
using records::Opened;

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

ktls::CryptoState state(uint8_t pick) {
  static constexpr uint16_t kCiphers[3] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                           TLS_CIPHER_CHACHA20_POLY1305};
  ktls::CryptoState s;
  s.version = pick % 2 == 0 ? TLS_1_2_VERSION : TLS_1_3_VERSION;
  s.cipher = kCiphers[(pick / 2) % 3];
  for (size_t i = 0; i < sizeof s.key; ++i) s.key[i] = static_cast<uint8_t>(0x11 * i + 3);
  for (size_t i = 0; i < sizeof s.salt; ++i) s.salt[i] = static_cast<uint8_t>(0xa0 + i);
  for (size_t i = 0; i < sizeof s.iv; ++i) s.iv[i] = static_cast<uint8_t>(0x50 + 3 * i);
  return s;
}

// `a` is the first a.size() bytes of `b` (memcmp is not given a null pointer).
bool prefix_of(const std::vector<uint8_t>& a, std::span<const uint8_t> b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

std::vector<uint8_t> seal_stream(records::Keys& k, uint8_t type, std::span<const uint8_t> data) {
  std::vector<uint8_t> out;
  size_t room = 0;
  const bool ok = records::seal_all(
      k, type, data,
      [&](size_t n) {
        room = n;
        out.resize(out.size() + n);
        return out.data() + out.size() - n;
      },
      [&](size_t used) { out.resize(out.size() - room + used); });
  FUZZ_CHECK(ok);
  return out;
}

// Opens `stream` record by record; returns the plaintext of the records
// opened (in `plain`) and whether the stream ended on a record boundary with
// no error.
bool open_stream(records::Keys& k, std::span<const uint8_t> stream, std::vector<uint8_t>& plain,
                 std::vector<uint8_t>& types) {
  std::vector<uint8_t> out(records::kMaxCiphertext12);
  while (true) {
    const uint64_t seq = k.state.seq;
    const Opened o = records::open(k, stream, out.data(), out.size());
    switch (o.status) {
      case Opened::Status::kNeedMore:
        FUZZ_CHECK(o.consumed == 0 && k.state.seq == seq);
        return stream.empty();
      case Opened::Status::kError:
        FUZZ_CHECK(k.state.seq == seq && o.alert != 0);
        return false;
      case Opened::Status::kRecord:
        FUZZ_CHECK(o.consumed >= records::kHeader && o.consumed <= stream.size());
        FUZZ_CHECK(o.len <= records::kMaxPlaintext);
        FUZZ_CHECK(k.state.seq == seq + 1);
        plain.insert(plain.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(o.len));
        types.push_back(o.type);
        stream = stream.subspan(o.consumed);
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t pick = data[0];
  const uint8_t mode = data[1];
  std::span<const uint8_t> payload(data + 2, size - 2);
  if (payload.size() > 40000) payload = payload.first(40000);
  const ktls::CryptoState s = state(pick);

  // 1. A stream opened record by record.
  {
    records::Keys tx, rx;
    tx.set(s);
    rx.set(s);
    std::vector<uint8_t> stream(payload.begin(), payload.end());
    bool changed = true;
    if ((mode & 1) != 0) {
      stream = seal_stream(tx, ktls::kApplicationData, payload);
      // Up to three changes: (position, xor) pairs from the payload's end.
      const size_t changes = (mode >> 1) % 4;
      changed = false;
      for (size_t i = 0; i < changes && payload.size() >= 3 * (i + 1); ++i) {
        const uint8_t* p = payload.data() + payload.size() - 3 * (i + 1);
        const size_t at = (size_t{p[0]} << 8 | p[1]) % stream.size();
        if (p[2] != 0) changed = true;
        stream[at] ^= p[2];
      }
    }
    std::vector<uint8_t> plain, types;
    const bool whole = open_stream(rx, stream, plain, types);
    if (!changed) {
      FUZZ_CHECK(whole);
      FUZZ_CHECK(plain.size() == payload.size() && prefix_of(plain, payload));
    } else if ((mode & 1) != 0) {
      // Whatever opened of a changed stream is a prefix of the payload: a
      // change never opens to other bytes.
      FUZZ_CHECK(prefix_of(plain, payload));
    }
  }

  // 2. Sealed and opened back, with the type the mode names.
  {
    static constexpr uint8_t kTypes[3] = {ktls::kApplicationData, ktls::kAlert, ktls::kHandshake};
    const uint8_t type = kTypes[(mode >> 3) % 3];
    records::Keys tx, rx;
    tx.set(s);
    rx.set(s);
    const std::vector<uint8_t> stream = seal_stream(tx, type, payload);
    std::vector<uint8_t> plain, types;
    FUZZ_CHECK(open_stream(rx, stream, plain, types));
    FUZZ_CHECK(plain.size() == payload.size() && prefix_of(plain, payload));
    for (uint8_t t : types) FUZZ_CHECK(t == type);
    FUZZ_CHECK(tx.state.seq == rx.state.seq);
  }
  return 0;
}
