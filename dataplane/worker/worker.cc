#include "dataplane/worker/worker.h"

#include "dataplane/worker/cert_cache.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <future>

#include "dataplane/tls/client_hello_parser.h"
#include "dataplane/tls/proxy_protocol.h"
#include "dataplane/worker/byte_queue.h"
#include "dataplane/worker/ktls.h"
#include "dataplane/worker/record_layer.h"
#include "dataplane/worker/log_sampler.h"
#include "dataplane/worker/uring.h"
#include "lodestone/json_writer.h"
#include "lodestone/tls_alert.h"

namespace lode::worker {
namespace {

constexpr uint32_t kNil = 0xffffffffu;
constexpr uint32_t kLingerMs = 2000;       // after an alert: read and discard until the peer closes
constexpr uint32_t kTickMs = 100;
// OpenSSL 3.0's kTLS BIO controls (include/internal/bio.h there; only 73 and
// 76 are in the public header).
constexpr int kBioCtrlSetKtls = 72;             // (is_tx, crypto_info): take over a direction
constexpr int kBioCtrlGetKtlsSend = 73;
constexpr int kBioCtrlSetKtlsTxCtrlMsg = 74;    // the next write is a record of type larg
constexpr int kBioCtrlClearKtlsTxCtrlMsg = 75;
constexpr int kBioCtrlGetKtlsRecv = 76;

uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t now_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// The kernel's part in a client connection's TLS (see ktls.h). With `tx`, what
// OpenSSL writes through the BIO is plaintext that the kernel encrypts:
// application data goes through `out` like any bytes; other records (session
// tickets, alerts) are sent at once with their record type. With `rx`, the
// kernel decrypts what arrives and OpenSSL is not used to read any more.
struct KtlsSide {
  bool tx = false;
  bool rx = false;
  bool rx_failed = false;     // installing RX failed: user space reads to the end
  bool notify_sent = false;   // our close_notify is on its way
  uint8_t ctrl_type = 0;      // BIO_CTRL_SET_KTLS_TX_SEND_CTRL_MSG
  ktls::RxHandover rx_handover;
};

// Lodestone's record layer on a terminated client connection where kTLS is
// not used (record_layer.h). `tx`: OpenSSL's send state, taken at its
// BIO_CTRL_SET_KTLS offer; from then on what OpenSSL writes through the BIO
// is plaintext that is sealed here (the rest of its handshake flight, the
// session tickets). `rx`: taken from the hand-over state at a record boundary
// once the handshake is done; the relay then opens what the client sends.
// With both, the connection's SSL is freed.
struct OwnRecords {
  records::Keys tx, rx;
  bool tx_on = false;
  bool rx_on = false;
  bool off = false;          // a suite the layer does not take: OpenSSL keeps the records
  bool ktls_wanted = false;  // [tls] ktls is on, but the kernel has no tls ULP
  bool notify_sent = false;  // our close_notify (or a fatal alert) is sealed
  uint8_t ctrl_type = 0;     // BIO_CTRL_SET_KTLS_TX_SEND_CTRL_MSG
  uint8_t secret_len = 0;    // TLS 1.3 traffic secrets, for KeyUpdate
  uint8_t client_secret[EVP_MAX_MD_SIZE] = {};
  uint8_t server_secret[EVP_MAX_MD_SIZE] = {};
  uint8_t hs[5] = {};        // a post-handshake handshake message (KeyUpdate) being read
  bool renegotiation_refused = false;  // our no_renegotiation warning is sealed (once)
  bool key_update_answered = false;    // our KeyUpdate went out and no data since
  uint8_t hs_len = 0;
  const SSL_CIPHER* cipher = nullptr;  // OpenSSL's static table: outlives the SSL
  ktls::RxHandover rx_handover;

  OwnRecords() = default;
  OwnRecords(const OwnRecords&) = delete;
  OwnRecords& operator=(const OwnRecords&) = delete;
  ~OwnRecords() {
    OPENSSL_cleanse(client_secret, sizeof client_secret);
    OPENSSL_cleanse(server_secret, sizeof server_secret);
  }
};

// One direction's socket. With `ssl` set, `in` holds ciphertext that OpenSSL
// reads through the side's BIO and `out` receives what OpenSSL writes.
struct Side {
  int fd = -1;
  SSL* ssl = nullptr;
  ByteQueue in;       // received, not yet consumed
  ByteQueue out;      // to send, accumulating
  ByteQueue sending;  // the bytes of the send in flight (stable memory)
  bool recv_armed = false;
  bool recv_cancel = false;    // the armed recv is being cancelled: the kernel takes over
  bool send_inflight = false;
  bool send_quiet = false;     // the send in flight is quiet (Ring::make_quiet)
  bool send_wait = false;      // the socket was full: the next send waits for room
  uint32_t send_len = 0;       // the send in flight's length
  bool eof = false;            // the peer's FIN (recv returned 0)
  bool read_done = false;      // nothing more will be read from this side
  bool dropped = false;        // ended by the relay (half_closed_ms = 0): what a recv brings is discarded
  bool fin_deferred = false;   // shut_wr left the FIN to the close that half_closed_ms = 0 brings next
  bool want_shut_wr = false;   // half-close once `out` and `sending` drain
  bool shut_wr = false;
  bool handshake_done = false;
  // Nothing is waiting to be read as far as we know (a new socket, or the
  // last recv emptied it): the next recv waits for bytes before trying.
  bool rx_empty = true;
  uint64_t rx = 0, tx = 0;
  WorkerStats* stats = nullptr;
  stats::RouteSeries* route = nullptr;  // client side: the route's series (a dummy until routed)
  std::unique_ptr<KtlsSide> ktls;  // client side of a terminated connection, when kTLS is on
  std::unique_ptr<OwnRecords> own;  // client side of a terminated connection, without kTLS

  size_t queued() const noexcept { return out.size() + sending.size(); }
  // What a TLS end may make us write without sending us anything to relay
  // (OpenSSL answers a renegotiation with a warning, a KeyUpdate request with
  // a KeyUpdate) is bounded: past the relay cap and this much (more than a
  // chunk the other direction can add past the cap), reads from it pause
  // until it has taken what we owe it. A peer that sends and never reads
  // would otherwise grow its queue without end.
  static constexpr size_t kAnswerSlack = 64 * 1024;
  bool owes_too_much(size_t relay_cap) const noexcept { return tls() && queued() >= relay_cap + kAnswerSlack; }
  bool ktls_tx() const noexcept { return ktls && ktls->tx; }
  bool ktls_rx() const noexcept { return ktls && ktls->rx; }
  bool own_tx() const noexcept { return own && own->tx_on; }
  bool own_rx() const noexcept { return own && own->rx_on; }
  // Its records are sealed in user space (by OpenSSL or by us).
  bool user_tls_out() const noexcept { return (ssl != nullptr && !ktls_tx()) || own != nullptr; }
  // It speaks TLS at all (OpenSSL's SSL may be gone: our record layer).
  bool tls() const noexcept { return ssl != nullptr || own != nullptr; }
};

enum class Phase : uint8_t { kProxyHeader, kHello, kHandshake, kConnecting, kBackendHandshake, kRelay, kLinger };

constexpr std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::kProxyHeader: return "proxy_header";
    case Phase::kHello: return "hello";
    case Phase::kHandshake: return "handshake";
    case Phase::kConnecting: return "connecting";
    case Phase::kBackendHandshake: return "backend_handshake";
    case Phase::kRelay: return "relay";
    case Phase::kLinger: return "linger";
  }
  return "?";
}

// What a worker holds of one runtime generation: the shared runtime and this
// worker's own mutable state for its pools.
struct WorkerRuntime {
  std::shared_ptr<const Runtime> rt;
  std::vector<route::PoolState> pools;
};

enum class ListId : uint8_t { kNone, kHello, kConnect, kIdle, kHalfClosed, kLinger };

// One direction of a passthrough relay in splice mode: socket -> pipe ->
// socket, the bytes never copied to user space. Readiness comes from an
// io_uring poll; the splices themselves are non-blocking system calls (an
// io_uring SPLICE on a socket would block an io-wq thread per connection).
struct SpliceDir {
  bool active = false;     // the kernel moves this direction now
  int pipe_r = -1, pipe_w = -1;
  size_t in_pipe = 0;      // bytes taken from the source, not yet written on
  // The pipe's capacity: a splice takes at most this much. A pipe starts at
  // the kernel's 64 KiB and grows (once) when a splice fills it.
  uint32_t pipe_size = 0;
  uint32_t grown_by = 0;  // what grow_pipe added (give_pipe takes it back)
  bool grow_tried = false;
  bool poll_armed = false;
  bool src_done = false;   // the source's FIN was seen
};

struct Conn {
  uint32_t gen = 0;
  bool used = false;
  Phase phase = Phase::kHello;
  uint32_t listener = 0;
  SocketAddress peer;
  SocketAddress local;
  Side client, backend;
  std::unique_ptr<tls::ClientHelloParser> parser;
  std::unique_ptr<proxy::ProxyHeaderParser> proxy_parser;
  size_t hello_start = 0;  // bytes of a PROXY header before the hello
  std::shared_ptr<WorkerRuntime> wrt;
  StapleState staple;  // the certificate entry served, until the handshake ends
  // Routing.
  std::string sni;
  std::string alpn_offered;
  std::string_view match_kind = "none";
  uint32_t route = route::kNoIndex;
  route::Action action = route::Action::kReject;
  uint32_t pool = route::kNoIndex;
  route::TriedSet tried;
  uint32_t backend_idx = route::kNoIndex;
  bool backend_active = false;  // connected: counted in the pool's active connections
  bool backend_picked = false;  // picked and not yet reported as failed
  bool backend_verdict = false;  // on_connect_ok reported for the pick
  bool routed = false;          // counted in the route's series (active until freed)
  ClientCounts::Hold client_hold;  // counted under its client address until freed
  stats::BackendSeries* backend_series = nullptr;  // of the picked backend, while picked
  uint64_t t_handshake_start_us = 0;
  __kernel_timespec connect_ts{};
  std::string last_connect_error;
  // TLS facts for the log and the PROXY header, kept when the SSL goes
  // (OpenSSL's static strings).
  bool resumed = false;
  const char* tls_version = nullptr;
  const char* tls_cipher = nullptr;
  std::string alpn;
  std::string backend_chain;
  // Life cycle.
  uint32_t inflight = 0;
  bool closing = false;
  bool forwarded = false;  // a byte reached the backend: no retry after this
  // The backend's TLS handshake failed and the next backend is due once the
  // failed side's receive and send are back (next_backend).
  bool backend_redo = false;
  std::string result = "ok";
  uint64_t t_accept = 0, t_hello = 0, t_handshake = 0, t_backend = 0;
  // Timeout list links.
  ListId list = ListId::kNone;
  uint32_t prev = kNil, next = kNil;
  uint64_t last_activity = 0;
  bool splice_fallback = false;  // no pipes: copy through user space instead
  // [0]: client -> backend, [1]: backend -> client. A direction moves by
  // splice when neither end needs TLS in user space: passthrough, or a
  // terminated connection whose client side the kernel encrypts (backend ->
  // client) or decrypts (client -> backend) with a plaintext backend.
  SpliceDir splice[2];
};

// ---------------------------------------------------------------- the BIO

Side* side_of(BIO* b) { return static_cast<Side*>(BIO_get_data(b)); }

// Counts what a side sent synchronously (outside io_uring).
void count_sent(Side& s, size_t n) {
  s.tx += n;
  if (s.stats != nullptr) bump(s.stats->bytes_client_out, n);
  if (s.route != nullptr) bump(s.route->bytes_out, n);
}

// Before the kernel encrypts, every byte OpenSSL wrote with its own keys must
// be on the wire: sends `out` now, without blocking. False when that cannot
// be done (a send in flight, a full socket buffer): kTLS is then declined.
bool send_queued_now(Side& s) {
  if (s.send_inflight || !s.sending.empty()) return false;
  while (!s.out.empty()) {
    const auto data = s.out.front();
    const ssize_t n = send(s.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) return false;
    s.out.consume(static_cast<size_t>(n));
    count_sent(s, static_cast<size_t>(n));
  }
  return true;
}

// BIO_CTRL_SET_KTLS for our own record layer: the send state is always taken
// (OpenSSL then writes plaintext), the receive state kept for the hand-over.
long own_offer(Side& s, bool is_tx, const void* crypto_info) {
  OwnRecords& o = *s.own;
  if (o.ktls_wanted && s.stats != nullptr) bump(s.stats->ktls_unavailable);
  if (o.off) return 0;
  if (!is_tx) {
    o.rx_handover.on_openssl_offer(crypto_info);
    return 0;
  }
  auto state = ktls::from_openssl(crypto_info);
  if (!state) {
    // Not an AEAD suite we seal: OpenSSL keeps both directions. (A second
    // offer, after a KeyUpdate OpenSSL sent itself, has the same suite.)
    if (!o.tx_on) o.off = true;
    return 0;
  }
  o.tx.set(*state);
  o.tx_on = true;
  return 1;
}

// BIO_CTRL_SET_KTLS. Send direction: installed now (1) or declined (0, OpenSSL
// keeps user-space crypto). Receive direction: always declined; the state is
// kept for the hand-over after the handshake (ktls.h).
long set_ktls(Side* s, bool is_tx, const void* crypto_info) {
  if (s != nullptr && s->own) return own_offer(*s, is_tx, crypto_info);
  if (s == nullptr || !s->ktls) {
    if (s != nullptr && s->stats != nullptr && !kernel_has_tls_ulp()) bump(s->stats->ktls_unavailable);
    return 0;
  }
  KtlsSide& k = *s->ktls;
  if (!is_tx) {
    k.rx_handover.on_openssl_offer(crypto_info);
    return 0;
  }
  auto state = ktls::from_openssl(crypto_info);
  if (k.tx || !state || !send_queued_now(*s) || ktls::install(s->fd, true, *state) != 0) {
    if (s->stats != nullptr) bump(s->stats->ktls_declined);
    return 0;
  }
  k.tx = true;
  if (s->stats != nullptr) bump(s->stats->ktls_tx);
  if (s->route != nullptr) bump(s->route->ktls);
  return 1;
}

// After a close_notify or a fatal alert we send no other record; a warning
// (say no_renegotiation) leaves the stream open.
bool ends_our_stream(uint8_t type, const char* data, size_t len) {
  return type == ktls::kAlert && len >= 2 && (data[0] == 2 || data[1] == 0);
}

// A record other than application data under kernel TX: sent at once with its
// type, after everything queued before it.
int write_ctrl_record(Side* s, uint8_t type, const char* data, size_t len, size_t* written) {
  KtlsSide& k = *s->ktls;
  if (type == ktls::kHandshake && len > 0 && static_cast<uint8_t>(data[0]) == ktls::kKeyUpdate) {
    // The kernel (6.1) cannot change the send key: after a KeyUpdate it would
    // go on with the old one. Refuse (OpenSSL keeps it pending:
    // SSL_get_key_update_type); the connection ends cleanly instead.
    return 0;
  }
  if (!s->out.empty() || !s->sending.empty() || s->send_inflight) return 0;
  const ssize_t n = ktls::send_record(s->fd, type, {reinterpret_cast<const uint8_t*>(data), len});
  if (n < 0 || static_cast<size_t>(n) != len) return 0;
  count_sent(*s, len);
  if (ends_our_stream(type, data, len)) k.notify_sent = true;
  *written = len;
  return 1;
}

