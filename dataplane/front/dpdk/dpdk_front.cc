#include "dataplane/front/dpdk/dpdk_front.h"

#include <rte_eal.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <openssl/rand.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>

namespace lode::front {
namespace {

constexpr uint16_t kBurst = 32;
// Frames in flight from one lcore to another (FrameSink::redirect): a power
// of two; a full ring drops (redirect_drops).
constexpr unsigned kRedirectRing = 1024;

uint64_t now_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// CLOCK_REALTIME - now_ms(): the SYN cookies count wall-clock time
// (EngineConfig::cookie_clock_offset_ms).
int64_t wall_minus_now_ms() noexcept {
  const int64_t wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  return wall - static_cast<int64_t>(now_ms());
}

// What one lcore publishes: its counters (with the port-level drops it counts
// itself), stored after every burst with relaxed stores (one writer) into its
// block of the shared stats segment, or of the front's own area without one.
void publish(stats::FrontLcoreStats& out, const FrontStats& s) noexcept {
#define LODE_FRONT_STORE(name, help) out.name.store(s.name, std::memory_order_relaxed);
  LODE_FRONT_COUNTERS(LODE_FRONT_STORE)
#undef LODE_FRONT_STORE
}
void add_to(FrontStats& s, const stats::FrontLcoreStats& in) noexcept {
#define LODE_FRONT_ADD(name, help) s.name += in.name.load(std::memory_order_relaxed);
  LODE_FRONT_COUNTERS(LODE_FRONT_ADD)
#undef LODE_FRONT_ADD
}

// Frames out of one lcore: mbufs from the pool, sent in bursts.
class MbufSink : public FrameSink {
 public:
  MbufSink(rte_mempool* pool, uint16_t port, uint16_t queue) : pool_(pool), port_(port), queue_(queue) {}
  std::span<uint8_t> buffer() noexcept override {
    if (pending_ == nullptr) pending_ = rte_pktmbuf_alloc(pool_);
    if (pending_ == nullptr) return {};
    const size_t room = rte_pktmbuf_tailroom(pending_);
    if (room < kMaxFrame) return {};
    return {rte_pktmbuf_mtod(pending_, uint8_t*), room};
  }
  void send(size_t len) noexcept override {
    if (pending_ == nullptr) return;
    pending_->data_len = static_cast<uint16_t>(len);
    pending_->pkt_len = static_cast<uint32_t>(len);
    tx_[count_++] = pending_;
    pending_ = nullptr;
    if (count_ == kBurst) flush();
  }
  // The received mbuf whose frame the engine may send back rewritten.
  void receiving(rte_mbuf* m) noexcept {
    current_ = m;
    taken_ = false;
  }
  bool taken() const noexcept { return taken_; }
  bool send_in_place(std::span<uint8_t> frame) noexcept override {
    if (current_ == nullptr || frame.data() != rte_pktmbuf_mtod(current_, uint8_t*)) return false;
    tx_[count_++] = current_;
    taken_ = true;
    current_ = nullptr;
    if (count_ == kBurst) flush();
    return true;
  }
  void flush() noexcept {
    uint16_t sent = 0;
    // A full TX ring: retry a few times, then drop (counted by the caller).
    for (int tries = 0; sent < count_ && tries < 4; ++tries) {
      sent += rte_eth_tx_burst(port_, queue_, tx_ + sent, count_ - sent);
    }
    for (uint16_t i = sent; i < count_; ++i) rte_pktmbuf_free(tx_[i]);
    dropped_ += count_ - sent;
    count_ = 0;
  }
  ~MbufSink() override {
    flush();
    if (pending_ != nullptr) rte_pktmbuf_free(pending_);
  }
  uint64_t dropped() const noexcept { return dropped_; }
  void set_exception(FrameSink* x) noexcept { exception_ = x; }
  FrameSink* exception_sink() noexcept override { return exception_; }
  // The rings to the other lcores (to[k]: this lcore -> lcore k, null for
  // this one); only the wire's sink has them (the engine redirects there).
  void set_redirect_rings(const std::vector<rte_ring*>* to) noexcept { to_ = to; }
  // The received mbuf itself when `frame` is its data (it moves: no copy),
  // else a copy; its `port` says which port it came in on. A copy for every
  // other lcore with kEveryLcore.
  bool redirect(uint32_t lcore, std::span<const uint8_t> frame) noexcept override {
    if (to_ == nullptr || current_ == nullptr) return false;
    if (lcore == kEveryLcore) {
      bool all = true;
      for (rte_ring* r : *to_) {
        if (r == nullptr) continue;
        rte_mbuf* c = copy_of(frame);
        if (c == nullptr || rte_ring_sp_enqueue(r, c) != 0) {
          if (c != nullptr) rte_pktmbuf_free(c);
          all = false;
        }
      }
      return all;
    }
    if (lcore >= to_->size() || (*to_)[lcore] == nullptr) return false;
    const bool move = frame.data() == rte_pktmbuf_mtod(current_, uint8_t*);
    rte_mbuf* m = move ? current_ : copy_of(frame);
    if (m == nullptr) return false;
    if (rte_ring_sp_enqueue((*to_)[lcore], m) != 0) {
      if (!move) rte_pktmbuf_free(m);
      return false;
    }
    if (move) {
      taken_ = true;
      current_ = nullptr;
    }
    return true;
  }

