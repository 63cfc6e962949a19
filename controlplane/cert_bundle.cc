#include "controlplane/cert_bundle.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "lodestone/hostname.h"

namespace lode::cp {

namespace {

constexpr size_t kMaxChainFile = 1 << 20;   // a PEM chain file (as the dataplane's limit)
constexpr size_t kMaxKeyFile = 64 << 10;    // a PEM key file
constexpr size_t kMaxBundleFile = 8 << 20;  // trusted_ca_file / intermediates_file
constexpr size_t kMaxChainCerts = 16;       // certificates in a chain file
constexpr size_t kMaxBundleCerts = 10000;   // certificates in a CA / intermediates bundle

template <auto Fn>
struct Free {
  template <class T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Free<BIO_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
void free_stack(STACK_OF(X509) * s) noexcept {
  sk_X509_free(s);
}  // borrowed entries
using X509StackPtr = std::unique_ptr<STACK_OF(X509), Free<free_stack>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Free<EVP_MD_CTX_free>>;

// One parsed copy per distinct intermediate for every bundle of the process
// (100,000 leaves under one CA hold one X509 of it, not 100,000). X509
// objects are reference counted and read-only once parsed; the table keeps
// one reference per distinct certificate, so it grows with distinct
// intermediates only.
X509Ptr interned(X509Ptr x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!x || X509_digest(x.get(), EVP_sha256(), md, &len) != 1) return x;
  static std::mutex mu;
  static std::unordered_map<std::string, X509*>* table = new std::unordered_map<std::string, X509*>();
  std::string key(reinterpret_cast<const char*>(md), len);
  std::lock_guard lock(mu);
  auto it = table->find(key);
  if (it != table->end()) {
    X509_up_ref(it->second);
    return X509Ptr(it->second);
  }
  X509_up_ref(x.get());
  table->emplace(std::move(key), x.get());
  return x;
}

X509Ptr up_ref(X509* x) {
  X509_up_ref(x);
  return X509Ptr(x);
}

void cleanse(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string reason_or(std::string_view fallback) {
  std::string r = tls::detail::take_openssl_errors();
  return r.empty() ? std::string(fallback) : r;
}

std::string iso_date(std::chrono::sys_seconds t) {
  const std::time_t tt = t.time_since_epoch().count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// RFC 2253 one-liner (control characters escaped, safe to log).
std::string name_line(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr) return "?";
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string("(empty subject)");
}
std::string subject_of(const X509* x) {
  return name_line(X509_get_subject_name(x));
}

bool is_issuer_of(X509* issuer, X509* subject) {
  const bool ok = X509_check_issued(issuer, subject) == X509_V_OK;
  ERR_clear_error();
  return ok;
}
bool self_signed(X509* x) {
  const bool ok = X509_self_signed(x, 0) == 1;
  ERR_clear_error();
  return ok;
}
bool contains(const std::vector<X509Ptr>& v, const X509* x) {
  return std::any_of(v.begin(), v.end(),
                     [x](const X509Ptr& c) { return X509_cmp(c.get(), x) == 0; });
}

// Every PEM certificate in `pem` (TRUSTED CERTIFICATE blocks too); at least one.
Result<std::vector<X509Ptr>, std::string> parse_certs(std::string_view pem,
                                                      const std::string& label, size_t max_certs) {
  if (pem.size() > static_cast<size_t>(INT32_MAX)) return unexpected(label + ": file too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return unexpected(label + ": out of memory");
  std::vector<X509Ptr> out;
  ERR_clear_error();
  while (X509* x = PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(x);
    if (out.size() > max_certs) {
      return unexpected(label + ": more than " + std::to_string(max_certs) + " certificates");
    }
  }
  const unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
    if (out.empty()) {
      return unexpected(label +
                        ": no certificate found (expected a PEM 'BEGIN CERTIFICATE' block)");
    }
    return out;
  }
  return unexpected(label + ": certificate #" + std::to_string(out.size() + 1) +
                    " is not a valid PEM certificate: " + reason_or("parse error"));
}

int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

// OpenSSL 3.0 builds a decoder context for every PEM_read_bio_PrivateKey
// (provider and method lookups under global locks): ~290 us per key, and
// threads wait on each other. One context per thread, reused, decodes the
// same key in ~15-30 us (measured on this machine type). A context that
// failed once is not reusable (3.0 then reports success without a key), so
// it is dropped, and the slow path below gives the error message.
EVP_PKEY* decode_key_fast(std::string_view pem) {
  if (pem.find("ENCRYPTED") != std::string_view::npos) return nullptr;  // the slow path explains
  struct Decoder {
    EVP_PKEY* out = nullptr;
    OSSL_DECODER_CTX* ctx = nullptr;
    ~Decoder() { OSSL_DECODER_CTX_free(ctx); }
  };
  thread_local Decoder d;
  if (d.ctx == nullptr) {
    d.ctx = OSSL_DECODER_CTX_new_for_pkey(&d.out, "PEM", nullptr, nullptr, OSSL_KEYMGMT_SELECT_KEYPAIR, nullptr,
                                          nullptr);
    if (d.ctx == nullptr) return nullptr;
    // The callback's argument outlives the context (thread_local as it is).
    thread_local bool asked = false;
    OSSL_DECODER_CTX_set_pem_password_cb(d.ctx, refuse_passphrase, &asked);
  }
  d.out = nullptr;
  const auto* p = reinterpret_cast<const unsigned char*>(pem.data());
  size_t len = pem.size();
  if (OSSL_DECODER_from_data(d.ctx, &p, &len) == 1 && d.out != nullptr) {
    EVP_PKEY* key = d.out;
    d.out = nullptr;
    return key;
  }
  EVP_PKEY_free(d.out);
  d.out = nullptr;
  OSSL_DECODER_CTX_free(d.ctx);
  d.ctx = nullptr;
  ERR_clear_error();
  return nullptr;
}

Result<PkeyPtr, std::string> parse_key(std::string_view pem, const std::string& label) {
  if (pem.size() > static_cast<size_t>(INT32_MAX)) return unexpected(label + ": file too large");
  if (pem.find("PRIVATE KEY-----") == std::string_view::npos) {
    return unexpected(label + ": no private key found (expected a PEM 'BEGIN PRIVATE KEY' block)");
  }
  if (PkeyPtr fast(decode_key_fast(pem)); fast) {
    const int type = EVP_PKEY_get_base_id(fast.get());
    if (type == EVP_PKEY_EC || type == EVP_PKEY_RSA) return fast;
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return unexpected(label + ": out of memory");
  ERR_clear_error();
  bool asked = false;
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, &asked));
  if (!key) {
    if (asked || pem.find("ENCRYPTED") != std::string_view::npos) {
      ERR_clear_error();
      return unexpected(label +
                        ": the private key is encrypted (passphrase-protected keys are not "
                        "supported; store it decrypted with mode 0600)");
    }
    return unexpected(label + ": not a valid PEM private key: " + reason_or("parse error"));
  }
  const int type = EVP_PKEY_get_base_id(key.get());
  if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
    return unexpected(label + ": unsupported key type " + OBJ_nid2sn(type) +
                      " (expected an ECDSA or RSA key)");
  }
  return key;
}

Result<void, std::string> append_pem(std::string& out, X509* x, const std::string& label) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), x) != 1) {
    return unexpected(label + ": cannot encode certificate: " + reason_or("out of memory"));
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  out.append(data, static_cast<size_t>(n));
  return {};
}

