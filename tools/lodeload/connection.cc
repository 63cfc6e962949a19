// A connection's TLS phases (handshake, requests, bulk, idle, close) and its
// end; the loop that feeds them is in run.cc.
#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tools/lodeload/engine.h"

namespace lode::load::detail {

namespace {

std::string hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string final_hex(EVP_MD_CTX* md) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  return hex(d, n);
}

}  // namespace

std::string ip_literal(const SocketAddress& a) {
  char text[INET6_ADDRSTRLEN] = "";
  const void* addr =
      a.family() == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr);
  inet_ntop(a.family(), addr, text, sizeof text);
  return text;
}

// ------------------------------------------------------------------ TLS

bool Engine::setup_tls(Conn& c) {
  c.ssl = SSL_new(ctx_.get());
  BIO* r = BIO_new(BIO_s_mem());
  BIO* w = BIO_new(BIO_s_mem());
  if (c.ssl == nullptr || r == nullptr || w == nullptr) {
    BIO_free(r);
    BIO_free(w);
    fail(c, err::kTls, "out of memory for SSL");
    return false;
  }
  BIO_set_mem_eof_return(r, -1);  // empty = "need more", never EOF: the socket says EOF
  SSL_set_bio(c.ssl, r, w);
  c.rbio = r;
  c.wbio = w;
  SSL_set_app_data(c.ssl, &c);
  SSL_set_connect_state(c.ssl);
  if (names_.size() > 0) {
    const std::string& name = names_.name(c.sni);
    SSL_set_tlsext_host_name(c.ssl, name.c_str());
    if (!opt_.insecure) SSL_set1_host(c.ssl, name.c_str());
  } else if (!opt_.insecure) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), ip_literal(opt_.target).c_str());
  }
  if (opt_.resume && name_state_[c.sni].session != nullptr) {
    // A copy per connection: a TLS 1.3 resumption writes the new resumption
    // secret into the session it resumed, which would spoil the shared one.
    SSL_SESSION* copy = SSL_SESSION_dup(name_state_[c.sni].session);
    c.offered = copy != nullptr && SSL_set_session(c.ssl, copy) == 1;
    SSL_SESSION_free(copy);
  }
  return true;
}

void Engine::drive(Conn& c) {
  ERR_clear_error();
  bool again = true;
  while (again && alive(c)) {
    again = false;
    switch (c.phase) {
      case Phase::kHandshake:
        again = step_handshake(c);
        break;
      case Phase::kRequest:
        again = step_request(c);
        break;
      case Phase::kBulk:
        again = step_bulk(c);
        break;
      case Phase::kReady:
      case Phase::kHold:
        step_unexpected(c);
        break;
      case Phase::kClosing:
        step_closing(c);
        break;
      case Phase::kFree:
      case Phase::kConnecting:
      case Phase::kDead:
        break;
    }
  }
  flush(c);
}

bool Engine::step_handshake(Conn& c) {
  const int r = SSL_do_handshake(c.ssl);
  if (r == 1) {
    handshake_done(c);
    return true;
  }
  const int e = SSL_get_error(c.ssl, r);
  if (e == SSL_ERROR_WANT_READ) {
    if (input_exhausted(c)) fail(c, err::kEofInHandshake);
    return false;
  }
  fail_tls(c, e);
  return false;
}

void Engine::handshake_done(Conn& c) {
  report_.handshake_us.record(us_between(c.connected, now_));
  const bool reused = SSL_session_reused(c.ssl) == 1;
  ++(reused ? report_.handshakes_resumed : report_.handshakes_full);
  if (c.offered && !reused) ++report_.resumptions_refused;
  ++report_.versions[SSL_get_version(c.ssl)];
  ++report_.ciphers[SSL_get_cipher_name(c.ssl)];
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(c.ssl, &proto, &len);
  if (len > 0) ++report_.alpn[std::string(reinterpret_cast<const char*>(proto), len)];
  switch (opt_.mode) {
    case Mode::kHandshakes:
      if (opt_.request_bytes > 0 || opt_.response_bytes.value_or(0) > 0) return start_request(c);
      c.work_done = true;
      return begin_close(c);
    case Mode::kRequests:
      return after_response(c);
    case Mode::kBulk:
      c.phase = Phase::kBulk;
      c.bulk = std::make_unique<BulkState>(bulk_streams_++, opt_.seed);
      if (c.bulk->sent_md == nullptr || c.bulk->received_md == nullptr ||
          EVP_DigestInit_ex(c.bulk->sent_md, EVP_sha256(), nullptr) != 1 ||
          EVP_DigestInit_ex(c.bulk->received_md, EVP_sha256(), nullptr) != 1) {
        return fail(c, err::kTls, "SHA-256 unavailable");
      }
      return set_deadline(c, now_ + ms(opt_.timeout_ms));
    case Mode::kIdle:
      c.phase = Phase::kHold;
      return set_deadline(c, now_ + ms(opt_.hold_ms));
  }
}

