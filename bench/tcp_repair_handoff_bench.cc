// The dpdk front's terminate hand-off, way (b): TCP_REPAIR, prototyped and
// measured against the kernel side of way (a), the replay that Lodestone
// uses (dataplane/front/handoff.h says why).
//
// (b) is a socket made ESTABLISHED without a handshake: the dataplane already
// did the handshake (SYN cookie) and holds the ClientHello, so a worker
// would create the socket from a hand-off message: TCP_REPAIR on, both queue
// sequence numbers (TCP_QUEUE_SEQ), the hello bytes queued for reading
// (TCP_RECV_QUEUE + send), bind + connect (no SYN in repair mode), the
// options the SYN cookie encoded (TCP_REPAIR_OPTIONS: MSS, window scale,
// SACK, timestamps), TCP_REPAIR off. The check below proves it on this
// kernel: two repaired sockets on loopback that never handshook talk to each
// other, and the reader finds the queued hello first.
//
// What the check cannot give (b), and why Lodestone replays instead:
// - the socket carries the client's address and the VIP; the kernel must
//   then own the VIP and route every client back through the exception
//   interface (policy routing by source = VIP), beside the DPDK port that
//   owns the VIP on the wire;
// - the worker must make the socket itself from a message on a new control
//   channel: its io_uring accept path, hence its code, does not run
//   unchanged; and it needs CAP_NET_ADMIN (the replay's worker needs none);
// - the cost it saves is small (below: 2026-11-28, this 2-core VM, Linux
//   6.18, busy: handoff/tcp_repair 15-16 us CPU, handoff/replay_kernel
//   29-30 us CPU for both ends), against ~300 us for the worker's full TLS
//   handshake that follows either way.
//
//   ./build/release/bench/tcp_repair_handoff_bench   (root: CAP_NET_ADMIN)
//
// handoff/replay_kernel: what the kernel and a worker do per flow in (a), a
//   loopback connect (SYN, SYN-ACK, ACK through the stack), 554 bytes (PROXY
//   header + hello) written, accept() and read, both closed. An upper bound:
//   the client-side half is the dataplane's work in (a), done without the kernel.
// handoff/tcp_repair: (b)'s worker side: the repaired socket built with 517
//   hello bytes queued, the hello read back, closed silently (repair on).
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kHello = 517;
constexpr size_t kHeader = 37;

struct Options {
  uint16_t mss = 1460;
  uint8_t snd_wscale = 7, rcv_wscale = 7;
  bool sack = true;
  bool timestamps = true;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tcp_repair_handoff_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int set_int(int fd, int level, int opt, int v) { return setsockopt(fd, level, opt, &v, sizeof v); }

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// An ESTABLISHED socket from a hand-off message: local:lport <-> peer:pport,
// our next byte `snd`, the peer's next byte after `queued` (read by the
// application first) `rcv`; live (repair off) unless told otherwise. -1
// with errno on failure.
int repaired_socket(uint16_t lport, uint16_t pport, uint32_t snd, uint32_t rcv, const std::vector<uint8_t>& queued,
                    const Options& o, bool live = true) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  auto fail = [&] {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  };
  if (set_int(fd, SOL_TCP, TCP_REPAIR, 1) != 0) return fail();
  if (set_int(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) != 0) return fail();
  if (set_int(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(snd)) != 0) return fail();
  if (set_int(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) != 0) return fail();
  if (set_int(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(rcv - static_cast<uint32_t>(queued.size()))) != 0) {
    return fail();
  }
  set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  const sockaddr_in l = loopback(lport), p = loopback(pport);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&l), sizeof l) != 0) return fail();
  if (connect(fd, reinterpret_cast<const sockaddr*>(&p), sizeof p) != 0) return fail();  // no SYN in repair mode
  // The hello the dataplane collected, queued as if received (rcv_nxt moves past it).
  if (!queued.empty() && send(fd, queued.data(), queued.size(), 0) != static_cast<ssize_t>(queued.size())) {
    return fail();
  }
  tcp_repair_opt opts[4];
  unsigned n = 0;
  opts[n++] = {TCPOPT_MAXSEG, o.mss};
  opts[n++] = {TCPOPT_WINDOW, static_cast<uint32_t>(o.snd_wscale) | static_cast<uint32_t>(o.rcv_wscale) << 16};
  if (o.sack) opts[n++] = {TCPOPT_SACK_PERMITTED, 0};
  if (o.timestamps) opts[n++] = {TCPOPT_TIMESTAMP, 0};
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, static_cast<socklen_t>(n * sizeof opts[0])) != 0) {
    return fail();
  }
  if (live && set_int(fd, SOL_TCP, TCP_REPAIR, 0) != 0) return fail();  // ESTABLISHED, live
  return fd;
}