// The key text itself when it is exactly one unencrypted PKCS#8 PEM block
// (what key_to_pem writes, and what openssl genpkey writes); empty otherwise.
std::string_view single_pkcs8_block(std::string_view pem) {
  constexpr std::string_view kBegin = "-----BEGIN PRIVATE KEY-----\n";
  constexpr std::string_view kEnd = "-----END PRIVATE KEY-----\n";
  const size_t b = pem.find(kBegin);
  if (b == std::string_view::npos || pem.find("-----BEGIN", b + 1) != std::string_view::npos) return {};
  const size_t e = pem.find(kEnd, b);
  if (e == std::string_view::npos) return {};
  for (char c : pem.substr(0, b)) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return {};
  }
  for (char c : pem.substr(e + kEnd.size())) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return {};
  }
  return pem.substr(b, e + kEnd.size() - b);
}

// PKCS#8 PEM through a secure-memory BIO; the string is sized once.
Result<std::string, std::string> key_to_pem(EVP_PKEY* key, const std::string& label) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return unexpected(label + ": cannot encode the private key: " + reason_or("out of memory"));
  }
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::optional<uint64_t> content_version(std::string_view chain, std::string_view key) {
  MdCtxPtr md(EVP_MD_CTX_new());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(md.get(), chain.data(), chain.size()) != 1 ||
      EVP_DigestUpdate(md.get(), key.data(), key.size()) != 1 ||
      EVP_DigestFinal_ex(md.get(), digest, &len) != 1 || len < 8) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  OPENSSL_cleanse(digest, sizeof(digest));
  return v;
}