 private:
  rte_mbuf* copy_of(std::span<const uint8_t> frame) noexcept {
    rte_mbuf* c = rte_pktmbuf_alloc(pool_);
    if (c == nullptr) return nullptr;
    if (rte_pktmbuf_tailroom(c) < frame.size()) {
      rte_pktmbuf_free(c);
      return nullptr;
    }
    std::memcpy(rte_pktmbuf_mtod(c, uint8_t*), frame.data(), frame.size());
    c->data_len = static_cast<uint16_t>(frame.size());
    c->pkt_len = static_cast<uint32_t>(frame.size());
    c->port = current_->port;
    return c;
  }
  const std::vector<rte_ring*>* to_ = nullptr;
  FrameSink* exception_ = nullptr;
  rte_mempool* pool_;
  uint16_t port_, queue_;
  rte_mbuf* pending_ = nullptr;
  rte_mbuf* current_ = nullptr;
  bool taken_ = false;
  rte_mbuf* tx_[kBurst] = {};
  uint16_t count_ = 0;
  uint64_t dropped_ = 0;
};

struct Lcore {
  unsigned id = 0;
  uint16_t queue = 0;  // also its index among the polling lcores
  // Redirected frames (FrameSink::redirect): to[k] carries this lcore's
  // frames for lcore k, from[k] lcore k's for this one (null for itself).
  std::vector<rte_ring*> to, from;
  std::unique_ptr<FlowEngine> engine;
  stats::FrontLcoreStats* published = nullptr;  // in the stats segment, or the front's own area
  uint64_t multi_segment = 0;                   // this lcore's only
};

// The kernel side of the exception port: our address on it, up. (The vdev
// created the interface; the workers bind to this address.)
Result<void, std::string> address_interface(const DpdkSettings::Exception& x) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return unexpected("socket: " + std::string(std::strerror(errno)));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", x.interface.c_str());
  auto set_in = [&](sockaddr& sa, uint32_t host) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(host);
    std::memcpy(&sa, &in, sizeof in);
  };
  std::string err;
  set_in(ifr.ifr_addr, x.kernel_address);
  if (ioctl(fd, SIOCSIFADDR, &ifr) != 0) err = "address";
  set_in(ifr.ifr_netmask, x.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - x.prefix_len));
  if (err.empty() && ioctl(fd, SIOCSIFNETMASK, &ifr) != 0) err = "netmask";
  if (err.empty() && ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) err = "flags";
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (err.empty() && ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) err = "up";
  const int e = errno;
  close(fd);
  if (!err.empty()) return unexpected("exception interface " + x.interface + ": " + err + ": " + std::strerror(e));
  // Only our flows on this link: no IPv6 autoconfiguration chatter (best effort).
  if (FILE* f = std::fopen(("/proc/sys/net/ipv6/conf/" + x.interface + "/disable_ipv6").c_str(), "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  return {};
}

// One RX and one TX queue per lcore on a configured port, then started.
Result<void, std::string> start_port(uint16_t port, uint16_t queues, const rte_eth_conf& conf, int socket,
                                     const DpdkSettings& s, rte_mempool* pool) {
  if (int rc = rte_eth_dev_configure(port, queues, queues, &conf); rc != 0) {
    return unexpected("configure port: " + std::string(rte_strerror(-rc)));
  }
  for (uint16_t q = 0; q < queues; ++q) {
    if (int rc = rte_eth_rx_queue_setup(port, q, s.rx_ring, socket, nullptr, pool); rc != 0) {
      return unexpected("RX queue: " + std::string(rte_strerror(-rc)));
    }
    if (int rc = rte_eth_tx_queue_setup(port, q, s.tx_ring, socket, nullptr); rc != 0) {
      return unexpected("TX queue: " + std::string(rte_strerror(-rc)));
    }
  }
  if (int rc = rte_eth_dev_start(port); rc != 0) return unexpected("start port: " + std::string(rte_strerror(-rc)));
  return {};
}

// Drivers whose RSS hash function is Toeplitz. DPDK 22.11 does not report
// the function (rte_eth_rss_conf::algorithm came in 23.11), so this list
// stands in for it: each of these hashes TCP by Toeplitz over the 4-tuple
// under a key that rte_eth_dev_configure sets. Any other driver keeps the
// port rule, net_tap among them: the kernel picks a tap queue by its own
// flow hash, not by Toeplitz.
bool toeplitz_driver(std::string_view driver) noexcept {
  static constexpr std::string_view kToeplitz[] = {
      "net_ixgbe", "net_i40e",  "net_iavf", "net_ice",     "net_mlx5",   "net_mlx4",
      "net_e1000_igb", "net_ena", "net_bnxt", "net_vmxnet3", "net_hns3", "net_virtio",
  };
  return std::find(std::begin(kToeplitz), std::end(kToeplitz), driver) != std::end(kToeplitz);
}

// Before the port is configured: whether its RSS can be worked out in
// software (EngineConfig::rss) and, if so, our own random key in `key`
// (set by rte_eth_dev_configure through conf's rss_key). A reason when not.
std::string prepare_toeplitz(const rte_eth_dev_info& info, uint16_t queues, rte_eth_conf& conf,
                             std::vector<uint8_t>& key) {
  if (queues <= 1) return "one queue";
  const std::string_view driver = info.driver_name != nullptr ? info.driver_name : "";
  if (!toeplitz_driver(driver)) return std::string(driver) + " does not hash by Toeplitz (or does not say)";
  constexpr uint64_t kTcp = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV6_TCP;
  if ((info.flow_type_rss_offloads & kTcp) != kTcp) return "no RSS on TCP ports for both IPv4 and IPv6";
  if (info.hash_key_size < RssHash::kMinKey || info.hash_key_size > RssHash::kMaxKey) {
    return "RSS key of " + std::to_string(info.hash_key_size) + " bytes";
  }
  if (info.reta_size < queues || info.reta_size > RssHash::kMaxReta || (info.reta_size & (info.reta_size - 1)) != 0) {
    return "RETA of " + std::to_string(info.reta_size) + " entries";
  }
  key.resize(info.hash_key_size);
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) return "no random key";
  conf.rx_adv_conf.rss_conf.rss_key = key.data();
  conf.rx_adv_conf.rss_conf.rss_key_len = static_cast<uint8_t>(key.size());
  // The NIC's hash in each mbuf, so the engines can check the driver list's
  // claim (FlowEngine::check_nic_hash); some drivers (mlx5) report it only
  // when asked.
  conf.rxmode.offloads |= info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_RSS_HASH;
  return {};
}

