#include "tools/lodeload/run.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tools/lodeload/client_context.h"
#include "tools/lodeload/engine.h"

namespace lode::load {

namespace detail {

Engine::~Engine() {
  for (auto& c : conns_) {
    if (c.ssl != nullptr) SSL_free(c.ssl);
    if (c.fd >= 0) close(c.fd);
  }
  for (auto& n : name_state_) {
    if (n.session != nullptr) SSL_SESSION_free(n.session);
  }
}

Result<void, std::string> Engine::init() {
  // One descriptor per connection, and some to spare.
  const rlim_t need = static_cast<rlim_t>(opt_.concurrency) + 64;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < need) {
    rl.rlim_cur = std::min(need, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need) {
      return unexpected("lodeload: --concurrency " + std::to_string(opt_.concurrency) + " needs " +
                        std::to_string(need) + " file descriptors; the limit is " +
                        std::to_string(rl.rlim_cur) + " (ulimit -n)");
    }
  }
  auto ctx = make_client_ctx(opt_);
  if (!ctx) return unexpected(ctx.error());
  ctx_ = std::move(*ctx);
  SSL_CTX_set_app_data(ctx_.get(), this);
  SSL_CTX_sess_set_new_cb(ctx_.get(), on_new_session);
  SSL_CTX_set_info_callback(ctx_.get(), on_info);
  if (auto r = ring_.init(kRingEntries, kRecvBuffers, kRecvBufferSize); !r)
    return unexpected("lodeload: " + r.error());

  conns_ = std::vector<Conn>(opt_.concurrency);
  for (uint32_t i = opt_.concurrency; i > 0; --i) free_.push_back(i - 1);
  names_ = SniList(opt_.snis);
  name_state_.resize(std::max<size_t>(1, names_.size()));
  request_.resize(opt_.request_bytes);
  Prng body(opt_.seed ^ 0x5eed5eed5eed5eedULL);
  body.fill(request_.data(), request_.size());
  report_.mode = opt_.mode;
  report_.target = opt_.target_text.empty() ? ip_literal(opt_.target) : opt_.target_text;
  if (opt_.rate > 0) interval_ = std::max<Nanos>(1, static_cast<Nanos>(1e9 / opt_.rate));
  return {};
}

// ------------------------------------------------------------------ the loop

Report Engine::run() {
  t0_ = now_ = now_ns();
  next_due_ = t0_;
  if (opt_.duration_ms) end_ = t0_ + ms(*opt_.duration_ms);
  while (true) {
    now_ = now_ns();
    if (!stopping_ && opt_.stop != nullptr && opt_.stop->load(std::memory_order_relaxed))
      abort_all();
    schedule();
    expire_timers();
    if (open_ == 0 && !more_connections()) break;

    const Nanos wait = std::clamp<Nanos>(next_wake() - now_ns(), 0, kMaxWait);
    io_uring_cqe* cqe = nullptr;
    if (wait > 0) {
      __kernel_timespec ts{wait / 1'000'000'000, wait % 1'000'000'000};
      io_uring_submit_and_wait_timeout(ring_.raw(), &cqe, 1, &ts, nullptr);
    } else {
      ring_.submit();
    }
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_.raw(), head, cqe) {
      now_ = now_ns();
      on_cqe(cqe);
      ++seen;
    }
    io_uring_cq_advance(ring_.raw(), seen);
  }
  report_.elapsed_s = static_cast<double>(now_ns() - t0_) / 1e9;
  return std::move(report_);
}

bool Engine::more_connections() const noexcept {
  if (stopping_) return false;
  switch (opt_.mode) {
    case Mode::kHandshakes:
      if (opt_.count && report_.connections_started >= *opt_.count) return false;
      return end_ == 0 || now_ < end_;
    case Mode::kRequests:
      // Kept connections, not replaced when they fail; no more than requests.
      return report_.connections_started <
                 std::min<uint64_t>(opt_.concurrency, opt_.count.value_or(UINT64_MAX)) &&
             more_requests();
    case Mode::kBulk:
    case Mode::kIdle:
      return report_.connections_started < opt_.concurrency;
  }
  return false;
}

bool Engine::more_requests() const noexcept {
  if (stopping_) return false;
  if (opt_.count) return requests_started_ < *opt_.count;
  return end_ == 0 || now_ < end_;
}

