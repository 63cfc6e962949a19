// The dpdk front's forwarding of an established passthrough flow on one
// lcore, behind a real ethdev (issue 6): a net_ring port made with
// rte_eth_from_rings, fed by a generator in the same thread.
//
// One loop pass, all on the one lcore and all inside the timed window:
//   generator: take what the port sent from its TX ring (rte_ring dequeue),
//     check one frame in kCheckEvery (and the first ones) — destination,
//     checksums, the same bytes as the first checked frame — restore the
//     header bytes the engine rewrote from the template (the payload is
//     never rewritten, so the mbufs are recycled: no allocation, no copy of
//     the payload), set the "NIC's" RX checksum flag, and put the mbufs back
//     on the port's RX ring;
//   lcore: what dataplane/front/dpdk/dpdk_front.cc's lcore loop does with
//     the wire's queue: rte_eth_rx_burst, the clock, for each mbuf
//     FlowEngine::on_frame_in_place (l4_verified from
//     RTE_MBUF_F_RX_L4_CKSUM_GOOD), a FrameSink whose send_in_place queues
//     the mbuf itself, rte_eth_tx_burst, the timer tick every 10 ms and the
//     counters published after every burst.
// The generator's work (ring dequeue and enqueue, header restore, sampled
// checks) is charged to Lodestone: it is in every figure this prints. The
// "no engine" case runs the same loop with the engine left out (each mbuf
// sent back as received), which says what the generator and the ring port
// cost on their own.
//
// Cases: client->backend and backend->client, each with the RX checksum
// flag set (the NIC checked the TCP checksum: the payload is not read) and
// without it (the engine checks it in software), then "no engine". Each
// case runs a fixed number of frames or a bounded time, whichever ends
// first. Prints a table, or one JSON object with --json.
//
// Many flows (--flows 1,1000,100000): each count is one engine with that
// many spliced flows (establish_flows in bench/flow_engine_fixture.h); the
// generator moves each frame it recycles to the next flow of a uniformly
// random sequence (its address, port and checksums rewritten, the payload
// not read), so consecutive frames hit different flows and, with enough of
// them, the flow table is out of cache. The checked frames are checked
// against their own flow. --prefetch 0,4,8: each engine case again with
// FlowEngine::prefetch_flow called for frame i + K while frame i is handled
// (0: not called), and with --links 0,2 also with prefetch_flow_links for
// frame i + L, interleaved, --repeat times.
//
//   sudo ./build/release/bench/dpdk_ring_forward_bench [--frames N]
//     [--seconds S] [--inflight K] [--lcore C] [--flows N,N..]
//     [--prefetch K,K..] [--links L,L..] [--repeat R] [--file-prefix P]
//     [--json]
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_tcp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "bench/flow_engine_fixture.h"
#include "lodestone/stats_layout.h"

