#include "dataplane/tls/tls_context.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <new>
#include <optional>
#include <system_error>

#include "dataplane/tls/ticket_keys.h"
#include "lodestone/hostname.h"

namespace lode::tls {

namespace {

constexpr size_t kMaxChainFile = 1 << 20;  // a PEM chain file
constexpr size_t kMaxKeyFile = 64 << 10;   // a PEM key file
constexpr size_t kMaxChainCerts = 16;
constexpr size_t kMaxAlpnList = 16;  // entries in a configured ALPN list

struct X509Deleter {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// What a server SSL_CTX made here carries in its ex_data; freed with it.
struct ServerCtxState {
  std::string alpn_wire;  // server preference order, wire format; empty = no ALPN
  bool alpn_strict = false;
  std::shared_ptr<TicketKeys> ticket_keys;
};

// The name the worker routed a connection by; one per server SSL, held as
// long as the connection: allocated to the name's length (a few dozen bytes,
// not a whole kHostnameBufSize), the `len` bytes of the name right after it.
struct RoutedName {
  uint16_t len = 0;  // 0: the ClientHello had no SNI
  bool mismatch = false;

  static size_t alloc_size(size_t name_len) noexcept { return sizeof(RoutedName) + name_len; }
  const char* name() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  char* name() noexcept { return reinterpret_cast<char*>(this + 1); }
};
static_assert(alignof(RoutedName) <= alignof(std::max_align_t));

void free_ctx_state(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
                    void* /*argp*/) {
  delete static_cast<ServerCtxState*>(ptr);
}

void free_routed_name(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/,
                      long /*argl*/, void* /*argp*/) {
  OPENSSL_free(ptr);
}

// SSL_dup copies ex_data pointers; give the copy its own RoutedName.
int dup_routed_name(CRYPTO_EX_DATA* /*to*/, const CRYPTO_EX_DATA* /*from*/, void** from_d,
                    int /*idx*/, long /*argl*/, void* /*argp*/) {
  if (*from_d == nullptr) return 1;
  const auto* from = static_cast<const RoutedName*>(*from_d);
  *from_d = OPENSSL_memdup(from, RoutedName::alloc_size(from->len));
  return *from_d != nullptr ? 1 : 0;
}

int ctx_state_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ctx_state);
  return idx;
}

int routed_name_index() {
  static const int idx =
      SSL_get_ex_new_index(0, nullptr, nullptr, dup_routed_name, free_routed_name);
  return idx;
}

ServerCtxState* state_of(const SSL_CTX* ctx) noexcept {
  if (ctx == nullptr) return nullptr;
  return static_cast<ServerCtxState*>(SSL_CTX_get_ex_data(ctx, ctx_state_index()));
}

// --- callbacks -------------------------------------------------------------

// RFC 7301 section 3.2: the server picks by its own preference among the
// protocols the client offered. OpenSSL has checked the client list's framing.
int on_alpn_select(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                   const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* st = static_cast<const ServerCtxState*>(arg);
  const std::string& prefs = st->alpn_wire;
  for (size_t i = 0; i < prefs.size();) {
    const auto plen = static_cast<unsigned char>(prefs[i]);
    const char* p = prefs.data() + i + 1;
    for (unsigned int j = 0; j < inlen;) {
      const unsigned char clen = in[j];
      if (j + 1u + clen > inlen) break;
      if (clen == plen && std::memcmp(in + j + 1, p, plen) == 0) {
        *out = in + j + 1;
        *outlen = clen;
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1u + clen;
    }
    i += 1u + plen;
  }
  return st->alpn_strict ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

// Whether `sni` (as a client sent it; null: none), normalized like the
// worker's parser does, is the name the worker routed by (or both absent).
bool is_routed_name(const char* sni, const RoutedName& routed) noexcept {
  if (sni == nullptr) return routed.len == 0;
  char buf[kHostnameBufSize];
  const auto n = normalize_hostname(sni, buf);
  if (n && n->kind != HostnameKind::kName) return routed.len == 0;  // an IP literal counts as no SNI, as the router saw it
  return n && routed.len != 0 && n->len == routed.len && std::memcmp(buf, routed.name(), routed.len) == 0;
}

// The name OpenSSL parsed from the ClientHello must be the name the worker
// routed by.
int on_servername(SSL* ssl, int* alert, void* /*arg*/) {
  auto* routed = static_cast<RoutedName*>(SSL_get_ex_data(ssl, routed_name_index()));
  if (routed == nullptr) {  // not made by new_server_ssl(): refuse rather than guess
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  const bool same = is_routed_name(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), *routed);
  if (!same) {
    routed->mismatch = true;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// A TLS 1.2 session carries the name of its first handshake, and OpenSSL
// 3.0 resumes it under any name (SSL_get_servername then answers the
// session's): a ticket of another name than the one routed by gets a full
// handshake and a new ticket (RFC 6066 section 3), not an abort. TLS 1.3
// sessions hold no name (the handshake's counts); they resume on any name
// of the same certificate (sessions are bound to it).
SSL_TICKET_RETURN on_ticket_decrypted(SSL* ssl, SSL_SESSION* session, const unsigned char* /*key_name*/,
                                      size_t /*key_name_len*/, SSL_TICKET_STATUS status, void* /*arg*/) {
  const bool opened = status == SSL_TICKET_SUCCESS || status == SSL_TICKET_SUCCESS_RENEW;
  if (!opened) return status == SSL_TICKET_FATAL_ERR_MALLOC || status == SSL_TICKET_FATAL_ERR_OTHER
                          ? SSL_TICKET_RETURN_ABORT
                          : SSL_TICKET_RETURN_IGNORE_RENEW;
  if (SSL_SESSION_get_protocol_version(session) < TLS1_3_VERSION) {
    const auto* routed = static_cast<const RoutedName*>(SSL_get_ex_data(ssl, routed_name_index()));
    if (routed == nullptr || !is_routed_name(SSL_SESSION_get0_hostname(session), *routed)) {
      return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
  }
  return status == SSL_TICKET_SUCCESS_RENEW ? SSL_TICKET_RETURN_USE_RENEW : SSL_TICKET_RETURN_USE;
}

int on_ticket_key(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                  EVP_MAC_CTX* mac, int enc) {
  const ServerCtxState* st = state_of(SSL_get_SSL_CTX(ssl));
  if (st == nullptr || !st->ticket_keys) return 0;  // no ticket issued / full handshake
  return st->ticket_keys->ticket_callback(key_name, iv, cipher, mac, enc);
}

// --- helpers ---------------------------------------------------------------

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

// A reason from the error queue, or `fallback` if the queue is empty.
std::string reason_or(std::string_view fallback) {
  std::string r = detail::take_openssl_errors();
  return r.empty() ? std::string(fallback) : r;
}

std::string name_oneline(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr) return {};
  // RFC 2253 escapes control characters and non-ASCII bytes, so the line is
  // safe to log.
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// A DNS name from a certificate, normalized, or nothing when it is not a host
// name. A leading "*." (a wildcard over one label) is kept.
std::optional<std::string> cert_dns_name(std::string_view raw) {
  std::string_view rest = raw;
  const bool wildcard = rest.size() > 2 && rest.substr(0, 2) == "*.";
  if (wildcard) rest.remove_prefix(2);
  char buf[kHostnameBufSize];
  const auto n = normalize_hostname(rest, buf);
  if (!n || n->kind != HostnameKind::kName) return std::nullopt;
  std::string out = wildcard ? "*." : "";
  out.append(buf, n->len);
  return out;
}

std::chrono::sys_seconds to_sys_seconds(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::sys_seconds(std::chrono::seconds(timegm(&tm)));
}

std::string key_type_of(const EVP_PKEY* pkey) {
  if (pkey == nullptr) return "none";
  const int bits = EVP_PKEY_get_bits(pkey);
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
      return "RSA " + std::to_string(bits);
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                         &len) == 1) {
        const char* nist = EC_curve_nid2nist(OBJ_sn2nid(group));
        return std::string("EC ") + (nist != nullptr ? nist : group);
      }
      return "EC";
    }
    default:
      return std::string(OBJ_nid2sn(EVP_PKEY_get_base_id(pkey))) + " " + std::to_string(bits);
  }
}

// Refuses to prompt: an encrypted key is reported, never decrypted.
struct PassphraseProbe {
  bool asked = false;
};
int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* u) {
  static_cast<PassphraseProbe*>(u)->asked = true;
  return -1;
}

bool last_error_is_no_start_line() {
  const unsigned long e = ERR_peek_last_error();
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

Result<std::vector<X509Ptr>, std::string> read_chain(std::string_view pem,
                                                     const std::string& label) {
  if (pem.size() > static_cast<size_t>(INT32_MAX)) {
    return unexpected(label + ": file too large");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return unexpected(label + ": out of memory");
  std::vector<X509Ptr> chain;
  ERR_clear_error();
  while (true) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    chain.emplace_back(x);
    if (chain.size() > kMaxChainCerts) {
      return unexpected(label + ": more than " + std::to_string(kMaxChainCerts) +
                        " certificates in the chain");
    }
  }
  if (last_error_is_no_start_line()) {
    ERR_clear_error();
    if (chain.empty()) {
      return unexpected(label +
                        ": no certificate found (expected a PEM 'BEGIN CERTIFICATE' block)");
    }
    return chain;
  }
  return unexpected(label + ": certificate #" + std::to_string(chain.size() + 1) +
                    " is not a valid PEM certificate: " + reason_or("parse error"));
}

Result<PkeyPtr, std::string> read_key(std::string_view pem, const std::string& label) {
  if (pem.size() > static_cast<size_t>(INT32_MAX)) {
    return unexpected(label + ": file too large");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return unexpected(label + ": out of memory");
  // OpenSSL 3's decoders report a missing key as "unsupported"; look first.
  if (pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return unexpected(label + ": no private key found (expected a PEM 'BEGIN PRIVATE KEY' block)");
  }
  ERR_clear_error();
  PassphraseProbe probe;
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, &probe));
  const bool encrypted_marker = pem.find("ENCRYPTED PRIVATE KEY") != std::string_view::npos ||
                                pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos;
  if (!key) {
    if (probe.asked || encrypted_marker) {
      ERR_clear_error();
      return unexpected(label +
                        ": the private key is encrypted (passphrase-protected keys are not "
                        "supported; store it decrypted with mode 0600)");
    }
    return unexpected(label + ": not a valid PEM private key: " + reason_or("parse error"));
  }
  const int type = EVP_PKEY_get_base_id(key.get());
  if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
    return unexpected(label + ": unsupported key type " + key_type_of(key.get()) +
                      " (expected an ECDSA or RSA key)");
  }
  return key;
}