// X509_verify_cert at `now`, purpose sslserver; the verified path or a message.
Result<std::vector<X509Ptr>, std::string> verify_path(X509_STORE* store, X509* leaf,
                                                      const std::vector<X509*>& untrusted,
                                                      std::chrono::sys_seconds now, bool partial,
                                                      const std::string& what) {
  X509StackPtr pool(sk_X509_new_null());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!pool || !ctx) return unexpected(what + ": out of memory");
  for (X509* x : untrusted) {
    if (sk_X509_push(pool.get(), x) <= 0) return unexpected(what + ": out of memory");
  }
  ERR_clear_error();
  if (X509_STORE_CTX_init(ctx.get(), store, leaf, pool.get()) != 1) {
    return unexpected(what + ": cannot verify: " + reason_or("out of memory"));
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now.time_since_epoch().count()));
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(kMaxChainCerts));
  if (partial) X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
    std::string msg = what + ": " + X509_verify_cert_error_string(err) + " (certificate " +
                      (at != nullptr ? subject_of(at) : std::string("?")) + ", depth " +
                      std::to_string(X509_STORE_CTX_get_error_depth(ctx.get())) + ")";
    if (at != nullptr && (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                          err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT)) {
      msg += "; its issuer (" + name_line(X509_get_issuer_name(at)) +
             ") is in neither the chain file, intermediates_file nor the trusted certificates";
    }
    ERR_clear_error();
    return unexpected(std::move(msg));
  }
  std::vector<X509Ptr> path;
  STACK_OF(X509)* chain = X509_STORE_CTX_get1_chain(ctx.get());
  for (int i = 0; i < sk_X509_num(chain); ++i) path.emplace_back(sk_X509_value(chain, i));
  sk_X509_free(chain);  // the references moved into `path`
  return path;
}

struct Labels {
  const std::string& cert;
  const std::string& key;
  std::string source;
};

// The leaf's own checks: key match, not a CA, valid at `now`.
Result<void, std::string> check_leaf(const std::vector<X509Ptr>& certs, EVP_PKEY* key,
                                     const tls::CertInfo& info, std::chrono::sys_seconds now,
                                     const Labels& l) {
  X509* leaf = certs[0].get();
  if (X509_check_private_key(leaf, key) != 1) {
    ERR_clear_error();
    std::string msg = l.key + ": the private key does not match the certificate in " + l.cert +
                      " (" + subject_of(leaf) + ")";
    for (size_t i = 1; i < certs.size(); ++i) {
      if (X509_check_private_key(certs[i].get(), key) == 1) {
        msg += "; it matches certificate #" + std::to_string(i + 1) +
               ": the server certificate must come first in the chain file";
        break;
      }
    }
    ERR_clear_error();
    return unexpected(std::move(msg));
  }
  if ((X509_get_extension_flags(leaf) & EXFLAG_CA) != 0) {
    return unexpected(l.cert + ": the first certificate (" + subject_of(leaf) +
                      ") is a CA certificate (basicConstraints CA:TRUE), not a server "
                      "certificate; put the server certificate first (a self-signed one needs "
                      "basicConstraints=critical,CA:FALSE)");
  }
  if (info.expired_at(now)) {
    return unexpected(l.cert + ": certificate " + subject_of(leaf) + " expired at " +
                      iso_date(info.not_after) + " (now " + iso_date(now) + ")");
  }
  // A certificate issued a moment ago by a CA whose clock is a little ahead
  // (or one this second) is not refused: notBefore gets kNotBeforeSkew.
  if (info.not_yet_valid_at(now + kNotBeforeSkew)) {
    return unexpected(l.cert + ": certificate " + subject_of(leaf) + " is not valid before " +
                      iso_date(info.not_before) + " (now " + iso_date(now) + ")");
  }
  return {};
}

