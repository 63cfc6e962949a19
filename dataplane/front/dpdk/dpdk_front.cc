#include "dataplane/front/dpdk/dpdk_front.h"

#include <rte_eal.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <openssl/rand.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

namespace lode::front {
namespace {

constexpr uint16_t kBurst = 32;

uint64_t now_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// What one lcore publishes for the main thread: its counters, copied after
// every burst with relaxed stores (one writer).
struct alignas(64) PublishedStats {
#define LODE_FRONT_ATOMIC(name, help) std::atomic<uint64_t> name{0};
  LODE_FRONT_COUNTERS(LODE_FRONT_ATOMIC)
#undef LODE_FRONT_ATOMIC
  void publish(const FrontStats& s) noexcept {
#define LODE_FRONT_STORE(name, help) name.store(s.name, std::memory_order_relaxed);
    LODE_FRONT_COUNTERS(LODE_FRONT_STORE)
#undef LODE_FRONT_STORE
  }
  void add_to(FrontStats& s) const noexcept {
#define LODE_FRONT_ADD(name, help) s.name += name.load(std::memory_order_relaxed);
    LODE_FRONT_COUNTERS(LODE_FRONT_ADD)
#undef LODE_FRONT_ADD
  }
};

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

 private:
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
  uint16_t queue = 0;
  std::unique_ptr<FlowEngine> engine;
  PublishedStats published;
  std::atomic<uint64_t> tx_dropped{0};
  std::atomic<uint64_t> multi_segment{0};
};

}  // namespace

struct DpdkFront::Impl {
  DpdkSettings settings;
  uint16_t port = 0;
  rte_mempool* pool = nullptr;
  std::vector<std::unique_ptr<Lcore>> lcores;
  std::atomic<bool> stop{false};
  bool stopped = false;
  bool eal_up = false;
  bool port_started = false;
  MacAddr mac{};
  std::string name;
  // A new runtime for the lcores: generation bumped after the pointer is set.
  std::mutex rt_mu;
  std::shared_ptr<const worker::Runtime> rt;
  std::atomic<uint64_t> rt_generation{0};

  static int lcore_main(void* arg);
  void run(Lcore& lc);
};

int DpdkFront::Impl::lcore_main(void* arg) {
  auto* pair = static_cast<std::pair<Impl*, Lcore*>*>(arg);
  pair->first->run(*pair->second);
  delete pair;
  return 0;
}

void DpdkFront::Impl::run(Lcore& lc) {
  MbufSink sink(pool, port, lc.queue);
  rte_mbuf* bufs[kBurst];
  uint64_t seen_generation = rt_generation.load(std::memory_order_acquire);
  uint64_t last_tick = now_ms();
  uint32_t idle_polls = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(port, lc.queue, bufs, kBurst);
    const uint64_t now = now_ms();
    for (uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = bufs[i];
      if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(bufs[i + 1], void*));
      sink.receiving(m);
      if (m->nb_segs == 1) {
        const bool l4_good = (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
        lc.engine->on_frame_in_place({rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m)}, now, sink, l4_good);
      } else {
        lc.multi_segment.fetch_add(1, std::memory_order_relaxed);  // jumbo frames are not expected on a VIP
      }
      if (!sink.taken()) rte_pktmbuf_free(m);  // a spliced segment went back out in this mbuf
      sink.receiving(nullptr);
    }
    bool ticked = false;
    if (now - last_tick >= 10) {
      lc.engine->on_tick(now, sink);
      last_tick = now;
      ticked = true;
      const uint64_t g = rt_generation.load(std::memory_order_acquire);
      if (g != seen_generation) {
        std::shared_ptr<const worker::Runtime> next;
        {
          std::lock_guard lock(rt_mu);
          next = rt;
        }
        lc.engine->set_runtime(std::move(next));
        seen_generation = g;
      }
    }
    sink.flush();
    if (n > 0 || ticked) {
      lc.published.publish(lc.engine->stats());
      lc.tx_dropped.store(sink.dropped(), std::memory_order_relaxed);
    }
    // A queue idle for a while is polled less often (50 us naps), so an idle
    // front does not burn its cores; under load it never naps.
    idle_polls = n > 0 ? 0 : idle_polls + 1;
    if (idle_polls > 10000) rte_delay_us_sleep(50);
  }
  lc.published.publish(lc.engine->stats());
}