// Everything of the SSL_CTX that does not depend on the certificate.
Result<SslCtxPtr, std::string> new_configured_ctx(const TlsSettings& s,
                                                  std::shared_ptr<TicketKeys> ticket_keys) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return unexpected("tls: cannot create SSL_CTX: " + reason_or("out of memory"));
  if (auto r = detail::set_versions(ctx.get(), s.min_version, s.max_version); !r) {
    return unexpected(r.error());
  }
  if (s.min_version < TlsVersion::kTls13 || !s.cipher_list.empty()) {
    if (SSL_CTX_set_cipher_list(ctx.get(), s.cipher_list.c_str()) != 1) {
      return unexpected("tls settings: cipher_list \"" + s.cipher_list +
                        "\" selects no TLS 1.2 cipher: " + reason_or("no cipher match"));
    }
  }
  if (!s.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx.get(), s.ciphersuites.c_str()) != 1) {
    return unexpected("tls settings: ciphersuites \"" + s.ciphersuites +
                      "\" is not a valid TLS 1.3 ciphersuite list: " + reason_or("no match"));
  }
  if (SSL_CTX_set1_groups_list(ctx.get(), s.groups.c_str()) != 1) {
    return unexpected("tls settings: groups \"" + s.groups +
                      "\" is not a valid group list: " + reason_or("unknown group"));
  }
  uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_ENABLE_KTLS
  if (s.ktls) opts |= SSL_OP_ENABLE_KTLS;
