// Builds snapshot segments (include/lodestone/snapshot.h) and seals them into
// memfds for the control channel.
//
// A SegmentBuilder collects records, then bytes() lays them out (header,
// record table, keys and data, checksum) and seal() writes them into a new
// memfd: mode 0600 (it holds private keys), MADV_DONTDUMP on the writer's
// short-lived mapping, then F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK |
// F_SEAL_SEAL so the dataplane can trust its one validation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/snapshot.h"

namespace lode::cp {

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

class SegmentBuilder {
 public:
  void add_config(std::string_view text, uint64_t version);
  void add_certificate(std::string_view key, uint64_t version, snapshot::CertState state,
                       int64_t not_after_unix, std::string_view chain_pem, std::string_view key_pem);
  void add_staple(std::string_view key, uint64_t version, snapshot::StapleStatus status,
                  int64_t this_update_unix, int64_t next_update_unix, std::string_view der);
  // keys: 80 bytes each, the first encrypts.
  void add_ticket_keys(std::span<const std::byte> keys, uint64_t version);
  // A pool's backend states, keyed "pool:" + pool (snapshot::kPoolKeyPrefix).
  void add_backend_state(std::string_view pool, std::span<const snapshot::BackendStateView> backends,
                         uint64_t version);
  void remove(snapshot::RecordKind kind, std::string_view key);

  size_t record_count() const noexcept { return records_.size(); }
  bool empty() const noexcept { return records_.empty(); }

  // The laid-out segment (for tests, fuzz seeds and the benchmark).
  std::vector<std::byte> bytes(uint64_t generation, uint64_t base_generation) const;
  // The same written into a sealed 0600 memfd.
  Result<UniqueFd, std::string> seal(uint64_t generation, uint64_t base_generation) const;

  // Bytes held (private key PEM among them) are cleansed when dropped.
  ~SegmentBuilder();
  SegmentBuilder() = default;
  SegmentBuilder(SegmentBuilder&&) noexcept = default;
  SegmentBuilder& operator=(SegmentBuilder&&) noexcept = default;

 private:
  struct Pending {
    snapshot::RecordKind kind;
    uint16_t flags;
    std::string key;
    uint64_t version;
    std::string data;
  };
  size_t layout_size() const noexcept;
  void write_to(std::span<std::byte> out, uint64_t generation, uint64_t base_generation) const;

  std::vector<Pending> records_;
};

}  // namespace lode::cp
