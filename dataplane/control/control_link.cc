#include "dataplane/control/control_link.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lodestone/control_channel.h"
#include "lodestone/json_writer.h"

namespace lode::control {

namespace {

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<ControlLink>, std::string> ControlLink::listen(std::string socket_path, Publish publish,
                                                                      Event event) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return unexpected("control socket path '" + socket_path + "' is empty or longer than " +
                      std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  std::unique_ptr<ControlLink> link(new ControlLink());
  link->path_ = std::move(socket_path);
  link->publish_ = std::move(publish);
  link->event_ = std::move(event);
  link->listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (link->listen_fd_ < 0) return unexpected(errno_text("control socket"));
  unlink(link->path_.c_str());
  // 0600 from the start: no window in which another user could connect.
  const mode_t old = umask(0177);
  const int rc = bind(link->listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0) return unexpected(errno_text(("bind " + link->path_).c_str()));
  if (::listen(link->listen_fd_, 4) != 0) return unexpected(errno_text("listen on the control socket"));
  link->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (link->stop_fd_ < 0) return unexpected(errno_text("eventfd"));
  return link;
}

ControlLink::~ControlLink() {
  stop();
  if (conn_fd_ >= 0) close(conn_fd_);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
  if (stop_fd_ >= 0) close(stop_fd_);
}

void ControlLink::start() { thread_ = std::thread([this] { run(); }); }

void ControlLink::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(stop_fd_, &one, sizeof one);
  thread_.join();
}

bool ControlLink::wait_for_snapshot(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return current_ != nullptr; });
}

std::shared_ptr<const Snapshot> ControlLink::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

uint64_t ControlLink::generation() const {
  std::lock_guard lock(mu_);
  return current_ ? current_->generation : 0;
}

void ControlLink::run() {
  while (true) {
    pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}, {conn_fd_, POLLIN, 0}};
    const int n = poll(fds, conn_fd_ >= 0 ? 3 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    // The readiness of fds[2] is that of the connection polled, which an
    // accept may just have replaced.
    const int polled = conn_fd_;
    if (fds[1].revents != 0) on_accept();
    if (conn_fd_ >= 0 && conn_fd_ == polled && fds[2].revents != 0) on_message();
  }
}

void ControlLink::on_accept() {
  // Nonblocking: a control plane that stops reading cannot stall this thread.
  const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != geteuid() && cred.uid != 0)) {
    stats_.peers_refused.fetch_add(1, std::memory_order_relaxed);
    event_(JsonWriter().begin_object().field("event", "control_peer_refused")
               .field("uid", static_cast<uint64_t>(cred.uid)).end_object().take());
    close(fd);
    return;
  }
  if (conn_fd_ >= 0) close(conn_fd_);  // the newest control plane wins
  conn_fd_ = fd;
  stats_.attaches.fetch_add(1, std::memory_order_relaxed);
  snapshot::ChannelMessage hello;
  hello.type = static_cast<uint16_t>(snapshot::MessageType::kHello);
  hello.value = generation();
  snapshot::send_message(conn_fd_, hello);
  if (stats_fd_ >= 0) {
    snapshot::ChannelMessage st;
    st.type = static_cast<uint16_t>(snapshot::MessageType::kStats);
    snapshot::send_message(conn_fd_, st, stats_fd_);
  }
  event_(JsonWriter().begin_object().field("event", "control_plane_attached")
             .field("pid", static_cast<int64_t>(cred.pid)).field("generation", hello.value).end_object().take());
}

void ControlLink::refuse(uint64_t generation, uint64_t code, const std::string& why) {
  stats_.segments_refused.fetch_add(1, std::memory_order_relaxed);
  event_(JsonWriter().begin_object().field("event", "segment_refused").field("generation", generation)
             .field("in_service", this->generation()).field("error", why).end_object().take());
  snapshot::ChannelMessage nack;
  nack.type = static_cast<uint16_t>(snapshot::MessageType::kNack);
  nack.generation = generation;
  nack.value = code;
  if (conn_fd_ >= 0) snapshot::send_message(conn_fd_, nack);
}

void ControlLink::answered(uint64_t reload) noexcept {
  // One writer (this thread): a plain maximum.
  if (reload > stats_.reload_answered.load(std::memory_order_relaxed)) {
    stats_.reload_answered.store(reload, std::memory_order_release);
  }
}

void ControlLink::on_message() {
  snapshot::ChannelMessage m;
  int fd = -1;
  const int rc = snapshot::recv_message(conn_fd_, m, &fd);
  if (rc == EAGAIN || rc == EINTR) return;
  if (rc != 0) {
    if (rc != ECONNRESET) {
      event_(JsonWriter().begin_object().field("event", "control_message_refused")
                 .field("error", std::strerror(rc)).end_object().take());
    }
    if (rc == EBADMSG) return;
    close(conn_fd_);
    conn_fd_ = -1;
    event_(R"({"event":"control_plane_detached"})");
    return;
  }
  if (m.type == static_cast<uint16_t>(snapshot::MessageType::kReloadRefused)) {
    if (fd >= 0) close(fd);
    stats_.reloads_refused.fetch_add(1, std::memory_order_relaxed);
    answered(m.value);
    return;
  }
  if (m.type != static_cast<uint16_t>(snapshot::MessageType::kSegment)) {
    if (fd >= 0) close(fd);
    return;
  }
  // The segment answers the SIGHUP reload its message names (value; 0: none)
  // once it is in service or refused for good.
  const auto refuse_segment = [&](uint64_t code, const std::string& why) {
    if (code != snapshot::kNackBase) answered(m.value);  // before the nack: the control plane may act on it
    refuse(m.generation, code, why);
  };
  if (fd < 0) {
    refuse_segment(snapshot::kNackUnsealed, "segment message without a memfd");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto seg = MappedSegment::map(fd);
  close(fd);
  if (!seg) {
    refuse_segment(seg.error().code, seg.error().message);
    return;
  }
  if ((*seg)->view().generation() != m.generation) {
    refuse_segment(snapshot::kNackMismatch, "segment generation does not match its message");
    return;
  }
  auto applied = apply_segment(current(), *seg);
  if (!applied) {
    refuse_segment(applied.error() == ApplyError::kBaseMismatch ? snapshot::kNackBase : snapshot::kNackApply,
                   std::string(to_string(applied.error())));
    return;
  }
  if (auto ok = publish_(*applied); !ok) {
    refuse_segment(snapshot::kNackPublish, ok.error());
    return;
  }
  {
    std::lock_guard lock(mu_);
    current_ = applied->snapshot;
  }
  cv_.notify_all();
  const auto us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  stats_.segments_applied.fetch_add(1, std::memory_order_relaxed);
  stats_.last_apply_us.store(us, std::memory_order_relaxed);
  answered(m.value);
  snapshot::ChannelMessage ack;
  ack.type = static_cast<uint16_t>(snapshot::MessageType::kAck);
  ack.generation = m.generation;
  ack.value = us;
  snapshot::send_message(conn_fd_, ack);
}

}  // namespace lode::control