// After the port started: its key read back (when the driver can), its RETA
// read (or, when it cannot be read, written as entry i -> queue i % queues),
// and the two as the engine's RssHash. A reason when not.
Result<RssHash, std::string> read_toeplitz(uint16_t port, const rte_eth_dev_info& info, uint16_t queues,
                                           const std::vector<uint8_t>& key) {
  std::vector<uint8_t> got(key.size());
  rte_eth_rss_conf rc{};
  rc.rss_key = got.data();
  rc.rss_key_len = static_cast<uint8_t>(got.size());
  if (rte_eth_dev_rss_hash_conf_get(port, &rc) == 0) {
    if (rc.rss_key_len == key.size() && got != key) return unexpected(std::string("the port kept another RSS key"));
    constexpr uint64_t kTcp = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV6_TCP;
    if ((rc.rss_hf & kTcp) != kTcp) return unexpected(std::string("the port does not hash TCP ports"));
  }
  const uint16_t size = info.reta_size;
  std::vector<rte_eth_rss_reta_entry64> groups((size + RTE_ETH_RETA_GROUP_SIZE - 1) / RTE_ETH_RETA_GROUP_SIZE);
  for (size_t g = 0; g < groups.size(); ++g) {
    const size_t in_group = std::min<size_t>(RTE_ETH_RETA_GROUP_SIZE, size - g * RTE_ETH_RETA_GROUP_SIZE);
    groups[g].mask = in_group == 64 ? ~uint64_t{0} : (uint64_t{1} << in_group) - 1;
  }
  if (rte_eth_dev_rss_reta_query(port, groups.data(), size) != 0) {
    for (uint16_t i = 0; i < size; ++i) {
      groups[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = static_cast<uint16_t>(i % queues);
    }
    if (int rc2 = rte_eth_dev_rss_reta_update(port, groups.data(), size); rc2 != 0) {
      return unexpected("RETA neither read nor written: " + std::string(rte_strerror(-rc2)));
    }
  }
  std::vector<uint16_t> reta(size);
  for (uint16_t i = 0; i < size; ++i) {
    reta[i] = groups[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
    if (reta[i] >= queues) return unexpected("RETA entry " + std::to_string(i) + " names queue " + std::to_string(reta[i]));
  }
  auto r = RssHash::make(key, std::move(reta));
  if (!r) return unexpected(std::string("key or RETA out of shape"));
  return std::move(*r);
}

MacAddr mac_of(uint16_t port) {
  rte_ether_addr mac{};
  rte_eth_macaddr_get(port, &mac);
  MacAddr out{};
  std::memcpy(out.data(), mac.addr_bytes, 6);
  return out;
}

}  // namespace

struct DpdkFront::Impl {
  DpdkSettings settings;
  uint16_t port = 0;
  bool has_exception = false;
  uint16_t exc_port = 0;
  bool exc_started = false;
  MacAddr exc_mac{};
  std::string exc_name;
  rte_mempool* pool = nullptr;
  std::vector<std::unique_ptr<Lcore>> lcores;
  std::atomic<bool> stop{false};
  bool stopped = false;
  bool eal_up = false;
  bool port_started = false;
  MacAddr mac{};
  std::string name;
  std::string rss_steering;
  // Set by an lcore when the NIC's RSS hashes disagree with ours
  // (EngineConfig::rss_disabled); rss_steering() then says so.
  std::shared_ptr<std::atomic<bool>> rss_disabled;
  // A new runtime for the lcores: generation bumped after the pointer is set.
  std::mutex rt_mu;
  std::shared_ptr<const worker::Runtime> rt;
  std::array<uint8_t, 16> cookie_secret{};  // the SYN cookies' master secret (under rt_mu)
  std::atomic<uint64_t> rt_generation{0};
  // The lcores' counters: settings.stats (the shared stats segment) or here.
  std::unique_ptr<stats::FrontArea> own_stats;
  std::vector<rte_ring*> rings;  // every lcore's redirect rings

  static int lcore_main(void* arg);
  void run(Lcore& lc);
  static void publish_lcore(Lcore& lc, uint64_t tx_dropped) noexcept {
    FrontStats s = lc.engine->stats();
    s.tx_no_buffer += tx_dropped;
    s.rx_bad += lc.multi_segment;
    publish(*lc.published, s);
  }
};

int DpdkFront::Impl::lcore_main(void* arg) {
  auto* pair = static_cast<std::pair<Impl*, Lcore*>*>(arg);
  pair->first->run(*pair->second);
  delete pair;
  return 0;
}

void DpdkFront::Impl::run(Lcore& lc) {
  MbufSink sink(pool, port, lc.queue);
  MbufSink exc(pool, exc_port, lc.queue);
  if (has_exception) sink.set_exception(&exc);
  if (lcores.size() > 1) sink.set_redirect_rings(&lc.to);
  rte_mbuf* bufs[kBurst];
  uint64_t seen_generation = rt_generation.load(std::memory_order_acquire);
  uint64_t last_tick = now_ms();
  uint32_t idle_polls = 0;
  // With many flows the flow table is out of cache: while frame i is
  // handled, frame i + 2 * kFlowAhead's headers are prefetched and frame
  // i + kFlowAhead's flow index slots and flow (FlowEngine::prefetch_flow:
  // its 4-tuple hashed, nothing written), so the misses of a burst overlap
  // (bench/dpdk_ring_forward_bench --flows --prefetch: 100,000 flows -15 to
  // -35% per frame). With few flows the table is in cache and the extra hash
  // costs ~4 ns a frame, so below kPrefetchFlows only the next frame's
  // headers are prefetched.
  static constexpr uint16_t kFlowAhead = 4;
  static constexpr size_t kPrefetchFlows = 4096;
  auto frame_of = [](rte_mbuf* m) {
    return std::span<const uint8_t>{rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m)};
  };
  // One burst from the wire (from_exception false) or the exception port:
  // a received mbuf may go out again, rewritten, through either sink.
  // Frames from another lcore (redirected: from_lcore) carry the port they
  // came in on in mbuf->port.
  auto handle = [&](uint16_t n, bool from_exception, uint64_t now, bool from_lcore = false) {
    const bool deep = lc.engine->flows() >= kPrefetchFlows;
    const uint16_t ahead = deep ? 2 * kFlowAhead : 1;
    for (uint16_t i = 0; i < n && i < ahead; ++i) rte_prefetch0(rte_pktmbuf_mtod(bufs[i], void*));
    for (uint16_t i = 0; deep && i < n && i < kFlowAhead; ++i) lc.engine->prefetch_flow(frame_of(bufs[i]));
    for (uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = bufs[i];
      if (i + ahead < n) rte_prefetch0(rte_pktmbuf_mtod(bufs[i + ahead], void*));
      if (deep && i + kFlowAhead < n) lc.engine->prefetch_flow(frame_of(bufs[i + kFlowAhead]));
      if (from_lcore) {
        from_exception = has_exception && m->port == exc_port;
      } else {
        m->port = from_exception ? exc_port : port;
      }
      sink.receiving(m);
      exc.receiving(m);
      if (m->nb_segs == 1) {
        const bool l4_good = (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        const std::span<uint8_t> frame{rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m)};
        if (from_lcore) {
          lc.engine->on_redirected_frame_in_place(frame, now, sink, from_exception, l4_good);
        } else if (from_exception) {
          lc.engine->on_exception_frame_in_place(frame, now, sink, l4_good);
        } else {
          // The NIC's RSS hash, when it gave one, checked against ours (a
          // sample: FlowEngine::check_nic_hash) before the frame may be
          // rewritten in place. net_tap gives none: one branch.
          if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) lc.engine->check_nic_hash(frame, m->hash.rss);
          lc.engine->on_frame_in_place(frame, now, sink, l4_good);
        }
      } else {
        ++lc.multi_segment;  // jumbo frames are not expected on a VIP
      }
      if (!sink.taken() && !exc.taken()) rte_pktmbuf_free(m);  // a spliced segment went back out in this mbuf
      sink.receiving(nullptr);
      exc.receiving(nullptr);
    }
  };
  while (!stop.load(std::memory_order_relaxed)) {
    uint16_t n = rte_eth_rx_burst(port, lc.queue, bufs, kBurst);
    const uint64_t now = now_ms();
    handle(n, false, now);
    if (has_exception) {
      const uint16_t nx = rte_eth_rx_burst(exc_port, lc.queue, bufs, kBurst);
      handle(nx, true, now);
      n = static_cast<uint16_t>(n + nx);
    }
    for (rte_ring* r : lc.from) {
      if (r == nullptr) continue;
      const auto nr = static_cast<uint16_t>(rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(bufs), kBurst, nullptr));
      handle(nr, false, now, true);
      n = static_cast<uint16_t>(n + nr);
    }
    bool ticked = false;
    if (now - last_tick >= 10) {
      lc.engine->on_tick(now, sink);
      last_tick = now;
      ticked = true;
      const uint64_t g = rt_generation.load(std::memory_order_acquire);
      if (g != seen_generation) {
        std::shared_ptr<const worker::Runtime> next;
        std::array<uint8_t, 16> secret;
        {
          std::lock_guard lock(rt_mu);
          next = rt;
          secret = cookie_secret;
        }
        lc.engine->set_runtime(std::move(next));
        lc.engine->set_cookie_secret(secret, now);  // the same one: nothing changes
        seen_generation = g;
      }
    }
    sink.flush();
    exc.flush();
    if (n > 0 || ticked) publish_lcore(lc, sink.dropped() + exc.dropped());
    // A queue idle for a while is polled less often (50 us naps), so an idle
    // front does not burn its cores; under load it never naps.
    idle_polls = n > 0 ? 0 : idle_polls + 1;
    if (idle_polls > 10000) rte_delay_us_sleep(50);
  }
  publish_lcore(lc, sink.dropped() + exc.dropped());
}

