// A FIFO of bytes owned by one connection: appended at the back, consumed
// from the front, compacted lazily. Its storage is allocated once per
// connection and reused; never per packet. The storage it holds is charged
// to an account (the worker's buffered bytes, for [limits]
// memory_per_worker): charged when it grows, refunded when it is released,
// destroyed or replaced; a move carries the charge with the bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

namespace lode::worker {

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
    if (head_ > 0 && head_ == data_.size()) clear();
    const size_t before = data_.capacity();
    data_.insert(data_.end(), b.begin(), b.end());
    if (account_ != nullptr) *account_ += data_.capacity() - before;
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
    std::vector<uint8_t>().swap(data_);
    head_ = 0;
  }
  size_t capacity() const noexcept { return data_.capacity(); }

 private:
  void refund() noexcept {
    if (account_ != nullptr) *account_ -= data_.capacity();
  }

  std::vector<uint8_t> data_;
  size_t head_ = 0;
  uint64_t* account_ = nullptr;
};

}  // namespace lode::worker