// The file's certificates must each be issued by the next one.
Result<void, std::string> check_order(const std::vector<X509Ptr>& certs, const Labels& l) {
  for (size_t i = 0; i + 1 < certs.size(); ++i) {
    if (is_issuer_of(certs[i + 1].get(), certs[i].get())) continue;
    return unexpected(l.cert + ": certificate #" + std::to_string(i + 2) + " (" +
                      subject_of(certs[i + 1].get()) + ") is not the issuer of certificate #" +
                      std::to_string(i + 1) + " (" + subject_of(certs[i].get()) + ", issued by " +
                      name_line(X509_get_issuer_name(certs[i].get())) +
                      "); expected the server certificate first, then each issuer in order");
  }
  return {};
}

// The verified path from the leaf up to an anchor.
Result<std::vector<X509Ptr>, std::string> build_path(const std::vector<X509Ptr>& certs,
                                                     const CertTrust& trust,
                                                     std::chrono::sys_seconds now,
                                                     const Labels& l) {
  std::vector<X509*> untrusted;
  for (size_t i = 1; i < certs.size(); ++i) untrusted.push_back(certs[i].get());
  if (trust.has_anchor()) {
    for (const auto& x : trust.intermediates()) untrusted.push_back(x.get());
    return verify_path(trust.store(), certs[0].get(), untrusted, now, false,
                       l.cert + ": the chain does not verify against trusted_ca_file " +
                           trust.validation().trusted_ca_file);
  }
  // No trust anchor: extend the file's chain from the intermediates while its
  // top is not self-signed, then verify up to that top as the anchor.
  X509* top = certs.back().get();
  for (size_t n = certs.size(); n < kMaxChainCerts && !self_signed(top); ++n) {
    const auto& pool = trust.intermediates();
    const auto it = std::find_if(pool.begin(), pool.end(), [&](const X509Ptr& c) {
      return is_issuer_of(c.get(), top) &&
             std::find(untrusted.begin(), untrusted.end(), c.get()) == untrusted.end();
    });
    if (it == pool.end()) break;
    top = it->get();
    untrusted.push_back(top);
  }
  X509StorePtr anchor(X509_STORE_new());
  if (!anchor || X509_STORE_add_cert(anchor.get(), top) != 1) {
    return unexpected(l.cert + ": cannot verify: " + reason_or("out of memory"));
  }
  if (!untrusted.empty()) untrusted.pop_back();  // the anchor itself
  return verify_path(anchor.get(), certs[0].get(), untrusted, now, true,
                     l.cert + ": the chain does not verify");
}

void warn_expiring(X509* x, std::chrono::sys_seconds now, std::chrono::seconds window,
                   const std::string& label, std::vector<std::string>& warnings) {
  const tls::CertInfo info = tls::describe_cert(x);
  if (info.not_after - now > window) return;
  const auto days = std::chrono::duration_cast<std::chrono::days>(info.not_after - now).count();
  warnings.push_back(label + ": certificate " + subject_of(x) + " expires at " +
                     iso_date(info.not_after) + " (in " + std::to_string(days) + " days)");
}