#endif
  if (!s.session_tickets) opts |= SSL_OP_NO_TICKET;
  SSL_CTX_set_options(ctx.get(), opts);
  // OpenSSL 3.0 spells "no client renegotiation" as the absence of this bit.
  SSL_CTX_clear_options(ctx.get(), SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_timeout(ctx.get(), static_cast<long>(s.session_timeout.count()));
  if (!s.session_tickets) SSL_CTX_set_num_tickets(ctx.get(), 0);

  auto* state = new (std::nothrow) ServerCtxState;
  if (state == nullptr) return unexpected(std::string("tls: out of memory"));
  if (SSL_CTX_set_ex_data(ctx.get(), ctx_state_index(), state) != 1) {
    delete state;
    return unexpected(std::string("tls: out of memory"));
  }
  if (!s.alpn.empty()) {
    auto wire = alpn_wire(s.alpn);
    if (!wire) return unexpected(wire.error());
    state->alpn_wire = std::move(*wire);
    state->alpn_strict = s.alpn_strict;
    SSL_CTX_set_alpn_select_cb(ctx.get(), on_alpn_select, state);
  }
  if (s.session_tickets && ticket_keys) {
    state->ticket_keys = std::move(ticket_keys);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx.get(), on_ticket_key);
    SSL_CTX_set_session_ticket_cb(ctx.get(), nullptr, on_ticket_decrypted, nullptr);
  }
  SSL_CTX_set_tlsext_servername_callback(ctx.get(), on_servername);
  return ctx;
}

}  // namespace

