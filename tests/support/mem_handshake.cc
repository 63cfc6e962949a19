#include "tests/support/mem_handshake.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>

namespace lode::test {

struct MemHandshake::Side {
  tls::SslPtr ssl;
  BIO* out = nullptr;  // what this side wrote (owned by ssl)
  BIO* in = nullptr;   // what this side reads (owned by ssl)
  enum class State { kRunning, kDone, kFailed } state = State::kRunning;
  std::string error;
  std::vector<AlertSeen> sent;
  std::vector<AlertSeen> received;
};

namespace {

int side_index() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

void on_info(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_ALERT) == 0) return;
  auto* side = static_cast<MemHandshake::Side*>(SSL_get_ex_data(ssl, side_index()));
  if (side == nullptr) return;
  const AlertSeen a{(ret >> 8) & 0xff, ret & 0xff};
  ((where & SSL_CB_READ) != 0 ? side->received : side->sent).push_back(a);
}

std::string drain_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

void must(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "mem_handshake: %s failed: %s\n", what, drain_errors().c_str());
  std::abort();
}

int first_alert(const std::vector<AlertSeen>& alerts) {
  for (const auto& a : alerts) {
    if (a.level == 2) return a.description;
  }
  return alerts.empty() ? -1 : alerts.front().description;
}

size_t move_bytes(BIO* from, BIO* to) {
  size_t moved = 0;
  char buf[4096];
  while (BIO_ctrl_pending(from) > 0) {
    const int n = BIO_read(from, buf, sizeof(buf));
    if (n <= 0) break;
    must(BIO_write(to, buf, n) == n, "BIO_write");
    moved += static_cast<size_t>(n);
  }
  return moved;
}

std::unique_ptr<MemHandshake::Side> make_side(tls::SslPtr ssl) {
  must(ssl != nullptr, "SSL given to MemHandshake");
  auto side = std::make_unique<MemHandshake::Side>();
  side->in = BIO_new(BIO_s_mem());
  side->out = BIO_new(BIO_s_mem());
  must(side->in != nullptr && side->out != nullptr, "BIO_new");
  BIO_set_mem_eof_return(side->in, -1);  // empty = "retry later", not EOF
  BIO_set_mem_eof_return(side->out, -1);
  SSL_set_bio(ssl.get(), side->in, side->out);
  must(SSL_set_ex_data(ssl.get(), side_index(), side.get()) == 1, "SSL_set_ex_data");
  SSL_set_info_callback(ssl.get(), on_info);
  side->ssl = std::move(ssl);
  return side;
}

}  // namespace

MemHandshake::MemHandshake(tls::SslPtr client, tls::SslPtr server)
    : client_(make_side(std::move(client))), server_(make_side(std::move(server))) {}

MemHandshake::~MemHandshake() {
  for (Side* s : {client_.get(), server_.get()}) {
    if (s == nullptr || !s->ssl) continue;
    // Unhooked first: the callback must not see a Side being destroyed.
    SSL_set_ex_data(s->ssl.get(), side_index(), nullptr);
    // A clean close (close_notify sent): OpenSSL marks the session of an SSL
    // freed without one as not resumable.
    if (s->state == Side::State::kDone) (void)SSL_shutdown(s->ssl.get());
  }
  ERR_clear_error();
}

size_t MemHandshake::transfer() {
  return move_bytes(client_->out, server_->in) + move_bytes(server_->out, client_->in);
}

HandshakeResult MemHandshake::run(int max_rounds) {
  using State = Side::State;
  for (int round = 0; round < max_rounds; ++round) {
    bool changed = false;
    for (Side* s : {client_.get(), server_.get()}) {
      if (s->state != State::kRunning) continue;
      ERR_clear_error();
      const int r = SSL_do_handshake(s->ssl.get());
      if (r == 1) {
        s->state = State::kDone;
        changed = true;
        continue;
      }
      const int err = SSL_get_error(s->ssl.get(), r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) continue;
      s->state = State::kFailed;
      s->error = drain_errors();
      if (s->error.empty()) s->error = "SSL_get_error " + std::to_string(err);
      changed = true;
    }
    const size_t moved = transfer();
    const bool c_end = client_->state != State::kRunning;
    const bool s_end = server_->state != State::kRunning;
    if (c_end && s_end) break;
    if (!changed && moved == 0) break;  // nobody can make progress
  }
  return result();
}