namespace {

using namespace lode::front;

constexpr uint16_t kBurst = 32;         // as the dpdk front's lcores
constexpr unsigned kRingSize = 2048;    // each of the port's two rings
constexpr uint64_t kCheckEvery = 1024;  // frames drained per checked frame

struct Options {
  uint64_t frames = 20'000'000;  // per case
  double seconds = 2.0;          // per case, at most
  // Mbufs circulating: as many as testpmd's --tx-first puts on its two
  // rings (a burst of 32 per port); 512 measured the same.
  unsigned inflight = 64;
  unsigned lcore = 0;
  std::string file_prefix;
  bool json = false;
  // Established flows the frames are spread over (each count its own
  // engine), and the prefetch distances tried (0: no prefetch), each case
  // run for each; --repeat runs the whole set again, interleaved.
  std::vector<uint32_t> flows = {1};
  std::vector<unsigned> prefetch = {0};
  std::vector<unsigned> links = {0};  // FlowEngine::prefetch_flow_links for frame i + L (with a prefetch)
  unsigned repeat = 1;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "dpdk_ring_forward_bench: %s\n"
               "usage: dpdk_ring_forward_bench [--frames N] [--seconds S] [--inflight K (32..%u)] [--lcore C]\n"
               "                               [--flows N,N..] [--prefetch K,K..] [--links L,L..] [--repeat R]\n"
               "                               [--file-prefix P] [--json]\n",
               why, kRingSize - 1);
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  o.file_prefix = "lodefwd" + std::to_string(getpid());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    auto number = [&](const std::string& v) {
      char* end = nullptr;
      const double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(d > 0) || d > 1e12) usage(("bad number for " + a + ": " + v).c_str());
      return d;
    };
    if (a == "--frames") {
      o.frames = static_cast<uint64_t>(number(value()));
    } else if (a == "--seconds") {
      o.seconds = number(value());
    } else if (a == "--inflight") {
      o.inflight = static_cast<unsigned>(number(value()));
      if (o.inflight < kBurst || o.inflight >= kRingSize) usage("--inflight out of range");
    } else if (a == "--lcore") {
      const std::string v = value();
      if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 4) usage("bad --lcore");
      o.lcore = static_cast<unsigned>(std::stoul(v));
    } else if (a == "--file-prefix") {
      o.file_prefix = value();
      if (o.file_prefix.empty() || o.file_prefix.find_first_of("/ ") != std::string::npos) usage("bad --file-prefix");
    } else if (a == "--flows" || a == "--prefetch" || a == "--links") {
      const std::string v = value();
      std::vector<uint32_t> list;
      for (size_t at = 0; at <= v.size();) {
        const size_t comma = std::min(v.find(',', at), v.size());
        const std::string item = v.substr(at, comma - at);
        if (item.empty() || item.size() > 7 || item.find_first_not_of("0123456789") != std::string::npos) {
          usage(("bad list for " + a + ": " + v).c_str());
        }
        list.push_back(static_cast<uint32_t>(std::stoul(item)));
        at = comma + 1;
      }
      if (a == "--flows") {
        if (std::find(list.begin(), list.end(), 0u) != list.end() || *std::max_element(list.begin(), list.end()) > 1'000'000) {
          usage("--flows: 1..1000000");
        }
        o.flows = list;
      } else {
        if (*std::max_element(list.begin(), list.end()) >= kBurst) usage("--prefetch, --links: 0..31");
        (a == "--links" ? o.links : o.prefetch).assign(list.begin(), list.end());
      }
    } else if (a == "--repeat") {
      o.repeat = static_cast<unsigned>(number(value()));
      if (o.repeat > 100) usage("--repeat: 1..100");
    } else if (a == "--json") {
      o.json = true;
    } else {
      usage(("unknown argument " + a).c_str());
    }
  }
  return o;
}

uint64_t now_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

double thread_cpu_s() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The lcore's sink: a frame rewritten in place leaves in its own mbuf,
// queued and sent in bursts; frames the engine builds anew (none in the
// established state) would come from the pool.
class RingPortSink : public FrameSink {
 public:
  RingPortSink(rte_mempool* pool, uint16_t port) : pool_(pool), port_(port) {}
  ~RingPortSink() override {
    flush();
    if (pending_ != nullptr) rte_pktmbuf_free(pending_);
  }
  std::span<uint8_t> buffer() noexcept override {
    if (pending_ == nullptr) pending_ = rte_pktmbuf_alloc(pool_);
    if (pending_ == nullptr || rte_pktmbuf_tailroom(pending_) < kMaxFrame) return {};
    return {rte_pktmbuf_mtod(pending_, uint8_t*), rte_pktmbuf_tailroom(pending_)};
  }
  void send(size_t len) noexcept override {
    if (pending_ == nullptr) return;
    pending_->data_len = static_cast<uint16_t>(len);
    pending_->pkt_len = static_cast<uint32_t>(len);
    queue(pending_);
    pending_ = nullptr;
    ++built_;
  }
  bool send_in_place(std::span<uint8_t> frame) noexcept override {
    if (current_ == nullptr || frame.data() != rte_pktmbuf_mtod(current_, uint8_t*)) return false;
    queue(current_);
    current_ = nullptr;
    taken_ = true;
    return true;
  }
  void receiving(rte_mbuf* m) noexcept {
    current_ = m;
    taken_ = false;
  }
  bool taken() const noexcept { return taken_; }
  void flush() noexcept {
    uint16_t sent = 0;
    for (int tries = 0; sent < count_ && tries < 4; ++tries) {
      sent = static_cast<uint16_t>(sent + rte_eth_tx_burst(port_, 0, tx_ + sent, static_cast<uint16_t>(count_ - sent)));
    }
    for (uint16_t i = sent; i < count_; ++i) rte_pktmbuf_free(tx_[i]);
    dropped_ += count_ - sent;
    count_ = 0;
  }
  uint64_t dropped() const noexcept { return dropped_; }
  uint64_t built() const noexcept { return built_; }