// --- detail ------------------------------------------------------------------

namespace detail {

std::string take_openssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(e);
    std::string item = reason != nullptr ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    if (out.find(item) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += item;
  }
  return out;
}

Result<std::string, std::string> read_small_file(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: a FIFO named by a path (an admin's, a configuration's)
  // opens at once and is refused below, instead of blocking the caller's
  // loop until a writer comes. Reads of a regular file ignore it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return unexpected(path + ": cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return unexpected(path + ": cannot stat: " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return unexpected(path + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  // Sized once, never grown, so no stray copy of a key is left in freed memory.
  std::string buf(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + have, buf.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      OPENSSL_cleanse(buf.data(), buf.size());
      return unexpected(path + ": read failed: " + errno_text(err));
    }
    if (n == 0) break;  // shrank while reading
    have += static_cast<size_t>(n);
  }
  ::close(fd);
  buf.resize(have);
  return buf;
}

Result<void, std::string> set_versions(SSL_CTX* ctx, TlsVersion min, TlsVersion max) {
  if (min > max) return unexpected(std::string("tls settings: min_version is above max_version"));
  if (SSL_CTX_set_min_proto_version(ctx, static_cast<int>(min)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, static_cast<int>(max)) != 1) {
    ERR_clear_error();
    return unexpected(std::string("tls settings: unsupported protocol version"));
  }
  return {};
}

}  // namespace detail

// --- public ------------------------------------------------------------------

Result<std::string, std::string> alpn_wire(const std::vector<std::string>& protocols) {
  if (protocols.size() > kMaxAlpnList) {
    return unexpected("tls settings: alpn lists " + std::to_string(protocols.size()) +
                      " protocols (at most " + std::to_string(kMaxAlpnList) + ")");
  }
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      return unexpected("tls settings: alpn protocol \"" + p + "\" must be 1 to 255 bytes");
    }
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

Result<void, std::string> validate_settings(const TlsSettings& settings) {
  auto ctx = new_configured_ctx(settings, nullptr);
  if (!ctx) return unexpected(ctx.error());
  return {};
}

CertInfo describe_cert(const X509* cert) {
  CertInfo info;
  if (cert == nullptr) return info;
  info.subject = name_oneline(X509_get_subject_name(cert));
  info.issuer = name_oneline(X509_get_issuer_name(cert));
  info.not_before = to_sys_seconds(X509_get0_notBefore(cert));
  info.not_after = to_sys_seconds(X509_get0_notAfter(cert));
  info.key_type = key_type_of(X509_get0_pubkey(cert));

  auto add_name = [&info](std::string_view raw) {
    auto n = cert_dns_name(raw);
    if (n && std::find(info.names.begin(), info.names.end(), *n) == info.names.end()) {
      info.names.push_back(std::move(*n));
    }
  };
  // The DNS subjectAltNames; the CN only where there is none (RFC 6125
  // 6.4.4, and what browsers do: with any DNS SAN the CN names nothing).
  bool has_dns_san = false;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != GEN_DNS) continue;
    has_dns_san = true;
    const ASN1_STRING* s = gn->d.dNSName;
    add_name({reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
              static_cast<size_t>(ASN1_STRING_length(s))});
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int cn_at = has_dns_san ? -1 : X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn_at >= 0) {
    const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn_at));
    unsigned char* utf8 = nullptr;
    const int len = ASN1_STRING_to_UTF8(&utf8, cn);
    if (len > 0) add_name({reinterpret_cast<const char*>(utf8), static_cast<size_t>(len)});
    OPENSSL_free(utf8);
  }
  GENERAL_NAMES_free(sans);
  ERR_clear_error();
  return info;
}

CertInfo describe_server_ctx(const SSL_CTX* ctx) {
  if (ctx == nullptr) return {};
  return describe_cert(SSL_CTX_get0_certificate(ctx));
}

