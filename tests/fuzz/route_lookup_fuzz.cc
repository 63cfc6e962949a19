// libFuzzer target for the SNI route table (builder + reader).
//
// (a) The input as text, one item per line:
//       "?name"  a query
//       "!"      make the line's route (line number % 4) the default
//       other    a pattern, added to route (line number % 4)
//     A table is built with the builder and, beside it, a std::map reference
//     that follows the rules literally; every add_name answer and every
//     lookup (the queries, each pattern, and names derived from wildcards)
//     must agree, or the target aborts.
// (b) The raw input as a table block: open() must refuse it or give a table
//     whose lookups stay in bounds.
// (c) The table built in (a) with a few bytes changed (positions and values
//     taken from the input): the same.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/route_table_builder.h"
#include "lodestone/hostname.h"
#include "lodestone/route_table.h"

namespace {

using lode::route::Action;
using lode::route::BuildErrorKind;
using lode::route::kNoIndex;
using lode::route::Match;
using lode::route::MatchKind;
using lode::route::RouteTableBuilder;
using lode::route::RouteTableView;

constexpr uint32_t kRoutes = 4;
constexpr size_t kMaxInput = 64 * 1024;
constexpr size_t kMaxLines = 4096;

[[noreturn]] void fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "MISMATCH (%s): \"%.*s\"\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

// The rules, written the slow and obvious way.
struct Reference {
  std::map<std::string, uint32_t> exact;
  std::map<std::string, uint32_t> wild;  // keyed by suffix
  uint32_t default_route = kNoIndex;

  // A normalized host name: what normalize_hostname leaves unchanged.
  static bool is_normalized_name(const std::string& s) {
    if (s.empty()) return false;
    char buf[lode::kHostnameBufSize];
    const auto n = lode::normalize_hostname(s, buf);
    return n && n->kind == lode::HostnameKind::kName && std::string(buf, n->len) == s;
  }

  // The key a pattern stands for, or "" if the builder must refuse it.
  static std::string key_of(std::string_view pattern, bool& wildcard) {
    std::string p(pattern);
    for (char& c : p) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    if (!p.empty() && p.back() == '.') p.pop_back();
    wildcard = p.size() > 2 && p[0] == '*' && p[1] == '.';
    std::string key = wildcard ? p.substr(2) : p;
    if (key.find('*') != std::string::npos || !is_normalized_name(key)) return {};
    if (wildcard && key.size() > lode::kMaxHostnameLen - 2) return {};
    return key;
  }

  Match find(std::string_view q) const {
    auto deflt = [&] {
      return default_route == kNoIndex ? Match{} : Match{default_route, MatchKind::kDefault, {}};
    };
    if (q.empty()) return deflt();
    if (auto it = exact.find(std::string(q)); it != exact.end()) {
      return Match{it->second, MatchKind::kExact, it->first};
    }
    const size_t dot = q.find('.');
    if (dot != std::string_view::npos && dot > 0) {
      if (auto it = wild.find(std::string(q.substr(dot + 1))); it != wild.end()) {
        return Match{it->second, MatchKind::kWildcard, it->first};
      }
    }
    return deflt();
  }
};

// What the dataplane looks up for a raw SNI: the normalized name, or "" (no
// SNI) for an IP literal or a name that does not normalize.
std::string normalized_query(std::string_view raw) {
  char buf[lode::kHostnameBufSize];
  const auto n = lode::normalize_hostname(raw, buf);
  if (!n || n->kind != lode::HostnameKind::kName) return {};
  return std::string(buf, n->len);
}

// Lookups on a table that open() accepted but that may be anything.
void probe_untrusted(const RouteTableView& v, const std::vector<std::string>& queries) {
  const std::vector<std::string_view> views(queries.begin(), queries.end());
  std::vector<Match> burst(views.size());
  v.find_burst(views, burst);
  for (size_t i = 0; i < views.size(); ++i) {
    const Match m = v.find(views[i]);
    if (m.route != burst[i].route || m.kind != burst[i].kind) fail("burst differs", views[i]);
    if (m.found()) {
      if (m.route >= v.route_count()) fail("route out of range", views[i]);
      volatile size_t sink = v.route(m.route).name.size();
      (void)sink;
    }
  }
  size_t keys = 0;
  v.for_each_name([&](MatchKind kind, std::string_view key, uint32_t route) {
    if (route >= v.route_count()) fail("stored route out of range", key);
    // open() checked that every key is reachable: each one is found.
    if (kind == MatchKind::kExact) {
      const Match m = v.find(key);
      if (m.kind != MatchKind::kExact || m.pattern != key) fail("stored key not found", key);
    } else {
      const Match m = v.find("x." + std::string(key));
      if (m.kind != MatchKind::kExact && m.kind != MatchKind::kWildcard) {
        fail("stored wildcard not found", key);
      }
    }
    ++keys;
  });
  if (keys != v.name_count()) fail("name count", "");
}

struct AlignedCopy {
  explicit AlignedCopy(std::span<const std::byte> b) : size(b.size()) {
    data = static_cast<std::byte*>(::operator new[](size + 8, std::align_val_t{64}));
    if (size != 0) std::memcpy(data, b.data(), size);
  }
  ~AlignedCopy() { ::operator delete[](data, std::align_val_t{64}); }
  AlignedCopy(const AlignedCopy&) = delete;
  AlignedCopy& operator=(const AlignedCopy&) = delete;
  std::span<const std::byte> bytes() const { return {data, size}; }
  std::byte* data;
  size_t size;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  uint64_t h = 1469598103934665603ull;  // FNV-1a of the input: seed and corruption choices
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;

