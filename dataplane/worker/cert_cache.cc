#include "dataplane/worker/cert_cache.h"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <ctime>

namespace lode::worker {

namespace {

int staple_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL calls this on the server when the client sent status_request.
int staple_callback(SSL* ssl, void* /*arg*/) {
  auto* st = static_cast<StapleState*>(SSL_get_ex_data(ssl, staple_index()));
  if (st == nullptr || !st->entry) return SSL_TLSEXT_ERR_NOACK;
  st->requested = true;
  const control::CertEntry& e = *st->entry;
  if (!e.has_fresh_staple(static_cast<int64_t>(std::time(nullptr)))) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(e.staple_der.data(), e.staple_der.size()));
  if (copy == nullptr) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(e.staple_der.size())) != 1) {
    OPENSSL_free(copy);
    return SSL_TLSEXT_ERR_NOACK;
  }
  st->stapled = true;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

void attach_staple_state(SSL* ssl, StapleState* state) noexcept {
  SSL_set_ex_data(ssl, staple_index(), state);
}

FoundCert find_cert(const control::Snapshot& snap, const CertBinding& binding, std::string_view host) {
  FoundCert f;
  if (!binding.directory) {
    f.key = control::named_cert_key(binding.name);
    f.entry = snap.certs.find(f.key);
    return f;
  }
  if (host.empty()) return f;
  f.key = control::dir_cert_key(binding.name, host);
  if ((f.entry = snap.certs.find(f.key)) != nullptr) return f;
  const size_t dot = host.find('.');
  if (dot == std::string_view::npos || dot + 1 >= host.size()) return f;
  f.key = control::dir_wildcard_key(binding.name, host.substr(dot + 1));
  f.entry = snap.certs.find(f.key);
  return f;
}

Result<SSL_CTX*, std::string> CertCache::get(std::string_view key, const control::CertEntry& entry,
                                             const Runtime& rt) {
  auto it = map_.find(key);
  if (it != map_.end() && it->second.version == entry.version && it->second.tls_version == rt.tls_version) {
    if (!it->second.ctx) return unexpected(it->second.error);
    return it->second.ctx.get();
  }
  auto cert = tls::load_server_cert_pem(entry.chain_pem, entry.key_pem, tls::CertFiles{std::string(key), std::string(key)},
                                        rt.tls, rt.ticket_keys);
  ++builds_;
  Cached c{entry.version, rt.tls_version, nullptr, {}};
  if (cert) {
    SSL_CTX_set_tlsext_status_cb(cert->ctx.get(), staple_callback);
    c.ctx = std::move(cert->ctx);
  } else {
    c.error = cert.error();
  }
  SSL_CTX* raw = c.ctx.get();
  std::string error = c.error;
  if (it != map_.end()) {
    it->second = std::move(c);
  } else {
    map_.emplace(std::string(key), std::move(c));
  }
  if (raw == nullptr) return unexpected(std::move(error));
  return raw;
}

void CertCache::sweep(const control::Snapshot& snap) {
  for (auto it = map_.begin(); it != map_.end();) {
    const control::CertEntryPtr* e = snap.certs.find(it->first);
    if (e == nullptr || (*e)->version != it->second.version) {
      it = map_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace lode::worker