Result<std::unique_ptr<DpdkFront>, std::string> DpdkFront::start(const DpdkSettings& s,
                                                                 std::shared_ptr<const worker::Runtime> rt) {
  auto impl = std::make_unique<Impl>();
  impl->settings = s;
  impl->rt = rt;
  std::vector<std::string> args = {"lodestone"};
  args.insert(args.end(), s.eal_args.begin(), s.eal_args.end());
  // The exception port's vdev comes last, so the ports the EAL arguments
  // name keep their numbers.
  if (!s.exception.vdev.empty()) args.push_back("--vdev=" + s.exception.vdev);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
    return unexpected("dpdk: EAL init failed: " + std::string(rte_strerror(rte_errno)));
  }
  impl->eal_up = true;
  auto front = std::unique_ptr<DpdkFront>(new DpdkFront(std::move(impl)));
  Impl& m = *front->impl_;
  if (!rte_eth_dev_is_valid_port(s.port)) {
    return unexpected("dpdk: port " + std::to_string(s.port) + " does not exist (" +
                      std::to_string(rte_eth_dev_count_avail()) + " ports; give a vdev or a PCI device in eal)");
  }
  m.port = s.port;
  const unsigned workers = rte_lcore_count() - 1;
  if (workers == 0) return unexpected(std::string("dpdk: the EAL needs at least two lcores (e.g. -l 0-1): one per queue besides the main one"));
  rte_eth_dev_info info{};
  if (int rc = rte_eth_dev_info_get(m.port, &info); rc != 0) {
    return unexpected("dpdk: port info: " + std::string(rte_strerror(-rc)));
  }
  m.name = info.driver_name != nullptr ? info.driver_name : "?";
  const uint16_t queues = static_cast<uint16_t>(std::min<unsigned>({workers, info.max_rx_queues, info.max_tx_queues}));
  rte_eth_conf conf{};
  std::vector<uint8_t> rss_key;
  std::string no_toeplitz = "one queue";
  if (queues > 1) {
    // Flows spread over the lcores by RSS on addresses and ports.
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP);
    // With Toeplitz, under our key: the engines pick local ports whose
    // return segments the NIC hashes to their own queue (EngineConfig::rss).
    no_toeplitz = prepare_toeplitz(info, queues, conf, rss_key);
  }
  // No LRO: the dataplane sees segments as the client sent them.
  conf.rxmode.offloads &= ~RTE_ETH_RX_OFFLOAD_TCP_LRO;
  const int socket = rte_eth_dev_socket_id(m.port) < 0 ? 0 : rte_eth_dev_socket_id(m.port);
  m.pool = rte_pktmbuf_pool_create("lode_mbufs", s.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (m.pool == nullptr) return unexpected("dpdk: mbuf pool: " + std::string(rte_strerror(rte_errno)));
  if (auto ok = start_port(m.port, queues, conf, socket, s, m.pool); !ok) return unexpected("dpdk: " + ok.error());
  m.port_started = true;
  m.mac = mac_of(m.port);
  std::optional<RssHash> rss;
  if (no_toeplitz.empty()) {
    if (auto r = read_toeplitz(m.port, info, queues, rss_key)) {
      rss = std::move(*r);
    } else {
      no_toeplitz = r.error();
    }
  }
  m.rss_steering = rss ? "toeplitz, RETA of " + std::to_string(rss->reta().size()) + " entries"
                       : "port rule (" + no_toeplitz + ")";
  if (!s.exception.vdev.empty()) {
    // The kernel picks the tap queue a worker's segment comes back on, not
    // us: with several lcores one that lands on a stranger's queue is
    // redirected to the lcore its local port names (flow_engine_lcores.cc).
    const std::string name = s.exception.vdev.substr(0, s.exception.vdev.find(','));
    if (rte_eth_dev_get_port_by_name(name.c_str(), &m.exc_port) != 0) {
      return unexpected("dpdk: the exception vdev " + name + " made no port");
    }
    rte_eth_dev_info xinfo{};
    if (int rc = rte_eth_dev_info_get(m.exc_port, &xinfo); rc != 0) {
      return unexpected("dpdk: exception port info: " + std::string(rte_strerror(-rc)));
    }
    if (xinfo.max_rx_queues < queues || xinfo.max_tx_queues < queues) {
      return unexpected("dpdk: the exception port has fewer queues than the lcores (" + std::to_string(queues) + ")");
    }
    m.exc_name = xinfo.driver_name != nullptr ? xinfo.driver_name : "?";
    rte_eth_conf xconf{};
    if (auto ok = start_port(m.exc_port, queues, xconf, socket, s, m.pool); !ok) {
      return unexpected("dpdk: exception port: " + ok.error());
    }
    m.exc_started = true;
    m.has_exception = true;
    m.exc_mac = mac_of(m.exc_port);
    if (auto ok = address_interface(s.exception); !ok) return unexpected("dpdk: " + ok.error());
  }

  // One master secret for every lcore's cookies.
  std::array<uint8_t, 16> key{};
  if (s.cookie_secret) {
    key = *s.cookie_secret;  // [dpdk] cookie_secret_file: every node of the group the same
  } else if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    return unexpected(std::string("dpdk: no random key"));
  }
  m.cookie_secret = key;
  EngineConfig ec;
  ec.mac = m.mac;
  ec.vips = vips_of(*rt);
  ec.max_flows = s.max_flows;
  ec.cookie_key = key;
  ec.cookie_clock_offset_ms = wall_minus_now_ms();
  ec.next_hops = s.next_hops;
  ec.lcores = queues;
  // The exception port's queue is the kernel's choice (tap, vhost): no
  // exception_rss, its legs keep the port rule.
  ec.rss = rss;
  m.rss_disabled = ec.rss_disabled;  // one flag for every lcore's engine (copies of ec)
  if (m.has_exception) {
    ec.handoff.enabled = true;
    ec.handoff.mac = m.exc_mac;
    ec.handoff.address = s.exception.address;
    ec.handoff.kernel = s.exception.kernel_address;
    ec.handoff.first_port = s.exception.first_port;
    ec.handoff.workers = s.exception.workers;
  }
  stats::FrontArea* area = s.stats;
  if (area == nullptr) {
    m.own_stats = std::make_unique<stats::FrontArea>();
    area = m.own_stats.get();
  }
  for (uint16_t r = 0; r < queues && r < s.route_series.size(); ++r) {
    if (s.route_series[r] != nullptr) ec.all_route_series.push_back(s.route_series[r]);
  }
  uint16_t q = 0;
  unsigned id;
  RTE_LCORE_FOREACH_WORKER(id) {
    if (q == queues) break;
    if (q == stats::kMaxFrontLcores) return unexpected(std::string("dpdk: more polling lcores than the stats segment holds"));
    auto lc = std::make_unique<Lcore>();
    lc->id = id;
    lc->queue = q;
    lc->published = &area->lcore[q];
    ec.route_series = q < s.route_series.size() ? s.route_series[q] : nullptr;
    ec.backend_series = q < s.backend_series.size() ? s.backend_series[q] : nullptr;
    ec.lcore = q++;
    lc->engine = std::make_unique<FlowEngine>(ec, rt);
    m.lcores.push_back(std::move(lc));
  }
  area->lcores.store(m.lcores.size(), std::memory_order_release);
  if (m.lcores.size() != queues) return unexpected(std::string("dpdk: fewer polling lcores than queues"));
  // A single-producer/single-consumer ring per (from, to) pair of lcores.
  const size_t n = m.lcores.size();
  for (auto& lc : m.lcores) {
    lc->to.assign(n > 1 ? n : 0, nullptr);
    lc->from.assign(n > 1 ? n : 0, nullptr);
  }
  for (size_t a = 0; n > 1 && a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      if (a == b) continue;
      const std::string name = "lode_rd_" + std::to_string(a) + "_" + std::to_string(b);
      rte_ring* r = rte_ring_create(name.c_str(), kRedirectRing, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (r == nullptr) return unexpected("dpdk: redirect ring: " + std::string(rte_strerror(rte_errno)));
      m.rings.push_back(r);
      m.lcores[a]->to[b] = r;
      m.lcores[b]->from[a] = r;
    }
  }
  for (auto& lc : m.lcores) {
    auto* arg = new std::pair<Impl*, Lcore*>(&m, lc.get());
    if (int rc = rte_eal_remote_launch(&Impl::lcore_main, arg, lc->id); rc != 0) {
      delete arg;
      return unexpected("dpdk: launch lcore " + std::to_string(lc->id) + ": " + std::string(rte_strerror(-rc)));
    }
  }
  return front;
}

