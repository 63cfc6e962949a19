// The state machine behind run(): one Engine per run drives every connection
// of it from the calling thread. Internal to lodeload (run.h is the API);
// run.cc holds the loop (scheduling, timers, io_uring completions),
// connection.cc a connection's TLS phases and its end.
//
// A connection: kConnecting (io_uring connect) -> kHandshake -> the mode's
// work (kRequest / kReady, kBulk, kHold) -> kClosing (close_notify and FIN
// sent, waiting for the server's) -> kDead (its operations cancelled, waiting
// for them to come back) -> kFree. Every phase that waits for the server has
// a deadline; a failure is counted under its error kind and ends the
// connection.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "dataplane/worker/uring.h"
#include "lodestone/result.h"
#include "lodestone/socket_address.h"
#include "tools/lodeload/options.h"
#include "tools/lodeload/prng.h"
#include "tools/lodeload/report.h"
#include "tools/lodeload/sni_list.h"

namespace lode::load::detail {

using Nanos = int64_t;  // steady clock

inline Nanos now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
constexpr Nanos ms(uint64_t v) noexcept {
  return static_cast<Nanos>(v) * 1'000'000;
}
inline uint64_t us_between(Nanos from, Nanos to) noexcept {
  return to > from ? static_cast<uint64_t>(to - from) / 1000 : 0;
}

inline constexpr unsigned kRingEntries = 4096;
inline constexpr unsigned kRecvBuffers = 1024;
inline constexpr unsigned kRecvBufferSize = 32 * 1024;
inline constexpr size_t kMaxSend = 256 * 1024;        // one send at most
inline constexpr size_t kBulkHighWater = 256 * 1024;  // ciphertext queued before bulk stops writing
inline constexpr size_t kBulkChunk = 16 * 1024;       // one TLS record of plaintext
// A send buffer larger than this is freed when it empties.
inline constexpr size_t kKeepCapacity = 64 * 1024;
// The loop looks at the stop flag at least this often.
inline constexpr Nanos kMaxWait = ms(100);

// user_data: | slot (32) | generation (24) | op (8) |, as the workers do.
enum class Op : uint8_t { kConnect = 1, kRecv, kSend, kCancel };
constexpr uint64_t encode(uint32_t slot, uint32_t gen, Op op) noexcept {
  return static_cast<uint64_t>(slot) << 32 | static_cast<uint64_t>(gen & 0xffffff) << 8 |
         static_cast<uint8_t>(op);
}

enum class Phase : uint8_t {
  kFree,
  kConnecting,
  kHandshake,
  kRequest,  // a request written, its response being read
  kReady,    // requests: between requests, waiting for a rate token
  kBulk,
  kHold,
  kClosing,  // close_notify and FIN sent, waiting for the server's
  kDead,     // finished; waiting for its operations to come back
};

struct BulkState {
  // Stream i sends Prng(seed + i * 2^32)'s bytes.
  BulkState(uint64_t i, uint64_t seed) : index(i), rng(seed + (i << 32)) {}
  ~BulkState() {
    EVP_MD_CTX_free(sent_md);
    EVP_MD_CTX_free(received_md);
  }
  BulkState(const BulkState&) = delete;
  BulkState& operator=(const BulkState&) = delete;