// Seals `data` as records of `type` onto the side's queue.
bool own_seal(Side& s, uint8_t type, std::span<const uint8_t> data) {
  return records::seal_all(
      s.own->tx, type, data, [&](size_t n) { return s.out.prepare(n); }, [&](size_t n) { s.out.commit(n); });
}

int bio_write(BIO* b, const char* data, size_t len, size_t* written) {
  Side* s = side_of(b);
  if (s->own_tx()) {
    // OpenSSL writes plaintext once we hold its send state.
    const uint8_t type = s->own->ctrl_type != 0 ? s->own->ctrl_type : ktls::kApplicationData;
    s->own->ctrl_type = 0;
    if (!own_seal(*s, type, {reinterpret_cast<const uint8_t*>(data), len})) return 0;
    if (ends_our_stream(type, data, len)) s->own->notify_sent = true;
    *written = len;
    return 1;
  }
  if (s->ktls && s->ktls->ctrl_type != 0) {
    const uint8_t type = s->ktls->ctrl_type;
    s->ktls->ctrl_type = 0;
    return write_ctrl_record(s, type, data, len, written);
  }
  s->out.append({reinterpret_cast<const uint8_t*>(data), len});
  *written = len;
  return 1;
}

int bio_read(BIO* b, char* data, size_t len, size_t* read) {
  Side* s = side_of(b);
  BIO_clear_retry_flags(b);
  if (s->in.empty()) {
    if (s->eof) return 0;  // end of stream
    BIO_set_retry_read(b);
    return 0;
  }
  *read = s->in.read(reinterpret_cast<uint8_t*>(data), len);
  if (s->ktls) s->ktls->rx_handover.on_consumed({reinterpret_cast<const uint8_t*>(data), *read});
  if (s->own) s->own->rx_handover.on_consumed({reinterpret_cast<const uint8_t*>(data), *read});
  return 1;
}

long bio_ctrl(BIO* b, int cmd, long larg, void* parg) {
  Side* s = side_of(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      // OpenSSL flushes before a non-data record under kernel TX: the record
      // must not overtake queued data (write_ctrl_record refuses then too).
      return s != nullptr && s->ktls_tx() && (s->queued() > 0 || s->send_inflight) ? 0 : 1;
    case BIO_CTRL_PENDING:
      return static_cast<long>(s->in.size());
    case BIO_CTRL_WPENDING:
      return 0;
    case kBioCtrlSetKtls:
      return set_ktls(s, larg != 0, parg);
    case kBioCtrlGetKtlsSend:
      return s != nullptr && (s->ktls_tx() || s->own_tx()) ? 1 : 0;
    case kBioCtrlGetKtlsRecv:
      return 0;  // OpenSSL never reads under kernel RX: the relay takes over
    case kBioCtrlSetKtlsTxCtrlMsg:
      if (s != nullptr && s->own_tx()) {
        s->own->ctrl_type = static_cast<uint8_t>(larg);
        return 1;
      }
      if (s == nullptr || !s->ktls_tx()) return 0;
      s->ktls->ctrl_type = static_cast<uint8_t>(larg);
      return 1;
    case kBioCtrlClearKtlsTxCtrlMsg:
      if (s != nullptr && s->ktls) s->ktls->ctrl_type = 0;
      if (s != nullptr && s->own) s->own->ctrl_type = 0;
      return 1;
    default:
      return 0;
  }
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int side_bio_type() {
  static const int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK;
  return type;
}

BIO_METHOD* side_bio_method() {
  static BIO_METHOD* m = [] {
    BIO_METHOD* meth = BIO_meth_new(side_bio_type(), "lodestone-ring");
    BIO_meth_set_write_ex(meth, bio_write);
    BIO_meth_set_read_ex(meth, bio_read);
    BIO_meth_set_ctrl(meth, bio_ctrl);
    BIO_meth_set_create(meth, bio_create);
    return meth;
  }();
  return m;
}

// OpenSSL's info callback on client SSLs: counts the fatal alerts it sends
// (handshake failures by alert, for /metrics).
void count_alert_sent(const SSL* ssl, int where, int ret) {
  if ((where & SSL_CB_WRITE_ALERT) == 0 || (ret >> 8) != SSL3_AL_FATAL) return;
  BIO* b = SSL_get_rbio(ssl);
  if (b == nullptr || BIO_method_type(b) != side_bio_type()) return;
  Side* s = side_of(b);
  if (s != nullptr && s->stats != nullptr) bump(s->stats->alerts_sent[static_cast<uint8_t>(ret & 0xff)]);
}

uint64_t monotonic_us() noexcept { return monotonic_ns() / 1000; }

// OpenSSL's key log: TLS 1.3 client traffic secrets, for the receive hand-over
// (and, for our own record layer, both traffic secrets, for KeyUpdate).
// Set only on server SSL_CTXs when kTLS or our record layer is on; the line
// is OpenSSL's buffer (cleansed by OpenSSL), nothing is written anywhere.
void keylog_callback(const SSL* ssl, const char* line) {
  BIO* b = SSL_get_rbio(ssl);
  if (b == nullptr || BIO_method_type(b) != side_bio_type()) return;
  Side* s = side_of(b);
  if (s == nullptr) return;
  if (s->ktls) s->ktls->rx_handover.on_keylog(ssl, line);
  if (!s->own) return;
  OwnRecords& o = *s->own;
  o.rx_handover.on_keylog(ssl, line);
  const std::string_view l(line);
  size_t n = 0;  // at most one label matches a line
  for (const char* label : {"CLIENT_TRAFFIC_SECRET_0", "CLIENT_TRAFFIC_SECRET_N"}) {
    n += ktls::keylog_secret(l, label, o.client_secret);
  }
  for (const char* label : {"SERVER_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_N"}) {
    n += ktls::keylog_secret(l, label, o.server_secret);
  }
  if (n == 0) return;
  o.secret_len = static_cast<uint8_t>(n);
  o.cipher = SSL_get_current_cipher(ssl);
}

void attach_bio(SSL* ssl, Side* side) {
  BIO* bio = BIO_new(side_bio_method());
  BIO_set_data(bio, side);
  BIO_up_ref(bio);
  SSL_set0_rbio(ssl, bio);
  SSL_set0_wbio(ssl, bio);
}

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// The address a listener is bound to, when it names one host (no wildcard):
// then it is also the local address of every connection it accepts, which
// saves a getsockname() per connection. len stays 0 otherwise.
SocketAddress bound_address(int fd) {
  SocketAddress a;
  socklen_t len = sizeof a.storage;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &len) != 0) return SocketAddress{};
  a.len = len;
  if (a.family() == AF_INET) {
    if (reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr != htonl(INADDR_ANY)) return a;
  } else if (a.family() == AF_INET6) {
    if (!IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr)) return a;
  }
  return SocketAddress{};
}