Result<std::unique_ptr<DpdkFront>, std::string> DpdkFront::start(const DpdkSettings& s,
                                                                 std::shared_ptr<const worker::Runtime> rt) {
  auto impl = std::make_unique<Impl>();
  impl->settings = s;
  impl->rt = rt;
  std::vector<std::string> args = {"lodestone"};
  args.insert(args.end(), s.eal_args.begin(), s.eal_args.end());
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
  if (queues > 1) {
    // Flows spread over the lcores by RSS on addresses and ports.
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP);
  }
  // No LRO: the dataplane sees segments as the client sent them.
  conf.rxmode.offloads &= ~RTE_ETH_RX_OFFLOAD_TCP_LRO;
  const int socket = rte_eth_dev_socket_id(m.port) < 0 ? 0 : rte_eth_dev_socket_id(m.port);
  m.pool = rte_pktmbuf_pool_create("lode_mbufs", s.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (m.pool == nullptr) return unexpected("dpdk: mbuf pool: " + std::string(rte_strerror(rte_errno)));
  if (int rc = rte_eth_dev_configure(m.port, queues, queues, &conf); rc != 0) {
    return unexpected("dpdk: configure port: " + std::string(rte_strerror(-rc)));
  }
  for (uint16_t q = 0; q < queues; ++q) {
    if (int rc = rte_eth_rx_queue_setup(m.port, q, s.rx_ring, socket, nullptr, m.pool); rc != 0) {
      return unexpected("dpdk: RX queue: " + std::string(rte_strerror(-rc)));
    }
    if (int rc = rte_eth_tx_queue_setup(m.port, q, s.tx_ring, socket, nullptr); rc != 0) {
      return unexpected("dpdk: TX queue: " + std::string(rte_strerror(-rc)));
    }
  }
  if (int rc = rte_eth_dev_start(m.port); rc != 0) {
    return unexpected("dpdk: start port: " + std::string(rte_strerror(-rc)));
  }
  m.port_started = true;
  rte_ether_addr mac{};
  rte_eth_macaddr_get(m.port, &mac);
  std::memcpy(m.mac.data(), mac.addr_bytes, 6);

  // One master secret for every lcore's cookies.
  std::array<uint8_t, 16> key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) return unexpected(std::string("dpdk: no random key"));
  EngineConfig ec;
  ec.mac = m.mac;
  ec.vips = vips_of(*rt);
  ec.max_flows = s.max_flows;
  ec.cookie_key = key;
  uint16_t q = 0;
  unsigned id;
  RTE_LCORE_FOREACH_WORKER(id) {
    if (q == queues) break;
    auto lc = std::make_unique<Lcore>();
    lc->id = id;
    lc->queue = q++;
    lc->engine = std::make_unique<FlowEngine>(ec, rt);
    m.lcores.push_back(std::move(lc));
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

void DpdkFront::stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.stop.store(true);
  if (m.eal_up) rte_eal_mp_wait_lcore();  // the engines stay: their final counters are still read
  if (m.port_started) {
    rte_eth_dev_stop(m.port);
    rte_eth_dev_close(m.port);
  }
  if (m.pool != nullptr) rte_mempool_free(m.pool);
  if (m.eal_up) rte_eal_cleanup();
}

FrontStats DpdkFront::stats() const {
  FrontStats s;
  for (const auto& lc : impl_->lcores) {
    lc->published.add_to(s);
    s.tx_no_buffer += lc->tx_dropped.load(std::memory_order_relaxed);
    s.rx_bad += lc->multi_segment.load(std::memory_order_relaxed);
  }
  return s;
}

size_t DpdkFront::lcores() const { return impl_->lcores.size(); }
std::string DpdkFront::port_name() const { return impl_->name; }
MacAddr DpdkFront::mac() const { return impl_->mac; }

}  // namespace lode::front