  uint64_t index;
  Prng rng;
  EVP_MD_CTX* sent_md = EVP_MD_CTX_new();
  EVP_MD_CTX* received_md = EVP_MD_CTX_new();
  uint64_t sent = 0;
  uint64_t received = 0;
};

struct Conn {
  uint32_t gen = 0;
  Phase phase = Phase::kFree;
  int fd = -1;
  uint32_t inflight = 0;
  uint32_t sni = 0;
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // owned by ssl
  BIO* wbio = nullptr;  // owned by ssl
  bool recv_armed = false;
  bool send_inflight = false;
  bool eof = false;
  bool primer = false;     // --resume: the full handshake of its name
  bool offered = false;    // --resume: a ticket was offered
  bool work_done = false;  // counted ok once closed
  bool shut_wr = false;
  int alert = 0;  // the last alert received (level << 8 | description), 0 = none
  std::vector<uint8_t> sending;
  size_t send_off = 0;
  Nanos started = 0;
  Nanos connected = 0;
  Nanos request_at = 0;
  bool first_byte = false;
  uint64_t response_expected = 0;
  uint64_t response_got = 0;
  Nanos deadline = 0;       // 0 = none
  Nanos heap_deadline = 0;  // the earliest entry of this connection in the timer heap
  std::unique_ptr<BulkState> bulk;
};

// Not yet finished (a finished connection may still wait for its operations).
inline bool alive(const Conn& c) noexcept {
  return c.phase != Phase::kFree && c.phase != Phase::kDead;
}

struct Timer {
  Nanos when;
  uint32_t slot;
  uint32_t gen;
  bool operator>(const Timer& o) const noexcept { return when > o.when; }
};

// --resume, per name: the first connection does the full handshake alone;
// once it is over (with a ticket or not) the others go, offering the latest
// ticket when there is one.
struct NameState {
  SSL_SESSION* session = nullptr;  // the latest ticket for this name
  bool primer_active = false;
  bool primed = false;
};

// The target's address without its port, as the certificate check takes it.
std::string ip_literal(const SocketAddress& a);

class Engine {
 public:
  explicit Engine(const Options& o) : opt_(o), rng_(o.seed) {}
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Result<void, std::string> init();
  Report run();

 private:
  // ---------------------------------------------------------- scheduling
  bool more_connections() const noexcept;
  bool more_requests() const noexcept;
  void schedule();
  void start_conn(uint32_t sni);
  void abort_all();
  Nanos next_wake() const noexcept;
  void expire_timers();
  void set_deadline(Conn& c, Nanos when);

  // ---------------------------------------------------------- I/O
  void submit(Conn& c, io_uring_sqe* s, Op op) {
    io_uring_sqe_set_data64(s, encode(index_of(c), c.gen, op));
    ++c.inflight;
  }
  uint32_t index_of(const Conn& c) const noexcept {
    return static_cast<uint32_t>(&c - conns_.data());
  }
  void arm_recv(Conn& c);
  void flush(Conn& c);
  void on_cqe(const io_uring_cqe* cqe);
  void on_connect(Conn& c, int res);
  void on_recv(Conn& c, int res);
  void on_send(Conn& c, int res);
  void on_socket_error(Conn& c, int err);
  void on_deadline(Conn& c);

  // ---------------------------------------------------------- TLS
  bool setup_tls(Conn& c);
  void drive(Conn& c);
  bool step_handshake(Conn& c);
  bool step_request(Conn& c);
  bool step_bulk(Conn& c);
  void step_unexpected(Conn& c);
  void step_closing(Conn& c);
  void handshake_done(Conn& c);
  void after_response(Conn& c);
  void start_request(Conn& c);
  void begin_close(Conn& c);
  void fail_tls(Conn& c, int ssl_error);
  // Plaintext into scratch_: the byte count, 0 for "nothing yet", -1 when the
  // connection ended (`end_kind`: the server closed, saying `when`) or failed.
  ssize_t read_plain(Conn& c, const char* end_kind, const char* when);
  bool input_exhausted(const Conn& c) const noexcept {
    return c.eof && BIO_ctrl_pending(c.rbio) == 0;
  }
  static int on_new_session(SSL* ssl, SSL_SESSION* session);
  static void on_info(const SSL* ssl, int where, int ret);

  // ---------------------------------------------------------- endings
  void fail(Conn& c, const std::string& kind, const std::string& sample = "");
  void finish(Conn& c);
  void release(Conn& c);

  const Options& opt_;
  tls::SslCtxPtr ctx_;
  worker::Ring ring_;
  std::vector<Conn> conns_;
  std::vector<uint32_t> free_;
  SniList names_;
  std::vector<NameState> name_state_;
  Prng rng_;
  std::vector<uint8_t> request_;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(64 * 1024);
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::deque<std::pair<uint32_t, uint32_t>> ready_;  // requests waiting for a token: (slot, gen)
  Report report_;

  Nanos now_ = 0;
  Nanos t0_ = 0;
  Nanos end_ = 0;       // duration's end; 0 = none
  Nanos next_due_ = 0;  // the next rate token
  Nanos interval_ = 0;  // between rate tokens; 0 = no rate
  uint64_t open_ = 0;
  uint64_t requests_started_ = 0;
  uint64_t bulk_streams_ = 0;
  int64_t pending_sni_ = -1;  // a name drawn but not started yet (its primer is still running)
  bool stopping_ = false;
};

}  // namespace lode::load::detail
