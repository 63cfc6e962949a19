// TableSlot<T>: the current immutable table (a route table, a snapshot) that
// any number of worker threads read without locks while a writer replaces it.
//
// Quiescent-state-based reclamation (QSBR):
//  - A reader (one per worker thread) registers once and gets a slot of its
//    own, a cache line holding the last global epoch it has seen (0: offline).
//  - Reading the table is one acquire load (Reader::get()). The pointer may be
//    used until the reader's next quiescent point; it must not be kept across
//    one. Worker event loops call Reader::quiescent() once per pass: a load of
//    the global epoch and a store into the reader's own line. Readers never
//    wait, never write a shared line, never take a lock.
//  - The writer's publish() swaps the pointer, advances the global epoch to E
//    and retires the old table with E. reclaim() frees a retired table once
//    every registered reader that is online has announced an epoch >= E, i.e.
//    has passed a quiescent point after the swap; an offline reader holds
//    nothing and blocks nothing. Nothing is ever freed under a reader.
//  - A reader that will sleep (blocking in io_uring_enter with nothing to do)
//    goes offline() first and online() when it wakes.
//
// Writers (the control-plane glue, tests) are serialized by a mutex; that
// path is not hot.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "lodestone/result.h"

namespace lode::route {

enum class SlotError : uint8_t {
  kTooManyReaders,  // all kMaxReaders reader slots are registered
};

template <class T>
class TableSlot {
  static constexpr size_t kCacheLine = 64;

  struct alignas(kCacheLine) ReaderState {
    std::atomic<uint64_t> epoch{0};  // 0: offline (or not registered)
    bool registered = false;         // guarded by TableSlot::mutex_
  };

 public:
  static constexpr uint32_t kMaxReaders = 64;

  // A registered reader; owned by one thread. Unregisters when destroyed.
  class Reader {
   public:
    Reader() = default;
    Reader(Reader&& o) noexcept : slot_(o.slot_), index_(o.index_) { o.slot_ = nullptr; }
    Reader& operator=(Reader&& o) noexcept {
      if (this != &o) {
        reset();
        slot_ = o.slot_;
        index_ = o.index_;
        o.slot_ = nullptr;
      }
      return *this;
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader() { reset(); }

    // The current table (nullptr before the first publish). Valid until this
    // reader's next quiescent() or offline(). The reader must be online.
    [[nodiscard]] const T* get() const noexcept {
      assert(slot_ != nullptr && state().epoch.load(std::memory_order_relaxed) != 0);
      return slot_->current_.load(std::memory_order_acquire);
    }

    // "I hold no pointer obtained from get() any more." Online readers only
    // (an offline reader comes back with online(), which has the fence).
    void quiescent() noexcept {
      assert(is_online());
      state().epoch.store(slot_->epoch_.load(std::memory_order_acquire), std::memory_order_release);
    }

    // Before blocking: this reader holds nothing and blocks no reclamation.
    void offline() noexcept { state().epoch.store(0, std::memory_order_release); }

    // After waking: announce the epoch, then (fence) read. The fence pairs
    // with the writer's: either the writer sees this reader online, or this
    // reader's next get() sees the writer's new table.
    void online() noexcept {
      state().epoch.store(slot_->epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }

    bool is_online() const noexcept { return state().epoch.load(std::memory_order_relaxed) != 0; }
    uint32_t index() const noexcept { return index_; }
    explicit operator bool() const noexcept { return slot_ != nullptr; }

    // Unregisters now (the destructor does it too).
    void reset() noexcept {
      if (slot_ != nullptr) slot_->unregister(index_);
      slot_ = nullptr;
    }

   private:
    friend class TableSlot;
    Reader(TableSlot* slot, uint32_t index) noexcept : slot_(slot), index_(index) {}
    ReaderState& state() const noexcept { return slot_->readers_[index_]; }

    TableSlot* slot_ = nullptr;
    uint32_t index_ = 0;
  };

  explicit TableSlot(std::unique_ptr<const T> initial = nullptr) noexcept
      : current_(initial.release()) {}

  TableSlot(const TableSlot&) = delete;
  TableSlot& operator=(const TableSlot&) = delete;

  // Every Reader must be gone.
  ~TableSlot() {
    for ([[maybe_unused]] const ReaderState& r : readers_) assert(!r.registered);
    delete current_.load(std::memory_order_relaxed);
  }

  // Registers the calling thread as a reader, online.
  [[nodiscard]] Result<Reader, SlotError> register_reader() {
    std::lock_guard lock(mutex_);
    for (uint32_t i = 0; i < kMaxReaders; ++i) {
      ReaderState& r = readers_[i];
      if (r.registered) continue;
      r.registered = true;
      r.epoch.store(epoch_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      return Reader(this, i);  // the mutex orders this against every publish
    }
    return unexpected(SlotError::kTooManyReaders);
  }

  // Makes `next` the current table, retires the old one and frees whatever
  // no reader can still hold. Returns the number of tables freed.
  size_t publish(std::unique_ptr<const T> next) {
    std::lock_guard lock(mutex_);
    const T* old = current_.exchange(next.release(), std::memory_order_acq_rel);
    const uint64_t e = epoch_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (old != nullptr) retired_.push_back(Retired{e, std::unique_ptr<const T>(old)});
    return reclaim_locked();
  }

  // Frees the retired tables that every online reader has moved past.
  size_t reclaim() {
    std::lock_guard lock(mutex_);
    return reclaim_locked();
  }

  // Tables retired and not yet freed.
  size_t retired_count() const {
    std::lock_guard lock(mutex_);
    return retired_.size();
  }

  size_t reader_count() const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count_if(readers_.begin(), readers_.end(),
                                             [](const ReaderState& r) { return r.registered; }));
  }

  uint64_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

 private:
  struct Retired {
    uint64_t epoch;
    std::unique_ptr<const T> table;
  };

  size_t reclaim_locked() {
    if (retired_.empty()) return 0;
    // Pairs with Reader::online(): see the comment there.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uint64_t min_seen = UINT64_MAX;
    for (const ReaderState& r : readers_) {
      if (!r.registered) continue;
      const uint64_t seen = r.epoch.load(std::memory_order_acquire);
      if (seen != 0) min_seen = std::min(min_seen, seen);
    }
    // retired_ is in epoch order.
    size_t n = 0;
    while (n < retired_.size() && retired_[n].epoch <= min_seen) ++n;
    retired_.erase(retired_.begin(), retired_.begin() + static_cast<ptrdiff_t>(n));
    return n;
  }

  void unregister(uint32_t index) {
    std::lock_guard lock(mutex_);
    readers_[index].epoch.store(0, std::memory_order_release);
    readers_[index].registered = false;
    reclaim_locked();
  }

  // Read by every reader on every lookup: a line of their own.
  alignas(kCacheLine) std::atomic<const T*> current_;
  std::atomic<uint64_t> epoch_{1};
  alignas(kCacheLine) std::array<ReaderState, kMaxReaders> readers_{};
  mutable std::mutex mutex_;
  std::vector<Retired> retired_;  // guarded by mutex_
};

}  // namespace lode::route