// defer_accept: TCP_DEFER_ACCEPT (1 s, as nginx's `deferred`): the kernel
// completes an accept only once the client's first bytes are in, so the
// receive armed for the ClientHello completes at once (no sleep between
// the two), and a client that connects and says nothing costs the process
// nothing until the kernel gives up waiting (after 1 s and a SYN-ACK
// retransmission, its next ACK is accepted, and the hello timeout runs
// from there).
int open_listener(const SocketAddress& a, bool defer_accept, std::string& err) {
  const int fd = socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = "socket: " + std::string(std::strerror(errno));
    return -1;
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (a.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from their listener (Linux copies
  // the listener's TCP state into the child): one call here instead of one
  // per connection.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (defer_accept) setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
  if (bind(fd, a.sa(), a.len) != 0 || listen(fd, 4096) != 0) {
    err = a.to_string() + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool kernel_has_tls_ulp() noexcept {
  static const bool has = [] {
    // The ULP attaches only to a connected TCP socket: make a loopback pair.
    const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bool ok = false;
    if (l >= 0 && bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(l, 1) == 0 &&
        getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c >= 0 && connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        ok = setsockopt(c, SOL_TCP, TCP_ULP, "tls", sizeof "tls") == 0;
      }
      if (c >= 0) close(c);
    }
    if (l >= 0) close(l);
    return ok;
  }();
  return has;
}

// ------------------------------------------------------------------ Impl

struct Worker::Impl {
  WorkerOptions opt;
  const RuntimeSlot& slot;
  AccessLog log;
  std::string log_buf;
  LogSampler log_sampler{0x9e3779b97f4a7c15ULL * (opt.index + 1)};  // [log] sample; per worker, no shared state
  WorkerStats own_stats;
  WorkerStats& stats;  // opt.stats (shared memory) or own_stats
  // Where connections count before they are routed, or when the runtime has
  // no series slots (no stats segment): counted, never read.
  stats::RouteSeries unrouted_series;
  stats::BackendSeries unslotted_backend;
  std::vector<int> listen_fds;
  std::vector<uint32_t> listen_listener;  // listener index of each fd
  std::vector<SocketAddress> listen_local;  // bound_address() of each fd
  std::shared_ptr<WorkerRuntime> wrt;
  // The runtime before `wrt`: where a reload's runtime is taken before its
  // snapshot (main publishes the runtime first), hellos route by this one,
  // whose configuration the snapshot in service still has.
  std::shared_ptr<WorkerRuntime> prev_wrt;
  uint64_t seen_generation = 0;
  std::shared_ptr<const control::Snapshot> snap;  // null without a control plane
  std::atomic<uint64_t> seen_snapshot{0};
  CertCache cert_cache;
  uint64_t last_sweep = 0;
  // Bytes the connections' buffers hold now (ByteQueue charges it); declared
  // before `conns`, which refund it as they go.
  uint64_t buffered_bytes = 0;
  std::unique_ptr<ClientCounts> own_client_counts;  // without opt.client_counts, once a limit is set
  std::vector<Conn> conns;
  std::vector<uint32_t> free_slots;
  uint32_t active = 0;
  int wake_fd = -1;
  uint64_t wake_value = 0;
  std::atomic<bool> stop_requested{false};
  bool draining = false;
  // Accepts in flight, kAcceptDepth per listener fd (slot li * depth + k),
  // each with the address the kernel writes the client's into: one-shot
  // accepts, since a multishot accept overwrites one address buffer with
  // every connection it takes before any completion is read (getpeername
  // per connection instead). Sized once by open(): the kernel holds the
  // addresses' memory while the accepts are armed.
  static constexpr uint32_t kAcceptDepth = 8;
  struct AcceptSlot {
    sockaddr_storage addr{};
    socklen_t len = 0;
    bool armed = false;
  };
  std::vector<AcceptSlot> accept_slots;
  uint64_t drain_deadline = 0;
  __kernel_timespec tick_ts{0, kTickMs * 1000000LL};
  std::vector<std::unique_ptr<tls::ClientHelloParser>> parser_pool;
  // Drained pipe pairs for the next splice directions (take_pipe). Bounded:
  // each holds two descriptors.
  static constexpr size_t kPipePoolMax = 32;
  // A new pipe's capacity (the kernel's default, 16 pages). Under the
  // per-user pipe limit (fs.pipe-user-pages-soft) the kernel makes smaller
  // ones: a splice then takes less, and such a pipe is never grown.
  static constexpr uint32_t kPipeDefaultSize = 64 * 1024;
  // Growth (beyond kPipeDefaultSize) held by this worker's pipes now:
  // bounded by opt.splice_grow_budget (grow_pipe).
  uint64_t grown_bytes = 0;
  // Pooled pipes are closed once none has left or joined the pool for this
  // long (a second: reused at one passthrough connection a second and more).
  static constexpr uint64_t kPipePoolIdleMs = 1000;
  struct PooledPipe {
    int r, w;
    uint32_t size;
  };
  std::vector<PooledPipe> pipe_pool;
  uint64_t pipe_pool_used = 0;  // when a pipe last left or joined the pool (ms)
  // Backend sockets made ahead through the ring (IORING_OP_SOCKET, Linux
  // 5.19), per address family, in batches: a connection takes one with no
  // socket() call (the batch's completions cost one wake per kSocketBatch
  // connections). Closed like the pipe pool: descriptors short, draining,
  // or no backend socket taken for kPipePoolIdleMs.
  static constexpr size_t kSocketBatch = 8;
  struct SocketStock {
    std::vector<int> fds;
    unsigned making = 0;  // IORING_OP_SOCKETs in flight
    bool off = false;     // the kernel cannot: socket() from now on
  };
  std::array<SocketStock, 2> socket_stock;  // AF_INET, AF_INET6
  uint64_t socket_stock_used = 0;  // when a backend socket was last taken (ms)
  // Timeout lists: FIFO by the time the connection entered them.
  struct List {
    uint32_t head = kNil, tail = kNil;
  };
  // Relaying connections are on idle_list, or on half_list once one
  // direction has ended (its end of stream passed on): each in order of
  // last activity, each with its own timeout.
  List hello_list, connect_list, idle_list, half_list, linger_list;
  uint64_t now = 0;
  // release_idle_buffers: handled up to here, on idle_list and half_list
  uint64_t idle_swept_until = 0, half_swept_until = 0;
  // Last, so it is torn down first: no operation in flight can outlive the
  // connection memory it points into.
  Ring ring;

  Impl(WorkerOptions o, const RuntimeSlot& s, AccessLog l)
      : opt(o), slot(s), log(std::move(l)), stats(o.stats != nullptr ? *o.stats : own_stats) {}

  ~Impl() {
    for (int fd : listen_fds) {
      if (fd >= 0) close(fd);
    }
    if (wake_fd >= 0) close(wake_fd);
    for (const auto& p : pipe_pool) {
      close(p.r);
      close(p.w);
    }
    for (const SocketStock& st : socket_stock) {
      for (int fd : st.fds) close(fd);
    }
    for (Conn& c : conns) {
      if (!c.used) continue;
      if (c.client.ssl) SSL_free(c.client.ssl);
      if (c.backend.ssl) SSL_free(c.backend.ssl);
      if (c.client.fd >= 0) close(c.client.fd);
      if (c.backend.fd >= 0) close(c.backend.fd);
    }
  }

  // ---------------------------------------------------------- lists
  List& list_of(ListId id) {
    switch (id) {
      case ListId::kHello: return hello_list;
      case ListId::kConnect: return connect_list;
      case ListId::kIdle: return idle_list;
      case ListId::kHalfClosed: return half_list;
      default: return linger_list;
    }
  }
  uint32_t index_of(const Conn& c) const { return static_cast<uint32_t>(&c - conns.data()); }

  void unlink(Conn& c) {
    if (c.list == ListId::kNone) return;
    List& l = list_of(c.list);
    if (c.prev != kNil) conns[c.prev].next = c.next; else l.head = c.next;
    if (c.next != kNil) conns[c.next].prev = c.prev; else l.tail = c.prev;
    c.prev = c.next = kNil;
    c.list = ListId::kNone;
  }
  void link_tail(Conn& c, ListId id) {
    unlink(c);
    List& l = list_of(id);
    const uint32_t i = index_of(c);
    c.list = id;
    c.prev = l.tail;
    c.next = kNil;
    if (l.tail != kNil) conns[l.tail].next = i; else l.head = i;
    l.tail = i;
    c.last_activity = now;
  }

  // ---------------------------------------------------------- runtime
  void refresh_snapshot() {
    if (opt.snapshots == nullptr) return;
    const uint64_t g = opt.snapshots->generation();
    if (g == seen_snapshot.load(std::memory_order_relaxed) && snap) return;
    snap = opt.snapshots->get();
    seen_snapshot.store(g, std::memory_order_release);
  }

  void refresh_runtime() {
    const uint64_t g = slot.generation();
    if (g == seen_generation && wrt) return;
    auto rt = slot.get();
    if (!rt) return;
    auto w = std::make_shared<WorkerRuntime>();
    w->rt = rt;
    w->pools.reserve(rt->pools.size());
    for (const auto& p : rt->pools) {
      // Passive health survives a reload: carry a same-named pool's state.
      const route::PoolState* prev_state = nullptr;
      const route::BackendPool* prev_pool = nullptr;
      for (size_t i = 0; wrt && i < wrt->rt->pools.size(); ++i) {
        if (wrt->rt->pools[i].name == p.name) {
          prev_pool = wrt->rt->pools[i].pool.get();
          prev_state = &wrt->pools[i];
        }
      }
      if (prev_pool != nullptr) {
        w->pools.emplace_back(*p.pool, *prev_pool, *prev_state);
      } else {
        w->pools.emplace_back(*p.pool);
      }
    }
    prev_wrt = std::exchange(wrt, std::move(w));
    seen_generation = g;
  }

  // The runtime a hello is routed by: the newest whose configuration is the
  // snapshot's, so that a route's certificate names are looked up in the
  // configuration that gave them (a reload may bind a name to another
  // file). A connection accepted before a reload is routed by the new one.
  // Neither matching (two reloads half taken): the newest, and choose_ctx
  // refuses the handshake rather than guess.
  const std::shared_ptr<WorkerRuntime>& routing_runtime() const {
    if (snap && snap->config_version != wrt->rt->config_version && prev_wrt &&
        prev_wrt->rt->config_version == snap->config_version) {
      return prev_wrt;
    }
    return wrt;
  }

  // ---------------------------------------------------------- setup
  Result<void, std::string> open() {
    refresh_snapshot();  // first: main publishes a reload's runtime before its snapshot
    refresh_runtime();
    if (!wrt) return unexpected(std::string("no runtime published"));
    for (uint32_t li = 0; li < wrt->rt->listeners.size(); ++li) {
      for (const SocketAddress& a : wrt->rt->listeners[li].addresses) {
        std::string err;
        const int fd = open_listener(a, wrt->rt->listeners[li].defer_accept, err);
        if (fd < 0) return unexpected("listener " + wrt->rt->listeners[li].name + " " + err);
        listen_fds.push_back(fd);
        listen_listener.push_back(li);
        listen_local.push_back(bound_address(fd));
      }
    }
    accept_slots.resize(listen_fds.size() * kAcceptDepth);
    wake_fd = eventfd(0, EFD_CLOEXEC);
    if (wake_fd < 0) return unexpected("eventfd: " + std::string(std::strerror(errno)));
    const uint32_t cap = wrt->rt->limits.connections_per_worker;
    conns.resize(cap);
    free_slots.reserve(cap);
    for (uint32_t i = cap; i > 0; --i) free_slots.push_back(i - 1);
    pipe_pool.reserve(kPipePoolMax);
    return {};
  }

  void arm_accept_slot(uint32_t li, uint32_t k) {
    AcceptSlot& a = accept_slots[li * kAcceptDepth + k];
    a.armed = true;
    a.len = sizeof a.addr;
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_accept(s, listen_fds[li], reinterpret_cast<sockaddr*>(&a.addr), &a.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, encode(li * kAcceptDepth + k, 0, Op::kAccept));
  }
  // Every idle accept slot of listener li: at start and after each
  // connection taken (the re-arms ride the next submission, made anyway).
  void arm_accepts(uint32_t li) {
    for (uint32_t k = 0; k < kAcceptDepth; ++k) {
      if (!accept_slots[li * kAcceptDepth + k].armed) arm_accept_slot(li, k);
    }
  }
  bool any_accept_armed(uint32_t li) const {
    for (uint32_t k = 0; k < kAcceptDepth; ++k) {
      if (accept_slots[li * kAcceptDepth + k].armed) return true;
    }
    return false;
  }
  void arm_tick() {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_timeout(s, &tick_ts, 0, 0);
    io_uring_sqe_set_data64(s, encode(0, 0, Op::kTick));
  }
  void arm_wake() {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_read(s, wake_fd, &wake_value, sizeof wake_value, 0);
    io_uring_sqe_set_data64(s, encode(0, 0, Op::kWake));
  }

  // ---------------------------------------------------------- ops
  void submit_op(Conn& c, Op op, io_uring_sqe* s) {
    io_uring_sqe_set_data64(s, encode(index_of(c), c.gen, op));
    ++c.inflight;
  }
  void arm_recv(Conn& c, Side& side, Op op) {
    if (side.recv_armed || side.eof || side.read_done || side.fd < 0 || c.closing) return;
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_recv(s, side.fd, nullptr, opt.recv_buffer_size, 0);
    if (side.rx_empty && ring.can_poll_first()) {
      s->ioprio |= IORING_RECVSEND_POLL_FIRST;
      bump(stats.recvs_poll_first);
    }
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = Ring::kBufGroup;
    submit_op(c, op, s);
    side.recv_armed = true;
  }
  void cancel_recv(Conn& c, Side& side, Op op) {
    if (side.recv_cancel) return;
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_cancel64(s, encode(index_of(c), c.gen, op), 0);
    submit_op(c, Op::kCancel, s);
    side.recv_cancel = true;
  }

  // Half-closes side's socket (SHUT_WR): the peer sees our end of stream.
  // When that finishes the relay (relay_done: the caller closes the
  // connection next, normally), the close sends the same FIN: no
  // shutdown() is made. Whatever might make that close a reset (bytes left
  // unread) would do it after a shutdown() too.
  // At half_closed_ms = 0 the close follows as soon as the other direction
  // has ended too (on_half_closed): no shutdown() either, unless a reload
  // changed that meanwhile (fin_deferred).
  void shut_wr(Conn& c, Side& side, bool close_follows) {
    side.shut_wr = true;
    if (close_follows && relay_done(c)) return;
    if (close_follows && wrt && wrt->rt->timeouts.half_closed_ms == 0) {
      side.fin_deferred = true;
      return;
    }
    shutdown(side.fd, SHUT_WR);
  }

  // close_follows: the caller checks relay_done() next and closes the
  // connection when it holds (relay()).
  void flush(Conn& c, Side& side, Op op, bool close_follows = false) {
    if (side.send_inflight || side.fd < 0 || c.closing) return;
    if (side.sending.empty()) {
      // A drained queue gives its storage back: an idle connection holds no
      // buffer (the handshake's flights would otherwise stay, a few KiB).
      // While relaying, not per chunk: once the connection has gone quiet
      // (release_idle_buffers, every tick).
      const bool keep = c.phase == Phase::kRelay;
      if (!keep) side.sending.release();
      if (side.out.empty()) {
        if (!keep) side.out.release();
        if (side.want_shut_wr && !side.shut_wr) {
          if (!send_close_notify(c, side)) return;  // waits for room
          shut_wr(c, side, close_follows);
        }
        return;
      }
      std::swap(side.sending, side.out);
    }
    const auto data = side.sending.front();
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_send(s, side.fd, data.data(), data.size(), MSG_NOSIGNAL);
    submit_op(c, op, s);
    side.send_inflight = true;
    side.send_len = static_cast<uint32_t>(data.size());
    // Quiet (no completion, no wake, unless it falls short) while the
    // socket has had room; not where the kernel seals (kTLS sockets refuse
    // MSG_WAITALL).
    side.send_quiet = !side.send_wait && !side.ktls_tx() && ring.make_quiet(s);
  }

  // ---------------------------------------------------------- life cycle
  void accept_conn(int fd, uint32_t fd_index, const AcceptSlot& from) {
    bump(stats.accepted);
    if (free_slots.empty() || draining) {
      bump(stats.refused_over_limit);
      ring.close(fd);
      return;
    }
    // [limits] memory_per_worker_mb: what the open connections buffer.
    if (wrt && buffered_bytes > wrt->rt->limits.memory_per_worker) {
      bump(stats.refused_memory);
      ring.close(fd);
      return;
    }
    const uint32_t i = free_slots.back();
    free_slots.pop_back();
    Conn& c = conns[i];
    const uint32_t gen = (c.gen + 1) & 0xffffff;  // as wide as the tag in user_data
    c = Conn{};
    c.gen = gen;
    c.used = true;
    c.listener = listen_listener[fd_index];
    c.client.fd = fd;
    for (Side* s : {&c.client, &c.backend}) {
      for (ByteQueue* q : {&s->in, &s->out, &s->sending}) q->set_account(&buffered_bytes);
    }
    c.client.stats = c.backend.stats = &stats;
    c.client.route = &unrouted_series;
    c.wrt = wrt;
    if (c.listener >= c.wrt->rt->listeners.size()) {
      // Cannot happen: reloads that change the listeners are refused.
      c.used = false;
      free_slots.push_back(i);
      ring.close(fd);
      return;
    }
    c.t_accept = now;
    socklen_t len = sizeof c.peer.storage;
    if (from.len > 0 && from.len <= sizeof c.peer.storage) {
      std::memcpy(&c.peer.storage, &from.addr, from.len);
      c.peer.len = from.len;
    } else if (getpeername(fd, reinterpret_cast<sockaddr*>(&c.peer.storage), &len) == 0) {
      c.peer.len = len;
    }
    if (listen_local[fd_index].len != 0) {
      c.local = listen_local[fd_index];
    } else {
      len = sizeof c.local.storage;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&c.local.storage), &len) == 0) c.local.len = len;
    }
    const ListenerRuntime& l = c.wrt->rt->listeners[c.listener];
    // Without a PROXY header the peer is the client: counted now. (With one,
    // once the header has named it: on_proxy_header.)
    const bool proxy_refused = !may_send_proxy_header(l, c.peer);
    if (proxy_refused || (l.proxy == ProxyAccept::kNone && !admit_client(c))) {
      if (proxy_refused) bump(stats.proxy_errors);
      c.used = false;
      c.wrt.reset();
      free_slots.push_back(i);
      ring.close(fd);
      return;
    }
    // TCP_NODELAY: inherited from the listener (open_listener).
    if (l.proxy != ProxyAccept::kNone) {
      c.phase = Phase::kProxyHeader;
      c.proxy_parser = std::make_unique<proxy::ProxyHeaderParser>();
    } else {
      c.phase = Phase::kHello;
    }
    c.parser = take_parser(l.max_hello_bytes);
    // A deferred accept comes with the hello already there: read at once.
    c.client.rx_empty = !l.defer_accept;
    ++active;
    bump(stats.active);
    link_tail(c, ListId::kHello);
    arm_recv(c, c.client, Op::kClientRecv);
  }

  std::unique_ptr<tls::ClientHelloParser> take_parser(uint32_t max_hello) {
    // Parsers are pooled only with the default cap; others are rare.
    if (max_hello == tls::ParserLimits{}.max_hello_len && !parser_pool.empty()) {
      auto p = std::move(parser_pool.back());
      parser_pool.pop_back();
      p->reset();
      return p;
    }
    return std::make_unique<tls::ClientHelloParser>(tls::ParserLimits{max_hello});
  }
  void give_parser(std::unique_ptr<tls::ClientHelloParser> p) {
    if (p && parser_pool.size() < 64 && p->limits().max_hello_len == tls::ParserLimits{}.max_hello_len) {
      parser_pool.push_back(std::move(p));
    }
  }

  // Starts closing: cancels what is in flight; the slot is freed when the
  // last completion arrives. `abort` resets the client (and backend) socket.
  void close_conn(Conn& c, std::string_view result, bool abort) {
    if (c.closing) return;
    c.closing = true;
    if (c.result == "ok") c.result = std::string(result);
    if (abort) bump(stats.resets);
    unlink(c);
    for (Side* s : {&c.client, &c.backend}) {
      if (s->fd < 0) continue;
      if (abort) {
        const linger lg{1, 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      }
      const bool busy = s->recv_armed || s->send_inflight || (s == &c.backend && c.phase == Phase::kConnecting) ||
                        c.splice[0].poll_armed || c.splice[1].poll_armed;
      if (!busy) continue;
      io_uring_sqe* sqe = ring.sqe();
      io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
      submit_op(c, Op::kCancel, sqe);
    }
    // The slot is freed by maybe_free() once the caller is done with it:
    // at the end of dispatch() or of the timer pass, never under a caller.
  }

  void maybe_free(Conn& c) {
    if (!c.used || !c.closing || c.inflight > 0) return;
    write_log(c);
    // Every pick ends in exactly one on_connect_fail, on_close (after its
    // on_connect_ok) or on_abandon (before any verdict).
    if (c.backend_picked) end_pick(c);
    if (c.routed) drop(c.client.route->active);
    if (c.client_hold.held) client_table().release(c.client_hold);
    for (Side* s : {&c.client, &c.backend}) {
      if (s->ssl != nullptr) SSL_free(s->ssl);
      s->ssl = nullptr;
      // Nothing is in flight on it (inflight == 0): the ring closes it with
      // the next submission, and the number is forgotten here.
      if (s->fd >= 0) ring.close(s->fd);
      s->fd = -1;
    }
    close_pipes(c);
    give_parser(std::move(c.parser));
    c.proxy_parser.reset();
    c.wrt.reset();
    c.staple = StapleState{};
    c.client = Side{};
    c.backend = Side{};
    c.used = false;
    c.closing = false;
    free_slots.push_back(index_of(c));
    --active;
    drop(stats.active);
  }

  void write_log(const Conn& c) {
    if (!log) return;
    // Sampled before anything is formatted; a connection that did not end
    // "ok" (error, reject, timeout, reset) is always logged.
    if (!log_sampler.keep(c.result == "ok", c.wrt ? c.wrt->rt->log_sample : 1.0)) return;
    JsonWriter w;
    w.begin_object();
    w.field("worker", opt.index);
    // The generation whose configuration routed it (lodectl's generation).
    if (c.wrt) w.field("generation", c.wrt->rt->config_generation);
    w.field("client", c.peer.to_string());
    w.field("listener", c.wrt ? c.wrt->rt->listeners[c.listener].name : std::string());
    if (c.sni.empty()) w.key("sni").null(); else w.field("sni", c.sni);
    w.field("alpn_offered", c.alpn_offered);
    if (c.client.handshake_done && c.tls_version != nullptr) {
      w.field("alpn", c.alpn);
      w.field("tls_version", c.tls_version);
      w.field("cipher", c.tls_cipher != nullptr ? c.tls_cipher : "");
      w.field("resumed", c.resumed);
      w.field("ktls", c.client.ktls_tx() && c.client.ktls_rx() ? "tx+rx"
                      : c.client.ktls_tx()                        ? "tx"
                      : c.client.ktls_rx()                        ? "rx"
                                                                  : "none");
      // Who sealed and opened the records after the handshake.
      w.field("records", c.client.ktls_tx() || c.client.ktls_rx() ? "kernel"
                         : c.client.own_rx()                      ? "lodestone"
                                                                  : "openssl");
    }
    w.field("route", c.route != route::kNoIndex && c.wrt
                         ? c.wrt->rt->listeners[c.listener].table.route(c.route).name
                         : std::string_view());
    w.field("match", c.match_kind);
    w.field("action", c.route == route::kNoIndex ? std::string_view("none")
                      : c.action == route::Action::kTerminate ? std::string_view("terminate")
                      : c.action == route::Action::kPassthrough ? std::string_view("passthrough")
                                                               : std::string_view("reject"));
    if (c.backend_idx != route::kNoIndex && c.wrt) {
      w.field("backend", c.wrt->rt->pools[c.pool].pool->backend(c.backend_idx).address.to_string());
    }
    if (!c.backend_chain.empty()) w.field("backend_chain", c.backend_chain);
    w.field("bytes_from_client", c.client.rx);
    w.field("bytes_to_client", c.client.tx);
    w.field("bytes_from_backend", c.backend.rx);
    w.field("bytes_to_backend", c.backend.tx);
    auto ms = [&](uint64_t t) { return t == 0 ? int64_t{-1} : static_cast<int64_t>(t - c.t_accept); };
    w.field("hello_ms", ms(c.t_hello));
    w.field("handshake_ms", ms(c.t_handshake));
    w.field("backend_ms", ms(c.t_backend));
    w.field("duration_ms", static_cast<int64_t>(now - c.t_accept));
    w.field("phase", to_string(c.phase));
    w.field("result", c.result);
    w.end_object();
    log_buf += w.str();
    log_buf += '\n';
    if (log_buf.size() >= 16 * 1024) flush_log();
  }

  // A listener whose PROXY headers are believed (they name the client)
  // takes connections only from peers trusted to send them; anyone else is
  // cut at accept, before a byte is read. A hand-off listener: the dpdk
  // front's address alone; [listener] proxy_from: its prefixes.
  static bool may_send_proxy_header(const ListenerRuntime& l, const SocketAddress& peer) {
    if (l.only_from_v4 != 0) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&peer.storage);
      return peer.family() == AF_INET && ntohl(in->sin_addr.s_addr) == l.only_from_v4;
    }
    return l.proxy_from.empty() ||
           std::any_of(l.proxy_from.begin(), l.proxy_from.end(), [&](const AddressPrefix& p) { return p.contains(peer); });
  }

  void flush_log() {
    if (log_buf.empty()) return;
    log(opt.index, log_buf);
    log_buf.clear();
  }

  // [limits] connections_per_client: the table shared by the workers, or
  // this worker's own.
  ClientCounts& client_table() {
    if (opt.client_counts != nullptr) return *opt.client_counts;
    if (!own_client_counts) own_client_counts = std::make_unique<ClientCounts>();
    return *own_client_counts;
  }
  // One more connection of c.peer's address, if within the limit (counted
  // until the connection is freed); false: refused (counted).
  bool admit_client(Conn& c) {
    const uint32_t limit = c.wrt->rt->limits.connections_per_client;
    if (limit == 0) return true;
    if (client_table().admit(c.peer.sa(), c.peer.len, limit, c.client_hold)) return true;
    bump(stats.refused_client_limit);
    return false;
  }

  // ---------------------------------------------------------- hello
  void on_proxy_header(Conn& c) {
    const ParseStatus st = c.proxy_parser->parse(c.client.in.front());
    if (st == ParseStatus::kNeedMore) {
      if (c.client.eof) {
        // The stream ended inside the header: said now, not at hello_ms.
        bump(stats.proxy_errors);
        close_conn(c, "proxy_header:eof", false);
      }
      return;
    }
    if (st == ParseStatus::kError) {
      bump(stats.proxy_errors);
      close_conn(c, "proxy_header:" + std::string(c.proxy_parser->error().reason()), true);
      return;
    }
    const proxy::ProxyHeader& h = c.proxy_parser->header();
    const ProxyAccept want = c.wrt->rt->listeners[c.listener].proxy;
    if ((want == ProxyAccept::kV1 && h.version != 1) || (want == ProxyAccept::kV2 && h.version != 2)) {
      bump(stats.proxy_errors);
      close_conn(c, "proxy_header:wrong_version", true);
      return;
    }
    if (h.command == proxy::Command::kProxy && h.has_addresses()) {
      sockaddr_storage ss{};
      const socklen_t len = h.source.to_sockaddr(ss);
      if (len > 0) {
        c.peer.storage = ss;
        c.peer.len = len;
      }
      const socklen_t dlen = h.destination.to_sockaddr(ss);
      if (dlen > 0) {
        c.local.storage = ss;
        c.local.len = dlen;
      }
    }
    if (!admit_client(c)) {
      close_conn(c, "client_limit", true);
      return;
    }
    // The PROXY header is not part of the TLS stream.
    c.client.in.consume(h.header_len);
    c.proxy_parser.reset();
    c.phase = Phase::kHello;
    on_hello(c);
  }

  // The most a hello's stream (its records' headers included) may take
  // before it parses: reads pause there.
  size_t hello_stream_limit(const Conn& c) const {
    return size_t{c.wrt->rt->listeners[c.listener].max_hello_bytes} + 16 * 1024;
  }

  void on_hello(Conn& c) {
    const ParseStatus st = c.parser->parse(c.client.in.front());
    if (st == ParseStatus::kNeedMore) {
      if (c.client.eof) {
        close_conn(c, "hello:eof", false);
      } else if (c.client.in.size() >= hello_stream_limit(c)) {
        // Its length fits, but records so small that their headers take
        // the room (a 20 KB hello one byte per record is 120 KB): too
        // large, answered now rather than a reset at hello_ms.
        reject_malformed(c, tls::HelloParseError{tls::HelloError::kHelloTooLarge, TlsAlert::kDecodeError,
                                                 static_cast<uint32_t>(c.client.in.size())});
      }
      return;
    }
    c.t_hello = now;
    if (st == ParseStatus::kError) {
      reject_malformed(c, c.parser->error());
      return;
    }
    bump(stats.hello_done);
    const tls::ClientHelloInfo& h = c.parser->info();
    if (h.sni_ip_literal) bump(stats.sni_ip_literal);
    if (h.has_sni) c.sni.assign(h.sni());
    for (size_t i = 0; i < h.alpn_count; ++i) {
      if (i) c.alpn_offered += ',';
      c.alpn_offered.append(h.alpn[i]);
    }
    c.wrt = routing_runtime();  // listeners are the same in every generation
    const route::RouteTableView& table = c.wrt->rt->listeners[c.listener].table;
    const route::Match m = h.has_sni ? table.find(c.sni) : table.find_default();
    c.match_kind = route::to_string(m.kind);
    if (!m.found()) {
      bump(stats.no_route);
      refused(c, "no_route");
      reject(c, false, "no_route");
      return;
    }
    c.route = m.route;
    count_routed(c);
    const route::RouteView rv = table.route(m.route);
    if (route_full(c)) {
      // Reset at once: nothing more is read or sent, the established
      // connections of the route are untouched.
      bump(stats.refused_route_full);
      refused(c, "route_full");
      close_conn(c, "route_full", true);
      return;
    }
    c.action = rv.action;
    c.pool = rv.pool;
    give_parser(std::move(c.parser));
    // when_all_down = "reject" and every backend down or drained: refused
    // like a route reject (passthrough: reset), before any handshake.
    if (rv.action != route::Action::kReject && c.pool < c.wrt->rt->pools.size() &&
        c.wrt->rt->pools[c.pool].pool->refuse_new(c.wrt->pools[c.pool], now)) {
      refused(c, "pool_down");
      reject(c, rv.action == route::Action::kPassthrough || rv.reject_with_reset(), "pool_down");
      return;
    }
    switch (rv.action) {
      case route::Action::kReject:
        bump(stats.routed_reject);
        refused(c, "rejected");
        reject(c, rv.reject_with_reset(), "rejected");
        return;
      case route::Action::kPassthrough:
        bump(stats.routed_passthrough);
        start_connect(c);
        return;
      case route::Action::kTerminate:
        bump(stats.routed_terminate);
        start_handshake(c, rv.cert);
        return;
    }
  }

  // The route's series from now on (its slot in the runtime; the unrouted
  // dummy without a stats segment).
  void count_routed(Conn& c) {
    const auto& slots = c.wrt->rt->listeners[c.listener].route_slots;
    if (opt.route_series != nullptr && c.route < slots.size()) c.client.route = &opt.route_series[slots[c.route]];
    c.routed = true;
    bump(c.client.route->connections);
    bump(c.client.route->active);
  }

  // [[route]] max_connections: the route's open connections (this one
  // included) over all workers, from their series slots (two workers
  // admitting at the same instant may pass the cap by one each).
  bool route_full(const Conn& c) const {
    const ListenerRuntime& l = c.wrt->rt->listeners[c.listener];
    const uint32_t cap = c.route < l.route_caps.size() ? l.route_caps[c.route] : 0;
    if (cap == 0) return false;
    if (opt.all_route_series.empty() || c.route >= l.route_slots.size()) {
      return c.client.route->active.load(std::memory_order_relaxed) > cap;
    }
    const uint32_t series = l.route_slots[c.route];
    uint64_t open = 0;
    for (const stats::RouteSeries* w : opt.all_route_series) open += w[series].active.load(std::memory_order_relaxed);
    return open > cap;
  }

  // Bytes moved on one side, in the worker's and (client side) the route's counters.
  void count_io(Conn& c, bool client, bool in, uint64_t n) {
    if (!client) {
      bump(in ? stats.bytes_backend_in : stats.bytes_backend_out, n);
      return;
    }
    bump(in ? stats.bytes_client_in : stats.bytes_client_out, n);
    bump(in ? c.client.route->bytes_in : c.client.route->bytes_out, n);
  }

  // A connection refused after its hello: counted on its route (when it has
  // one) and remembered with its name for the status page.
  void refused(Conn& c, std::string_view reason) {
    if (c.routed) bump(c.client.route->refused);
    remember_refused(reason, c.sni);
  }

  void remember_refused(std::string_view reason, std::string_view name) {
    const uint64_t at = stats.refused_next.load(std::memory_order_relaxed);
    stats::RefusedName& e = stats.refused[at % stats::kRefusedRing];
    reason = reason.substr(0, stats::kRefusedReasonMax);
    name = name.substr(0, decltype(e.text)::kBytes - reason.size());
    char text[decltype(e.text)::kBytes];  // no allocation: a flood of unknown names comes here
    std::memcpy(text, reason.data(), reason.size());
    std::memcpy(text + reason.size(), name.data(), name.size());
    stats::seq_begin(e.seq);
    e.unix_ms.store(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count()),
                    std::memory_order_relaxed);
    e.meta.store(reason.size() | name.size() << 8, std::memory_order_relaxed);
    e.text.store(std::string_view(text, reason.size() + name.size()));
    stats::seq_end(e.seq);
    stats.refused_next.store(at + 1, std::memory_order_release);
  }

  void reject_malformed(Conn& c, const tls::HelloParseError& e) {
    const std::string why = "hello:" + std::string(tls::to_string(e.code));
    if (static_cast<size_t>(e.code) < stats.hello_errors_by_reason.size()) {
      bump(stats.hello_errors_by_reason[static_cast<size_t>(e.code)]);
    }
    if (e.code == tls::HelloError::kBadHostName) remember_refused(why, c.parser->rejected_host_name());
    if (tls::is_not_tls(e.code)) {
      bump(stats.hello_not_tls);
      if (e.code == tls::HelloError::kHttpRequest) {
        static constexpr std::string_view kResp =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 41\r\nConnection: close\r\n\r\n"
            "This port speaks TLS: use https:// here.\n";
        c.client.out.append({reinterpret_cast<const uint8_t*>(kResp.data()), kResp.size()});
        start_linger(c, why);
        return;
      }
      close_conn(c, why, false);
      return;
    }
    bump(stats.hello_errors);
    bump(stats.alerts_sent[static_cast<uint8_t>(e.alert)]);
    const AlertRecord a = fatal_alert_record(e.alert);
    c.client.out.append(a.bytes);
    start_linger(c, why);
  }

  void reject(Conn& c, bool with_reset, std::string_view why) {
    if (with_reset) {
      close_conn(c, why, true);
      return;
    }
    bump(stats.alerts_sent[static_cast<uint8_t>(TlsAlert::kUnrecognizedName)]);
    const AlertRecord a = fatal_alert_record(TlsAlert::kUnrecognizedName);
    c.client.out.append(a.bytes);
    start_linger(c, why);
  }

  // After an alert or an error response: send it, half-close, and read
  // until the client closes (or a short deadline), so that unread input does
  // not turn our close into a reset that destroys the alert.
  void start_linger(Conn& c, std::string_view why) {
    c.result = std::string(why);
    c.phase = Phase::kLinger;
    c.client.want_shut_wr = true;
    c.client.in.clear();
    link_tail(c, ListId::kLinger);
    flush(c, c.client, Op::kClientSend);
    arm_recv(c, c.client, Op::kClientRecv);
  }

  // ---------------------------------------------------------- terminate
  bool ktls_allowed(const Conn& c) const { return c.wrt->rt->tls.ktls && kernel_has_tls_ulp(); }

  SSL_CTX* choose_ctx(Conn& c, uint32_t cert_index) {
    const Runtime& rt = *c.wrt->rt;
    if (cert_index >= rt.certs.size() || !snap) return nullptr;
    if (snap->config_version != rt.config_version) {
      bump(stats.cert_config_mismatch);
      return nullptr;
    }
    const FoundCert f = find_cert(*snap, rt.certs[cert_index], c.sni);
    if (f.entry == nullptr) return nullptr;
    if ((*f.entry)->state != snapshot::CertState::kServe) {
      bump(stats.cert_withheld);
      return nullptr;
    }
    const uint64_t before = cert_cache.builds();
    auto ctx = cert_cache.get(f.key, **f.entry, rt);
    if (!ctx) {
      bump(stats.cert_ctx_errors);
      // Said once per version that fails (the cache keeps the error): not
      // a line per handshake while clients keep asking for that name.
      if (cert_cache.builds() != before) {
        std::fprintf(stderr, "lodestone worker %u: certificate %s: %s\n", opt.index, f.key.c_str(), ctx.error().c_str());
      }
      return nullptr;
    }
    if (cert_cache.builds() != before) bump(stats.cert_ctx_builds);
    c.staple.entry = *f.entry;
    return *ctx;
  }

  void start_handshake(Conn& c, uint32_t cert_index) {
    SSL_CTX* ctx = choose_ctx(c, cert_index);
    if (ctx == nullptr) {
      bump(stats.no_certificate);
      refused(c, "no_certificate");
      reject(c, false, "no_certificate");
      return;
    }
    auto ssl = tls::new_server_ssl(ctx, c.sni);
    if (!ssl) {
      close_conn(c, "ssl_new:" + openssl_error(), true);
      return;
    }
    c.client.ssl = ssl.release();
    if (ktls_allowed(c)) {
      c.client.ktls = std::make_unique<KtlsSide>();
      SSL_CTX_set_keylog_callback(ctx, keylog_callback);
    } else if (c.wrt->rt->tls.own_records) {
      c.client.own = std::make_unique<OwnRecords>();
      c.client.own->ktls_wanted = c.wrt->rt->tls.ktls;
      SSL_CTX_set_keylog_callback(ctx, keylog_callback);
      // OpenSSL offers its keys to the BIO only with this option set.
      SSL_set_options(c.client.ssl, SSL_OP_ENABLE_KTLS);
    }
    if (c.staple.entry) attach_staple_state(c.client.ssl, &c.staple);
    SSL_set_options(c.client.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    attach_bio(c.client.ssl, &c.client);
    SSL_set_accept_state(c.client.ssl);
    SSL_set_info_callback(c.client.ssl, count_alert_sent);
    c.t_handshake_start_us = monotonic_us();
    c.phase = Phase::kHandshake;
    link_tail(c, ListId::kHello);  // the TLS handshake gets its own hello_ms
    drive_client_handshake(c);
  }

  void drive_client_handshake(Conn& c) {
    ERR_clear_error();
    const int r = SSL_do_handshake(c.client.ssl);
    if (r == 1) {
      c.client.handshake_done = true;
      c.t_handshake = now;
      c.resumed = SSL_session_reused(c.client.ssl) == 1;
      if (c.staple.requested) bump(stats.staples_requested);
      if (c.staple.stapled) bump(stats.staples_sent);
      attach_staple_state(c.client.ssl, nullptr);
      c.staple = StapleState{};  // the entry (and its mapping) is not needed any more
      c.tls_version = SSL_get_version(c.client.ssl);
      c.tls_cipher = SSL_get_cipher_name(c.client.ssl);
      {
        const unsigned char* a = nullptr;
        unsigned n = 0;
        SSL_get0_alpn_selected(c.client.ssl, &a, &n);
        c.alpn.assign(reinterpret_cast<const char*>(a), n);
      }
      if (c.client.ktls) c.client.ktls->rx_handover.on_handshake_done(c.client.ssl);
      if (c.client.own) {
        c.client.own->rx_handover.on_handshake_done(c.client.ssl);
        if (!take_own_rx(c.client)) {
          if (c.client.own->off || !c.client.own->tx_on) {
            // OpenSSL keeps the records (a suite we do not seal).
            bump(stats.own_records_declined);
            c.client.own.reset();
          }
        }
      }
      bump(stats.handshakes);
      if (c.resumed) bump(stats.handshakes_resumed);
      {
        stats::RouteSeries& rs = *c.client.route;
        bump(c.resumed ? rs.handshakes_resumed : rs.handshakes_full);
        const uint64_t us = monotonic_us() - c.t_handshake_start_us;
        bump(rs.handshake_us_sum, us);
        bump(rs.handshake_buckets[stats::handshake_bucket(us)]);
      }
      start_connect(c);
      return;
    }
    const int e = SSL_get_error(c.client.ssl, r);
    if (e == SSL_ERROR_WANT_READ && !c.client.eof) return;
    bump(stats.handshake_errors);
    bump(c.client.route->handshake_failures);
    // OpenSSL queued its alert in client.out: send it, then close.
    // A peer that hangs up mid-handshake leaves OpenSSL's error queue empty.
    const bool left = (e == SSL_ERROR_WANT_READ || c.client.eof) && ERR_peek_error() == 0;
    start_linger(c, "handshake:" + (left ? std::string("eof") : openssl_error()));
  }

  // Our record layer takes the receive direction over from OpenSSL at a
  // record boundary, with nothing left unread in OpenSSL; the SSL is then
  // freed (both directions are ours). False when that cannot be done now.
  bool take_own_rx(Side& side) {
    OwnRecords& o = *side.own;
    if (o.off || !o.tx_on || o.rx_on || side.ssl == nullptr || SSL_has_pending(side.ssl) != 0) return false;
    auto state = o.rx_handover.state_now();
    if (!state) return false;
    o.rx.set(*state);
    o.rx_on = true;
    o.rx_handover.forget();
    SSL_free(side.ssl);
    side.ssl = nullptr;
    bump(stats.own_records);
    return true;
  }

  // A record the client sent that our layer cannot accept: the connection
  // is reset, as when OpenSSL refuses one (nothing of it reaches the backend).
  void own_record_error(Conn& c, uint8_t alert) {
    bump(stats.own_records_errors);
    close_conn(c, "client_tls:alert_" + std::to_string(alert), true);
  }

  // Seals our close_notify once; false when it cannot be sealed.
  bool own_close_notify(Side& side) {
    OwnRecords& o = *side.own;
    if (o.notify_sent) return true;
    static constexpr uint8_t kCloseNotify[2] = {1, records::kAlertCloseNotify};
    o.notify_sent = true;
    return own_seal(side, ktls::kAlert, kCloseNotify);
  }

  // TLS 1.3: our KeyUpdate (update_not_requested) under the current send
  // key, then the next key for everything after it. False when it cannot be
  // done (the caller ends the connection).
  bool own_send_key_update(Side& side) {
    OwnRecords& o = *side.own;
    static constexpr uint8_t kKeyUpdate[5] = {ktls::kKeyUpdate, 0, 0, 1, 0};
    if (o.secret_len == 0 || !own_seal(side, ktls::kHandshake, kKeyUpdate)) return false;
    const auto tx = ktls::update_tls13_secret(o.cipher, {o.server_secret, o.secret_len});
    if (!tx) return false;
    o.tx.set(*tx);
    return true;
  }

  // Seals relayed data for the client; first changes our send key when it
  // has sealed opt.key_update_after records (TLS 1.3).
  bool own_seal_data(Side& side, std::span<const uint8_t> data) {
    OwnRecords& o = *side.own;
    if (o.tx.tls13() && o.tx.state.seq >= opt.key_update_after && !o.notify_sent) {
      if (!own_send_key_update(side)) return false;
      bump(stats.own_records_key_updates_sent);
    }
    o.key_update_answered = false;
    return own_seal(side, ktls::kApplicationData, data);
  }

  // A handshake record after the handshake, opened by our layer: TLS 1.3's
  // KeyUpdate (RFC 8446 4.6.3) is followed; a TLS 1.2 renegotiation is
  // refused with a no_renegotiation warning and ignored (what OpenSSL 3.0
  // answers; the client gives up or goes on with the current keys); anything
  // else ends the connection.
  bool own_handshake_record(Conn& c, Side& side, std::span<const uint8_t> msg) {
    OwnRecords& o = *side.own;
    if (!o.rx.tls13() && !msg.empty()) {
      // One warning per connection: the rest of a hello, or more hellos,
      // get no answer (a client cannot make us write as much as it sends).
      static constexpr uint8_t kNoRenegotiation[2] = {1, 100};
      if (!o.notify_sent && !o.renegotiation_refused && !own_seal(side, ktls::kAlert, kNoRenegotiation)) {
        own_record_error(c, records::kAlertInternalError);
        return false;
      }
      o.renegotiation_refused = true;
      return true;
    }
    if (msg.empty()) {
      own_record_error(c, records::kAlertUnexpectedMessage);
      return false;
    }
    for (size_t i = 0; i < msg.size(); ++i) {
      if (o.hs_len == sizeof o.hs) {
        own_record_error(c, records::kAlertUnexpectedMessage);
        return false;
      }
      o.hs[o.hs_len++] = msg[i];
      if (o.hs_len == 4 && (o.hs[0] != ktls::kKeyUpdate || o.hs[1] != 0 || o.hs[2] != 0 || o.hs[3] != 1)) {
        own_record_error(c, records::kAlertUnexpectedMessage);
        return false;
      }
    }
    if (o.hs_len < sizeof o.hs) return true;  // the rest comes in the next record
    o.hs_len = 0;
    const uint8_t request = o.hs[4];
    if (request > 1) {
      own_record_error(c, 47);  // illegal_parameter
      return false;
    }
    // Its last byte ended the record (a byte after it was refused above):
    // the new key starts with the next record.
    if (o.secret_len == 0) {
      own_record_error(c, records::kAlertInternalError);
      return false;
    }
    const auto state = ktls::update_tls13_secret(o.cipher, {o.client_secret, o.secret_len});
    bool ok = state.has_value();
    // Requests that come while we have sent no data since our last answer
    // share that answer (RFC 8446 4.6.3: "respond with a single update"): a
    // client cannot make us write as much as it sends.
    if (ok && request == 1 && !o.notify_sent && !o.key_update_answered) {
      ok = own_send_key_update(side);
      o.key_update_answered = ok;
    }
    if (!ok) {
      own_record_error(c, records::kAlertInternalError);
      return false;
    }
    o.rx.set(*state);
    bump(stats.own_records_key_updates);
    return true;
  }

  // ---------------------------------------------------------- backend
  void start_connect(Conn& c) {
    // Connect attempts (each bounded by connect_ms) and the backend TLS
    // handshake share one budget: connect_ms x attempts.
    if (c.list != ListId::kConnect) link_tail(c, ListId::kConnect);
    const PoolRuntime& pr = c.wrt->rt->pools[c.pool];
    route::PickContext ctx;
    ctx.client = &c.peer;
    ctx.sni = c.sni;
    ctx.now_ms = now;
    auto pick = pr.pool->pick(c.wrt->pools[c.pool], ctx, c.tried);
    if (!pick) {
      // Every backend was tried (or none is eligible): report the last connect error.
      refused(c, "no_backend");
      close_conn(c, c.last_connect_error.empty() ? "backend:" + std::string(route::to_string(pick.error()))
                                                 : c.last_connect_error,
                 true);
      return;
    }
    c.backend_idx = *pick;
    c.tried.add(*pick);
    c.backend_series = *pick < pr.backend_slots.size() && opt.backend_series != nullptr
                           ? &opt.backend_series[pr.backend_slots[*pick]]
                           : &unslotted_backend;
    // From here every exit reports the pick (on_connect_fail, or in
    // maybe_free on_close / on_abandon).
    c.backend_picked = true;
    c.backend_verdict = false;
    bump(c.backend_series->picks);
    bump(c.backend_series->active);
    const SocketAddress& addr = pr.pool->backend(*pick).address;
    const int fd = take_socket(addr.family());
    if (fd < 0) {
      close_conn(c, "backend_socket:" + std::string(std::strerror(errno)), true);
      return;
    }
    static const int kOne = 1;
    const bool sockopt_in_ring = ring.can_setsockopt();
    if (!sockopt_in_ring) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &kOne, sizeof kOne);
    c.backend.fd = fd;
    c.phase = Phase::kConnecting;
    // The connect and its linked timeout must go in one submission (with
    // the TCP_NODELAY ahead of them, in the ring's order: a hard link, so
    // that the connect goes on whatever it returns, as the direct call's
    // result was never looked at either).
    if (io_uring_sq_space_left(ring.raw()) < 3) ring.submit();
    if (sockopt_in_ring) {
      io_uring_sqe* o = ring.sqe();
      Ring::prep_setsockopt(o, fd, IPPROTO_TCP, TCP_NODELAY, &kOne);
      o->flags |= IOSQE_IO_HARDLINK;
    }
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_connect(s, fd, addr.sa(), addr.len);
    s->flags |= IOSQE_IO_LINK;
    submit_op(c, Op::kBackendConnect, s);
    const uint32_t ms = c.wrt->rt->timeouts.connect_ms;
    c.connect_ts.tv_sec = ms / 1000;
    c.connect_ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000000;
    io_uring_sqe* t = ring.sqe();
    io_uring_prep_link_timeout(t, &c.connect_ts, 0);
    submit_op(c, Op::kCancel, t);
  }

  // The pick's verdict, told to its pool: up (on_connect_ok; the pick ends
  // in on_close), or failed (on_connect_fail ends it: no longer counted).
  void pick_ok(Conn& c) {
    c.wrt->rt->pools[c.pool].pool->on_connect_ok(c.wrt->pools[c.pool], c.backend_idx);
    carry_verdict(c, route::BackendPool::Verdict::kUp);
    c.backend_verdict = true;
  }
  void pick_failed(Conn& c) {
    c.wrt->rt->pools[c.pool].pool->on_connect_fail(c.wrt->pools[c.pool], c.backend_idx, now);
    carry_verdict(c, route::BackendPool::Verdict::kFailed);
    c.backend_picked = false;
    drop(c.backend_series->active);
  }
  // A connection of an older generation: its verdict is told to the
  // same-named pool of the one in service too (BackendPool::carry_verdict).
  void carry_verdict(const Conn& c, route::BackendPool::Verdict v) {
    if (!wrt || c.wrt == wrt) return;
    const PoolRuntime& from = c.wrt->rt->pools[c.pool];
    for (size_t i = 0; i < wrt->rt->pools.size(); ++i) {
      const PoolRuntime& to = wrt->rt->pools[i];
      if (to.name == from.name) to.pool->carry_verdict(wrt->pools[i], *from.pool, c.backend_idx, v, c.tried, now);
    }
  }

  // A pick that got no failure verdict ends: after its on_connect_ok in
  // on_close, before any verdict in on_abandon.
  void end_pick(Conn& c) {
    const PoolRuntime& pr = c.wrt->rt->pools[c.pool];
    if (c.backend_verdict) {
      pr.pool->on_close(c.wrt->pools[c.pool], c.backend_idx);
    } else {
      pr.pool->on_abandon(c.wrt->pools[c.pool], c.backend_idx, c.tried);
      carry_verdict(c, route::BackendPool::Verdict::kAbandoned);
    }
    c.backend_picked = false;
    drop(c.backend_series->active);
  }

  // Whether a failed connect or backend TLS handshake may go on to the next
  // backend: nothing of the client's reached a backend, and attempts remain
  // ([limits] connect_retries, the pool's size).
  bool may_retry(const Conn& c) const {
    return !c.forwarded && c.tried.attempts() <= c.wrt->rt->limits.connect_retries &&
           c.tried.attempts() < c.wrt->rt->pools[c.pool].pool->size();
  }

  void on_connect(Conn& c, int res) {
    const PoolRuntime& pr = c.wrt->rt->pools[c.pool];
    if (res < 0) {
      bump(stats.backend_connect_errors);
      pick_failed(c);
      bump(c.backend_series->connect_failures);
      ring.close(c.backend.fd);  // the connect is over: nothing else uses it
      c.backend.fd = -1;
      c.last_connect_error = "backend_connect:" + std::string(std::strerror(-res == ECANCELED ? ETIMEDOUT : -res));
      if (may_retry(c)) {
        bump(stats.backend_retries);
        start_connect(c);
        return;
      }
      close_conn(c, c.last_connect_error, true);
      return;
    }
    // A TLS backend is up once its handshake is (a broken certificate is a
    // failure of that backend, as nginx's proxy_next_upstream counts it).
    if (!pr.backend_tls) pick_ok(c);
    bump(c.backend_series->connects);
    c.backend_active = true;
    c.t_backend = now;
    bump(stats.backend_connects);
    if (pr.send_proxy_v2 && !write_proxy_header(c)) {
      close_conn(c, "proxy_v2:write", true);
      return;
    }
    if (pr.backend_tls) {
      auto ssl = pr.backend_tls->new_ssl(c.sni);
      if (!ssl) {
        close_conn(c, "backend_ssl_new:" + openssl_error(), true);
        return;
      }
      c.backend.ssl = ssl.release();
      SSL_set_options(c.backend.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
      attach_bio(c.backend.ssl, &c.backend);
      SSL_set_connect_state(c.backend.ssl);
      c.phase = Phase::kBackendHandshake;
      drive_backend_handshake(c);
      return;
    }
    enter_relay(c);
  }

  // False: the header could not be written (the caller closes; a backend
  // must never read the stream without the header it was promised).
  bool write_proxy_header(Conn& c) {
    proxy::ProxyHeaderSpec spec;
    spec.source = proxy::Address::from_sockaddr(c.peer.sa(), c.peer.len);
    spec.destination = proxy::Address::from_sockaddr(c.local.sa(), c.local.len);
    if (spec.source.family != spec.destination.family) spec.command = proxy::Command::kLocal;
    if (!c.sni.empty()) spec.authority = c.sni;
    std::string_view alpn;
    if (c.tls_version != nullptr) {
      alpn = c.alpn;
      proxy::SslTlv ssl_tlv;
      ssl_tlv.client = 0x01;  // PP2_CLIENT_SSL
      // Zero says a client certificate was presented and verified (PROXY
      // protocol 2.2.5); we never ask for one.
      ssl_tlv.verify = 1;
      ssl_tlv.version = c.tls_version;
      ssl_tlv.cipher = c.tls_cipher != nullptr ? c.tls_cipher : "";
      spec.ssl = ssl_tlv;
    }
    if (!alpn.empty()) spec.alpn = alpn;
    uint8_t buf[1024];
    const auto n = proxy::write_v2(spec, buf);
    if (!n) return false;
    c.backend.out.append({buf, *n});
    return true;
  }

  void drive_backend_handshake(Conn& c) {
    ERR_clear_error();
    const int r = SSL_do_handshake(c.backend.ssl);
    const PoolRuntime& pr = c.wrt->rt->pools[c.pool];
    if (r == 1) {
      pick_ok(c);
      c.backend.handshake_done = true;
      c.backend_chain = tls::describe_chain(c.backend.ssl);
      enter_relay(c);
      return;
    }
    const int e = SSL_get_error(c.backend.ssl, r);
    if (e == SSL_ERROR_WANT_READ && !c.backend.eof) {
      flush(c, c.backend, Op::kBackendSend);  // our ClientHello, then wait for the answer
      arm_recv(c, c.backend, Op::kBackendRecv);
      return;
    }
    bump(stats.backend_tls_errors);
    // Passive health: a failure of this backend (three in a row eject it),
    // unless the client's name may be the cause: where the name sent and
    // checked is the client's SNI, a name the backend's certificate does not
    // cover (or its unrecognized_name alert) says nothing of the backend,
    // and a client must not eject a healthy one with names of its choice.
    // The pick then ends as an abandon (maybe_free: no verdict).
    const unsigned long err = ERR_peek_error();
    const bool clients_name = pr.backend_tls->settings().sni_from_client &&
                              (SSL_get_verify_result(c.backend.ssl) == X509_V_ERR_HOSTNAME_MISMATCH ||
                               (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_TLSV1_UNRECOGNIZED_NAME));
    if (!clients_name) pick_failed(c);
    std::string why = tls::verify_error(c.backend.ssl);
    if (why.empty()) why = c.backend.eof && ERR_peek_error() == 0 ? std::string("eof") : openssl_error();
    ERR_clear_error();
    if (may_retry(c)) {
      // The next backend, as for a refused connect (nginx's
      // proxy_next_upstream error): the client's bytes wait in client.in.
      if (clients_name) end_pick(c);
      bump(stats.backend_retries);
      c.last_connect_error = "backend_tls:" + why;
      c.backend_redo = true;
      c.phase = Phase::kConnecting;  // nothing drives the failed SSL again
      c.backend.out.clear();         // its alert, if any, is not sent
      if (c.backend.recv_armed || c.backend.send_inflight) {
        io_uring_sqe* sqe = ring.sqe();
        io_uring_prep_cancel_fd(sqe, c.backend.fd, IORING_ASYNC_CANCEL_ALL);
        submit_op(c, Op::kCancel, sqe);
      }
      next_backend(c);
      return;
    }
    close_conn(c, "backend_tls:" + why, true);
  }

  // After a failed backend TLS handshake (backend_redo): once the failed
  // side's receive and send have completed, its socket and SSL go and the
  // next backend is picked. Called again by those completions.
  void next_backend(Conn& c) {
    Side& b = c.backend;
    if (!c.backend_redo || b.recv_armed || b.send_inflight) return;
    c.backend_redo = false;
    SSL_free(b.ssl);
    ring.close(b.fd);
    WorkerStats* const st = b.stats;
    b = Side{};
    b.stats = st;
    for (ByteQueue* q : {&b.in, &b.out, &b.sending}) q->set_account(&buffered_bytes);
    start_connect(c);
  }

  void enter_relay(Conn& c) {
    c.phase = Phase::kRelay;
    // OpenSSL keeps its record buffers while data flows (not a free and a
    // malloc per record); release_idle_buffers() frees them when quiet.
    for (Side* s : {&c.client, &c.backend}) {
      if (s->ssl != nullptr) SSL_clear_mode(s->ssl, SSL_MODE_RELEASE_BUFFERS);
    }
    link_tail(c, ListId::kIdle);
    relay(c);
  }

  // ---------------------------------------------------------- relay
  // Moves what `from` has received to `to`, through OpenSSL where a side
  // speaks TLS, while `to` has room.
  bool pump(Conn& c, Side& from, Side& to) {
    // Plaintext is decrypted straight into `to`'s queue, and encrypted
    // straight from `from`'s: the stack buffer only between two TLS ends.
    // (Our record layer opens a record of up to its ciphertext's length.)
    uint8_t buf[records::kMaxCiphertext12];
    if (from.own && !from.own->rx_on) take_own_rx(from);
    while (to.queued() < opt.relay_cap && !from.read_done && !from.owes_too_much(opt.relay_cap)) {
      size_t n = 0;
      const uint8_t* data = buf;
      if (from.own_rx()) {
        if (from.in.empty()) {
          if (from.eof) from.read_done = true;  // a FIN without close_notify, as OpenSSL is told to take it
          break;
        }
        const bool in_place = !to.tls();
        uint8_t* dst = in_place ? to.out.prepare(sizeof buf) : buf;
        const records::Opened r = records::open(from.own->rx, from.in.front(), dst, sizeof buf);
        const bool record = r.status == records::Opened::Status::kRecord;
        // An alert or a handshake message is a few bytes: kept apart, so
        // that only application data stays in `to`'s queue.
        uint8_t ctl[8];
        const size_t ctl_len = record && r.type != ktls::kApplicationData ? std::min(r.len, sizeof ctl) : 0;
        std::memcpy(ctl, dst, ctl_len);
        if (in_place) to.out.commit(record && r.type == ktls::kApplicationData ? r.len : 0);
        if (r.status == records::Opened::Status::kNeedMore) {
          if (from.eof) from.read_done = true;  // the stream ends inside a record
          break;
        }
        if (r.status == records::Opened::Status::kError) {
          own_record_error(c, r.alert);
          return false;
        }
        from.in.consume(r.consumed);
        if (r.type == ktls::kAlert) {
          if (r.len != 2) {
            own_record_error(c, records::kAlertDecodeError);
            return false;
          }
          if (ctl[1] == records::kAlertCloseNotify) {
            from.read_done = true;
            break;
          }
          if (ctl[0] == 1) continue;  // a warning (user_canceled)
          close_conn(c, "client_alert:" + std::to_string(ctl[1]), true);
          return false;
        }
        if (r.type == ktls::kHandshake) {
          // Its first bytes are enough: TLS 1.3 allows a KeyUpdate (5 bytes)
          // only and refuses a 6th byte; a TLS 1.2 renegotiation is refused
          // whatever its length.
          if (!own_handshake_record(c, from, {ctl, ctl_len})) return false;
          continue;
        }
        n = r.len;
        if (n == 0) continue;
        if (&to == &c.backend) c.forwarded = true;
        if (in_place) continue;
        data = dst;
      } else if (from.ssl != nullptr) {
        ERR_clear_error();
        const bool in_place = !to.tls();
        uint8_t* dst = in_place ? to.out.prepare(sizeof buf) : buf;
        const int r = SSL_read_ex(from.ssl, dst, sizeof buf, &n);
        if (in_place) to.out.commit(r > 0 ? n : 0);
        if (r <= 0) {
          const int e = SSL_get_error(from.ssl, r);
          if (e == SSL_ERROR_WANT_READ) {
            if (from.eof) from.read_done = true;
            break;
          }
          if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && from.eof)) {
            from.read_done = true;  // close_notify, or the peer's FIN without one
            break;
          }
          if (from.ktls_tx() && SSL_get_key_update_type(from.ssl) != SSL_KEY_UPDATE_NONE) {
            // The client asked for our KeyUpdate; the kernel (6.1) cannot
            // re-key our sending side. As on the kernel-RX path: what came
            // before is delivered, the backend sees the end of the stream,
            // and the connection ends when it does (backend -> client still
            // works under the old key, which the client still expects).
            bump(stats.ktls_key_updates);
            ERR_clear_error();
            c.result = "ktls:key_update";
            from.read_done = true;
            break;
          }
          close_conn(c, (&from == &c.client ? "client_tls:" : "backend_tls:") + openssl_error(), true);
          return false;
        }
      } else {
        if (from.in.empty()) {
          if (from.eof) from.read_done = true;
          break;
        }
        const auto front = from.in.front();
        data = front.data();
        n = front.size() < records::kMaxPlaintext ? front.size() : records::kMaxPlaintext;
      }
      if (&to == &c.backend) c.forwarded = true;
      if (to.ssl != nullptr) {
        size_t w = 0;
        if (SSL_write_ex(to.ssl, data, n, &w) != 1 || w != n) {
          close_conn(c, "tls_write:" + openssl_error(), true);
          return false;
        }
      } else if (to.own_tx()) {
        if (!own_seal_data(to, {data, n})) {
          close_conn(c, "tls_write:seal", true);
          return false;
        }
      } else if (from.ssl == nullptr && !from.own_rx()) {
        to.out.append({data, n});
      }
      if (from.ssl == nullptr && !from.own_rx()) from.in.consume(n);
    }
    if (from.read_done && !to.want_shut_wr) {
      // The source is finished: pass the half-close on (under kernel TX,
      // flush() sends the close_notify when the queue is empty).
      if (to.ssl != nullptr && !to.ktls_tx()) {
        SSL_shutdown(to.ssl);
      } else if (to.own_tx() && !own_close_notify(to)) {
        close_conn(c, "tls_write:seal", true);
        return false;
      }
      to.want_shut_wr = true;
    }
    return true;
  }

  void relay(Conn& c) {
    if (!c.splice[0].active && (!pump(c, c.client, c.backend) || c.closing)) return;
    if (!c.splice[1].active && (!pump(c, c.backend, c.client) || c.closing)) return;
    // Drained queues keep their storage while the connection is busy (no
    // malloc/free per chunk); release_idle_buffers() gives it back.
    if (!c.splice[0].active) flush(c, c.backend, Op::kBackendSend, true);
    if (c.closing) return;
    if (!c.splice[1].active) flush(c, c.client, Op::kClientSend, true);
    if (c.closing) return;
    if (relay_done(c)) {
      close_conn(c, "ok", false);
      return;
    }
    // Once what user space holds has gone out, the kernel moves what it can;
    // until then such a direction reads nothing more into user space (a TLS
    // source stopped mid-record is read on to the record's end).
    for (int d = 0; d < 2; ++d) {
      if (c.splice[d].active) continue;
      Side& src = d == 0 ? c.client : c.backend;
      Side& dst = d == 0 ? c.backend : c.client;
      if (wants_splice(c, d)) {
        if (can_splice(c, d) && enter_splice(c, d)) {
          if (c.closing) return;
          continue;
        }
        if (src.recv_armed && can_splice(c, d, true)) {
          // Only a recv armed earlier (an idle client's, say) is in the way:
          // take it back; its completion brings whatever it got.
          cancel_recv(c, src, d == 0 ? Op::kClientRecv : Op::kBackendRecv);
          continue;
        }
        const bool mid_record = src.ssl != nullptr && src.in.empty() &&
                                (SSL_has_pending(src.ssl) != 0 || !src.ktls->rx_handover.state_now());
        if (!mid_record && !c.splice_fallback && !(src.ktls && src.ktls->rx_failed)) continue;
      }
      if (dst.queued() < opt.relay_cap && !src.owes_too_much(opt.relay_cap)) {
        arm_recv(c, src, d == 0 ? Op::kClientRecv : Op::kBackendRecv);
      }
    }
    on_half_closed(c);
  }

  // Whether direction d is one the kernel can move once user space has passed
  // its bytes on: neither end needs OpenSSL for it.
  // A passthrough direction (no TLS at either end) first moves by recv and
  // send through the ring, which cost no system call, and splices only once
  // it has carried opt.splice_after bytes: two splices per chunk (and a poll)
  // are dearer than a copy below bulk sizes.
  bool wants_splice(const Conn& c, int d) const {
    if (c.splice_fallback) return false;
    const Side& src = d == 0 ? c.client : c.backend;
    const Side& dst = d == 0 ? c.backend : c.client;
    if (src.read_done || dst.user_tls_out() || src.own) return false;
    if (src.ssl == nullptr && dst.ssl == nullptr && src.rx < opt.splice_after) return false;
    return src.ssl == nullptr || (src.ktls && !src.ktls->rx_failed && src.ktls->rx_handover.known());
  }

  bool dir_done(const Conn& c, int d) const {
    const Side& src = d == 0 ? c.client : c.backend;
    const Side& dst = d == 0 ? c.backend : c.client;
    const SpliceDir& sp = c.splice[d];
    if (sp.active) return sp.src_done && sp.in_pipe == 0 && dst.shut_wr;
    return src.read_done && dst.shut_wr && !dst.send_inflight;
  }
  bool relay_done(const Conn& c) const { return dir_done(c, 0) && dir_done(c, 1); }
  // Activity: the connection goes to the tail of its list (a half-closed
  // one stays on half_list).
  void touch(Conn& c) { link_tail(c, c.list == ListId::kHalfClosed ? ListId::kHalfClosed : ListId::kIdle); }

  // After a relay step that did not finish the connection: once one
  // direction has ended (its source's end of stream has reached the other
  // end), [timeouts] half_closed_ms applies. Above 0 the connection moves
  // to half_list, where that much quiet ends it (HAProxy's client-fin /
  // server-fin). At 0 the other direction is ended too, as if its source
  // had ended: what it still sends is dropped (read no more, and discarded
  // if a recv brings it), its destination gets the end of stream (our
  // close_notify first where we speak TLS to it), and the connection
  // closes (nginx stream's default, `proxy_half_close off`).
  void on_half_closed(Conn& c) {
    if (c.closing || !wrt) return;
    for (int d = 0; d < 2; ++d) {
      if (!dir_done(c, 1 - d)) continue;
      if (wrt->rt->timeouts.half_closed_ms != 0) {
        for (Side* s : {&c.client, &c.backend}) {
          if (std::exchange(s->fin_deferred, false)) shutdown(s->fd, SHUT_WR);
        }
        if (c.list == ListId::kIdle) link_tail(c, ListId::kHalfClosed);
        return;
      }
      Side& src = d == 0 ? c.client : c.backend;
      if (src.read_done) continue;  // ending already: its end is on its way
      src.read_done = true;
      src.dropped = true;
      SpliceDir& sp = c.splice[d];
      if (!sp.active) {
        relay(c);
        return;
      }
      sp.src_done = true;
      if (!sp.poll_armed) {
        splice_pump(c, d);
      } else if (sp.in_pipe == 0) {
        // Its poll waits for the dropped source: taken back, its completion
        // (cancelled) moves the direction on to its end.
        io_uring_sqe* q = ring.sqe();
        io_uring_prep_cancel64(q, encode(index_of(c), c.gen, d == 0 ? Op::kSpliceIn : Op::kSpliceOut), 0);
        submit_op(c, Op::kCancel, q);
      }  // else its poll waits for room for the pipe's bytes: then the end
      return;
    }
  }

  // Whether direction d can move by splice from now on: user space holds
  // none of its bytes, and neither end needs TLS in user space.
  bool can_splice(Conn& c, int d, bool despite_armed_recv = false) {
    if (c.splice_fallback) return false;
    Side& src = d == 0 ? c.client : c.backend;
    Side& dst = d == 0 ? c.backend : c.client;
    if (src.read_done || (src.recv_armed && !despite_armed_recv) || !src.in.empty() || dst.queued() > 0 || dst.send_inflight ||
        dst.want_shut_wr) {
      return false;
    }
    if (dst.user_tls_out() || src.own) return false;
    if (src.ssl == nullptr) return true;
    // The client's TLS: the kernel can take the receive side over at a
    // record boundary, with nothing left unread in OpenSSL.
    if (!src.ktls || src.ktls->rx_failed || SSL_has_pending(src.ssl) != 0) return false;
    return src.ktls->rx_handover.state_now().has_value();
  }

  // Returns false (and falls back to copying through user space) when the
  // pipe cannot be had, e.g. at the file-descriptor limit, or the kernel
  // refuses the receive state.
  bool enter_splice(Conn& c, int d) {
    SpliceDir& sp = c.splice[d];
    int fds[2];
    uint32_t size = 0;
    if (!take_pipe(fds, size)) {
      c.splice_fallback = true;
      bump(stats.splice_fallbacks);
      return false;
    }
    Side& src = d == 0 ? c.client : c.backend;
    if (src.ssl != nullptr) {
      auto state = src.ktls->rx_handover.state_now();
      if (!state || ktls::install(src.fd, false, *state) != 0) {
        give_pipe(fds[0], fds[1], size, 0, true);  // never used: empty
        src.ktls->rx_failed = true;
        bump(stats.ktls_declined);
        return false;
      }
      src.ktls->rx = true;
      src.ktls->rx_handover.forget();  // the kernel has the key now
      bump(stats.ktls_rx);
    }
    sp.pipe_r = fds[0];
    sp.pipe_w = fds[1];
    sp.pipe_size = size;
    sp.active = true;
    sp.src_done = src.read_done;
    if (c.action == route::Action::kPassthrough && !c.splice[1 - d].active) bump(stats.splice_relays);
    // can_splice() refused a source at its end, so there is more to read:
    // whatever the source had went through user space, so wait for more (a
    // poll finds bytes already there at once) rather than try a splice that
    // mostly finds nothing (EAGAIN, a system call lost).
    arm_poll(c, d, src.fd, POLLIN);
    return true;
  }

  void close_pipes(Conn& c) {
    for (SpliceDir& d : c.splice) {
      // Only a passthrough connection's pipes go back to the pool (they are
      // what it is for); a terminated connection's close as before.
      if (d.pipe_r >= 0) {
        give_pipe(d.pipe_r, d.pipe_w, d.pipe_size, d.grown_by,
                  d.in_pipe == 0 && c.action == route::Action::kPassthrough);
      }
      d.pipe_r = d.pipe_w = -1;
      d.in_pipe = 0;
    }
  }

  // A pipe pair for a splice direction: a drained one from the pool, else a
  // new one. False when none can be had (the descriptor limit).
  bool take_pipe(int fds[2], uint32_t& size) {
    if (!pipe_pool.empty()) {
      fds[0] = pipe_pool.back().r;
      fds[1] = pipe_pool.back().w;
      size = pipe_pool.back().size;
      pipe_pool.pop_back();
      pipe_pool_used = now;
      bump(stats.pipes_reused);
      return true;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    // 64 KiB, or 8 KiB once the user is past fs.pipe-user-pages-soft (an
    // unprivileged process: the kernel makes smaller pipes then).
    const int got = fcntl(fds[0], F_GETPIPE_SZ);
    size = got > 0 ? static_cast<uint32_t>(got) : kPipeDefaultSize;
    bump(stats.pipes_created);
    return true;
  }
  // Takes a connection's pipe pair back: kept for the next connection when
  // it is empty (every byte spliced in was spliced out) and the pool has
  // room, closed otherwise. A pipe's bytes never reach another connection.
  void give_pipe(int r, int w, uint32_t size, uint32_t grown_by, bool empty) {
    if (grown_by > 0) {
      // A grown pipe gives its growth back: to the worker's budget, and to
      // the user's pipe page count (the kernel counts capacity, used or
      // not). Shrinking an empty pipe succeeds; one that does not is closed.
      grown_bytes -= grown_by;
      size -= grown_by;
      if (!empty || fcntl(w, F_SETPIPE_SZ, static_cast<int>(size)) < 0) empty = false;
    }
    if (empty && !draining && pipe_pool.size() < kPipePoolMax) {
      pipe_pool.push_back({r, w, size});
      pipe_pool_used = now;
      return;
    }
    ring.close(r);
    ring.close(w);
  }
  // Closes the pooled pipes: descriptors are short (accept failed with
  // EMFILE), the worker drains, or no connection took or gave one back for
  // a tick (on_tick: a pool is kept while passthrough connections keep
  // coming, not held by an idle worker).
  void release_pipe_pool() {
    for (const auto& p : pipe_pool) {
      ring.close(p.r);
      ring.close(p.w);
    }
    pipe_pool.clear();
  }

  // A new backend socket (nonblocking, close-on-exec) of family: a stocked
  // one, else socket(); the stock is topped up through the ring when it
  // runs low. -1 with errno set when none can be had.
  int take_socket(int family) {
    const bool v6 = family == AF_INET6;
    SocketStock& st = socket_stock[v6 ? 1 : 0];
    int fd;
    socket_stock_used = now;
    if (!st.fds.empty()) {
      fd = st.fds.back();
      st.fds.pop_back();
      bump(stats.sockets_stocked);
    } else {
      fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return -1;
    }
    // can_close(): the ring may run calls (ring_calls = false keeps them direct).
    if (!st.off && st.making == 0 && !draining && st.fds.size() < kSocketBatch / 2 && ring.can_close()) {
      for (size_t k = st.fds.size(); k < kSocketBatch; ++k) {
        io_uring_sqe* s = ring.sqe();
        io_uring_prep_socket(s, family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, 0);
        io_uring_sqe_set_data64(s, encode(v6 ? 1 : 0, 0, Op::kSocket));
        ++st.making;
      }
    }
    return fd;
  }
  void on_socket_made(uint32_t which, int res) {
    if (which >= socket_stock.size()) return;
    SocketStock& st = socket_stock[which];
    if (st.making > 0) --st.making;
    if (res < 0) {
      // EINVAL: no IORING_OP_SOCKET here (before 5.19). EMFILE and the
      // like: the next take tries again, by socket() first.
      if (res == -EINVAL || res == -EOPNOTSUPP) st.off = true;
      return;
    }
    if (draining || st.fds.size() >= kSocketBatch) {
      ring.close(res);
      return;
    }
    st.fds.push_back(res);
  }
  void release_socket_stock() {
    for (SocketStock& st : socket_stock) {
      for (int fd : st.fds) ring.close(fd);
      st.fds.clear();
    }
  }
  // Descriptors are short (accept failed with EMFILE) or the worker drains.
  void release_spare_descriptors() {
    release_pipe_pool();
    release_socket_stock();
  }

  void arm_poll(Conn& c, int d, int fd, unsigned mask) {
    io_uring_sqe* s = ring.sqe();
    io_uring_prep_poll_add(s, fd, mask);
    submit_op(c, d == 0 ? Op::kSpliceIn : Op::kSpliceOut, s);
    c.splice[d].poll_armed = true;
  }

  // Under kernel TX, a half-close is preceded by our close_notify. True when
  // it is sent (or not needed); false when the socket has no room: a poll
  // on it is armed and the caller tries again when it fires.
  bool send_close_notify(Conn& c, Side& side) {
    if (!side.ktls_tx() || side.ktls->notify_sent) return true;
    static constexpr uint8_t kCloseNotify[2] = {1, 0};  // warning, close_notify
    const ssize_t n = ktls::send_record(side.fd, ktls::kAlert, kCloseNotify);
    if (n == sizeof kCloseNotify) {
      side.ktls->notify_sent = true;
      count_sent(side, sizeof kCloseNotify);
      return true;
    }
    const int d = &side == &c.client ? 1 : 0;
    if (n < 0 && errno == EAGAIN) {
      if (!c.splice[d].poll_armed) arm_poll(c, d, side.fd, POLLOUT);
      return false;
    }
    side.ktls->notify_sent = true;  // a broken socket: the shutdown will tell
    return true;
  }

  // Under kernel RX, a record that is not application data stops the
  // splice (EINVAL); it is read here.
  enum class Ctrl : uint8_t { kContinue, kWait, kClosed };
  Ctrl on_ctrl_record(Conn& c) {
    uint8_t buf[512];
    const ktls::Received r = ktls::recv_record(c.client.fd, buf);
    if (r.n < 0) {
      if (r.n == -EAGAIN) return Ctrl::kWait;
      close_conn(c, "client_recv:" + std::string(std::strerror(static_cast<int>(-r.n))), true);
      return Ctrl::kClosed;
    }
    c.client.rx += static_cast<uint64_t>(r.n);
    count_io(c, true, true, static_cast<uint64_t>(r.n));
    SpliceDir& sp = c.splice[0];
    if (r.type == ktls::kAlert && r.n >= 2 && buf[1] == 0) {
      sp.src_done = c.client.read_done = true;  // close_notify: the client's end of stream
      return Ctrl::kContinue;
    }
    if (r.type == ktls::kAlert && r.n >= 2 && buf[0] == 1) return Ctrl::kContinue;  // a warning (user_canceled)
    if (r.type == ktls::kAlert) {
      close_conn(c, "client_alert:" + std::to_string(r.n >= 2 ? buf[1] : 0), true);
      return Ctrl::kClosed;
    }
    if (r.type == ktls::kHandshake && r.n >= 1 && buf[0] == ktls::kKeyUpdate) {
      // The kernel (6.1) cannot change the receive key: what the client sends
      // after its KeyUpdate cannot be read. What came before is delivered,
      // the backend sees the end of the stream; the connection then ends.
      bump(stats.ktls_key_updates);
      c.result = "ktls:key_update";
      sp.src_done = c.client.read_done = true;
      return Ctrl::kContinue;
    }
    close_conn(c, "client_tls:unexpected_record_" + std::to_string(r.type), true);
    return Ctrl::kClosed;
  }

  // A splice that half filled the pipe or more: bulk. The pipe grows to
  // opt.splice_pipe_max (once per use: give_pipe shrinks it back), so that
  // each pair of splice calls moves up to that much instead of 64 KiB:
  // measured on loopback (bench/compare_nginx.sh's passthrough bulk, perf
  // stat), 1 MiB pipes took the splices from 34 to 4 per MB moved and the
  // worker's CPU per MB from ~330 to ~225 µs. Bounded per worker by
  // opt.splice_grow_budget: the kernel counts pipe capacity against the
  // user (fs.pipe-user-pages-soft, 64 MiB by default; past it an
  // unprivileged process gets 8 KiB pipes and no growth), and a slow
  // receiver can leave a grown pipe full. The kernel may refuse (EPERM: a
  // size above fs.pipe-max-size, or past the user's page limits, unless
  // privileged): the pipe then stays as it is.
  void grow_pipe(SpliceDir& sp) {
    if (sp.grow_tried || sp.pipe_size != kPipeDefaultSize || opt.splice_pipe_max <= kPipeDefaultSize) return;
    sp.grow_tried = true;
    if (grown_bytes + (opt.splice_pipe_max - kPipeDefaultSize) > opt.splice_grow_budget) {
      bump(stats.pipes_grow_refused);
      return;
    }
    const int got = fcntl(sp.pipe_w, F_SETPIPE_SZ, static_cast<int>(opt.splice_pipe_max));
    if (got <= static_cast<int>(sp.pipe_size)) {
      bump(stats.pipes_grow_refused);
      return;
    }
    sp.grown_by = static_cast<uint32_t>(got) - sp.pipe_size;
    grown_bytes += sp.grown_by;
    sp.pipe_size = static_cast<uint32_t>(got);
    bump(stats.pipes_grown);
  }

  // Moves what one direction has, until a socket would block.
  void splice_pump(Conn& c, int d) {
    SpliceDir& sp = c.splice[d];
    Side& src = d == 0 ? c.client : c.backend;
    Side& dst = d == 0 ? c.backend : c.client;
    constexpr unsigned kFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    const size_t chunk = sp.pipe_size;
    // A small read or a short write says the socket is empty (full) now:
    // the next step is a poll, not a splice that would find nothing
    // (EAGAIN). The poll checks readiness as it is armed, so bytes
    // (or room) that came meanwhile complete it at once.
    bool src_dry = false;
    while (!c.closing) {
      if (sp.in_pipe > 0) {
        const size_t want = sp.in_pipe;
        const ssize_t n = splice(sp.pipe_r, nullptr, dst.fd, nullptr, want, kFlags);
        if (n > 0) {
          sp.in_pipe -= static_cast<size_t>(n);
          dst.tx += static_cast<uint64_t>(n);
          count_io(c, d == 1, false, static_cast<uint64_t>(n));
          if (static_cast<size_t>(n) < want) {
            arm_poll(c, d, dst.fd, POLLOUT);
            return;
          }
          continue;
        }
        if (n < 0 && errno == EAGAIN) {
          arm_poll(c, d, dst.fd, POLLOUT);
          return;
        }
        close_conn(c, std::string(d == 0 ? "backend_send:" : "client_send:") + std::strerror(errno), true);
        return;
      }
      if (sp.src_done) {
        if (!dst.shut_wr) {
          if (!send_close_notify(c, dst)) return;  // waits for room
          shut_wr(c, dst, true);  // pass the half-close on (closed just below when it is the last)
        }
        break;
      }
      if (src_dry) {
        arm_poll(c, d, src.fd, POLLIN);
        return;
      }
      const ssize_t n = splice(src.fd, nullptr, sp.pipe_w, nullptr, chunk, kFlags);
      if (n > 0) {
        sp.in_pipe = static_cast<size_t>(n);
        src.rx += static_cast<uint64_t>(n);
        count_io(c, d == 0, true, static_cast<uint64_t>(n));
        // Small reads only: a bulk read can stop short of the pipe's size
        // with more queued (the pipe's slots full of part pages), and a kTLS
        // source gives one record per call.
        src_dry = static_cast<size_t>(n) < chunk / 4 && !src.ktls_rx();
        if (static_cast<size_t>(n) >= chunk / 2) grow_pipe(sp);
        continue;
      }
      if (n == 0) {
        sp.src_done = true;
        src.read_done = true;
        continue;
      }
      if (errno == EAGAIN) {
        arm_poll(c, d, src.fd, POLLIN);
        return;
      }
      if (errno == EINVAL && src.ktls_rx()) {
        const Ctrl next = on_ctrl_record(c);
        if (next == Ctrl::kClosed) return;
        if (next == Ctrl::kWait) {
          arm_poll(c, d, src.fd, POLLIN);
          return;
        }
        continue;
      }
      close_conn(c, std::string(d == 0 ? "client_recv:" : "backend_recv:") + std::strerror(errno), true);
      return;
    }
    if (c.closing) return;
    if (relay_done(c)) {
      close_conn(c, "ok", false);
      return;
    }
    on_half_closed(c);
  }

  // Called after any event on a connection: moves it on as far as it goes.
  void progress(Conn& c) {
    if (c.closing) {
      maybe_free(c);
      return;
    }
    switch (c.phase) {
      case Phase::kProxyHeader:
        on_proxy_header(c);
        break;
      case Phase::kHello:
        on_hello(c);
        break;
      case Phase::kHandshake:
        drive_client_handshake(c);
        break;
      case Phase::kConnecting:
        break;
      case Phase::kBackendHandshake:
        drive_backend_handshake(c);
        break;
      case Phase::kRelay:
        relay(c);
        return;
      case Phase::kLinger:
        c.client.in.clear();
        if (c.client.eof) {
          close_conn(c, c.result, false);
          return;
        }
        break;
    }
    if (c.closing) return;
    flush(c, c.client, Op::kClientSend);
    flush(c, c.backend, Op::kBackendSend);
    if (c.phase == Phase::kRelay) return;
    // Until the relay starts, what the client sends piles up in client.in:
    // bounded (the hello may need up to its cap, later bytes wait their turn).
    const size_t limit =
        c.phase == Phase::kProxyHeader || c.phase == Phase::kHello ? hello_stream_limit(c) : opt.relay_cap;
    const bool passthrough_wait = c.phase == Phase::kConnecting && c.action == route::Action::kPassthrough;
    if (c.client.in.size() < limit && !passthrough_wait) arm_recv(c, c.client, Op::kClientRecv);
    if (c.phase == Phase::kBackendHandshake) arm_recv(c, c.backend, Op::kBackendRecv);
  }

  // ---------------------------------------------------------- completions
  void on_recv(Conn& c, Side& side, const io_uring_cqe* cqe, bool is_client) {
    side.recv_armed = false;
    const bool cancelled = side.recv_cancel;
    side.recv_cancel = false;
    const int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
      const auto bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      ring.note_taken();
      if (res > 0 && !c.closing && !side.dropped) {
        side.in.append({ring.buffer(bid), static_cast<size_t>(res)});
        side.rx += static_cast<uint64_t>(res);
        count_io(c, is_client, true, static_cast<uint64_t>(res));
      }
      ring.recycle(bid);
    }
    if (c.closing) return;
    if (!is_client && c.backend_redo) {
      next_backend(c);
      return;
    }
    side.rx_empty = res > 0 && (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY) == 0;
    if (res == -ENOBUFS) ring.on_no_buffers();
    if (res == -ENOBUFS || (res == -ECANCELED && cancelled)) {
      // Every provided buffer is in use: try again on the next pass; or the
      // recv was taken back for the kernel to move this direction.
      progress(c);
      return;
    }
    if (res < 0) {
      close_conn(c, std::string(is_client ? "client_recv:" : "backend_recv:") + std::strerror(-res), true);
      return;
    }
    if (res == 0) side.eof = true;
    if (c.phase == Phase::kRelay) touch(c);
    progress(c);
  }

  void on_send(Conn& c, Side& side, int res, bool is_client) {
    side.send_inflight = false;
    const bool quiet = std::exchange(side.send_quiet, false);
    if (c.closing) return;
    if (!is_client && c.backend_redo) {
      next_backend(c);
      return;
    }
    // A quiet send that found too little room (short, or -EAGAIN): the
    // rest goes as a send the kernel holds until there is room. Any other
    // completed send says the socket took all it was given.
    const bool full = quiet && (res == -EAGAIN || (res >= 0 && static_cast<uint32_t>(res) < side.send_len));
    side.send_wait = full;
    if (full) {
      bump(stats.sends_waited);
      if (res < 0) res = 0;
    }
    if (res < 0) {
      close_conn(c, std::string(is_client ? "client_send:" : "backend_send:") + std::strerror(-res), true);
      return;
    }
    side.sending.consume(static_cast<size_t>(res));
    side.tx += static_cast<uint64_t>(res);
    count_io(c, is_client, false, static_cast<uint64_t>(res));
    if (c.phase == Phase::kRelay) touch(c);
    if (c.phase == Phase::kLinger) {
      flush(c, side, Op::kClientSend);
      return;
    }
    progress(c);
  }

  void dispatch(const io_uring_cqe* cqe) {
    const uint64_t ud = cqe->user_data;
    const Op op = op_of(ud);
    switch (op) {
      case Op::kAccept: {
        const uint32_t li = slot_of(ud) / kAcceptDepth;
        if (li >= listen_fds.size()) return;
        AcceptSlot& a = accept_slots[slot_of(ud)];
        a.armed = false;
        if (cqe->res >= 0) {
          accept_conn(cqe->res, li, a);
        } else if (cqe->res != -ECANCELED && cqe->res != -EINVAL) {
          bump(stats.accept_errors);
          if (cqe->res == -EMFILE || cqe->res == -ENFILE) {
            bump(stats.accept_emfile);
            release_spare_descriptors();  // pooled pipes and stocked sockets go to connections
          }
        }
        if (listen_fds[li] < 0) return;
        if (draining) {
          if (!any_accept_armed(li)) {
            close(listen_fds[li]);  // the last accept is over: now the socket can go
            listen_fds[li] = -1;
          }
        } else if (cqe->res >= 0) {
          arm_accepts(li);
        }
        // A failed accept (EMFILE and friends) stays idle: once none is
        // armed, the tick arms one, so a saturated worker does not spin.
        return;
      }
      case Op::kTick:
        on_tick();
        arm_tick();
        return;
      case Op::kClose:
        // Only a failed close completes (IOSQE_CQE_SKIP_SUCCESS); the
        // descriptor is gone either way (close(2) semantics).
      case Op::kSockopt:
        // Only a failed setsockopt completes: ignored, like the direct
        // call's result.
        return;
      case Op::kSocket:
        on_socket_made(slot_of(ud), cqe->res);
        return;
      case Op::kWake:
        if (stop_requested.load()) begin_drain();
        refresh_snapshot();
        refresh_runtime();
        arm_wake();
        return;
      default:
        break;
    }
    const uint32_t i = slot_of(ud);
    if (i >= conns.size() || !conns[i].used || conns[i].gen != gen_of(ud)) {
      // Cannot happen (a slot is freed after its last completion); never
      // leak a provided buffer on the way out all the same.
      if (cqe->flags & IORING_CQE_F_BUFFER) {
        ring.note_taken();
        ring.recycle(static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
      }
      return;
    }
    Conn& c = conns[i];
    --c.inflight;
    switch (op) {
      case Op::kClientRecv:
        on_recv(c, c.client, cqe, true);
        break;
      case Op::kBackendRecv:
        on_recv(c, c.backend, cqe, false);
        break;
      case Op::kClientSend:
        on_send(c, c.client, cqe->res, true);
        break;
      case Op::kBackendSend:
        on_send(c, c.backend, cqe->res, false);
        break;
      case Op::kBackendConnect:
        if (!c.closing) on_connect(c, cqe->res);
        break;
      case Op::kSpliceIn:
      case Op::kSpliceOut: {
        const int d = op == Op::kSpliceIn ? 0 : 1;
        c.splice[d].poll_armed = false;
        if (c.closing) break;
        // A poll on a source the relay ended (half_closed_ms = 0) is taken
        // back: not an error.
        if (cqe->res < 0 && !(cqe->res == -ECANCELED && c.splice[d].src_done)) {
          close_conn(c, "splice_poll:" + std::string(std::strerror(-cqe->res)), true);
          break;
        }
        touch(c);
        if (c.splice[d].active) {
          splice_pump(c, d);
        } else {
          progress(c);  // a close_notify waited for room
        }
        break;
      }
      default:
        break;
    }
    maybe_free(c);
  }

  // ---------------------------------------------------------- timers
  void expire(List& l, uint64_t timeout_ms, std::string_view why, std::atomic<uint64_t>* counter) {
    while (l.head != kNil) {
      Conn& c = conns[l.head];
      if (c.last_activity + timeout_ms > now) break;
      if (counter != nullptr) bump(*counter);
      close_conn(c, why, counter != nullptr);  // close_conn unlinks
      maybe_free(c);
    }
  }

  // Relaying connections that have been quiet for a tick give back their
  // queues' storage and OpenSSL's record buffers. idle_list is in order of
  // last activity: the walk from its tail skips the connections active in the
  // last tick, handles those that went quiet since the previous walk, and
  // stops at the ones it handled then (any that were not empty still had a
  // send in flight, whose completion moves them back to the tail).
  void release_idle_buffers(const List& l, uint64_t& swept_until) {
    const uint64_t cutoff = now >= kTickMs ? now - kTickMs : 0;
    for (uint32_t i = l.tail; i != kNil;) {
      Conn& c = conns[i];
      i = c.prev;
      if (c.last_activity > cutoff) continue;
      if (c.last_activity <= swept_until) break;
      if (c.closing || c.phase != Phase::kRelay) continue;
      for (Side* s : {&c.client, &c.backend}) {
        if (s->in.empty()) s->in.release();
        if (!s->send_inflight && s->sending.empty()) s->sending.release();
        if (s->out.empty()) s->out.release();
        if (s->ssl != nullptr && SSL_pending(s->ssl) == 0) SSL_free_buffers(s->ssl);
      }
    }
    swept_until = cutoff;
  }

  void on_tick() {
    flush_log();
    // The ring's pressure counters, copied every tick (not per completion).
    stats.ring_sq_full.store(ring.sq_full(), std::memory_order_relaxed);
    stats.sends_quiet.store(ring.quiet_sends(), std::memory_order_relaxed);
    stats.ring_cq_overflows.store(ring.cq_overflows(), std::memory_order_relaxed);
    stats.buffered_bytes.store(buffered_bytes, std::memory_order_relaxed);
    for (uint32_t i = 0; i < listen_fds.size() && !draining; ++i) {
      if (listen_fds[i] >= 0 && !any_accept_armed(i)) arm_accept_slot(i, 0);
    }
    if (!wrt) return;
    const Timeouts& t = wrt->rt->timeouts;
    expire(hello_list, t.hello_ms, "hello_timeout", &stats.hello_timeouts);
    expire(connect_list, uint64_t{t.connect_ms} * (wrt->rt->limits.connect_retries + 1) + 1000, "connect_timeout",
           &stats.backend_connect_errors);
    expire(idle_list, t.idle_ms, "idle_timeout", &stats.idle_timeouts);
    if (t.half_closed_ms != 0) {
      expire(half_list, t.half_closed_ms, "half_closed_timeout", &stats.half_closed_timeouts);
    } else {
      // A reload set half_closed_ms to 0: the connections it finds
      // half-closed end their other direction now, as new ones do, rather
      // than all reset at a timeout of 0.
      while (half_list.head != kNil) {
        Conn& c = conns[half_list.head];
        link_tail(c, ListId::kIdle);
        on_half_closed(c);
        maybe_free(c);
      }
    }
    release_idle_buffers(idle_list, idle_swept_until);
    release_idle_buffers(half_list, half_swept_until);
    if (!pipe_pool.empty() && now - pipe_pool_used >= kPipePoolIdleMs) release_pipe_pool();
    if (now - socket_stock_used >= kPipePoolIdleMs) release_socket_stock();
    expire(linger_list, kLingerMs, "", nullptr);
    if (draining && now >= drain_deadline) {
      for (Conn& c : conns) {
        if (c.used && !c.closing) {
          close_conn(c, "drain_deadline", true);
          maybe_free(c);
        }
      }
    }
  }

  void begin_drain() {
    if (draining) return;
    draining = true;
    drain_deadline = now + (wrt ? wrt->rt->timeouts.drain_ms : 0);
    release_spare_descriptors();
    // shutdown() takes a listening socket out of the SO_REUSEPORT group at
    // once (new connections go to the other processes' sockets) and ends
    // its accepts; the last one's completion closes the fd.
    for (uint32_t i = 0; i < listen_fds.size(); ++i) {
      if (listen_fds[i] < 0) continue;
      shutdown(listen_fds[i], SHUT_RDWR);
      if (!any_accept_armed(i)) {  // none to complete (all failed): close now
        close(listen_fds[i]);
        listen_fds[i] = -1;
      }
    }
  }

  // Once the completions handled since the last submission have taken
  // kEarlySubmitNs, what they queued (a handshake's flight, a relayed
  // answer) is submitted at once instead of after the rest of the batch:
  // otherwise a batch of hellos holds the first client's flight until every
  // other handshake in it is computed (4 connections opened together:
  // handshake p50 1,850 µs against nginx's 1,250, which writes each flight
  // as soon as it has it). At most one extra io_uring_enter per 50 µs of
  // work, none when a pass handles one completion.
  static constexpr uint64_t kEarlySubmitNs = 50'000;
  uint64_t last_submit_ns = 0;
  void submit_if_long() {
    // Nothing left to handle in this pass: its own submission comes next.
    if (io_uring_cq_ready(ring.raw()) == 0 || io_uring_sq_ready(ring.raw()) == 0) return;
    const uint64_t t = monotonic_ns();
    if (t - last_submit_ns < kEarlySubmitNs) return;
    last_submit_ns = t;
    // A refusal (a full completion ring) leaves the SQEs for the pass's own
    // submission.
    if (ring.submit() >= 0) bump(stats.submits_early);
  }

  void run() {
    if (opt.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(opt.cpu, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    now = now_ms();
    for (uint32_t i = 0; i < listen_fds.size(); ++i) arm_accepts(i);
    arm_tick();
    arm_wake();
    while (!(draining && active == 0)) {
      const int rc = ring.submit_and_wait(1);
      bump(stats.ring_waits);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
        std::fprintf(stderr, "lodestone worker %u: io_uring_submit_and_wait: %s\n", opt.index, std::strerror(-rc));
        break;
      }
      now = now_ms();
      last_submit_ns = monotonic_ns();
      // Each completion is marked seen before it is handled, so the CQ ring
      // has room for what handling it submits (a tiny ring under load).
      ring.for_each_completion([this](const io_uring_cqe* cqe) {
        dispatch(cqe);
        submit_if_long();
      });
      // The snapshot first: main publishes a reload's runtime before its
      // snapshot, so a snapshot seen here has its runtime out already.
      if (opt.snapshots != nullptr && opt.snapshots->generation() != seen_snapshot.load(std::memory_order_relaxed)) {
        refresh_snapshot();
      }
      if (slot.generation() != seen_generation) refresh_runtime();
      if (snap && now - last_sweep >= 10'000) {
        cert_cache.sweep(*snap);
        last_sweep = now;
      }
    }
    // The closes the last passes queued; done directly if the ring failed.
    if (ring.submit() < 0) ring.close_unsubmitted();
    flush_log();
  }
};

// ------------------------------------------------------------------ Worker

Worker::Worker(WorkerOptions opt, const RuntimeSlot& slot, AccessLog log)
    : impl_(std::make_unique<Impl>(opt, slot, std::move(log))) {}

Worker::~Worker() {
  if (thread_.joinable()) {
    stop();
    thread_.join();
  }
}

Result<void, std::string> Worker::open() { return impl_->open(); }
Result<void, std::string> Worker::start() {
  // The ring is created on the worker's own thread: io_uring's completion
  // work then never lands on (and never interrupts) the thread that started it.
  std::promise<Result<void, std::string>> ready;
  auto ready_future = ready.get_future();
  thread_ = std::thread([this, &ready] {
    // splice() into a reset socket raises SIGPIPE (it has no MSG_NOSIGNAL):
    // blocked in this thread, it stays pending and the call returns EPIPE.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    auto ok = impl_->ring.init(impl_->opt.ring_entries, impl_->opt.recv_buffers, impl_->opt.recv_buffer_size,
                                 impl_->opt.ring_calls);
    const bool good = ok.has_value();
    ready.set_value(std::move(ok));
    if (good) impl_->run();
  });
  auto ok = ready_future.get();
  if (!ok) thread_.join();
  return ok;
}
void Worker::wake() {
  const uint64_t one = 1;
  if (impl_->wake_fd >= 0) (void)!write(impl_->wake_fd, &one, sizeof one);
}
void Worker::stop() {
  impl_->stop_requested.store(true);
  wake();
}
void Worker::join() {
  if (thread_.joinable()) thread_.join();
}
const WorkerStats& Worker::stats() const noexcept { return impl_->stats; }
uint64_t Worker::snapshot_generation() const noexcept {
  return impl_->seen_snapshot.load(std::memory_order_acquire);
}

}  // namespace lode::worker
