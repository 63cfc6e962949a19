// GenerationSlot<T>: the one current immutable T (a Runtime, a Snapshot)
// that every worker serves from. Checking for a new one is a single atomic
// load of its generation, once per loop pass; the shared_ptr is copied (under
// a short lock, off the hot path) only when the generation moved. Whoever
// holds a copy keeps that generation alive: an old one is freed when the last
// connection that started under it closes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace lode::control {

template <class T>  // T has a uint64_t `generation`
class GenerationSlot {
 public:
  void publish(std::shared_ptr<const T> next) {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
    generation_.store(current_ ? current_->generation : 0, std::memory_order_release);
  }
  uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const T> get() const {
    std::lock_guard lock(mu_);
    return current_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> current_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace lode::control
