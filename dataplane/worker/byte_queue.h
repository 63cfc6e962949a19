// A FIFO of bytes owned by one connection: appended at the back, consumed
// from the front, compacted lazily. Its storage is allocated once per
// connection and reused; never per packet.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace lode::worker {

class ByteQueue {
 public:
  size_t size() const noexcept { return data_.size() - head_; }
  bool empty() const noexcept { return size() == 0; }
  std::span<const uint8_t> front() const noexcept { return {data_.data() + head_, size()}; }
  void append(std::span<const uint8_t> b) {
    if (head_ > 0 && head_ == data_.size()) clear();
    data_.insert(data_.end(), b.begin(), b.end());
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
    std::vector<uint8_t>().swap(data_);
    head_ = 0;
  }
  size_t capacity() const noexcept { return data_.capacity(); }

 private:
  std::vector<uint8_t> data_;
  size_t head_ = 0;
};

}  // namespace lode::worker
