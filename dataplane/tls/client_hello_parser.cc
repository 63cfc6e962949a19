#include "dataplane/tls/client_hello_parser.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string_view>

namespace lode::tls {
namespace {

constexpr uint8_t kContentHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr uint32_t kRecordHeaderLen = 5;
constexpr uint32_t kHandshakeHeaderLen = 4;
constexpr uint32_t kMaxRecordLen = 1u << 14;  // TLSPlaintext.length <= 2^14
constexpr uint32_t kMaxExtensions = 128;

enum ExtensionType : uint16_t {
  kExtServerName = 0,
  kExtStatusRequest = 5,
  kExtSupportedGroups = 10,
  kExtSignatureAlgorithms = 13,
  kExtAlpn = 16,
  kExtSessionTicket = 35,
  kExtPreSharedKey = 41,
  kExtEarlyData = 42,
  kExtSupportedVersions = 43,
  kExtKeyShare = 51,
  kExtEncryptedClientHello = 0xfe0d,
};

inline uint16_t load_u16(const uint8_t* p) noexcept { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t load_u24(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2];
}

// What the first bytes of a connection that is not a TLS record are.
struct Signature {
  std::string_view bytes;
  HelloError kind;
};
constexpr Signature kSignatures[] = {
    {"PROXY ", HelloError::kProxyHeader},
    {std::string_view("\r\n\r\n\0\r\nQUIT\n", 12), HelloError::kProxyHeader},
    {"GET ", HelloError::kHttpRequest},
    {"POST ", HelloError::kHttpRequest},
    {"HEAD ", HelloError::kHttpRequest},
    {"PUT ", HelloError::kHttpRequest},
    {"DELETE ", HelloError::kHttpRequest},
    {"OPTIONS ", HelloError::kHttpRequest},
    {"CONNECT ", HelloError::kHttpRequest},
    {"PATCH ", HelloError::kHttpRequest},
    {"TRACE ", HelloError::kHttpRequest},
    {"PRI * HTTP/2.0", HelloError::kHttpRequest},
};

// Reads a ClientHello body. Every read checks its length once against what
// is left; a failure carries the error code and the offset in the message.
class Reader {
 public:
  Reader(const uint8_t* p, uint32_t len, uint32_t base) noexcept : p_(p), end_(p + len), base_(base), start_(p) {}
  uint32_t left() const noexcept { return static_cast<uint32_t>(end_ - p_); }
  uint32_t offset() const noexcept { return base_ + static_cast<uint32_t>(p_ - start_); }
  bool empty() const noexcept { return p_ == end_; }
  bool u8(uint8_t& v) noexcept {
    if (left() < 1) return false;
    v = *p_++;
    return true;
  }
  bool u16(uint16_t& v) noexcept {
    if (left() < 2) return false;
    v = load_u16(p_);
    p_ += 2;
    return true;
  }
  bool bytes(uint32_t n, std::span<const uint8_t>& out) noexcept {
    if (left() < n) return false;
    out = {p_, n};
    p_ += n;
    return true;
  }
  // opaque data<lo..2^8-1> / <lo..2^16-1>
  bool vec8(std::span<const uint8_t>& out) noexcept {
    uint8_t n;
    return u8(n) && bytes(n, out);
  }
  bool vec16(std::span<const uint8_t>& out) noexcept {
    uint16_t n;
    return u16(n) && bytes(n, out);
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  uint32_t base_;
  const uint8_t* start_;
};

struct BodyError {
  HelloError code;
  TlsAlert alert;
  uint32_t offset;
  HostnameError hostname_error = HostnameError::kEmpty;
};

// A u16 list that must fill its extension exactly: struct { T list<2..2^16-2> }
// with T two bytes wide.
bool u16_list_exactly(std::span<const uint8_t> ext, bool one_byte_len, std::span<const uint8_t>& list) noexcept {
  Reader r(ext.data(), static_cast<uint32_t>(ext.size()), 0);
  const bool ok = one_byte_len ? r.vec8(list) : r.vec16(list);
  return ok && r.empty() && !list.empty() && list.size() % 2 == 0;
}

class BodyParser {
 public:
  explicit BodyParser(ClientHelloInfo& info) noexcept : info_(info) {}
  bool parse(std::span<const uint8_t> msg) noexcept;
  const BodyError& error() const noexcept { return err_; }

