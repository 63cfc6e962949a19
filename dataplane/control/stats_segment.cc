#include "dataplane/control/stats_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

namespace lode::control {

Result<StatsSegment, std::string> StatsSegment::create(uint32_t workers, uint32_t route_slots,
                                                      uint32_t backend_slots, uint32_t front_rows) {
  if (workers == 0 || workers > stats::kMaxWorkers) return unexpected(std::string("stats segment: bad worker count"));
  if (route_slots < 2 || backend_slots < 2) return unexpected(std::string("stats segment: too few series slots"));
  if (front_rows > stats::kMaxFrontLcores) return unexpected(std::string("stats segment: too many front rows"));
  StatsSegment s;
  s.workers_ = workers;
  s.front_rows_ = front_rows;
  s.layout_ = stats::SegmentLayout::of(workers, route_slots, backend_slots, front_rows);
  s.size_ = s.layout_.size;
  s.fd_ = memfd_create("lodestone-stats", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (s.fd_ < 0) return unexpected(std::string("stats segment: memfd_create: ") + std::strerror(errno));
  if (fchmod(s.fd_, 0600) != 0) return unexpected(std::string("stats segment: fchmod: ") + std::strerror(errno));
  if (ftruncate(s.fd_, static_cast<off_t>(s.size_)) != 0) {
    return unexpected(std::string("stats segment: ftruncate: ") + std::strerror(errno));
  }
  s.base_ = mmap(nullptr, s.size_, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd_, 0);
  if (s.base_ == MAP_FAILED) {
    s.base_ = nullptr;
    return unexpected(std::string("stats segment: mmap: ") + std::strerror(errno));
  }
  // Our mapping, made before the seals, stays writable; the control plane
  // cannot resize the memfd (SIGBUS in every worker) or write it.
  constexpr int kSize = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if (fcntl(s.fd_, F_ADD_SEALS, kSize | F_SEAL_FUTURE_WRITE) != 0 &&
      (errno != EINVAL || fcntl(s.fd_, F_ADD_SEALS, kSize) != 0)) {  // EINVAL: a kernel before 5.1
    return unexpected(std::string("stats segment: seals: ") + std::strerror(errno));
  }
  stats::StatsHeader h{};
  h.magic = stats::kStatsMagic;
  h.layout_version = stats::kStatsLayoutVersion;
  h.header_size = stats::kStatsHeaderSize;
  h.workers = workers;
  h.counters = static_cast<uint32_t>(stats::kCounterCount);
  h.block_size = sizeof(stats::WorkerStats);
  h.route_slots = route_slots;
  h.backend_slots = backend_slots;
  h.series_sizes = stats::series_sizes();
  h.route_counters = static_cast<uint16_t>(stats::kRouteCounterCount);
  h.backend_counters = static_cast<uint16_t>(stats::kBackendCounterCount);
  h.handshake_buckets = static_cast<uint16_t>(stats::kHandshakeBuckets);
  h.front_counters = static_cast<uint16_t>(stats::kFrontCounterCount);
  h.front_rows = front_rows;
  h.started_unix_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  h.pid = static_cast<uint64_t>(getpid());
  std::memcpy(s.base_, &h, sizeof h);
  new (static_cast<std::byte*>(s.base_) + stats::kReloadsAskedOffset) std::atomic<uint64_t>(0);
  for (uint32_t i = 0; i < workers; ++i) new (s.worker(i)) stats::WorkerStats();
  new (s.front()) stats::FrontArea();
  // The directory and the series stay as ftruncate made them: zero bytes are
  // free entries and zero counters, and untouched pages cost no memory.
  for (Kind* k : {&s.routes_, &s.backends_}) {
    k->slots = k == &s.routes_ ? route_slots : backend_slots;
    k->base = k == &s.routes_ ? 0 : route_slots;
    k->name_of.assign(k->slots, {});
    k->seen.assign(k->slots, 0);
    k->retired_at.assign(k->slots, 0);
    s.write_name(*k, stats::kOtherSlot, "(other)", "(other)", false);
  }
  return s;
}

bool stats_size_sealed(int fd) noexcept {
  const int seals = fcntl(fd, F_GET_SEALS);
  return seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW);
}

StatsSegment::StatsSegment(StatsSegment&& o) noexcept
    : fd_(o.fd_), base_(o.base_), size_(o.size_), workers_(o.workers_), front_rows_(o.front_rows_),
      layout_(o.layout_),
      routes_(std::move(o.routes_)), backends_(std::move(o.backends_)) {
  o.fd_ = -1;
  o.base_ = nullptr;
}

StatsSegment::~StatsSegment() {
  if (base_ != nullptr) munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

uint64_t StatsSegment::ask_reload() noexcept {
  auto* asked = reinterpret_cast<std::atomic<uint64_t>*>(static_cast<std::byte*>(base_) + stats::kReloadsAskedOffset);
  const uint64_t n = asked->load(std::memory_order_relaxed) + 1;
  asked->store(n, std::memory_order_release);
  return n;
}

stats::WorkerStats* StatsSegment::worker(uint32_t i) noexcept {
  return reinterpret_cast<stats::WorkerStats*>(static_cast<std::byte*>(base_) + stats::kStatsHeaderSize +
                                               size_t{i} * sizeof(stats::WorkerStats));
}

stats::FrontArea* StatsSegment::front() noexcept {
  return reinterpret_cast<stats::FrontArea*>(static_cast<std::byte*>(base_) + layout_.front_offset);
}

stats::RouteSeries* StatsSegment::routes(uint32_t i) noexcept {
  return reinterpret_cast<stats::RouteSeries*>(static_cast<std::byte*>(base_) + layout_.routes_offset) +
         size_t{i} * routes_.slots;
}

stats::BackendSeries* StatsSegment::backends(uint32_t i) noexcept {
  return reinterpret_cast<stats::BackendSeries*>(static_cast<std::byte*>(base_) + layout_.backends_offset) +
         size_t{i} * backends_.slots;
}

uint32_t StatsSegment::route_slot(std::string_view listener, std::string_view route, uint64_t epoch) {
  return slot(routes_, listener, route, epoch);
}

uint32_t StatsSegment::backend_slot(std::string_view pool, std::string_view backend, uint64_t epoch) {
  return slot(backends_, pool, backend, epoch);
}

uint32_t StatsSegment::slot(Kind& k, std::string_view a, std::string_view b, uint64_t epoch) {
  std::string key;
  key.reserve(a.size() + 1 + b.size());
  key.append(a).push_back('\0');
  key.append(b);
  if (auto it = k.by_name.find(key); it != k.by_name.end()) {
    const uint32_t s = it->second;
    k.seen[s] = epoch;
    if (k.retired_at[s] != 0) {  // back in the configuration
      k.retired_at[s] = 0;
      write_name(k, s, a, b, false);
    }
    return s;
  }
  uint32_t s = stats::kOtherSlot;
  if (k.next_fresh < k.slots) {
    s = k.next_fresh++;
  } else {
    // Reuse the longest-retired slot; its old connections may still count
    // into it for a while (documented in stats_layout.h).
    uint64_t oldest = UINT64_MAX;
    for (uint32_t i = 1; i < k.slots; ++i) {
      if (k.retired_at[i] != 0 && k.retired_at[i] < oldest) {
        oldest = k.retired_at[i];
        s = i;
      }
    }
    if (s == stats::kOtherSlot) return s;
    k.by_name.erase(k.name_of[s]);
  }
  k.by_name.emplace(key, s);
  k.name_of[s] = std::move(key);
  k.seen[s] = epoch;
  k.retired_at[s] = 0;
  write_name(k, s, a, b, false);
  return s;
}

void StatsSegment::retire_unseen(uint64_t epoch) {
  for (Kind* k : {&routes_, &backends_}) {
    for (uint32_t s = 1; s < k->next_fresh; ++s) {
      if (k->seen[s] == epoch || k->retired_at[s] != 0 || k->name_of[s].empty()) continue;
      k->retired_at[s] = epoch;
      const std::string& key = k->name_of[s];
      const size_t z = key.find('\0');
      write_name(*k, s, std::string_view(key).substr(0, z), std::string_view(key).substr(z + 1), true);
    }
  }
}

void StatsSegment::write_name(const Kind& k, uint32_t slot, std::string_view a, std::string_view b, bool retired) {
  // Too long for the entry: cut, and end with "~SLOT" so that two cut names
  // never read the same.
  std::string cut_b;
  if (a.size() + b.size() > stats::kSeriesNameBytes) {
    a = a.substr(0, std::min<size_t>(a.size(), stats::kSeriesNameBytes / 2));
    const std::string suffix = "~" + std::to_string(slot);
    cut_b = std::string(b.substr(0, stats::kSeriesNameBytes - a.size() - suffix.size())) + suffix;
    b = cut_b;
  }
  std::string text(a);
  text.append(b);
  auto* names = reinterpret_cast<stats::SeriesName*>(static_cast<std::byte*>(base_) + layout_.names_offset);
  stats::SeriesName& n = names[k.base + slot];
  stats::seq_begin(n.seq);
  n.meta.store(static_cast<uint64_t>(k.kind) | uint64_t{retired} << 8 | uint64_t{a.size()} << 16 |
                   uint64_t{b.size()} << 24,
               std::memory_order_relaxed);
  n.text.store(text);
  stats::seq_end(n.seq);
}

}  // namespace lode::control