void Engine::schedule() {
  const bool paced_connections = opt_.mode == Mode::kHandshakes && interval_ > 0;
  while (!free_.empty() && more_connections() && (!paced_connections || next_due_ <= now_)) {
    if (pending_sni_ < 0) pending_sni_ = static_cast<int64_t>(names_.pick(rng_));
    const auto sni = static_cast<uint32_t>(pending_sni_);
    NameState& ns = name_state_[sni];
    if (opt_.resume && ns.primer_active) break;  // its full handshake first
    pending_sni_ = -1;
    start_conn(sni);
    if (paced_connections) next_due_ += interval_;
  }
  if (opt_.mode != Mode::kRequests) return;
  // Requests waiting for a token (only with --rate).
  while (!ready_.empty()) {
    const auto [slot, gen] = ready_.front();
    Conn& c = conns_[slot];
    if (c.gen != gen || c.phase != Phase::kReady) {
      ready_.pop_front();
      continue;
    }
    if (!more_requests()) {
      ready_.pop_front();
      c.work_done = true;
      begin_close(c);
      continue;
    }
    if (next_due_ > now_) break;
    ready_.pop_front();
    next_due_ += interval_;
    start_request(c);
    drive(c);
  }
}

Nanos Engine::next_wake() const noexcept {
  Nanos wake = now_ + kMaxWait;
  if (!timers_.empty()) wake = std::min(wake, timers_.top().when);
  if (end_ != 0 && now_ < end_) wake = std::min(wake, end_);
  // A name waiting for its first handshake waits for a completion, not a token.
  const bool primer_wait =
      pending_sni_ >= 0 && name_state_[static_cast<size_t>(pending_sni_)].primer_active;
  const bool waiting_token =
      (opt_.mode == Mode::kHandshakes && more_connections() && !free_.empty() && !primer_wait) ||
      (opt_.mode == Mode::kRequests && !ready_.empty());
  if (interval_ > 0 && waiting_token) wake = std::min(wake, next_due_);
  return wake;
}

void Engine::start_conn(uint32_t sni) {
  const uint32_t slot = free_.back();
  free_.pop_back();
  Conn& c = conns_[slot];
  const uint32_t gen = c.gen + 1;
  c = Conn{};
  c.gen = gen;
  c.sni = sni;
  c.started = now_;
  c.phase = Phase::kConnecting;
  ++report_.connections_started;
  ++open_;
  report_.peak_open = std::max(report_.peak_open, open_);
  if (names_.size() > 0) ++report_.sni[names_.name(sni)];
  if (opt_.resume && !name_state_[sni].primed) {
    c.primer = true;
    name_state_[sni].primed = true;
    name_state_[sni].primer_active = true;
  }
  c.fd = socket(opt_.target.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, err::kSocket, std::string("socket: ") + std::strerror(errno));
    return;
  }
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  io_uring_sqe* s = ring_.sqe();
  io_uring_prep_connect(s, c.fd, opt_.target.sa(), opt_.target.len);
  submit(c, s, Op::kConnect);
  set_deadline(c, now_ + ms(opt_.timeout_ms));
}

void Engine::abort_all() {
  stopping_ = true;
  for (auto& c : conns_) {
    if (!alive(c)) continue;
    if (!c.work_done) ++report_.connections_aborted;
    finish(c);
  }
}

// ------------------------------------------------------------------ timers

void Engine::set_deadline(Conn& c, Nanos when) {
  c.deadline = when;
  if (c.heap_deadline == 0 || when < c.heap_deadline) {
    timers_.push({when, index_of(c), c.gen});
    c.heap_deadline = when;
  }
}

void Engine::expire_timers() {
  while (!timers_.empty() && timers_.top().when <= now_) {
    const Timer t = timers_.top();
    timers_.pop();
    Conn& c = conns_[t.slot];
    if (c.gen != t.gen || c.heap_deadline != t.when || !alive(c)) continue;
    c.heap_deadline = 0;
    if (c.deadline == 0) continue;
    if (c.deadline > now_) {  // moved later since: wait again
      timers_.push({c.deadline, t.slot, t.gen});
      c.heap_deadline = c.deadline;
      continue;
    }
    c.deadline = 0;
    on_deadline(c);
  }
}

void Engine::on_deadline(Conn& c) {
  switch (c.phase) {
    case Phase::kConnecting:
      return fail(c, err::kConnectTimeout);
    case Phase::kHandshake:
      return fail(c, err::kHandshakeTimeout);
    case Phase::kRequest:
    case Phase::kBulk:
      return fail(c, err::kResponseTimeout);
    case Phase::kHold:
      ++report_.idle_held;
      c.work_done = true;
      return begin_close(c);
    case Phase::kClosing:
      ++report_.close_timeout;
      return finish(c);
    case Phase::kReady:
    case Phase::kFree:
    case Phase::kDead:
      return;
  }
}

// ------------------------------------------------------------------ I/O