DpdkFront::DpdkFront(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DpdkFront::~DpdkFront() { stop(); }

void DpdkFront::set_runtime(std::shared_ptr<const worker::Runtime> rt) {
  {
    std::lock_guard lock(impl_->rt_mu);
    impl_->rt = std::move(rt);
  }
  impl_->rt_generation.fetch_add(1, std::memory_order_release);
}

void DpdkFront::set_cookie_secret(const std::array<uint8_t, 16>& secret) {
  {
    std::lock_guard lock(impl_->rt_mu);
    impl_->cookie_secret = secret;
  }
  impl_->rt_generation.fetch_add(1, std::memory_order_release);
}

void DpdkFront::stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.stop.store(true);
  if (m.eal_up) rte_eal_mp_wait_lcore();  // the engines stay: their final counters are still read
  for (rte_ring* r : m.rings) {
    void* left = nullptr;
    while (rte_ring_dequeue(r, &left) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(left));
    rte_ring_free(r);
  }
  m.rings.clear();
  if (m.port_started) {
    rte_eth_dev_stop(m.port);
    rte_eth_dev_close(m.port);
  }
  if (m.exc_started) {
    rte_eth_dev_stop(m.exc_port);
    rte_eth_dev_close(m.exc_port);
  }
  if (m.pool != nullptr) rte_mempool_free(m.pool);
  if (m.eal_up) rte_eal_cleanup();
}

FrontStats DpdkFront::stats() const {
  FrontStats s;
  for (const auto& lc : impl_->lcores) {
    add_to(s, *lc->published);
  }
  return s;
}

size_t DpdkFront::lcores() const { return impl_->lcores.size(); }
std::string DpdkFront::port_name() const { return impl_->name; }
MacAddr DpdkFront::mac() const { return impl_->mac; }
std::string DpdkFront::exception_name() const { return impl_->exc_name; }
std::string DpdkFront::rss_steering() const {
  if (impl_->rss_disabled && impl_->rss_disabled->load(std::memory_order_relaxed)) {
    return "port rule for new legs (the NIC's RSS hashes disagreed with ours: rss_hash_mismatches; was " +
           impl_->rss_steering + ")";
  }
  return impl_->rss_steering;
}

}  // namespace lode::front