  // (b) the raw bytes as a block.
  {
    AlignedCopy raw(std::as_bytes(std::span(data, size)));
    if (auto v = RouteTableView::open(raw.bytes())) {
      probe_untrusted(*v, {"", "a", "a.b", "www.example.com", "x.example.com"});
    }
  }

  // (a) patterns and queries.
  RouteTableBuilder builder(h);
  Reference ref;
  for (uint32_t r = 0; r < kRoutes; ++r) {
    builder.add_route(
        {"r" + std::to_string(r), static_cast<Action>(r % 3), static_cast<uint8_t>(r & 1), r, r});
  }
  std::vector<std::string> queries = {""};
  size_t line_no = 0;
  for (size_t pos = 0; pos <= input.size() && line_no < kMaxLines; ++line_no) {
    size_t end = input.find('\n', pos);
    if (end == std::string_view::npos) end = input.size();
    const std::string_view line = input.substr(pos, end - pos);
    pos = end + 1;
    const auto route = static_cast<uint32_t>(line_no % kRoutes);
    if (!line.empty() && line[0] == '?') {
      queries.push_back(normalized_query(line.substr(1)));
      continue;
    }
    if (line == "!") {
      if (!builder.set_default(route)) fail("set_default", line);
      ref.default_route = route;
      continue;
    }
    bool wildcard = false;
    const std::string key = Reference::key_of(line, wildcard);
    auto& map = wildcard ? ref.wild : ref.exact;
    const auto got = builder.add_name(line, route);
    if (key.empty()) {
      if (got) fail("bad pattern accepted", line);
      if (got.error().kind != BuildErrorKind::kBadPattern) fail("wrong error kind", line);
      if (got.error().message.empty()) fail("empty message", line);
      continue;
    }
    if (map.count(key) != 0) {
      if (got) fail("duplicate accepted", line);
      if (got.error().kind != BuildErrorKind::kDuplicate) fail("wrong error kind (dup)", line);
      continue;
    }
    if (!got) fail("good pattern refused", line);
    map.emplace(key, route);
    queries.push_back(normalized_query(line));
    if (wildcard) {
      queries.push_back("x." + key);
      queries.push_back("x.y." + key);
      queries.push_back(key);
    } else {
      const size_t dot = key.find('.');
      if (dot != std::string::npos) queries.push_back(key.substr(dot + 1));
      queries.push_back("x." + key);
    }
  }

  auto built = builder.build();
  if (!built) fail("build", built.error().message);
  const lode::route::FlatTable table = std::move(built).value();
  auto opened = RouteTableView::open(table.bytes());
  if (!opened) fail("open of a built table", opened.error().message());
  // Read it at another address too.
  AlignedCopy moved(table.bytes());
  auto opened_moved = RouteTableView::open(moved.bytes());
  if (!opened_moved) fail("open of a moved table", opened_moved.error().message());

  for (const RouteTableView* v : {&*opened, &*opened_moved}) {
    if (v->exact_count() != ref.exact.size() || v->wildcard_count() != ref.wild.size()) {
      fail("counts", "");
    }
    for (const std::string& q : queries) {
      const Match want = ref.find(q);
      const Match got = v->find(q);
      if (got.route != want.route || got.kind != want.kind || got.pattern != want.pattern) {
        fail("lookup", q);
      }
    }
    // find_burst answers like find.
    const std::vector<std::string_view> views(queries.begin(), queries.end());
    std::vector<Match> burst(views.size());
    v->find_burst(views, burst);
    for (size_t i = 0; i < views.size(); ++i) {
      const Match want = ref.find(views[i]);
      if (burst[i].route != want.route || burst[i].kind != want.kind ||
          burst[i].pattern != want.pattern) {
        fail("burst lookup", views[i]);
      }
    }
    v->for_each_name([&](MatchKind kind, std::string_view key, uint32_t route) {
      const auto& map = kind == MatchKind::kWildcard ? ref.wild : ref.exact;
      const auto it = map.find(std::string(key));
      if (it == map.end() || it->second != route) fail("stored key", key);
    });
  }

  // (c) the built table with a few bytes changed.
  if (size >= 4) {
    AlignedCopy bad(table.bytes());
    uint64_t x = h;
    const int changes = 1 + static_cast<int>(x % 3);
    for (int i = 0; i < changes; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const size_t at = static_cast<size_t>(x >> 20) % bad.size;
      bad.data[at] = static_cast<std::byte>(data[(x >> 8) % size]);
    }
    if (auto v = RouteTableView::open(bad.bytes())) probe_untrusted(*v, queries);
  }
  return 0;
}