 private:
  void queue(rte_mbuf* m) noexcept {
    tx_[count_++] = m;
    if (count_ == kBurst) flush();
  }
  rte_mempool* pool_;
  uint16_t port_;
  rte_mbuf* pending_ = nullptr;
  rte_mbuf* current_ = nullptr;
  bool taken_ = false;
  rte_mbuf* tx_[kBurst] = {};
  uint16_t count_ = 0;
  uint64_t dropped_ = 0, built_ = 0;
};

void publish(lode::stats::FrontLcoreStats& out, const FrontStats& s) noexcept {
#define LODE_BENCH_STORE(name, help) out.name.store(s.name, std::memory_order_relaxed);
  LODE_FRONT_COUNTERS(LODE_BENCH_STORE)
#undef LODE_BENCH_STORE
}

enum class Direction { kToBackend, kToClient };

struct Case {
  const char* name;
  Direction dir;
  bool nic_checksum;
  bool engine = true;
};

struct Result {
  std::string name;
  uint32_t flows = 1;
  unsigned prefetch = 0, links = 0;
  uint64_t frames = 0;
  double seconds = 0, cpu_seconds = 0;
  uint64_t checked = 0, bad = 0, not_forwarded = 0, tx_dropped = 0;
  double mpps() const { return seconds > 0 ? static_cast<double>(frames) / seconds / 1e6 : 0; }
  // Per second of this thread's CPU time: what a core of its own would do
  // (the machine may give the thread only part of one).
  double cpu_mpps() const { return cpu_seconds > 0 ? static_cast<double>(frames) / cpu_seconds / 1e6 : 0; }
};

// What a frame the engine forwarded must look like (the flow's other leg).
struct Expect {
  MacAddr src_mac, dst_mac;
  uint32_t src_ip, dst_ip;
  uint16_t sport, dport;
};

// Checks one forwarded frame on its own terms (addresses, ports, both
// checksums computed here with DPDK's helpers, the payload as sent) and,
// with one flow (same_bytes), once one has passed, that every later one is
// the same bytes; with many, every checked frame on its own terms, against
// its flow's addresses.
class FrameChecker {
 public:
  FrameChecker(std::span<const uint8_t> sent, bool same_bytes) : sent_(sent.begin(), sent.end()), same_(same_bytes) {}
  bool check(const rte_mbuf* m, const Expect& expect_) {
    const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
    const size_t len = rte_pktmbuf_data_len(m);
    if (!reference_.empty()) return len == reference_.size() && std::memcmp(p, reference_.data(), len) == 0;
    if (len != sent_.size() || len < sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_tcp_hdr)) return false;
    const auto* eth = reinterpret_cast<const rte_ether_hdr*>(p);
    if (std::memcmp(eth->dst_addr.addr_bytes, expect_.dst_mac.data(), 6) != 0 ||
        std::memcmp(eth->src_addr.addr_bytes, expect_.src_mac.data(), 6) != 0 ||
        eth->ether_type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
      return false;
    }
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
    const size_t ihl = rte_ipv4_hdr_len(ip);
    if (ihl < sizeof(rte_ipv4_hdr) || sizeof(rte_ether_hdr) + ihl + sizeof(rte_tcp_hdr) > len) return false;
    if (ip->next_proto_id != IPPROTO_TCP || rte_be_to_cpu_32(ip->src_addr) != expect_.src_ip ||
        rte_be_to_cpu_32(ip->dst_addr) != expect_.dst_ip ||
        rte_be_to_cpu_16(ip->total_length) != len - sizeof(rte_ether_hdr)) {
      return false;
    }
    if (rte_ipv4_cksum(ip) != 0) return false;  // the sum over a header with a right checksum is 0xffff
    const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(reinterpret_cast<const uint8_t*>(ip) + ihl);
    if (rte_be_to_cpu_16(tcp->src_port) != expect_.sport || rte_be_to_cpu_16(tcp->dst_port) != expect_.dport) {
      return false;
    }
    // The TCP checksum: the pseudo-header's sum and the segment's (with its
    // checksum field) fold to 0xffff.
    const size_t l4_len = len - sizeof(rte_ether_hdr) - ihl;
    uint32_t sum = uint32_t{rte_raw_cksum(tcp, l4_len)} + rte_ipv4_phdr_cksum(ip, 0);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    if (sum != 0xffff) return false;
    const size_t payload = sizeof(rte_ether_hdr) + ihl + ((tcp->data_off >> 4) * 4u);
    if (payload > len || std::memcmp(p + payload, sent_.data() + payload, len - payload) != 0) return false;
    if (same_) reference_.assign(p, p + len);
    return true;
  }

 private:
  std::vector<uint8_t> sent_, reference_;
  bool same_;
};