// Closed without a FIN or RST (the peer of a benchmark socket is imaginary).
void close_silently(int fd) {
  set_int(fd, SOL_TCP, TCP_REPAIR, 1);
  close(fd);
}

uint16_t free_port() {
  const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("free port");
  }
  close(s);
  return ntohs(a.sin_port);
}

bool read_exactly(int fd, void* p, size_t n) {
  auto* b = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t r = recv(fd, b, n, 0);
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Two repaired sockets that never handshook carry data both ways, the
// reader getting the queued "hello" first: (b) works on this kernel.
void check_repair_works() {
  std::vector<uint8_t> hello(kHello);
  for (size_t i = 0; i < hello.size(); ++i) hello[i] = static_cast<uint8_t>(i * 7);
  const uint16_t pa = free_port(), pb = free_port();
  const uint32_t client_isn = 0xfffffff0u, our_isn = 0x7000'0000u;  // wraps on the client side
  const uint32_t client_next = client_isn + 1 + static_cast<uint32_t>(kHello), our_next = our_isn + 1;
  // a: the client (it "sent" the hello); b: the worker's socket (hello
  // queued). Both exist before either goes live: leaving repair mode sends a
  // window probe, which a closed port would answer with a RST.
  const int a = repaired_socket(pa, pb, client_next, our_next, {}, Options{}, false);
  if (a < 0) die("TCP_REPAIR (needs CAP_NET_ADMIN): client side");
  const int b = repaired_socket(pb, pa, our_next, client_next, hello, Options{}, false);
  if (b < 0) die("TCP_REPAIR: worker side");
  if (set_int(b, SOL_TCP, TCP_REPAIR, 0) != 0 || set_int(a, SOL_TCP, TCP_REPAIR, 0) != 0) die("TCP_REPAIR off");
  std::vector<uint8_t> got(kHello);
  if (!read_exactly(b, got.data(), got.size()) || got != hello) die("the queued hello is not what the worker reads");
  const char ping[] = "client finished";
  const char pong[] = "server answer";
  char buf[64] = {};
  if (send(a, ping, sizeof ping, 0) != sizeof ping || !read_exactly(b, buf, sizeof ping) ||
      std::memcmp(buf, ping, sizeof ping) != 0) {
    die("client -> worker over the repaired pair");
  }
  if (send(b, pong, sizeof pong, 0) != sizeof pong || !read_exactly(a, buf, sizeof pong) ||
      std::memcmp(buf, pong, sizeof pong) != 0) {
    die("worker -> client over the repaired pair");
  }
  tcp_info ti{};
  socklen_t len = sizeof ti;
  getsockopt(b, SOL_TCP, TCP_INFO, &ti, &len);
  utsname u{};
  uname(&u);
  std::printf("TCP_REPAIR on %s %s: established without a handshake, queued hello read first, data both ways; "
              "options kept: snd_wscale %u rcv_wscale %u, sack %s, timestamps %s, mss %u\n",
              u.sysname, u.release, ti.tcpi_snd_wscale, ti.tcpi_rcv_wscale,
              (ti.tcpi_options & TCPI_OPT_SACK) ? "on" : "off", (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) ? "on" : "off",
              ti.tcpi_snd_mss);
  close(a);
  close(b);
}

void BM_ReplayKernel(benchmark::State& state) {
  const int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  if (l < 0 || bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1024) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("listener");
  }
  std::vector<uint8_t> bytes(kHeader + kHello, 0x16);
  std::vector<uint8_t> got(bytes.size());
  for (auto _ : state) {
    const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
    if (send(c, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size())) die("send");
    const int s = accept(l, nullptr, nullptr);
    if (s < 0 || !read_exactly(s, got.data(), got.size())) die("accept/read");
    linger lg{1, 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  // a RST: no TIME_WAIT piles up
    close(c);
    close(s);
  }
  close(l);
}

void BM_TcpRepair(benchmark::State& state) {
  std::vector<uint8_t> hello(kHello, 0x16), got(kHello);
  const uint16_t peer = free_port();
  uint32_t isn = 1;
  for (auto _ : state) {
    const int fd = repaired_socket(0, peer, isn, isn + 1000 + kHello, hello, Options{});
    if (fd < 0) die("TCP_REPAIR");
    if (!read_exactly(fd, got.data(), got.size())) die("read the queued hello");
    close_silently(fd);
    isn += 7919;
  }
}

BENCHMARK(BM_ReplayKernel)->Name("handoff/replay_kernel");
BENCHMARK(BM_TcpRepair)->Name("handoff/tcp_repair");

}  // namespace

int main(int argc, char** argv) {
  check_repair_works();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
