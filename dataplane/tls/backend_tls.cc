#include "dataplane/tls/backend_tls.h"

#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <new>

#include "lodestone/hostname.h"

namespace lode::tls {

namespace {

struct CheckedName {
  std::string text;  // normalized host name, or the IP literal as given
  bool ip = false;
};

// What a backend SSL_CTX made here carries in its ex_data; freed with it.
struct BackendCtxState {
  CheckedName server_name;  // empty = no SNI (unless the client's is used)
  CheckedName verify_name;  // empty = the name the SNI was made from
  bool sni_from_client = false;
  bool verify = true;
};

void free_backend_state(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/,
                        long /*argl*/, void* /*argp*/) {
  delete static_cast<BackendCtxState*>(ptr);
}

int backend_state_index() {
  static const int idx = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_backend_state);
  return idx;
}

const BackendCtxState* backend_state_of(const SSL_CTX* ctx) noexcept {
  if (ctx == nullptr) return nullptr;
  return static_cast<const BackendCtxState*>(SSL_CTX_get_ex_data(ctx, backend_state_index()));
}

// A host name (normalized) or an IP literal (kept as written, brackets off).
Result<CheckedName, std::string> check_name(std::string_view in, std::string_view setting) {
  char buf[kHostnameBufSize];
  const auto n = normalize_hostname(in, buf);
  if (!n) {
    return unexpected("backend tls: " + std::string(setting) + " \"" + std::string(in) +
                      "\" is not a host name: " + std::string(to_string(n.error())));
  }
  if (n->kind == HostnameKind::kName) return CheckedName{std::string(buf, n->len), false};
  std::string_view ip = in;
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  return CheckedName{std::string(ip), true};
}

std::string name_line(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr || name == nullptr) {
    BIO_free(bio);
    return {};
  }
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);  // control characters escaped
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out = n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
  BIO_free(bio);
  return out;
}

}  // namespace

Result<void, std::string> load_verify_cas(SSL_CTX* ctx, const std::string& ca_file, const std::string& ca_path) {
  if (ca_file.empty() && ca_path.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return unexpected("cannot load the system trust store: " + detail::take_openssl_errors());
    }
    return {};
  }
  struct stat st {};
  if (!ca_file.empty() && (::stat(ca_file.c_str(), &st) != 0 || !S_ISREG(st.st_mode))) {
    return unexpected("ca_file " + ca_file + ": not a readable file");
  }
  if (!ca_path.empty() && (::stat(ca_path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    return unexpected("ca_path " + ca_path + ": not a directory");
  }
  if (SSL_CTX_load_verify_locations(ctx, ca_file.empty() ? nullptr : ca_file.c_str(),
                                    ca_path.empty() ? nullptr : ca_path.c_str()) != 1) {
    const std::string what = !ca_file.empty() ? "ca_file " + ca_file : "ca_path " + ca_path;
    return unexpected(what + ": no CA certificate loaded: " + detail::take_openssl_errors());
  }
  return {};
}

Result<SslCtxPtr, std::string> make_backend_ctx(const BackendTlsSettings& s) {
  auto state = std::make_unique<BackendCtxState>();
  state->verify = s.verify;
  state->sni_from_client = s.sni_from_client;
  if (!s.server_name.empty()) {
    auto n = check_name(s.server_name, "server_name");
    if (!n) return unexpected(n.error());
    state->server_name = std::move(*n);
  }
  if (!s.verify_name.empty()) {
    auto n = check_name(s.verify_name, "verify_name");
    if (!n) return unexpected(n.error());
    state->verify_name = std::move(*n);
  }
  if (s.verify && s.server_name.empty() && s.verify_name.empty() && !s.sni_from_client) {
    return unexpected(std::string(
        "backend tls: verify is on but there is no name to check (no server_name, no "
        "verify_name, client SNI not used): set verify_name to the name in the backend's "
        "certificate"));
  }

  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx)
    return unexpected("backend tls: cannot create SSL_CTX: " + detail::take_openssl_errors());
  if (auto r = detail::set_versions(ctx.get(), s.min_version, s.max_version); !r) {
    return unexpected("backend " + r.error());
  }
  uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
#ifdef SSL_OP_ENABLE_KTLS
  opts |= SSL_OP_ENABLE_KTLS;
#endif
  SSL_CTX_set_options(ctx.get(), opts);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);

  if (s.verify) {
    if (auto cas = load_verify_cas(ctx.get(), s.ca_file, s.ca_path); !cas) {
      return unexpected("backend tls: " + cas.error());
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (!s.alpn.empty()) {
    auto wire = alpn_wire(s.alpn);
    if (!wire) return unexpected("backend " + wire.error());
    // SSL_CTX_set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(wire->data()),
                                static_cast<unsigned int>(wire->size())) != 0) {
      return unexpected(std::string("backend tls: cannot set alpn"));
    }
  }
  if (SSL_CTX_set_ex_data(ctx.get(), backend_state_index(), state.get()) != 1) {
    return unexpected(std::string("backend tls: out of memory"));
  }
  state.release();  // owned by the SSL_CTX now
  return ctx;
}

SslPtr new_backend_ssl(SSL_CTX* ctx, std::string_view client_sni) noexcept {
  const BackendCtxState* st = backend_state_of(ctx);
  if (st == nullptr) return nullptr;
  CheckedName sni = st->server_name;
  if (st->sni_from_client && !client_sni.empty()) {
    auto n = check_name(client_sni, "sni");
    if (!n) return nullptr;
    sni = std::move(*n);
  }
  const CheckedName& expect = st->verify_name.text.empty() ? sni : st->verify_name;
  if (st->verify && expect.text.empty()) return nullptr;

  SslPtr ssl(SSL_new(ctx));
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl.get());
  bool ok = true;
  if (!sni.text.empty() && !sni.ip) ok = SSL_set_tlsext_host_name(ssl.get(), sni.text.c_str()) == 1;
  if (ok && st->verify) {
    if (expect.ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), expect.text.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl.get(), expect.text.c_str()) == 1;
    }
  }
  if (!ok) {
    ERR_clear_error();
    return nullptr;
  }
  return ssl;
}

Result<std::shared_ptr<BackendTlsContext>, std::string> BackendTlsContext::create(
    const BackendTlsSettings& settings) {
  auto ctx = make_backend_ctx(settings);
  if (!ctx) return unexpected(ctx.error());
  return std::make_shared<BackendTlsContext>(std::move(*ctx), settings);
}

std::string_view backend_sni(const SSL* ssl) noexcept {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  return name == nullptr ? std::string_view() : std::string_view(name);
}

std::string describe_chain(const SSL* ssl) {
  STACK_OF(X509)* chain = nullptr;
  if (SSL_get_verify_result(ssl) == X509_V_OK) chain = SSL_get0_verified_chain(ssl);
  if (chain == nullptr) chain = SSL_get_peer_cert_chain(ssl);
  if (chain == nullptr || sk_X509_num(chain) == 0) return "no certificate";
  std::string out;
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    const X509* x = sk_X509_value(chain, i);
    if (i > 0) out += " | ";
    out += std::to_string(i) + " s=" + name_line(X509_get_subject_name(x)) +
           " i=" + name_line(X509_get_issuer_name(x));
  }
  return out;
}

std::string verify_error(const SSL* ssl) {
  const long r = SSL_get_verify_result(ssl);
  if (r == X509_V_OK) return {};
  return std::string(X509_verify_cert_error_string(r)) + " (verify error " + std::to_string(r) +
         ")";
}

}  // namespace lode::tls