Result<CertBundle, std::string> validate(std::string_view chain_pem, std::string_view key_pem,
                                         const Labels& l, const CertTrust& trust,
                                         std::chrono::sys_seconds now,
                                         std::vector<std::string>& warnings) {
  auto certs = parse_certs(chain_pem, l.cert, kMaxChainCerts);
  if (!certs) return unexpected(certs.error());
  auto key = parse_key(key_pem, l.key);
  if (!key) return unexpected(key.error());

  CertBundle out;
  out.source = l.source;
  out.info = tls::describe_cert((*certs)[0].get());
  if (auto r = check_leaf(*certs, key->get(), out.info, now, l); !r) return unexpected(r.error());
  if (auto r = check_order(*certs, l); !r) return unexpected(r.error());
  // Within the notBefore tolerance, the chain is verified as of the leaf's
  // notBefore (expiry was checked against `now` above).
  const auto verify_at = std::max(now, std::min(out.info.not_before, now + kNotBeforeSkew));
  auto path = build_path(*certs, trust, verify_at, l);
  if (!path) return unexpected(path.error());

  // Served: the file's certificates in its order, then what the path added
  // (not self-signed roots).
  out.leaf = std::move((*certs)[0]);
  for (size_t i = 1; i < certs->size(); ++i) out.chain.push_back(std::move((*certs)[i]));
  for (size_t i = 1; i < path->size(); ++i) {
    X509* x = (*path)[i].get();
    if (!contains(out.chain, x) && !self_signed(x)) out.chain.push_back(up_ref(x));
  }
  if (path->size() > 1) {
    out.issuer = up_ref((*path)[1].get());
  } else if (self_signed(out.leaf.get())) {
    out.issuer = up_ref(out.leaf.get());
    warnings.push_back(l.cert + ": certificate " + subject_of(out.leaf.get()) +
                       " is self-signed; only clients that trust it explicitly will accept it");
  } else {
    warnings.push_back(l.cert + ": the issuer of " + subject_of(out.leaf.get()) + " (" +
                       name_line(X509_get_issuer_name(out.leaf.get())) +
                       ") is in neither the chain file nor intermediates_file; clients that "
                       "lack it will fail, and OCSP stapling needs it");
  }

  if (auto r = append_pem(out.chain_pem, out.leaf.get(), l.cert); !r) return unexpected(r.error());
  for (const auto& c : out.chain) {
    if (auto r = append_pem(out.chain_pem, c.get(), l.cert); !r) return unexpected(r.error());
  }
  for (auto& c : out.chain) c = interned(std::move(c));
  if (out.issuer && out.issuer.get() != out.leaf.get()) out.issuer = interned(std::move(out.issuer));
  if (auto verbatim = single_pkcs8_block(key_pem); !verbatim.empty()) {
    out.key_pem = std::string(verbatim);  // already what key_to_pem would write
  } else {
    auto pem = key_to_pem(key->get(), l.key);
    if (!pem) return unexpected(pem.error());
    out.key_pem = std::move(*pem);
  }
  const auto version = content_version(out.chain_pem, out.key_pem);
  if (!version) return unexpected(l.cert + ": cannot hash: " + reason_or("out of memory"));
  out.version = *version;

  const auto window = trust.validation().expiry_warning;
  warn_expiring(out.leaf.get(), now, window, l.cert, warnings);
  for (const auto& c : out.chain) warn_expiring(c.get(), now, window, l.cert, warnings);
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(out.leaf.get(), NID_subject_alt_name, nullptr, nullptr));
  bool has_dns = false;
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    has_dns = has_dns || sk_GENERAL_NAME_value(sans, i)->type == GEN_DNS;
  }
  GENERAL_NAMES_free(sans);
  ERR_clear_error();
  if (!has_dns) {
    warnings.push_back(l.cert + ": certificate " + subject_of(out.leaf.get()) +
                       " has no subjectAltName; clients ignore the CN and will reject it");
  }
  return out;
}

// Loads with `v`'s files read once; the no-anchor warning when it loaded.
template <class Load>
Result<CertBundle, std::string> with_trust(const CertValidation& v, const std::string& what,
                                           std::vector<std::string>& warnings, Load&& load) {
  auto trust = CertTrust::load(v);
  if (!trust) return unexpected(trust.error());
  auto out = load(*trust);
  if (out && !trust->has_anchor()) warnings.push_back(trust->no_anchor_warning(what));
  return out;
}

}  // namespace

// --- CertTrust ---------------------------------------------------------------

Result<CertTrust, std::string> CertTrust::load(const CertValidation& v) {
  CertTrust t(v);
  if (!v.intermediates_file.empty()) {
    auto text = tls::detail::read_small_file(v.intermediates_file, kMaxBundleFile);
    if (!text) return unexpected("intermediates_file " + text.error());
    auto certs = parse_certs(*text, "intermediates_file " + v.intermediates_file, kMaxBundleCerts);
    if (!certs) return unexpected(certs.error());
    t.intermediates_ = std::move(*certs);
  }
  if (!v.trusted_ca_file.empty()) {
    auto text = tls::detail::read_small_file(v.trusted_ca_file, kMaxBundleFile);
    if (!text) return unexpected("trusted_ca_file " + text.error());
    auto certs = parse_certs(*text, "trusted_ca_file " + v.trusted_ca_file, kMaxBundleCerts);
    if (!certs) return unexpected(certs.error());
    t.store_.reset(X509_STORE_new());
    if (!t.store_) return unexpected(std::string("trusted_ca_file: out of memory"));
    for (const auto& c : *certs) {
      if (X509_STORE_add_cert(t.store_.get(), c.get()) != 1) {
        return unexpected("trusted_ca_file " + v.trusted_ca_file + ": certificate " +
                          subject_of(c.get()) + " refused: " + reason_or("unknown reason"));
      }
    }
  }
  return t;
}

std::string CertTrust::no_anchor_warning(std::string_view what) const {
  return std::string(what) +
         ": no trusted_ca_file configured; chains are checked for links only, not against a "
         "trust anchor";
}