// Requests: the next request now, later (a rate token), or the close.
void Engine::after_response(Conn& c) {
  if (!more_requests()) {
    c.work_done = true;
    return begin_close(c);
  }
  if (interval_ == 0) return start_request(c);
  c.phase = Phase::kReady;
  c.deadline = 0;
  ready_.emplace_back(index_of(c), c.gen);
}

void Engine::start_request(Conn& c) {
  ++requests_started_;
  c.phase = Phase::kRequest;
  c.request_at = now_;
  c.first_byte = false;
  c.response_got = 0;
  c.response_expected = opt_.response_bytes.value_or(opt_.request_bytes);
  if (!request_.empty()) {
    size_t written = 0;
    if (SSL_write_ex(c.ssl, request_.data(), request_.size(), &written) != 1 ||
        written != request_.size()) {
      return fail_tls(c, SSL_get_error(c.ssl, 0));
    }
    report_.bytes_sent += request_.size();
  }
  set_deadline(c, now_ + ms(opt_.timeout_ms));
}

ssize_t Engine::read_plain(Conn& c, const char* end_kind, const char* when) {
  size_t n = 0;
  if (SSL_read_ex(c.ssl, scratch_.data(), scratch_.size(), &n) == 1) return static_cast<ssize_t>(n);
  const int e = SSL_get_error(c.ssl, 0);
  if (e == SSL_ERROR_WANT_READ && !input_exhausted(c)) return 0;
  if (e == SSL_ERROR_WANT_READ) {
    fail(c, end_kind, std::string("EOF without close_notify ") + when);
  } else if (e == SSL_ERROR_ZERO_RETURN) {
    fail(c, end_kind, std::string("close_notify ") + when);
  } else {
    fail_tls(c, e);
  }
  return -1;
}

bool Engine::step_request(Conn& c) {
  while (c.response_got < c.response_expected) {
    const ssize_t got = read_plain(c, err::kShortRead, "before the whole response");
    if (got <= 0) return false;
    const auto n = static_cast<size_t>(got);
    if (!c.first_byte) {
      c.first_byte = true;
      report_.ttfb_us.record(us_between(c.request_at, now_));
    }
    report_.bytes_received += n;
    const uint64_t room = c.response_expected - c.response_got;
    const bool echo = !opt_.response_bytes.has_value();
    if (n > room ||
        (echo && std::memcmp(scratch_.data(), request_.data() + c.response_got, n) != 0)) {
      fail(c, err::kResponseMismatch,
           n > room ? "more bytes than the response size" : "the echo differs");
      return false;
    }
    c.response_got += n;
  }
  report_.response_us.record(us_between(c.request_at, now_));
  ++report_.requests;
  if (opt_.mode == Mode::kRequests) {
    after_response(c);
  } else {
    c.work_done = true;
    begin_close(c);
  }
  return true;
}

bool Engine::step_bulk(Conn& c) {
  BulkState& b = *c.bulk;
  uint8_t* chunk = scratch_.data();
  while (b.sent < opt_.bulk_bytes && BIO_ctrl_pending(c.wbio) < kBulkHighWater) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBulkChunk, opt_.bulk_bytes - b.sent));
    b.rng.fill(chunk, n);
    EVP_DigestUpdate(b.sent_md, chunk, n);
    size_t written = 0;
    if (SSL_write_ex(c.ssl, chunk, n, &written) != 1 || written != n) {
      fail_tls(c, SSL_get_error(c.ssl, 0));
      return false;
    }
    b.sent += n;
    report_.bytes_sent += n;
  }
  while (true) {
    const ssize_t got = read_plain(c, err::kShortRead, "before the whole echo");
    if (got <= 0) return false;
    const auto n = static_cast<size_t>(got);
    EVP_DigestUpdate(b.received_md, scratch_.data(), n);
    b.received += n;
    report_.bytes_received += n;
    if (b.received > opt_.bulk_bytes) {
      fail(c, err::kResponseMismatch, "more bytes came back than were sent");
      return false;
    }
    if (b.received == opt_.bulk_bytes) {
      c.work_done = true;
      begin_close(c);
      return true;
    }
  }
}

