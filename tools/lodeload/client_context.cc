#include "tools/lodeload/client_context.h"

#include <openssl/err.h>

namespace lode::load {

namespace {

unexpected<std::string> failed(const std::string& what) {
  return unexpected("lodeload: " + what + ": " + tls::detail::take_openssl_errors());
}

}  // namespace

Result<tls::SslCtxPtr, std::string> make_client_ctx(const Options& o) {
  tls::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return failed("SSL_CTX_new");
  SSL_CTX* c = ctx.get();
  const int min = o.tls_version != 0 ? o.tls_version : TLS1_2_VERSION;
  const int max = o.tls_version != 0 ? o.tls_version : TLS1_3_VERSION;
  if (SSL_CTX_set_min_proto_version(c, min) != 1 || SSL_CTX_set_max_proto_version(c, max) != 1) {
    return failed("--tls");
  }
  if (!o.cipher_list.empty() && SSL_CTX_set_cipher_list(c, o.cipher_list.c_str()) != 1) {
    return failed("--cipher '" + o.cipher_list + "'");
  }
  if (!o.ciphersuites.empty() && SSL_CTX_set_ciphersuites(c, o.ciphersuites.c_str()) != 1) {
    return failed("--ciphersuites '" + o.ciphersuites + "'");
  }
  if (!o.alpn.empty()) {
    auto wire = tls::alpn_wire(o.alpn);
    if (!wire) return unexpected("lodeload: --alpn: " + wire.error());
    if (SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(wire->data()),
                                static_cast<unsigned>(wire->size())) != 0) {
      return failed("--alpn");
    }
  }
  if (o.insecure) {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
  } else {
    if (!o.ca_file.empty()) {
      if (SSL_CTX_load_verify_locations(c, o.ca_file.c_str(), nullptr) != 1) {
        return failed("--ca '" + o.ca_file + "': no PEM certificates could be read");
      }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
      return failed("the system's certificate store");
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  }
  // Small idle connections (the idle mode holds thousands).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  // Sessions reach the caller through its new-session callback only.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  ERR_clear_error();
  return ctx;
}

}  // namespace lode::load