Result<ServerCert, std::string> load_server_cert_pem(std::string_view chain_pem,
                                                     std::string_view key_pem,
                                                     const CertFiles& source,
                                                     const TlsSettings& settings,
                                                     std::shared_ptr<TicketKeys> ticket_keys) {
  auto chain = read_chain(chain_pem, source.cert_path);
  if (!chain) return unexpected(chain.error());
  auto key = read_key(key_pem, source.key_path);
  if (!key) return unexpected(key.error());

  X509* leaf = (*chain)[0].get();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    ERR_clear_error();
    std::string msg = source.key_path + ": key does not match certificate " + source.cert_path;
    for (size_t i = 1; i < chain->size(); ++i) {
      if (X509_check_private_key((*chain)[i].get(), key->get()) == 1) {
        msg += " (it matches certificate #" + std::to_string(i + 1) +
               "; the server certificate must come first in the chain file)";
        break;
      }
    }
    ERR_clear_error();
    return unexpected(std::move(msg));
  }

  auto ctx = new_configured_ctx(settings, std::move(ticket_keys));
  if (!ctx) return unexpected(ctx.error());
  ERR_clear_error();
  if (SSL_CTX_use_certificate(ctx->get(), leaf) != 1) {
    return unexpected(source.cert_path + ": certificate refused: " + reason_or("unknown reason"));
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx->get(), (*chain)[i].get()) != 1) {
      return unexpected(source.cert_path + ": certificate #" + std::to_string(i + 1) +
                        " refused: " + reason_or("unknown reason"));
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx->get(), key->get()) != 1) {
    return unexpected(source.key_path + ": private key refused: " + reason_or("unknown reason"));
  }
  if (SSL_CTX_check_private_key(ctx->get()) != 1) {
    ERR_clear_error();
    return unexpected(source.key_path + ": key does not match certificate " + source.cert_path);
  }
  // Sessions are bound to the certificate: a ticket resumes on any SSL_CTX of
  // the same certificate (every worker, every reload) and on no other.
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(leaf, EVP_sha256(), md, &md_len) != 1 ||
      SSL_CTX_set_session_id_context(ctx->get(), md,
                                     std::min<unsigned int>(md_len, SSL_MAX_SID_CTX_LENGTH)) != 1) {
    return unexpected(source.cert_path + ": cannot bind sessions: " + reason_or("digest failed"));
  }
  ServerCert out{std::move(*ctx), describe_cert(leaf)};
  return out;
}

Result<ServerCert, std::string> load_server_cert(const CertFiles& files,
                                                 const TlsSettings& settings,
                                                 std::shared_ptr<TicketKeys> ticket_keys) {
  auto chain = detail::read_small_file(files.cert_path, kMaxChainFile);
  if (!chain) return unexpected(chain.error());
  auto key = detail::read_small_file(files.key_path, kMaxKeyFile);
  if (!key) return unexpected(key.error());
  auto out = load_server_cert_pem(*chain, *key, files, settings, std::move(ticket_keys));
  OPENSSL_cleanse(key->data(), key->size());
  return out;
}

Result<SslCtxPtr, std::string> make_server_ctx(const CertFiles& files, const TlsSettings& settings,
                                               std::shared_ptr<TicketKeys> ticket_keys) {
  auto cert = load_server_cert(files, settings, std::move(ticket_keys));
  if (!cert) return unexpected(cert.error());
  return std::move(cert->ctx);
}

SslPtr new_server_ssl(SSL_CTX* chosen, std::string_view routed_host) noexcept {
  if (state_of(chosen) == nullptr) return nullptr;
  char name[kHostnameBufSize];
  uint16_t len = 0;
  if (!routed_host.empty()) {
    const auto n = normalize_hostname(routed_host, name);
    if (!n || n->kind != HostnameKind::kName) return nullptr;
    len = static_cast<uint16_t>(n->len);
  }
  auto* routed = static_cast<RoutedName*>(OPENSSL_malloc(RoutedName::alloc_size(len)));
  if (routed == nullptr) return nullptr;
  new (routed) RoutedName{len, false};
  std::memcpy(routed->name(), name, len);
  SslPtr ssl(SSL_new(chosen));
  if (!ssl || SSL_set_ex_data(ssl.get(), routed_name_index(), routed) != 1) {
    OPENSSL_free(routed);
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl.get());
  return ssl;
}

bool sni_mismatch(const SSL* ssl) noexcept {
  const auto* routed = static_cast<const RoutedName*>(SSL_get_ex_data(ssl, routed_name_index()));
  return routed != nullptr && routed->mismatch;
}

std::string_view selected_alpn(const SSL* ssl) noexcept {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &p, &len);
  return p == nullptr ? std::string_view()
                      : std::string_view(reinterpret_cast<const char*>(p), len);
}

}  // namespace lode::tls