// The bytes the engine rewrites: everything up to the end of the TCP header.
size_t header_length(std::span<const uint8_t> f) {
  const size_t ihl = (f[14] & 0x0f) * 4u;
  return 14 + ihl + (f[14 + ihl + 12] >> 4) * 4u;
}

// The flows of one run: one engine, its flows spliced, and the order the
// generator sends their frames in.
struct Flows {
  lode::bench::EstablishedFlows e;
  // Flow indexes, uniformly random (a fixed seed): consecutive frames hit
  // different flows, and a flow's neighbours in the engine's timeout list
  // are as random as its own slot. Read in order (a power of two long).
  std::vector<uint32_t> order;
};

Flows make_flows(uint32_t n) {
  Flows f;
  if (n == 1) {
    // Today's single flow, as establish() makes it.
    lode::bench::Established one = lode::bench::establish();
    f.e.engine = std::move(one.engine);
    f.e.client_data = std::move(one.client_data);
    f.e.backend_data = std::move(one.backend_data);
    f.e.flows = {{lode::bench::kClientV4, lode::bench::kBackendV4, 0, lode::bench::kClientPort, one.local_port}};
  } else {
    f.e = lode::bench::establish_flows(n);
  }
  f.order.resize(n == 1 ? 1 : size_t{1} << 20);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (uint32_t& j : f.order) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    j = static_cast<uint32_t>(((x >> 32) * n) >> 32);
  }
  return f;
}

// Where the generator leaves a frame's flow index: the mbuf's headroom,
// which the engine never writes.
void set_flow_of(rte_mbuf* m, uint32_t j) noexcept { std::memcpy(rte_pktmbuf_mtod(m, uint8_t*) - 8, &j, 4); }
uint32_t flow_of(const rte_mbuf* m) noexcept {
  uint32_t j;
  std::memcpy(&j, rte_pktmbuf_mtod(m, const uint8_t*) - 8, 4);
  return j;
}

class Bench {
 public:
  Bench(const Options& o, rte_mempool* pool, uint16_t port, rte_ring* rx, rte_ring* tx)
      : o_(o), pool_(pool), port_(port), rx_(rx), tx_(tx) {}