HandshakeResult MemHandshake::result() const {
  HandshakeResult r;
  r.client_done = client_->state == Side::State::kDone;
  r.server_done = server_->state == Side::State::kDone;
  r.client_error = client_->error;
  r.server_error = server_->error;
  r.client_alert_sent = first_alert(client_->sent);
  r.client_alert_received = first_alert(client_->received);
  r.server_alert_sent = first_alert(server_->sent);
  r.server_alert_received = first_alert(server_->received);
  return r;
}

tls::SslSessionPtr MemHandshake::client_session() {
  char byte;
  for (int i = 0; i < 4; ++i) {
    transfer();
    ERR_clear_error();
    const int n = SSL_read(client_->ssl.get(), &byte, 1);
    if (n <= 0) {
      const int err = SSL_get_error(client_->ssl.get(), n);
      if (err != SSL_ERROR_WANT_READ) break;
    }
  }
  ERR_clear_error();
  return tls::SslSessionPtr(SSL_get1_session(client_->ssl.get()));
}

std::string MemHandshake::send(Side& from, Side& to, std::string_view data) {
  ERR_clear_error();
  if (SSL_write(from.ssl.get(), data.data(), static_cast<int>(data.size())) <= 0) return {};
  std::string got;
  char buf[4096];
  for (int i = 0; i < 8 && got.size() < data.size(); ++i) {
    transfer();
    const int n = SSL_read(to.ssl.get(), buf, sizeof(buf));
    if (n > 0) got.append(buf, static_cast<size_t>(n));
  }
  ERR_clear_error();
  return got;
}

std::string MemHandshake::client_to_server(std::string_view data) {
  return send(*client_, *server_, data);
}
std::string MemHandshake::server_to_client(std::string_view data) {
  return send(*server_, *client_, data);
}

SSL* MemHandshake::client() const {
  return client_->ssl.get();
}
SSL* MemHandshake::server() const {
  return server_->ssl.get();
}
const std::vector<AlertSeen>& MemHandshake::client_alerts_sent() const {
  return client_->sent;
}
const std::vector<AlertSeen>& MemHandshake::client_alerts_received() const {
  return client_->received;
}
const std::vector<AlertSeen>& MemHandshake::server_alerts_sent() const {
  return server_->sent;
}
const std::vector<AlertSeen>& MemHandshake::server_alerts_received() const {
  return server_->received;
}

tls::SslCtxPtr make_test_client_ctx(const TestClientOptions& o) {
  tls::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  must(ctx != nullptr, "SSL_CTX_new");
  must(SSL_CTX_set_min_proto_version(ctx.get(), o.min_version) == 1, "min version");
  must(SSL_CTX_set_max_proto_version(ctx.get(), o.max_version) == 1, "max version");
  if (!o.cipher_list.empty()) {
    must(SSL_CTX_set_cipher_list(ctx.get(), o.cipher_list.c_str()) == 1, "cipher list");
  }
  if (!o.ciphersuites.empty()) {
    must(SSL_CTX_set_ciphersuites(ctx.get(), o.ciphersuites.c_str()) == 1, "ciphersuites");
  }
  if (!o.alpn.empty()) {
    std::string wire;
    for (const auto& p : o.alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    must(SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                 static_cast<unsigned int>(wire.size())) == 0,
         "alpn");
  }
  if (!o.ca_pem.empty()) {
    BIO* bio = BIO_new_mem_buf(o.ca_pem.data(), static_cast<int>(o.ca_pem.size()));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      must(X509_STORE_add_cert(store, x) == 1, "X509_STORE_add_cert");
      X509_free(x);
    }
    BIO_free(bio);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

tls::SslPtr new_test_client(SSL_CTX* ctx, std::string_view sni, SSL_SESSION* session) {
  tls::SslPtr ssl(SSL_new(ctx));
  must(ssl != nullptr, "SSL_new");
  SSL_set_connect_state(ssl.get());
  if (!sni.empty()) {
    const std::string name(sni);
    must(SSL_set_tlsext_host_name(ssl.get(), name.c_str()) == 1, "SNI");
    if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
      must(SSL_set1_host(ssl.get(), name.c_str()) == 1, "SSL_set1_host");
    }
  }
  if (session != nullptr) must(SSL_set_session(ssl.get(), session) == 1, "SSL_set_session");
  return ssl;
}

std::string peer_cn(const SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return {};
  char buf[256] = {};
  const int n =
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

std::string ticket_key_name_hex(const SSL_SESSION* session) {
  if (session == nullptr || SSL_SESSION_has_ticket(session) != 1) return {};
  const unsigned char* tick = nullptr;
  size_t len = 0;
  SSL_SESSION_get0_ticket(session, &tick, &len);
  if (tick == nullptr || len < 16) return {};
  return hex(tick, 16);
}

}  // namespace lode::test
