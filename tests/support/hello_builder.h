// Builds synthetic TLS ClientHellos for tests, fuzz seeds and benchmarks:
// every length field is computed, so a test can break exactly one thing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lode::test {

using Bytes = std::vector<uint8_t>;

inline void put_u8(Bytes& b, size_t v) { b.push_back(static_cast<uint8_t>(v)); }
inline void put_u16(Bytes& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
inline void put_u24(Bytes& b, size_t v) {
  b.push_back(static_cast<uint8_t>(v >> 16));
  put_u16(b, v & 0xffff);
}
inline void put(Bytes& b, std::span<const uint8_t> s) { b.insert(b.end(), s.begin(), s.end()); }
inline void put(Bytes& b, std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }

class HelloBuilder {
 public:
  uint16_t record_version = 0x0301;
  uint16_t legacy_version = 0x0303;
  Bytes session_id = Bytes(32, 0x5a);
  Bytes cipher_suites = {0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f};
  Bytes compression = {0x00};
  bool extensions_block = true;
  std::vector<std::pair<uint16_t, Bytes>> extensions;

  HelloBuilder& ext(uint16_t type, Bytes data) {
    extensions.emplace_back(type, std::move(data));
    return *this;
  }
  // server_name with one host_name entry per name given (one is normal).
  HelloBuilder& sni(std::initializer_list<std::string_view> names) {
    Bytes list;
    for (auto n : names) {
      put_u8(list, 0);
      put_u16(list, n.size());
      put(list, n);
    }
    Bytes d;
    put_u16(d, list.size());
    put(d, list);
    return ext(0, std::move(d));
  }
  HelloBuilder& sni(std::string_view name) { return sni({name}); }
  HelloBuilder& alpn(std::initializer_list<std::string_view> protos) {
    Bytes list;
    for (auto p : protos) {
      put_u8(list, p.size());
      put(list, p);
    }
    Bytes d;
    put_u16(d, list.size());
    put(d, list);
    return ext(16, std::move(d));
  }
  HelloBuilder& versions(std::initializer_list<uint16_t> vs) {
    Bytes d;
    put_u8(d, vs.size() * 2);
    for (auto v : vs) put_u16(d, v);
    return ext(43, std::move(d));
  }
  HelloBuilder& groups(std::initializer_list<uint16_t> gs) {
    Bytes d;
    put_u16(d, gs.size() * 2);
    for (auto g : gs) put_u16(d, g);
    return ext(10, std::move(d));
  }
  HelloBuilder& key_shares(std::initializer_list<std::pair<uint16_t, size_t>> shares) {
    Bytes list;
    for (auto [g, n] : shares) {
      put_u16(list, g);
      put_u16(list, n);
      list.insert(list.end(), n, 0x42);
    }
    Bytes d;
    put_u16(d, list.size());
    put(d, list);
    return ext(51, std::move(d));
  }
  HelloBuilder& sig_algs() { return ext(13, {0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01}); }
  HelloBuilder& status_request() { return ext(5, {0x01, 0x00, 0x00, 0x00, 0x00}); }
  HelloBuilder& padding(size_t n) { return ext(21, Bytes(n, 0)); }

  // A typical modern TLS 1.3 hello to `name`, like a browser's.
  static HelloBuilder typical(std::string_view name) {
    HelloBuilder b;
    b.ext(0x0a0a, {})
        .sni(name)
        .ext(23, {})
        .ext(0xff01, {0x00})
        .groups({0x1a1a, 0x001d, 0x0017, 0x0018})
        .ext(11, {0x01, 0x00})
        .ext(35, {})
        .alpn({"h2", "http/1.1"})
        .status_request()
        .sig_algs()
        .key_shares({{0x1a1a, 1}, {0x001d, 32}})
        .ext(45, {0x01, 0x01})
        .versions({0x2a2a, 0x0304, 0x0303})
        .ext(27, {0x02, 0x00, 0x02})
        .ext(0x3a3a, {0x00});
    return b;
  }

  // The extensions block's body as encoded.
  Bytes extensions_body() const {
    Bytes e;
    for (const auto& [type, data] : extensions) {
      put_u16(e, type);
      put_u16(e, data.size());
      put(e, data);
    }
    return e;
  }
  // The ClientHello body (after the 4-byte handshake header).
  Bytes body() const {
    Bytes b;
    put_u16(b, legacy_version);
    b.insert(b.end(), 32, 0x11);  // random
    put_u8(b, session_id.size());
    put(b, session_id);
    put_u16(b, cipher_suites.size());
    put(b, cipher_suites);
    put_u8(b, compression.size());
    put(b, compression);
    if (extensions_block) {
      const Bytes e = extensions_body();
      put_u16(b, e.size());
      put(b, e);
    }
    return b;
  }
  // The handshake message: type 1, u24 length, body.
  Bytes message() const { return wrap_message(body()); }
  static Bytes wrap_message(const Bytes& body) {
    Bytes m;
    put_u8(m, 1);
    put_u24(m, body.size());
    put(m, body);
    return m;
  }
  // The message in TLS records of at most `fragment` bytes each.
  Bytes records(size_t fragment = 16384) const { return to_records(message(), fragment, record_version); }
  static Bytes to_records(const Bytes& msg, size_t fragment, uint16_t version = 0x0301) {
    Bytes out;
    for (size_t off = 0; off < msg.size(); off += fragment) {
      const size_t n = std::min(fragment, msg.size() - off);
      put_u8(out, 22);
      put_u16(out, version);
      put_u16(out, n);
      out.insert(out.end(), msg.begin() + static_cast<std::ptrdiff_t>(off),
                 msg.begin() + static_cast<std::ptrdiff_t>(off + n));
    }
    return out;
  }
};

}  // namespace lode::test
