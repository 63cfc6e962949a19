// TLS towards a backend ("re-encrypt"; stone's `-q sni -q servername=NAME
// -q verify -q CApath=DIR`): a client SSL_CTX per backend pool, a client SSL
// per connection that sends the configured SNI and checks the backend's
// certificate chain and name, and the lines that go into the log.
//
// No sockets: the worker drives the SSL through its own BIO.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "lodestone/result.h"

namespace lode::tls {

struct BackendTlsSettings {
  // SNI sent to the backend; empty = none. An IP literal is never sent as SNI
  // (RFC 6066 section 3) but is still used for verification.
  std::string server_name;
  // Send the client's SNI (given per connection) instead; server_name is the
  // fallback for clients that sent none.
  bool sni_from_client = false;
  // Verify the backend's chain against ca_file / ca_path (both empty: the
  // system's default trust store) and its name against verify_name.
  bool verify = true;
  std::string ca_file;  // PEM bundle
  std::string ca_path;  // directory of hashed certificates (c_rehash)
  // The name (or IP literal) the certificate must carry; empty = the name the
  // SNI was made from (server_name, or the client's SNI). With verify on and
  // no name at all for a connection, no SSL is made for it: a backend is
  // never trusted without a name check.
  std::string verify_name;
  std::vector<std::string> alpn;  // offered to the backend; empty = no ALPN
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
};

// Builds the client SSL_CTX of one backend pool. Errors name the setting or
// file: a CA file or path that does not load, verify on with no name that
// could ever be checked, a host name that is not one, a bad ALPN list.
[[nodiscard]] Result<SslCtxPtr, std::string> make_backend_ctx(const BackendTlsSettings& settings);

// The CAs a client context verifies its peers with: ca_file (a regular
// file: a FIFO or a device would block or never end the read) and/or
// ca_path (a directory), else the system's trust store. The error names the
// setting ("ca_file PATH: ...").
[[nodiscard]] Result<void, std::string> load_verify_cas(SSL_CTX* ctx, const std::string& ca_file,
                                                        const std::string& ca_path);

// A client SSL for one backend connection, in connect state. `client_sni` is
// the normalized SNI of the client's connection (empty if none); it is used
// only with sni_from_client. nullptr when `ctx` was not made by
// make_backend_ctx(), when verification is on and there is no name to check,
// when `client_sni` is not a host name, or when memory runs out.
[[nodiscard]] SslPtr new_backend_ssl(SSL_CTX* ctx, std::string_view client_sni = {}) noexcept;

// The same, as an object a pool shares among workers (SSL_CTX is thread-safe
// for SSL_new).
class BackendTlsContext {
 public:
  [[nodiscard]] static Result<std::shared_ptr<BackendTlsContext>, std::string> create(
      const BackendTlsSettings& settings);

  [[nodiscard]] SslPtr new_ssl(std::string_view client_sni = {}) const noexcept {
    return new_backend_ssl(ctx_.get(), client_sni);
  }
  SSL_CTX* ctx() const noexcept { return ctx_.get(); }
  const BackendTlsSettings& settings() const noexcept { return settings_; }

  explicit BackendTlsContext(SslCtxPtr ctx, BackendTlsSettings settings)
      : ctx_(std::move(ctx)), settings_(std::move(settings)) {}

 private:
  SslCtxPtr ctx_;
  BackendTlsSettings settings_;
};

// The SNI this connection sends (empty if none).
[[nodiscard]] std::string_view backend_sni(const SSL* ssl) noexcept;

// One log line describing the backend's chain, leaf first:
// "0 s=CN=b.test i=CN=Test CA | 1 s=CN=Test CA i=CN=Test CA". The verified
// chain when verification succeeded, the chain as sent otherwise; "no
// certificate" when the backend sent none.
[[nodiscard]] std::string describe_chain(const SSL* ssl);

// Why verification failed ("certificate has expired (verify error 10)", ...),
// empty when it succeeded or did not run.
[[nodiscard]] std::string verify_error(const SSL* ssl);

}  // namespace lode::tls