void Engine::arm_recv(Conn& c) {
  if (c.recv_armed || c.eof || !alive(c)) return;
  io_uring_sqe* s = ring_.sqe();
  io_uring_prep_recv(s, c.fd, nullptr, kRecvBufferSize, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = worker::Ring::kBufGroup;
  submit(c, s, Op::kRecv);
  c.recv_armed = true;
}

void Engine::flush(Conn& c) {
  if (c.send_inflight || !alive(c)) return;
  if (c.send_off >= c.sending.size()) {
    c.sending.clear();
    c.send_off = 0;
    const size_t pending = BIO_ctrl_pending(c.wbio);
    if (pending == 0) {
      if (c.sending.capacity() > kKeepCapacity) std::vector<uint8_t>().swap(c.sending);
      if (c.phase == Phase::kClosing && !c.shut_wr) {
        shutdown(c.fd, SHUT_WR);
        c.shut_wr = true;
      }
      return;
    }
    c.sending.resize(std::min(pending, kMaxSend));
    const int n = BIO_read(c.wbio, c.sending.data(), static_cast<int>(c.sending.size()));
    c.sending.resize(n > 0 ? static_cast<size_t>(n) : 0);
    if (c.sending.empty()) return;
  }
  io_uring_sqe* s = ring_.sqe();
  io_uring_prep_send(s, c.fd, c.sending.data() + c.send_off, c.sending.size() - c.send_off,
                     MSG_NOSIGNAL);
  submit(c, s, Op::kSend);
  c.send_inflight = true;
}

void Engine::on_cqe(const io_uring_cqe* cqe) {
  const uint64_t ud = cqe->user_data;
  const auto slot = static_cast<uint32_t>(ud >> 32);
  const auto gen = static_cast<uint32_t>(ud >> 8) & 0xffffff;
  const auto op = static_cast<Op>(ud & 0xff);
  Conn* c = slot < conns_.size() && (conns_[slot].gen & 0xffffff) == gen ? &conns_[slot] : nullptr;
  if (cqe->flags & IORING_CQE_F_BUFFER) {
    const auto bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    ring_.note_taken();
    if (c != nullptr && c->ssl != nullptr && cqe->res > 0) {
      BIO_write(c->rbio, ring_.buffer(bid), cqe->res);
    }
    ring_.recycle(bid);
  }
  if (c == nullptr) return;  // cannot happen: a slot is reused only when its operations are back
  --c->inflight;
  switch (op) {
    case Op::kConnect:
      on_connect(*c, cqe->res);
      break;
    case Op::kRecv:
      on_recv(*c, cqe->res);
      break;
    case Op::kSend:
      on_send(*c, cqe->res);
      break;
    case Op::kCancel:
      break;
  }
  if (c->phase == Phase::kDead && c->inflight == 0) release(*c);
}

void Engine::on_connect(Conn& c, int res) {
  if (c.phase != Phase::kConnecting) return;  // timed out or aborted meanwhile
  if (res < 0) {
    const int e = -res;
    if (e == ECONNREFUSED) return fail(c, err::kConnectRefused);
    if (e == ETIMEDOUT) return fail(c, err::kConnectTimeout);
    if (e == ECONNRESET) return fail(c, err::kReset);
    return fail(c, err::kConnectFailed, std::string("connect: ") + std::strerror(e));
  }
  c.connected = now_;
  report_.connect_us.record(us_between(c.started, c.connected));
  if (!setup_tls(c)) return;
  c.phase = Phase::kHandshake;
  set_deadline(c, now_ + ms(opt_.timeout_ms));
  arm_recv(c);
  drive(c);
}

void Engine::on_recv(Conn& c, int res) {
  c.recv_armed = false;
  if (!alive(c)) return;
  if (res == -ENOBUFS) {  // every buffer was out in this batch; they are back now
    arm_recv(c);
    return;
  }
  if (res < 0) return on_socket_error(c, -res);
  if (res == 0) {
    c.eof = true;
  } else if (c.phase == Phase::kBulk) {
    set_deadline(c, now_ + ms(opt_.timeout_ms));  // progress
  }
  drive(c);
  arm_recv(c);
}

void Engine::on_send(Conn& c, int res) {
  c.send_inflight = false;
  if (!alive(c)) return;
  if (res < 0) return on_socket_error(c, -res);
  c.send_off += static_cast<size_t>(res);
  if (c.phase == Phase::kBulk && res > 0) set_deadline(c, now_ + ms(opt_.timeout_ms));
  drive(c);
}

void Engine::on_socket_error(Conn& c, int e) {
  const bool reset = e == ECONNRESET || e == EPIPE;
  if (c.phase == Phase::kClosing && reset) {
    ++report_.close_reset;
    return finish(c);
  }
  if (reset) return fail(c, err::kReset);
  if (e == ETIMEDOUT) return fail(c, err::kResponseTimeout, std::strerror(e));
  fail(c, err::kSocket, std::strerror(e));
}

}  // namespace detail

Result<Report, std::string> run(const Options& options) {
  detail::Engine engine(options);
  if (auto r = engine.init(); !r) return unexpected(r.error());
  return engine.run();
}

int exit_status(const Report& report) noexcept {
  if (report.error_total() > 0) return 1;
  if (report.mode == Mode::kBulk && !report.bulk_ok()) return 1;
  return 0;
}

}  // namespace lode::load
