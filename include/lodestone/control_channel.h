// The control channel between the control plane and the dataplane: a unix
// SOCK_SEQPACKET socket the dataplane listens on (RUN_DIR/control.sock, mode
// 0600; the peer's uid is checked with SO_PEERCRED). The control plane
// connects; a control plane that restarts connects again and re-attaches
// without a dataplane restart. One attached control plane at a time: a new
// connection replaces the old one.
//
// Messages are one fixed-size ChannelMessage per datagram:
//   dataplane -> control plane
//     kHello   on connect: value = the generation in service (0: none yet).
//              The control plane answers with a full segment whose
//              generation is above it.
//     kAck     generation = a segment applied and in service on every worker
//              path; value = microseconds from receipt to publication.
//     kNack    generation = a segment refused; value = why: a SegmentError
//              (include/lodestone/snapshot.h) when validation failed, or
//              one of the kNack* codes below. The old generation stays.
//     kStats   after kHello: the dataplane's counters, one memfd attached
//              (include/lodestone/stats_layout.h), to map read-only.
//   control plane -> dataplane
//     kSegment generation = the segment's; one memfd attached (SCM_RIGHTS);
//              value = the last SIGHUP reload whose configuration it carries
//              (the number the dataplane gave that SIGHUP in the stats
//              segment, stats::kReloadsAskedOffset; 0: none).
//     kReloadRefused  a reload (SIGHUP, `lodectl routes reload`) the control
//              plane refused before publishing anything: no segment will
//              answer it. generation = the control plane's last published;
//              value = that SIGHUP's number (0: not a SIGHUP). (The
//              dataplane tells systemd READY=1 once that SIGHUP's number is
//              answered, instead of after a bound.)
//   Both ends are the same binary (the control plane is /proc/self/exe run
//   by the dataplane), so a changed meaning needs no version bump.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace lode::snapshot {

inline constexpr uint32_t kChannelMagic = 0x43444f4c;  // "LODC"
inline constexpr uint16_t kChannelVersion = 1;
inline constexpr uint64_t kNackBase = 1000;      // the delta's base is not in service: send a full one
inline constexpr uint64_t kNackUnsealed = 1001;  // not a memfd sealed against writes and resizing
inline constexpr uint64_t kNackMap = 1002;       // could not be mapped
inline constexpr uint64_t kNackMismatch = 1003;  // message and segment disagree on the generation
inline constexpr uint64_t kNackApply = 1004;     // stale generation, full segment missing a record
inline constexpr uint64_t kNackPublish = 1005;   // the dataplane could not put it in service (config)

enum class MessageType : uint16_t { kHello = 1, kAck = 2, kNack = 3, kSegment = 4, kStats = 5, kReloadRefused = 6 };

struct ChannelMessage {
  uint32_t magic = kChannelMagic;
  uint16_t version = kChannelVersion;
  uint16_t type = 0;
  uint64_t generation = 0;
  uint64_t value = 0;
};
static_assert(sizeof(ChannelMessage) == 24);

// Sends one message, with `fd` attached when >= 0. Returns 0 or an errno.
inline int send_message(int sock, const ChannelMessage& m, int fd = -1) noexcept {
  iovec iov{const_cast<ChannelMessage*>(&m), sizeof m};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  while (true) {
    const ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof m)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? errno : EMSGSIZE;
  }
}

// Receives one message; `*fd` gets an attached descriptor (close-on-exec) or
// -1. Returns 0, ECONNRESET at end of stream, EBADMSG for a message of the
// wrong size, magic or version (any attached descriptor is closed), or an
// errno (EAGAIN on a nonblocking socket with nothing to read).
inline int recv_message(int sock, ChannelMessage& m, int* fd) noexcept {
  *fd = -1;
  iovec iov{&m, sizeof m};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n == 0) return ECONNRESET;
  int got = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      if (got < 0) {
        got = f;
      } else {
        close(f);  // one descriptor per message; extras are dropped
      }
    }
  }
  const bool bad = n != static_cast<ssize_t>(sizeof m) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
                   m.magic != kChannelMagic || m.version != kChannelVersion;
  if (bad) {
    if (got >= 0) close(got);
    return EBADMSG;
  }
  *fd = got;
  return 0;
}

}  // namespace lode::snapshot