// Idle or between requests: nothing is expected but tickets; data is counted
// and dropped, the server closing is an error.
void Engine::step_unexpected(Conn& c) {
  ssize_t n;
  while ((n = read_plain(c, err::kClosedEarly,
                         c.phase == Phase::kHold ? "while held" : "between requests")) > 0) {
    report_.bytes_received += static_cast<uint64_t>(n);
  }
}

void Engine::begin_close(Conn& c) {
  c.phase = Phase::kClosing;
  ERR_clear_error();
  SSL_shutdown(c.ssl);  // queues close_notify; the server's comes later
  ERR_clear_error();
  set_deadline(c, now_ + ms(opt_.timeout_ms));
  flush(c);
}

void Engine::step_closing(Conn& c) {
  while (true) {
    size_t n = 0;
    if (SSL_read_ex(c.ssl, scratch_.data(), scratch_.size(), &n) == 1) {
      report_.bytes_received += n;
      continue;
    }
    const int e = SSL_get_error(c.ssl, 0);
    if (e == SSL_ERROR_WANT_READ && !input_exhausted(c)) return;
    // close_notify, EOF, or anything else once our work is done: closed.
    ERR_clear_error();
    ++report_.close_clean;
    return finish(c);
  }
}

void Engine::fail_tls(Conn& c, int ssl_error) {
  const int alert = c.alert & 0xff;
  if (alert != 0) {
    return fail(c, "tls_alert_" + std::to_string(alert), SSL_alert_desc_string_long(c.alert));
  }
  const long verify = SSL_get_verify_result(c.ssl);
  if (ssl_error == SSL_ERROR_SSL && !opt_.insecure && verify != X509_V_OK) {
    return fail(c, err::kVerify, X509_verify_cert_error_string(verify));
  }
  std::string why = tls::detail::take_openssl_errors();
  if (why.empty()) why = "SSL_get_error " + std::to_string(ssl_error);
  fail(c, err::kTls, why);
}

int Engine::on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<Engine*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const auto* c = static_cast<const Conn*>(SSL_get_app_data(ssl));
  ++self->report_.tickets_received;
  if (!self->opt_.resume || c == nullptr) return 0;  // OpenSSL frees it
  NameState& ns = self->name_state_[c->sni];
  if (ns.session != nullptr) SSL_SESSION_free(ns.session);
  ns.session = session;
  return 1;  // kept
}

void Engine::on_info(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT) return;
  auto* c = static_cast<Conn*>(SSL_get_app_data(ssl));
  if (c != nullptr && (ret & 0xff) != 0) c->alert = ret;  // close_notify is not a failure
}

// ------------------------------------------------------------------ endings

void Engine::fail(Conn& c, const std::string& kind, const std::string& sample) {
  ++report_.connections_failed;
  ++report_.errors[kind];
  if (!sample.empty()) report_.error_samples.emplace(kind, sample);
  // A fatal alert OpenSSL queued (bad certificate, ...) goes out if the
  // socket takes it now; never waited for.
  char alert[64];
  if (c.ssl != nullptr && !c.send_inflight && c.fd >= 0 &&
      BIO_ctrl_pending(c.wbio) <= sizeof alert) {
    const int n = BIO_read(c.wbio, alert, sizeof alert);
    if (n > 0) (void)!send(c.fd, alert, static_cast<size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ERR_clear_error();
  finish(c);
}

void Engine::finish(Conn& c) {
  if (!alive(c)) return;
  if (c.work_done) ++report_.connections_ok;
  if (c.primer) name_state_[c.sni].primer_active = false;
  if (c.bulk) {
    BulkStream s;
    s.index = c.bulk->index;
    s.bytes_sent = c.bulk->sent;
    s.bytes_received = c.bulk->received;
    s.sent_sha256 = final_hex(c.bulk->sent_md);
    s.received_sha256 = final_hex(c.bulk->received_md);
    s.equal = s.bytes_sent == opt_.bulk_bytes && s.bytes_received == s.bytes_sent &&
              s.sent_sha256 == s.received_sha256;
    report_.bulk.push_back(std::move(s));
    c.bulk.reset();
  }
  if (c.ssl != nullptr) {
    SSL_free(c.ssl);
    c.ssl = nullptr;
    c.rbio = c.wbio = nullptr;
  }
  c.phase = Phase::kDead;
  c.deadline = 0;
  if (c.inflight == 0) return release(c);
  io_uring_sqe* s = ring_.sqe();
  io_uring_prep_cancel_fd(s, c.fd, IORING_ASYNC_CANCEL_ALL);
  submit(c, s, Op::kCancel);
}

void Engine::release(Conn& c) {
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.phase = Phase::kFree;
  std::vector<uint8_t>().swap(c.sending);
  free_.push_back(index_of(c));
  --open_;
}

}  // namespace lode::load::detail