// --- CertBundle ----------------------------------------------------------------

CertBundle::~CertBundle() {
  cleanse(key_pem);
}

CertBundle::CertBundle(CertBundle&& o) noexcept
    : source(std::move(o.source)),
      chain_pem(std::move(o.chain_pem)),
      key_pem(std::move(o.key_pem)),
      leaf(std::move(o.leaf)),
      chain(std::move(o.chain)),
      issuer(std::move(o.issuer)),
      info(std::move(o.info)),
      version(o.version) {
  cleanse(o.key_pem);
}

CertBundle& CertBundle::operator=(CertBundle&& o) noexcept {
  if (this == &o) return *this;
  cleanse(key_pem);
  source = std::move(o.source);
  chain_pem = std::move(o.chain_pem);
  key_pem = std::move(o.key_pem);
  cleanse(o.key_pem);
  leaf = std::move(o.leaf);
  chain = std::move(o.chain);
  issuer = std::move(o.issuer);
  info = std::move(o.info);
  version = o.version;
  return *this;
}

// --- loading -------------------------------------------------------------------

Result<CertBundle, std::string> load_cert_bundle(const std::string& cert_path,
                                                 const std::string& key_path,
                                                 const CertTrust& trust,
                                                 std::chrono::sys_seconds now,
                                                 std::vector<std::string>& warnings) {
  auto chain = tls::detail::read_small_file(cert_path, kMaxChainFile);
  if (!chain) return unexpected(chain.error());
  auto key = tls::detail::read_small_file(key_path, kMaxKeyFile);
  if (!key) return unexpected(key.error());
  auto out = validate(*chain, *key, Labels{cert_path, key_path, cert_path + " + " + key_path},
                      trust, now, warnings);
  cleanse(*key);
  return out;
}

Result<CertBundle, std::string> load_cert_bundle(const std::string& cert_path,
                                                 const std::string& key_path,
                                                 const CertValidation& v,
                                                 std::chrono::sys_seconds now,
                                                 std::vector<std::string>& warnings) {
  return with_trust(v, cert_path, warnings, [&](const CertTrust& trust) {
    return load_cert_bundle(cert_path, key_path, trust, now, warnings);
  });
}

Result<CertBundle, std::string> load_cert_bundle_pem(std::string_view chain_pem,
                                                     std::string_view key_pem, std::string label,
                                                     const CertTrust& trust,
                                                     std::chrono::sys_seconds now,
                                                     std::vector<std::string>& warnings) {
  return validate(chain_pem, key_pem, Labels{label, label, label}, trust, now, warnings);
}

Result<CertBundle, std::string> load_cert_bundle_pem(std::string_view chain_pem,
                                                     std::string_view key_pem, std::string label,
                                                     const CertValidation& v,
                                                     std::chrono::sys_seconds now,
                                                     std::vector<std::string>& warnings) {
  return with_trust(v, label, warnings, [&](const CertTrust& trust) {
    return validate(chain_pem, key_pem, Labels{label, label, label}, trust, now, warnings);
  });
}

// --- names ---------------------------------------------------------------------

std::vector<std::string> uncovered_names(const tls::CertInfo& info,
                                         const std::vector<std::string>& route_names) {
  std::vector<std::string> out;
  for (const std::string& route : route_names) {
    std::string_view rest = route;
    const bool wildcard = rest.starts_with("*.");
    if (wildcard) rest.remove_prefix(2);
    char buf[kHostnameBufSize];
    const auto n = normalize_hostname(rest, buf);
    if (!n || n->kind != HostnameKind::kName) {
      out.push_back(route);
      continue;
    }
    const std::string_view host(buf, n->len);
    const size_t dot = host.find('.');
    const std::string_view parent = dot == std::string_view::npos ? "" : host.substr(dot + 1);
    const bool covered =
        std::any_of(info.names.begin(), info.names.end(), [&](const std::string& name) {
          const std::string_view c = name;
          if (c.starts_with("*.")) {
            const std::string_view base = c.substr(2);
            if (wildcard) return base == host;
            // One label below `base`, and `base` has at least two labels (as
            // X509_check_host: "*.com" covers nothing).
            return base.find('.') != std::string_view::npos && base == parent;
          }
          return !wildcard && c == host;
        });
    if (!covered) out.push_back(route);
  }
  return out;
}

}  // namespace lode::cp
