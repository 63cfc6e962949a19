// PersistentMap<V>: an immutable string-keyed map whose updates share
// structure with the map they came from (a hash trie with path copying).
//
// set() and erase() return a new map and leave the old one untouched; they
// copy only the nodes on one root-to-leaf path: O(log16 n) nodes of 16
// children, whatever the size. That is what lets one certificate of 100,000
// be replaced without copying the other 99,999: readers keep using the old
// map until they pick up the new one, and nodes shared by both are freed
// (shared_ptr) when the last map that holds them goes.
//
// find() is a walk of at most 16 levels by 4 bits of a 64-bit hash, then a
// short scan of a leaf: no locks, no allocation, safe from any number of
// threads on a map no thread is assigning to.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lodestone/name_hash.h"

namespace lode::control {

template <class V>
class PersistentMap {
  static constexpr unsigned kBits = 4;
  static constexpr unsigned kFanout = 1u << kBits;
  static constexpr unsigned kMaxDepth = 64 / kBits;
  static constexpr size_t kLeafCap = 8;

  struct Item {
    uint64_t hash;
    std::string key;
    V value;
  };
  struct Node {
    bool leaf = true;
    std::vector<Item> items;                                   // leaf
    std::array<std::shared_ptr<const Node>, kFanout> child{};  // interior
  };
  using NodePtr = std::shared_ptr<const Node>;

 public:
  static uint64_t hash_of(std::string_view key) noexcept { return lode::name_hash(key, 0x6c6f6465); }

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  const V* find(std::string_view key) const noexcept {
    const uint64_t h = hash_of(key);
    const Node* n = root_.get();
    unsigned depth = 0;
    while (n != nullptr && !n->leaf) {
      n = n->child[slot(h, depth++)].get();
    }
    if (n == nullptr) return nullptr;
    for (const Item& it : n->items) {
      if (it.hash == h && it.key == key) return &it.value;
    }
    return nullptr;
  }

  [[nodiscard]] PersistentMap set(std::string_view key, V value) const {
    PersistentMap out;
    bool added = false;
    out.root_ = insert(root_, hash_of(key), key, std::move(value), 0, added);
    out.size_ = size_ + (added ? 1 : 0);
    return out;
  }

  [[nodiscard]] PersistentMap erase(std::string_view key) const {
    bool removed = false;
    NodePtr r = remove(root_, hash_of(key), key, 0, removed);
    if (!removed) return *this;
    PersistentMap out;
    out.root_ = std::move(r);
    out.size_ = size_ - 1;
    return out;
  }

  // Visits every entry (order unspecified).
  template <class F>
  void for_each(F&& f) const {
    visit(root_.get(), f);
  }

 private:
  static unsigned slot(uint64_t h, unsigned depth) noexcept {
    return static_cast<unsigned>((h >> (depth * kBits)) & (kFanout - 1));
  }

  static NodePtr insert(const NodePtr& n, uint64_t h, std::string_view key, V&& value, unsigned depth,
                        bool& added) {
    if (!n) {
      auto leaf = std::make_shared<Node>();
      leaf->items.push_back(Item{h, std::string(key), std::move(value)});
      added = true;
      return leaf;
    }
    if (n->leaf) {
      auto copy = std::make_shared<Node>(*n);
      for (Item& it : copy->items) {
        if (it.hash == h && it.key == key) {
          it.value = std::move(value);
          return copy;
        }
      }
      copy->items.push_back(Item{h, std::string(key), std::move(value)});
      added = true;
      if (copy->items.size() <= kLeafCap || depth >= kMaxDepth) return copy;
      // Split: the items go one level down by their next 4 bits.
      auto inner = std::make_shared<Node>();
      inner->leaf = false;
      for (Item& it : copy->items) {
        bool unused = false;
        inner->child[slot(it.hash, depth)] =
            insert(inner->child[slot(it.hash, depth)], it.hash, it.key, std::move(it.value), depth + 1, unused);
      }
      return inner;
    }
    auto copy = std::make_shared<Node>(*n);
    const unsigned s = slot(h, depth);
    copy->child[s] = insert(n->child[s], h, key, std::move(value), depth + 1, added);
    return copy;
  }

  static NodePtr remove(const NodePtr& n, uint64_t h, std::string_view key, unsigned depth, bool& removed) {
    if (!n) return n;
    if (n->leaf) {
      for (size_t i = 0; i < n->items.size(); ++i) {
        if (n->items[i].hash != h || n->items[i].key != key) continue;
        removed = true;
        if (n->items.size() == 1) return nullptr;
        auto copy = std::make_shared<Node>(*n);
        copy->items.erase(copy->items.begin() + static_cast<std::ptrdiff_t>(i));
        return copy;
      }
      return n;
    }
    const unsigned s = slot(h, depth);
    NodePtr c = remove(n->child[s], h, key, depth + 1, removed);
    if (!removed) return n;
    auto copy = std::make_shared<Node>(*n);
    copy->child[s] = std::move(c);
    for (const auto& ch : copy->child) {
      if (ch) return copy;
    }
    return nullptr;  // an empty interior node goes too
  }

  template <class F>
  static void visit(const Node* n, F& f) {
    if (n == nullptr) return;
    if (n->leaf) {
      for (const Item& it : n->items) f(std::string_view(it.key), it.value);
      return;
    }
    for (const auto& c : n->child) visit(c.get(), f);
  }

  NodePtr root_;
  size_t size_ = 0;
};

}  // namespace lode::control
