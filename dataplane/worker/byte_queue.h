// A FIFO of bytes owned by one connection: appended at the back, consumed
// from the front, compacted lazily. Its storage is allocated once per
// connection and reused; never per packet. The storage it holds is charged
// to an account (the worker's buffered bytes, for [limits]
// memory_per_worker): charged when it grows, refunded when it is released,
// destroyed or replaced; a move carries the charge with the bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace lode::worker {

// Leaves new bytes uninitialized: prepare() hands out room that is written
// into at once (no memset per record).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

class ByteQueue {
 public:
  ByteQueue() = default;
  ~ByteQueue() { refund(); }
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;
  ByteQueue(ByteQueue&& o) noexcept
      : data_(std::move(o.data_)), head_(std::exchange(o.head_, 0)), account_(std::exchange(o.account_, nullptr)) {
    o.data_.clear();
  }
  ByteQueue& operator=(ByteQueue&& o) noexcept {
    if (this != &o) {
      refund();
      data_ = std::move(o.data_);
      o.data_.clear();
      head_ = std::exchange(o.head_, 0);
      account_ = std::exchange(o.account_, nullptr);
    }
    return *this;
  }

  // Where the storage is charged from now on (null: nowhere).
  void set_account(uint64_t* account) noexcept {
    refund();
    account_ = account;
    if (account_ != nullptr) *account_ += data_.capacity();
  }

  size_t size() const noexcept { return data_.size() - head_; }
  bool empty() const noexcept { return size() == 0; }
  std::span<const uint8_t> front() const noexcept { return {data_.data() + head_, size()}; }
  void append(std::span<const uint8_t> b) {
    if (b.empty()) return;
    std::memcpy(prepare(b.size()), b.data(), b.size());
    prepared_ = 0;
  }
  // Room for up to n more bytes at the back, written in place (by OpenSSL,
  // say); commit(k) then keeps the first k of them. Nothing else may touch
  // the queue in between.
  uint8_t* prepare(size_t n) {
    if (head_ > 0 && head_ == data_.size()) clear();
    const size_t before = data_.capacity();
    const size_t used = data_.size();
    if (before - used < n) data_.reserve(used + n > 2 * before ? used + n : 2 * before);
    data_.resize(used + n);
    if (account_ != nullptr) *account_ += data_.capacity() - before;
    prepared_ = n;
    return data_.data() + used;
  }
  void commit(size_t k) noexcept {
    data_.resize(data_.size() - prepared_ + (k < prepared_ ? k : prepared_));
    prepared_ = 0;
  }
  void consume(size_t n) noexcept {
    head_ += n;
    if (head_ == data_.size()) {
      clear();
    } else if (head_ > 64 * 1024 && head_ * 2 > data_.size()) {
      data_.erase(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  // Copies up to n bytes out of the front; returns how many.
  size_t read(uint8_t* out, size_t n) noexcept {
    const size_t k = n < size() ? n : size();
    std::memcpy(out, data_.data() + head_, k);
    consume(k);
    return k;
  }
  void clear() noexcept {
    data_.clear();
    head_ = 0;
  }
  // Gives the memory back (an idle connection holds no buffer).
  void release() noexcept {
    if (data_.capacity() == 0) return;
    refund();
    decltype(data_)().swap(data_);
    head_ = 0;
  }
  size_t capacity() const noexcept { return data_.capacity(); }

 private:
  void refund() noexcept {
    if (account_ != nullptr) *account_ -= data_.capacity();
  }

  std::vector<uint8_t, DefaultInitAllocator<uint8_t>> data_;
  size_t head_ = 0;
  size_t prepared_ = 0;
  uint64_t* account_ = nullptr;
};

}  // namespace lode::worker