 private:
  bool fail(HelloError code, TlsAlert alert, uint32_t offset) noexcept {
    err_ = {code, alert, offset};
    return false;
  }
  bool extension(uint16_t type, std::span<const uint8_t> data, uint32_t off) noexcept;
  bool server_name(std::span<const uint8_t> data, uint32_t off) noexcept;
  bool alpn(std::span<const uint8_t> data, uint32_t off) noexcept;
  bool key_share(std::span<const uint8_t> data, uint32_t off) noexcept;
  bool seen_before(uint16_t type) noexcept;

  ClientHelloInfo& info_;
  BodyError err_{HelloError::kTruncatedHello, TlsAlert::kDecodeError, 0};
  uint64_t seen_low_ = 0;  // extension types 0..63
  uint16_t seen_high_[kMaxExtensions];
  uint32_t seen_high_count_ = 0;
};

bool BodyParser::seen_before(uint16_t type) noexcept {
  if (type < 64) {
    const uint64_t bit = uint64_t{1} << type;
    const bool seen = (seen_low_ & bit) != 0;
    seen_low_ |= bit;
    return seen;
  }
  for (uint32_t i = 0; i < seen_high_count_; ++i) {
    if (seen_high_[i] == type) return true;
  }
  seen_high_[seen_high_count_++] = type;  // bounded by kMaxExtensions
  return false;
}

//   struct {
//       ProtocolVersion legacy_version = 0x0303;
//       Random random;                                  // 32 bytes
//       opaque legacy_session_id<0..32>;
//       CipherSuite cipher_suites<2..2^16-2>;
//       opaque legacy_compression_methods<1..2^8-1>;
//       Extension extensions<8..2^16-1>;                // absent allowed (TLS 1.2)
//   } ClientHello;
// `msg` is the whole handshake message, its 4-byte header included.
bool BodyParser::parse(std::span<const uint8_t> msg) noexcept {
  Reader r(msg.data() + kHandshakeHeaderLen, static_cast<uint32_t>(msg.size()) - kHandshakeHeaderLen,
           kHandshakeHeaderLen);
  if (!r.u16(info_.legacy_version)) return fail(HelloError::kTruncatedHello, TlsAlert::kDecodeError, r.offset());
  if ((info_.legacy_version >> 8) != 3) {
    return fail(HelloError::kBadLegacyVersion, TlsAlert::kProtocolVersion, r.offset() - 2);
  }
  if (!r.bytes(32, info_.random)) return fail(HelloError::kTruncatedHello, TlsAlert::kDecodeError, r.offset());
  const uint32_t sid_off = r.offset();
  if (!r.vec8(info_.session_id)) return fail(HelloError::kTruncatedHello, TlsAlert::kDecodeError, sid_off);
  if (info_.session_id.size() > 32) return fail(HelloError::kBadSessionId, TlsAlert::kIllegalParameter, sid_off);
  const uint32_t cs_off = r.offset();
  if (!r.vec16(info_.cipher_suites)) return fail(HelloError::kTruncatedHello, TlsAlert::kDecodeError, cs_off);
  if (info_.cipher_suites.size() < 2 || info_.cipher_suites.size() % 2 != 0) {
    return fail(HelloError::kBadCipherSuites, TlsAlert::kDecodeError, cs_off);
  }
  const uint32_t cm_off = r.offset();
  std::span<const uint8_t> compression;
  if (!r.vec8(compression)) return fail(HelloError::kTruncatedHello, TlsAlert::kDecodeError, cm_off);
  if (compression.empty()) return fail(HelloError::kBadCompression, TlsAlert::kDecodeError, cm_off);

  info_.max_version = info_.legacy_version;
  if (r.empty()) return true;  // no extensions: legal before TLS 1.3

  const uint32_t ext_off = r.offset();
  uint16_t ext_total;
  if (!r.u16(ext_total)) return fail(HelloError::kBadExtensions, TlsAlert::kDecodeError, ext_off);
  if (ext_total > r.left()) return fail(HelloError::kBadExtensions, TlsAlert::kDecodeError, ext_off);
  if (ext_total < r.left()) return fail(HelloError::kTrailingBytes, TlsAlert::kDecodeError, ext_off + 2 + ext_total);
  info_.extensions_present = true;

  //   struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; } Extension;
  while (!r.empty()) {
    const uint32_t off = r.offset();
    uint16_t type;
    std::span<const uint8_t> data;
    if (!r.u16(type) || !r.vec16(data)) return fail(HelloError::kBadExtensions, TlsAlert::kDecodeError, off);
    if (++info_.extension_count > kMaxExtensions) {
      return fail(HelloError::kTooManyExtensions, TlsAlert::kDecodeError, off);
    }
    if (seen_before(type)) return fail(HelloError::kDuplicateExtension, TlsAlert::kDecodeError, off);
    if (type == kExtPreSharedKey && !r.empty()) {
      // RFC 8446 4.2.11: pre_shared_key MUST be the last extension.
      return fail(HelloError::kPskNotLast, TlsAlert::kIllegalParameter, off);
    }
    if (!extension(type, data, off + 4)) return false;
  }
  return true;
}

bool BodyParser::extension(uint16_t type, std::span<const uint8_t> data, uint32_t off) noexcept {
  switch (type) {
    case kExtServerName:
      return server_name(data, off);
    case kExtAlpn:
      return alpn(data, off);
    case kExtKeyShare:
      return key_share(data, off);
    case kExtSupportedVersions: {
      //   struct { ProtocolVersion versions<2..254>; } SupportedVersions;
      if (!u16_list_exactly(data, true, info_.supported_versions)) {
        return fail(HelloError::kBadSupportedVersions, TlsAlert::kDecodeError, off);
      }
      uint16_t best = 0;
      for (size_t i = 0; i < info_.supported_versions.size(); i += 2) {
        const uint16_t v = load_u16(&info_.supported_versions[i]);
        if (is_grease(v)) continue;
        if (v == 0x0304) info_.offers_tls13 = true;
        // Only real TLS versions compete for the maximum.
        if ((v >> 8) == 3 && v > best) best = v;
      }
      if (best != 0) info_.max_version = best;
      return true;
    }
    case kExtSupportedGroups:
      //   struct { NamedGroup named_group_list<2..2^16-1>; } NamedGroupList;
      if (!u16_list_exactly(data, false, info_.supported_groups)) {
        return fail(HelloError::kBadSupportedGroups, TlsAlert::kDecodeError, off);
      }
      for (size_t i = 0; i < info_.supported_groups.size(); i += 2) {
        if (is_post_quantum_group(load_u16(&info_.supported_groups[i]))) info_.pq_group_offered = true;
      }
      return true;
    case kExtSignatureAlgorithms:
      if (!u16_list_exactly(data, false, info_.signature_algorithms)) {
        return fail(HelloError::kBadSignatureAlgorithms, TlsAlert::kDecodeError, off);
      }
      return true;
    case kExtStatusRequest:
      //   struct { CertificateStatusType status_type; select (status_type) {...} } CertificateStatusRequest;
      if (data.empty()) return fail(HelloError::kBadExtensions, TlsAlert::kDecodeError, off);
      info_.status_request = true;
      return true;
    case kExtSessionTicket:
      info_.session_ticket = !data.empty();
      return true;
    case kExtPreSharedKey:
      info_.psk = true;
      return true;
    case kExtEarlyData:
      info_.early_data = true;
      return true;
    case kExtEncryptedClientHello:
      info_.ech = true;
      return true;
    default:
      return true;  // GREASE and everything else: skipped
  }
}

//   struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
//   opaque HostName<1..2^16-1>;
//   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
// Exactly one entry, of type host_name: what OpenSSL accepts, so the name we
// route by is the name OpenSSL sees. Anything more is ambiguous and refused.
bool BodyParser::server_name(std::span<const uint8_t> data, uint32_t off) noexcept {
  Reader r(data.data(), static_cast<uint32_t>(data.size()), off);
  std::span<const uint8_t> list;
  if (!r.vec16(list) || !r.empty() || list.empty()) {
    return fail(HelloError::kBadServerName, TlsAlert::kDecodeError, off);
  }
  Reader l(list.data(), static_cast<uint32_t>(list.size()), off + 2);
  uint8_t name_type;
  std::span<const uint8_t> name;
  if (!l.u8(name_type) || name_type != 0 || !l.vec16(name) || name.empty()) {
    return fail(HelloError::kBadServerName, TlsAlert::kDecodeError, off + 2);
  }
  if (!l.empty()) return fail(HelloError::kMultipleServerNames, TlsAlert::kDecodeError, l.offset());
  const std::string_view raw(reinterpret_cast<const char*>(name.data()), name.size());
  const auto norm = normalize_hostname(raw, info_.sni_buf);
  if (!norm) {
    err_ = {HelloError::kBadHostName, TlsAlert::kIllegalParameter, off + 5, norm.error()};
    // Kept for logs and the status page (rejected_host_name()); has_sni stays false.
    info_.sni_len = static_cast<uint16_t>(std::min(raw.size(), sizeof info_.sni_buf));
    std::memcpy(info_.sni_buf, raw.data(), info_.sni_len);
    return false;
  }
  if (norm->kind == HostnameKind::kName) {
    info_.has_sni = true;
    info_.sni_len = norm->len;
  } else {
    info_.sni_ip_literal = true;  // RFC 6066 forbids literals: treated as no SNI
  }
  return true;
}

//   opaque ProtocolName<1..2^8-1>;
//   struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
bool BodyParser::alpn(std::span<const uint8_t> data, uint32_t off) noexcept {
  Reader r(data.data(), static_cast<uint32_t>(data.size()), off);
  if (!r.vec16(info_.alpn_raw) || !r.empty() || info_.alpn_raw.size() < 2) {
    return fail(HelloError::kBadAlpn, TlsAlert::kDecodeError, off);
  }
  Reader l(info_.alpn_raw.data(), static_cast<uint32_t>(info_.alpn_raw.size()), off + 2);
  while (!l.empty()) {
    const uint32_t entry_off = l.offset();
    std::span<const uint8_t> proto;
    if (!l.vec8(proto) || proto.empty()) return fail(HelloError::kBadAlpn, TlsAlert::kDecodeError, entry_off);
    if (info_.alpn_count == kMaxAlpnProtocols) {
      return fail(HelloError::kTooManyAlpn, TlsAlert::kDecodeError, entry_off);
    }
    info_.alpn[info_.alpn_count++] = {reinterpret_cast<const char*>(proto.data()), proto.size()};
  }
  return true;
}

//   struct { NamedGroup group; opaque key_exchange<1..2^16-1>; } KeyShareEntry;
//   struct { KeyShareEntry client_shares<0..2^16-1>; } KeyShareClientHello;
bool BodyParser::key_share(std::span<const uint8_t> data, uint32_t off) noexcept {
  Reader r(data.data(), static_cast<uint32_t>(data.size()), off);
  std::span<const uint8_t> shares;
  if (!r.vec16(shares) || !r.empty()) return fail(HelloError::kBadKeyShare, TlsAlert::kDecodeError, off);
  Reader l(shares.data(), static_cast<uint32_t>(shares.size()), off + 2);
  while (!l.empty()) {
    const uint32_t entry_off = l.offset();
    uint16_t group;
    std::span<const uint8_t> key;
    if (!l.u16(group) || !l.vec16(key) || key.empty()) {
      return fail(HelloError::kBadKeyShare, TlsAlert::kDecodeError, entry_off);
    }
    if (is_grease(group)) continue;
    if (is_post_quantum_group(group)) info_.pq_key_share = true;
    if (info_.key_share_count < kMaxKeyShares) info_.key_share_groups[info_.key_share_count++] = group;
  }
  return true;
}

}  // namespace

void ClientHelloParser::reset() noexcept {
  status_ = ParseStatus::kNeedMore;
  started_ = false;
  pos_ = records_ = msg_len_ = have_ = 0;
  // The reassembly buffer is kept for the next hello. The fixed arrays of
  // info_ are only read up to their counts, so only the scalars are reset:
  // value-initializing the whole struct would cost more than a parse.
  ClientHelloInfo& h = info_;
  h.sni_len = 0;
  h.has_sni = h.sni_ip_literal = h.offers_tls13 = false;
  h.record_version = h.legacy_version = h.max_version = 0;
  h.random = h.session_id = h.cipher_suites = h.supported_versions = h.supported_groups = {};
  h.signature_algorithms = h.alpn_raw = {};
  h.alpn_count = h.key_share_count = 0;
  h.status_request = h.session_ticket = h.psk = h.early_data = h.ech = false;
  h.pq_group_offered = h.pq_key_share = h.extensions_present = false;
  h.extension_count = 0;
  h.hello_len = h.records = h.end_offset = 0;
  error_ = HelloParseError{};
}

ParseStatus ClientHelloParser::fail(HelloError code, TlsAlert alert, uint32_t offset, bool in_message) noexcept {
  error_ = HelloParseError{code, alert, offset, in_message, HostnameError::kEmpty};
  status_ = ParseStatus::kError;
  return status_;
}

// The first byte of a TLS connection is 22 (handshake). Anything else is
// classified from as few bytes as decide it.
ParseStatus ClientHelloParser::classify_start(std::span<const uint8_t> stream) noexcept {
  const uint8_t first = stream[0];
  if (first == kContentHandshake) {
    started_ = true;
    return ParseStatus::kNeedMore;
  }
  if (first == 20 || first == 21 || first == 23 || first == 24) {
    return fail(HelloError::kUnexpectedContentType, TlsAlert::kUnexpectedMessage, 0);
  }
  if (first & 0x80) return fail(HelloError::kSslv2Hello, TlsAlert::kProtocolVersion, 0);
  const std::string_view seen(reinterpret_cast<const char*>(stream.data()), std::min<size_t>(stream.size(), 16));
  bool could_be = false;
  for (const auto& sig : kSignatures) {
    const size_t n = std::min(seen.size(), sig.bytes.size());
    if (seen.substr(0, n) != sig.bytes.substr(0, n)) continue;
    if (n == sig.bytes.size()) return fail(sig.kind, TlsAlert::kUnexpectedMessage, 0);
    could_be = true;
  }
  if (could_be) return ParseStatus::kNeedMore;
  return fail(HelloError::kNotTls, TlsAlert::kUnexpectedMessage, 0);
}

ParseStatus ClientHelloParser::parse(std::span<const uint8_t> stream) noexcept {
  if (status_ != ParseStatus::kNeedMore) return status_;
  if (stream.empty()) return status_;
  if (!started_) {
    if (classify_start(stream) != ParseStatus::kNeedMore || !started_) return status_;
  }
  while (true) {
    //   struct { ContentType type; ProtocolVersion legacy_record_version;
    //            uint16 length; opaque fragment[length]; } TLSPlaintext;
    if (stream.size() <= pos_) return ParseStatus::kNeedMore;
    const uint8_t* rec = stream.data() + pos_;
    const size_t avail = stream.size() - pos_;
    if (rec[0] != kContentHandshake) return fail(HelloError::kUnexpectedContentType, TlsAlert::kUnexpectedMessage, pos_);
    if (avail >= 2 && rec[1] != 3) return fail(HelloError::kBadRecordVersion, TlsAlert::kProtocolVersion, pos_ + 1);
    if (avail >= 3 && rec[2] > 4) return fail(HelloError::kBadRecordVersion, TlsAlert::kProtocolVersion, pos_ + 1);
    if (avail < kRecordHeaderLen) return ParseStatus::kNeedMore;
    const uint32_t rec_len = load_u16(rec + 3);
    if (rec_len > kMaxRecordLen) return fail(HelloError::kRecordTooLong, TlsAlert::kRecordOverflow, pos_ + 3);
    if (rec_len == 0) return fail(HelloError::kEmptyRecord, TlsAlert::kUnexpectedMessage, pos_ + 3);
    if (records_ == 0) info_.record_version = load_u16(rec + 1);

    // Check the handshake header as soon as it is here, before the record
    // completes: a wrong type or an oversized hello is refused early.
    if (records_ == 0 && avail > kRecordHeaderLen) {
      const uint8_t* hs = rec + kRecordHeaderLen;
      if (hs[0] != kHandshakeClientHello) {
        return fail(HelloError::kNotClientHello, TlsAlert::kUnexpectedMessage, pos_ + kRecordHeaderLen);
      }
      if (avail >= kRecordHeaderLen + kHandshakeHeaderLen && rec_len >= kHandshakeHeaderLen &&
          kHandshakeHeaderLen + load_u24(hs + 1) > limits_.max_hello_len) {
        return fail(HelloError::kHelloTooLarge, TlsAlert::kDecodeError, pos_ + kRecordHeaderLen + 1);
      }
    }
    if (avail < kRecordHeaderLen + rec_len) return ParseStatus::kNeedMore;

    // Fast path: the whole hello is in the first record; parse in place.
    if (records_ == 0 && rec_len >= kHandshakeHeaderLen) {
      const uint32_t len = kHandshakeHeaderLen + load_u24(rec + kRecordHeaderLen + 1);
      if (len <= rec_len) {
        if (len < rec_len) {
          return fail(HelloError::kTrailingHandshakeData, TlsAlert::kUnexpectedMessage, pos_ + kRecordHeaderLen + len);
        }
        records_ = 1;
        pos_ += kRecordHeaderLen + rec_len;
        return finish({rec + kRecordHeaderLen, len});
      }
    }
    if (take_record(stream, rec_len) != ParseStatus::kNeedMore) return status_;
  }
}

// Slow path: append a complete record's fragment to the reassembly buffer.
ParseStatus ClientHelloParser::take_record(std::span<const uint8_t> stream, uint32_t rec_len) noexcept {
  const uint8_t* frag = stream.data() + pos_ + kRecordHeaderLen;
  const uint32_t frag_off = pos_ + kRecordHeaderLen;
  uint32_t used = 0;
  while (msg_len_ == 0 && used < rec_len) {  // the 4-byte header may be split too
    header_[have_++] = frag[used++];
    if (have_ < kHandshakeHeaderLen) continue;
    if (header_[0] != kHandshakeClientHello) {
      return fail(HelloError::kNotClientHello, TlsAlert::kUnexpectedMessage, frag_off + used - 4);
    }
    msg_len_ = kHandshakeHeaderLen + load_u24(header_ + 1);
    if (msg_len_ > limits_.max_hello_len) {
      return fail(HelloError::kHelloTooLarge, TlsAlert::kDecodeError, frag_off + used - 3);
    }
    if (msg_len_ > reassembly_cap_) {
      reassembly_.reset(new (std::nothrow) uint8_t[msg_len_]);
      reassembly_cap_ = reassembly_ ? msg_len_ : 0;
      if (!reassembly_) return fail(HelloError::kOutOfMemory, TlsAlert::kInternalError, frag_off);
    }
    std::memcpy(reassembly_.get(), header_, kHandshakeHeaderLen);
  }
  const uint32_t rest = rec_len - used;
  if (msg_len_ != 0 && rest > 0) {
    const uint32_t want = msg_len_ - have_;
    if (rest > want) {
      return fail(HelloError::kTrailingHandshakeData, TlsAlert::kUnexpectedMessage, frag_off + used + want);
    }
    std::memcpy(reassembly_.get() + have_, frag + used, rest);
    have_ += rest;
  }
  ++records_;
  pos_ += kRecordHeaderLen + rec_len;
  if (msg_len_ != 0 && have_ == msg_len_) return finish({reassembly_.get(), msg_len_});
  return ParseStatus::kNeedMore;
}

ParseStatus ClientHelloParser::finish(std::span<const uint8_t> msg) noexcept {
  info_.hello_len = static_cast<uint32_t>(msg.size());
  info_.records = records_;
  info_.end_offset = pos_;
  BodyParser body(info_);
  if (!body.parse(msg)) {
    const BodyError& e = body.error();
    fail(e.code, e.alert, e.offset, true);
    error_.hostname_error = e.hostname_error;
    return status_;
  }
  status_ = ParseStatus::kDone;
  return status_;
}

ParseStatus parse_client_hello(std::span<const uint8_t> bytes, ClientHelloParser& parser) noexcept {
  parser.reset();
  return parser.parse(bytes);
}

}  // namespace lode::tls