  // prefetch: while handling frame i of a burst, FlowEngine::prefetch_flow
  // for frame i + prefetch (the first `prefetch` before the loop); 0: none.
  Result run(const Case& c, Flows& fl, unsigned prefetch, unsigned links) {
    lode::bench::EstablishedFlows& e = fl.e;
    const auto n_flows = static_cast<uint32_t>(e.flows.size());
    const bool many = n_flows > 1;
    const bool to_backend = c.dir == Direction::kToBackend;
    const std::vector<uint8_t>& tmpl = to_backend ? e.client_data : e.backend_data;
    const size_t hdr = header_length(tmpl);
    // What flow j's frame must look like when it comes back.
    auto expect = [&](uint32_t j) -> Expect {
      const lode::bench::FlowEnds& f = e.flows[j];
      if (!c.engine) {  // as it was sent
        return to_backend ? Expect{lode::bench::kClientMac, lode::bench::kOurMac, f.client_ip, lode::bench::kVipV4,
                                   f.client_port, 443}
                          : Expect{lode::bench::kBackendMac, lode::bench::kOurMac, f.backend_ip,
                                   lode::bench::kVipV4, 443, f.local_port};
      }
      return to_backend ? Expect{lode::bench::kOurMac, lode::bench::kBackendMac, lode::bench::kVipV4, f.backend_ip,
                                 f.local_port, 443}
                        : Expect{lode::bench::kOurMac, lode::bench::kClientMac, lode::bench::kVipV4, f.client_ip, 443,
                                 f.client_port};
    };
    FrameChecker check(tmpl, !many);

    const uint64_t rx_flags = c.nic_checksum ? RTE_MBUF_F_RX_L4_CKSUM_GOOD : 0;
    const size_t order_mask = fl.order.size() - 1;
    size_t next = 0;  // into fl.order
    // A new receive: the template's headers, moved to the next flow.
    auto refill = [&](rte_mbuf* m) {
      uint8_t* const p = rte_pktmbuf_mtod(m, uint8_t*);
      std::memcpy(p, tmpl.data(), hdr);
      const uint32_t j = fl.order[next++ & order_mask];
      if (many) lode::bench::retarget(p, to_backend, e.flows[j]);
      set_flow_of(m, j);
      m->ol_flags = rx_flags;
    };

    // The mbufs: the whole frame written once; afterwards only its headers.
    std::vector<rte_mbuf*> ms(o_.inflight);
    if (rte_pktmbuf_alloc_bulk(pool_, ms.data(), o_.inflight) != 0) {
      std::fprintf(stderr, "dpdk_ring_forward_bench: mbuf pool exhausted\n");
      std::exit(1);
    }
    for (rte_mbuf* m : ms) {
      std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), tmpl.data(), tmpl.size());
      m->data_len = static_cast<uint16_t>(tmpl.size());
      m->pkt_len = static_cast<uint32_t>(tmpl.size());
      refill(m);
    }
    if (rte_ring_enqueue_bulk(rx_, reinterpret_cast<void* const*>(ms.data()), o_.inflight, nullptr) != o_.inflight) {
      std::fprintf(stderr, "dpdk_ring_forward_bench: RX ring full\n");
      std::exit(1);
    }

    Result r;
    r.name = c.name;
    if (o_.flows.size() > 1 || o_.prefetch.size() > 1 || n_flows > 1 || prefetch > 0) {
      r.name += "/flows=" + std::to_string(n_flows);
      if (c.engine) r.name += "/prefetch=" + std::to_string(prefetch);
      if (c.engine && links > 0) r.name += "/links=" + std::to_string(links);
    }
    r.flows = n_flows;
    r.prefetch = c.engine ? prefetch : 0;
    r.links = c.engine ? links : 0;
    RingPortSink sink(pool_, port_);
    lode::stats::FrontLcoreStats published;
    rte_mbuf* bufs[kBurst];
    rte_mbuf* gen[kBurst];
    uint64_t drained = 0, forwarded = 0, not_forwarded = 0, checked = 0, bad = 0;
    const uint64_t forwarded_before = e.engine->stats().forwarded_in_place;
    const uint64_t base = lode::bench::kNow + base_ms_;
    const uint64_t start_ms = now_ms();
    uint64_t last_tick = base;
    const uint64_t warmup = 8ull * o_.inflight + (many ? 2ull * n_flows : 0);
    uint64_t timed_from = 0;  // `drained` when the clock started
    std::chrono::steady_clock::time_point t0{};
    double cpu0 = 0;
    bool timing = false;
    const double max_s = o_.seconds;
    const uint64_t hz = rte_get_tsc_hz();
    uint64_t tsc0 = 0;
    const uint64_t tsc_limit = static_cast<uint64_t>(max_s * static_cast<double>(hz));
    uint64_t now = base;
    for (uint64_t pass = 0;; ++pass) {
      // The generator: what went out comes back as a new receive.
      const unsigned n = rte_ring_sc_dequeue_burst(tx_, reinterpret_cast<void**>(gen), kBurst, nullptr);
      for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = gen[i];
        if ((drained + i) % kCheckEvery == 0 || drained + i < kBurst) {
          ++checked;
          if (!check.check(m, expect(flow_of(m)))) ++bad;
        }
        refill(m);
      }
      drained += n;
      if (n > 0) rte_ring_sp_enqueue_bulk(rx_, reinterpret_cast<void* const*>(gen), n, nullptr);
      if (!timing && drained >= warmup) {
        timing = true;
        timed_from = drained;
        t0 = std::chrono::steady_clock::now();
        cpu0 = thread_cpu_s();
        tsc0 = rte_rdtsc();
      }
      if (timing && ((pass & 63) == 0 || drained - timed_from >= o_.frames)) {
        if (drained - timed_from >= o_.frames || rte_rdtsc() - tsc0 >= tsc_limit) break;
      }
      // A run that stopped moving (every frame dropped): bounded all the same.
      if ((pass & 1023) == 0 && now_ms() - start_ms > static_cast<uint64_t>(max_s * 1000) + 5000) break;

      // The lcore.
      const uint16_t nb = rte_eth_rx_burst(port_, 0, bufs, kBurst);
      now = base + (now_ms() - start_ms);
      auto frame = [&](rte_mbuf* m) {
        return std::span<uint8_t>(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m));
      };
      if (c.engine) {
        for (uint16_t i = 0; i < prefetch && i < nb; ++i) e.engine->prefetch_flow(frame(bufs[i]));
        for (uint16_t i = 0; i < links && i < nb; ++i) e.engine->prefetch_flow_links(frame(bufs[i]));
      }
      for (uint16_t i = 0; i < nb; ++i) {
        rte_mbuf* m = bufs[i];
        if (i + 1 < nb) rte_prefetch0(rte_pktmbuf_mtod(bufs[i + 1], void*));
        if (!c.engine) {
          sink.receiving(m);
          (void)sink.send_in_place(frame(m));
          ++forwarded;
          continue;
        }
        if (prefetch > 0 && i + prefetch < nb) e.engine->prefetch_flow(frame(bufs[i + prefetch]));
        if (links > 0 && i + links < nb) e.engine->prefetch_flow_links(frame(bufs[i + links]));
        sink.receiving(m);
        const bool l4_good = (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        e.engine->on_frame_in_place(frame(m), now, sink, l4_good);
        if (sink.taken()) {
          ++forwarded;
        } else {
          // Not forwarded: the generator writes the whole frame again.
          ++not_forwarded;
          std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), tmpl.data(), tmpl.size());
          refill(m);
          rte_ring_sp_enqueue(rx_, m);
        }
        sink.receiving(nullptr);
      }
      if (c.engine && now - last_tick >= 10) {
        e.engine->on_tick(now, sink);
        last_tick = now;
      }
      sink.flush();
      if (nb > 0 && c.engine) publish(published, e.engine->stats());
    }
    const auto t1 = std::chrono::steady_clock::now();
    // The engine's clock never goes back: the next run starts where this
    // one ended.
    base_ms_ = now + 1 - lode::bench::kNow;
    r.cpu_seconds = timing ? thread_cpu_s() - cpu0 : 0;
    r.seconds = timing ? std::chrono::duration<double>(t1 - t0).count() : 0;
    r.frames = timing ? drained - timed_from : 0;
    r.checked = checked;
    r.bad = bad;
    r.not_forwarded = not_forwarded;
    r.tx_dropped = sink.dropped();
    sink.flush();
    // Every flow must stay spliced, nothing built anew.
    if (c.engine && (e.engine->flows() != n_flows || sink.built() != 0)) ++r.bad;
    if (c.engine && e.engine->stats().forwarded_in_place - forwarded_before != forwarded) ++r.bad;
    // Every mbuf back to the pool: those on either ring and none lost.
    unsigned back = 0;
    rte_mbuf* m = nullptr;
    while (rte_ring_dequeue(tx_, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m), ++back;
    while (rte_ring_dequeue(rx_, reinterpret_cast<void**>(&m)) == 0) rte_pktmbuf_free(m), ++back;
    if (back + r.tx_dropped != o_.inflight) ++r.bad;
    return r;
  }

 private:
  const Options& o_;
  rte_mempool* pool_;
  uint16_t port_;
  rte_ring* rx_;
  rte_ring* tx_;
  uint64_t base_ms_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  std::vector<std::string> args = {"dpdk_ring_forward_bench", "--no-huge", "--no-pci", "-m", "512",
                                   "--file-prefix=" + o.file_prefix, "-l", std::to_string(o.lcore),
                                   "--no-telemetry", "--log-level=lib.eal:warning"};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  eal_argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(args.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "dpdk_ring_forward_bench: EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const int socket = static_cast<int>(rte_socket_id());
  rte_mempool* pool = rte_pktmbuf_pool_create("fwd_mbufs", 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  rte_ring* rx = rte_ring_create("fwd_rx", kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("fwd_tx", kRingSize, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (pool == nullptr || rx == nullptr || tx == nullptr) {
    std::fprintf(stderr, "dpdk_ring_forward_bench: pool or rings: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const int port = rte_eth_from_rings("net_ring_fwd", &rx, 1, &tx, 1, static_cast<unsigned>(socket));
  if (port < 0) {
    std::fprintf(stderr, "dpdk_ring_forward_bench: rte_eth_from_rings: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  const auto pid = static_cast<uint16_t>(port);
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(pid, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(pid, 0, 1024, socket, nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(pid, 0, 1024, socket, nullptr) != 0 || rte_eth_dev_start(pid) != 0) {
    std::fprintf(stderr, "dpdk_ring_forward_bench: ring port setup failed\n");
    return 1;
  }

  const Case cases[] = {
      {"client_to_backend_nic_checksum", Direction::kToBackend, true},
      {"backend_to_client_nic_checksum", Direction::kToClient, true},
      {"client_to_backend_sw_checksum", Direction::kToBackend, false},
      {"backend_to_client_sw_checksum", Direction::kToClient, false},
      {"no_engine", Direction::kToBackend, true, false},
  };
  Bench bench(o, pool, pid, rx, tx);
  std::vector<Result> results;
  bool ok = true;
  for (const uint32_t n : o.flows) {
    Flows flows = make_flows(n);
    for (unsigned rep = 0; rep < o.repeat; ++rep) {
      for (const Case& c : cases) {
        for (const unsigned k : o.prefetch) {
          for (const unsigned l : o.links) {
            // The same loop whatever k without the engine; links only with a prefetch.
            if (!c.engine && (k != o.prefetch.front() || l != o.links.front())) continue;
            if (l > 0 && k == 0) continue;
            results.push_back(bench.run(c, flows, k, l));
            const Result& r = results.back();
            if (r.bad != 0 || r.not_forwarded != 0 || r.tx_dropped != 0 || r.frames == 0) ok = false;
          }
        }
      }
    }
  }
  if (o.json) {
    std::printf("{\"lcore\": %u, \"inflight\": %u, \"frame_bytes\": %zu, \"cases\": [", o.lcore, o.inflight,
                lode::bench::establish().client_data.size());
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf("%s{\"name\": \"%s\", \"flows\": %u, \"prefetch\": %u, \"links\": %u, \"frames\": %llu, \"seconds\": %.6f, \"cpu_seconds\": %.6f, \"mpps\": %.4f, "
                  "\"cpu_mpps\": %.4f, \"checked\": %llu, \"bad\": %llu, \"not_forwarded\": %llu, "
                  "\"tx_dropped\": %llu}",
                  i == 0 ? "" : ", ", r.name.c_str(), r.flows, r.prefetch, r.links, static_cast<unsigned long long>(r.frames),
                  r.seconds,
                  r.cpu_seconds, r.mpps(), r.cpu_mpps(), static_cast<unsigned long long>(r.checked),
                  static_cast<unsigned long long>(r.bad), static_cast<unsigned long long>(r.not_forwarded),
                  static_cast<unsigned long long>(r.tx_dropped));
    }
    std::printf("], \"ok\": %s}\n", ok ? "true" : "false");
  } else {
    std::printf("%-52s %11s %8s %8s %9s %9s %10s %9s %8s\n", "case (net_ring port, one lcore)", "frames", "seconds",
                "Mpps", "ns/frame", "CPU Mpps", "CPU ns/fr", "CPU share", "checked");
    for (const Result& r : results) {
      std::printf("%-52s %11llu %8.3f %8.2f %9.1f %9.2f %10.1f %8.0f%% %8llu%s\n", r.name.c_str(),
                  static_cast<unsigned long long>(r.frames), r.seconds, r.mpps(),
                  r.frames > 0 ? r.seconds * 1e9 / static_cast<double>(r.frames) : 0.0, r.cpu_mpps(),
                  r.frames > 0 ? r.cpu_seconds * 1e9 / static_cast<double>(r.frames) : 0.0,
                  r.seconds > 0 ? 100 * r.cpu_seconds / r.seconds : 0.0, static_cast<unsigned long long>(r.checked),
                  r.bad + r.not_forwarded + r.tx_dropped ? "  FAILED" : "");
    }
  }
  rte_eth_dev_stop(pid);
  rte_eth_dev_close(pid);
  // The EAL leaves its runtime directory (/var/run/dpdk/PREFIX) behind;
  // the prefix was this run's own.
  const std::filesystem::path runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  std::error_code ec;
  if (runtime_dir.filename() == o.file_prefix) std::filesystem::remove_all(runtime_dir, ec);
  if (!ok) std::fprintf(stderr, "dpdk_ring_forward_bench: frames not forwarded, dropped or wrong (see the table)\n");
  return ok ? 0 : 1;
}
