// The flat SNI route table: builder (controlplane/route_table_builder.h) and
// reader (lodestone/route_table.h), including open() against corrupted blocks.
#include "lodestone/route_table.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "controlplane/route_table_builder.h"
#include "lodestone/name_hash.h"

namespace lode::route {
namespace {

using K = FormatErrorKind;
constexpr uint64_t kSeed = 0x5eed5eed12345678ull;

// An aligned, owned copy of a block (a different address than the original).
struct Block {
  explicit Block(std::span<const std::byte> b) : size(b.size()) {
    mem.reset(
        static_cast<std::byte*>(::operator new[](std::max<size_t>(size, 1), std::align_val_t{64})));
    if (size != 0) std::memcpy(mem.get(), b.data(), size);
  }
  struct Free {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::span<std::byte> bytes() { return {mem.get(), size}; }
  std::span<const std::byte> cbytes() const { return {mem.get(), size}; }
  template <class T>
  T get(size_t off) const {
    return layout::load<T>(mem.get() + off);
  }
  template <class T>
  void set(size_t off, T v) {
    layout::store<T>(mem.get() + off, v);
  }
  std::unique_ptr<std::byte[], Free> mem;
  size_t size;
};

FlatTable build_ok(const RouteTableBuilder& b) {
  auto t = b.build();
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().message);
  return t ? std::move(t).value() : FlatTable{};
}

RouteTableView open_ok(std::span<const std::byte> block) {
  auto v = RouteTableView::open(block);
  EXPECT_TRUE(v.has_value()) << (v ? "" : v.error().message());
  return v ? *v : RouteTableView{};
}

// Routes: 0 "api" terminate, 1 "wild" passthrough, 2 "fallback" reject+reset.
struct Sample {
  RouteTableBuilder b{kSeed};
  uint32_t api, wild, fallback;
  Sample() {
    api = b.add_route({"api", Action::kTerminate, 0, 1, 2});
    wild = b.add_route({"wild", Action::kPassthrough, 0, 3, kNoIndex});
    fallback = b.add_route({"fallback", Action::kReject, kFlagRejectWithReset, kNoIndex, kNoIndex});
    for (auto [name, route] : {std::pair{"api.example.com", api},
                               {"*.example.com", wild},
                               {"www.example.com", api},
                               {"*.shop.example.org", wild},
                               {"example.org", api}}) {
      auto r = b.add_name(name, route);
      EXPECT_TRUE(r.has_value()) << name << ": " << r.error().message;
    }
  }
  FlatTable build(bool with_default = true) {
    if (with_default) EXPECT_TRUE(b.set_default(fallback).has_value());
    return build_ok(b);
  }
};

// --- name_hash: part of the format -------------------------------------------

// Pinned values: the hash is shared by processes (and by tables already
// published), so a change must be deliberate and bump the layout version.
TEST(NameHash, IsStable) {
  struct Case {
    std::string_view s;
    uint64_t seed;
    uint64_t want;
  };
  const Case cases[] = {
      {"", 0x0ull, 0x56fe5166615cb13dull},
      {"a", 0x0ull, 0xaadf66418616721bull},
      {"abc", 0x0ull, 0x6a26e2c092a0dd49ull},
      {"abcd", 0x0ull, 0x4230e32dd0d42aa7ull},
      {"abcdefg", 0x0ull, 0x094ff2787688b3e6ull},
      {"abcdefgh", 0x0ull, 0xcd7ee179c5aed614ull},
      {"abcdefghi", 0x0ull, 0x89e69f9ccb57d124ull},
      {"example.com", 0x0ull, 0xcea159a0f92b66daull},
      {"www.example.com", 0x2aull, 0xf0feae8520f360f5ull},
      {"www.example.com", 0x2bull, 0xdcfbdec3dd831c7aull},
      {"a-very-long-label-0123456789.example.co.uk", 0x5eedull, 0x0d7006132228046full},
  };
  for (const Case& c : cases) EXPECT_EQ(name_hash(c.s, c.seed), c.want) << c.s;
}

constexpr uint64_t kCompileTimeHash = name_hash("www.example.com", 42);
static_assert(kCompileTimeHash == 0xf0feae8520f360f5ull);

constexpr std::string_view kText =
    "abcdefghijklmnopqrstuvwxyz0123456789.-_ABCDEFGHIJKLMNOPQRSTUVWX";

TEST(NameHash, CompileTimeAndRunTimeAgreeAtEveryLength) {
  constexpr auto at_compile_time = [] {
    std::array<uint64_t, kText.size() + 1> v{};
    for (size_t n = 0; n <= kText.size(); ++n) v[n] = name_hash(kText.substr(0, n), 7);
    return v;
  }();
  for (size_t n = 0; n <= kText.size(); ++n) {
    const std::string copy(kText.substr(0, n));  // another address, maybe unaligned
    EXPECT_EQ(name_hash(copy, 7), at_compile_time[n]) << n;
  }
}

TEST(NameHash, LengthAndEveryByteMatter) {
  // Zero bytes of different lengths, and strings that differ in one byte at
  // any position (including the overlapped tail words).
  std::map<uint64_t, std::string> seen;
  for (size_t n = 0; n <= 40; ++n) {
    const std::string zeros(n, '\0');
    EXPECT_TRUE(seen.emplace(name_hash(zeros, 1), zeros).second) << n;
  }
  for (size_t n = 1; n <= 40; ++n) {
    std::string base(n, 'a');
    const uint64_t h = name_hash(base, 1);
    for (size_t i = 0; i < n; ++i) {
      std::string other = base;
      other[i] = 'b';
      EXPECT_NE(name_hash(other, 1), h) << n << " " << i;
    }
  }
}

// Flipping one input bit (or one seed bit) flips each output bit with a
// probability close to 1/2.
TEST(NameHash, Avalanche) {
  std::mt19937_64 rng(99);
  constexpr int kSamples = 1000;
  int worst_bias_permille = 0;
  for (size_t len : {size_t{3}, size_t{8}, size_t{13}, size_t{24}}) {
    for (size_t bit = 0; bit < len * 8 + 64; ++bit) {
      std::array<int, 64> flips{};
      for (int s = 0; s < kSamples; ++s) {
        std::string in(len, '\0');
        for (char& c : in) c = static_cast<char>(rng());
        uint64_t seed = rng();
        const uint64_t a = name_hash(in, seed);
        if (bit < len * 8) {
          in[bit / 8] = static_cast<char>(in[bit / 8] ^ (1 << (bit % 8)));
        } else {
          seed ^= uint64_t{1} << (bit - len * 8);
        }
        const uint64_t d = a ^ name_hash(in, seed);
        for (int o = 0; o < 64; ++o) flips[o] += static_cast<int>((d >> o) & 1);
      }
      for (int o = 0; o < 64; ++o) {
        worst_bias_permille =
            std::max(worst_bias_permille, std::abs(flips[o] * 1000 / kSamples - 500));
      }
    }
  }
  // 1000 samples: sigma = 0.016; 0.1 is over 6 sigma, which an ideal hash
  // does not reach over these ~41,000 (input bit, output bit) pairs. (At
  // 20,000 samples the worst pair of this hash is at 4.5 sigma, as for an
  // ideal one.)
  EXPECT_LT(worst_bias_permille, 100);
}

TEST(NameHash, NoCollisionsAmongManyNames) {
  std::map<uint64_t, int> seen;
  for (int i = 0; i < 200'000; ++i) {
    EXPECT_TRUE(seen.emplace(name_hash("host" + std::to_string(i) + ".example.com", 3), i).second)
        << i;
  }
}

// --- Lookups -------------------------------------------------------------

TEST(RouteTable, ExactHit) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  const Match m = v.find("api.example.com");
  EXPECT_EQ(m.kind, MatchKind::kExact);
  EXPECT_EQ(m.route, s.api);
  EXPECT_EQ(m.pattern, "api.example.com");
  const RouteView r = v.route(m.route);
  EXPECT_EQ(r.name, "api");
  EXPECT_EQ(r.action, Action::kTerminate);
  EXPECT_EQ(r.pool, 1u);
  EXPECT_EQ(r.cert, 2u);
  EXPECT_FALSE(r.reject_with_reset());
  EXPECT_EQ(v.find("example.org").route, s.api);
}

TEST(RouteTable, WildcardHitReportsTheSuffix) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  const Match m = v.find("img.example.com");
  EXPECT_EQ(m.kind, MatchKind::kWildcard);
  EXPECT_EQ(m.route, s.wild);
  EXPECT_EQ(m.pattern, "example.com");
  EXPECT_EQ(v.find("a.shop.example.org").kind, MatchKind::kWildcard);
  EXPECT_EQ(v.find("a.shop.example.org").pattern, "shop.example.org");
  EXPECT_EQ(v.route(s.wild).action, Action::kPassthrough);
  EXPECT_EQ(v.route(s.wild).cert, kNoIndex);
}

TEST(RouteTable, WildcardDoesNotMatchTwoLabels) {
  Sample s;
  const FlatTable t = s.build(false);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("a.b.example.com").kind, MatchKind::kNone);
  EXPECT_EQ(v.find("x.api.example.com").kind, MatchKind::kNone);
  EXPECT_EQ(v.find("a.b.shop.example.org").kind, MatchKind::kNone);
}

TEST(RouteTable, WildcardDoesNotMatchTheBareSuffix) {
  Sample s;
  const FlatTable t = s.build(false);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("example.com").kind, MatchKind::kNone);
  EXPECT_EQ(v.find("shop.example.org").kind, MatchKind::kNone);
}

TEST(RouteTable, WildcardDoesNotMatchAPartialLabel) {
  Sample s;
  const FlatTable t = s.build(false);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("aexample.com").kind, MatchKind::kNone);
  EXPECT_EQ(v.find("xexample.com").kind, MatchKind::kNone);
  EXPECT_EQ(v.find(".example.com").kind, MatchKind::kNone);  // not normalized; must not match
}

TEST(RouteTable, ExactBeatsWildcard) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("www.example.com").kind, MatchKind::kExact);
  EXPECT_EQ(v.find("www.example.com").route, s.api);
  EXPECT_EQ(v.find("wwx.example.com").route, s.wild);
}

TEST(RouteTable, MissGoesToTheDefault) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  for (std::string_view n : {"unknown.test", "com", "a.b.example.com", "example.com"}) {
    const Match m = v.find(n);
    EXPECT_EQ(m.kind, MatchKind::kDefault) << n;
    EXPECT_EQ(m.route, s.fallback) << n;
    EXPECT_TRUE(m.pattern.empty()) << n;
  }
  EXPECT_TRUE(v.route(s.fallback).reject_with_reset());
  EXPECT_EQ(v.route(s.fallback).action, Action::kReject);
}

TEST(RouteTable, MissWithoutDefaultIsNone) {
  Sample s;
  const FlatTable t = s.build(false);
  const RouteTableView v = open_ok(t.bytes());
  const Match m = v.find("unknown.test");
  EXPECT_EQ(m.kind, MatchKind::kNone);
  EXPECT_EQ(m.route, kNoIndex);
  EXPECT_FALSE(m.found());
  EXPECT_EQ(v.find_default().kind, MatchKind::kNone);
}

TEST(RouteTable, EmptyNameGoesToTheDefault) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("").kind, MatchKind::kDefault);
  EXPECT_EQ(v.find("").route, s.fallback);

  Sample none;
  const FlatTable t2 = none.build(false);
  EXPECT_EQ(open_ok(t2.bytes()).find("").kind, MatchKind::kNone);
}

TEST(RouteTable, ExactAndWildcardOfTheSameSuffixAreDifferentNames) {
  RouteTableBuilder b(kSeed);
  const uint32_t r0 = b.add_route({"apex", Action::kTerminate, 0, 0, 0});
  const uint32_t r1 = b.add_route({"sub", Action::kTerminate, 0, 1, 1});
  ASSERT_TRUE(b.add_name("example.com", r0).has_value());
  ASSERT_TRUE(b.add_name("*.example.com", r1).has_value());
  const FlatTable t = build_ok(b);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("example.com").route, r0);
  EXPECT_EQ(v.find("a.example.com").route, r1);
  EXPECT_EQ(v.exact_count(), 1u);
  EXPECT_EQ(v.wildcard_count(), 1u);
}

TEST(RouteTable, NamesAreNormalizedWhenAdded) {
  RouteTableBuilder b(kSeed);
  const uint32_t r = b.add_route({"r", Action::kTerminate, 0, 0, 0});
  ASSERT_TRUE(b.add_name("WWW.Example.COM.", r).has_value());
  ASSERT_TRUE(b.add_name("*.Img.Example.COM.", r).has_value());
  const FlatTable t = build_ok(b);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.find("www.example.com").kind, MatchKind::kExact);
  EXPECT_EQ(v.find("www.example.com").pattern, "www.example.com");
  EXPECT_EQ(v.find("a.img.example.com").kind, MatchKind::kWildcard);
}

TEST(RouteTable, EmptyTableAnswersNone) {
  RouteTableBuilder b(kSeed);
  const FlatTable t = build_ok(b);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.route_count(), 0u);
  EXPECT_EQ(v.find("a.b").kind, MatchKind::kNone);
  EXPECT_EQ(v.find("").kind, MatchKind::kNone);
  EXPECT_EQ(RouteTableView{}.find("a.b").kind, MatchKind::kNone);
}

TEST(RouteTable, ForEachNameListsEveryKey) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  std::map<std::string, uint32_t> seen;
  v.for_each_name([&](MatchKind k, std::string_view key, uint32_t route) {
    seen[(k == MatchKind::kWildcard ? "*." : "") + std::string(key)] = route;
  });
  const std::map<std::string, uint32_t> want = {{"api.example.com", s.api},
                                                {"*.example.com", s.wild},
                                                {"www.example.com", s.api},
                                                {"*.shop.example.org", s.wild},
                                                {"example.org", s.api}};
  EXPECT_EQ(seen, want);
}

TEST(RouteTable, BlockIsPositionIndependent) {
  Sample s;
  const FlatTable t = s.build();
  Block copy(t.bytes());
  ASSERT_NE(static_cast<const void*>(copy.mem.get()), static_cast<const void*>(t.bytes().data()));
  const RouteTableView a = open_ok(t.bytes());
  const RouteTableView b = open_ok(copy.cbytes());
  for (std::string_view n :
       {"api.example.com", "x.example.com", "a.shop.example.org", "nope", ""}) {
    const Match ma = a.find(n);
    const Match mb = b.find(n);
    EXPECT_EQ(ma.route, mb.route) << n;
    EXPECT_EQ(ma.kind, mb.kind) << n;
    EXPECT_EQ(ma.pattern, mb.pattern) << n;
    if (!mb.pattern.empty()) {  // the view points into the copy
      EXPECT_GE(reinterpret_cast<const std::byte*>(mb.pattern.data()), copy.mem.get());
      EXPECT_LT(reinterpret_cast<const std::byte*>(mb.pattern.data()), copy.mem.get() + copy.size);
    }
  }
  EXPECT_EQ(b.route(s.api).name, "api");
}

TEST(RouteTable, SameInputAndSeedGiveTheSameBytes) {
  Sample a, b;
  const FlatTable ta = a.build(), tb = b.build();
  ASSERT_EQ(ta.size(), tb.size());
  EXPECT_EQ(std::memcmp(ta.bytes().data(), tb.bytes().data(), ta.size()), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ta.bytes().data()) % 64, 0u);
  EXPECT_EQ(ta.size() % 8, 0u);
}

TEST(RouteTable, RandomSeedsDifferButAnswerTheSame) {
  RouteTableBuilder b1, b2;
  for (RouteTableBuilder* b : {&b1, &b2}) {
    const uint32_t r = b->add_route({"r", Action::kTerminate, 0, 0, 0});
    ASSERT_TRUE(b->add_name("a.test", r).has_value());
  }
  EXPECT_NE(b1.hash_seed(), b2.hash_seed());
  const FlatTable t1 = build_ok(b1), t2 = build_ok(b2);
  EXPECT_EQ(open_ok(t1.bytes()).find("a.test").route, 0u);
  EXPECT_EQ(open_ok(t2.bytes()).find("a.test").route, 0u);
}

void expect_burst_equals_find(const RouteTableView& v, const std::vector<std::string>& names) {
  std::vector<std::string_view> views(names.begin(), names.end());
  std::vector<Match> out(views.size() + 3, Match{7, MatchKind::kExact, "stale"});
  v.find_burst(views, std::span(out.data(), views.size()));
  for (size_t i = 0; i < views.size(); ++i) {
    const Match want = v.find(views[i]);
    EXPECT_EQ(out[i].route, want.route) << views[i];
    EXPECT_EQ(out[i].kind, want.kind) << views[i];
    EXPECT_EQ(out[i].pattern, want.pattern) << views[i];
  }
  EXPECT_EQ(out[views.size()].pattern, "stale");  // nothing written past the names
}

TEST(RouteTable, BurstAnswersLikeFind) {
  std::vector<std::string> names = {"api.example.com",
                                    "x.example.com",
                                    "a.b.example.com",
                                    "",
                                    "example.com",
                                    "example.org",
                                    "q.shop.example.org",
                                    "nope",
                                    "www.example.com",
                                    ".",
                                    "a.",
                                    "x..example.com"};
  for (int i = 0; i < 40; ++i) names.push_back("n" + std::to_string(i) + ".example.com");
  Sample s;
  const FlatTable with_default = s.build();
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, names.size()}) {
    expect_burst_equals_find(open_ok(with_default.bytes()),
                             std::vector<std::string>(names.begin(), names.begin() + n));
  }
  Sample no_default;
  const FlatTable t2 = no_default.build(false);
  expect_burst_equals_find(open_ok(t2.bytes()), names);

  RouteTableBuilder wild_only(kSeed);
  const uint32_t r = wild_only.add_route({"w", Action::kPassthrough, 0, 0, 0});
  ASSERT_TRUE(wild_only.add_name("*.example.com", r).has_value());
  const FlatTable t3 = build_ok(wild_only);
  expect_burst_equals_find(open_ok(t3.bytes()), names);

  RouteTableBuilder exact_only(kSeed);
  const uint32_t e = exact_only.add_route({"e", Action::kTerminate, 0, 0, 0});
  ASSERT_TRUE(exact_only.add_name("api.example.com", e).has_value());
  const FlatTable t4 = build_ok(exact_only);
  expect_burst_equals_find(open_ok(t4.bytes()), names);
  expect_burst_equals_find(RouteTableView{}, names);
}

TEST(RouteTable, BurstWritesNoMoreThanTheShorterSpan) {
  Sample s;
  const FlatTable t = s.build();
  const RouteTableView v = open_ok(t.bytes());
  const std::string_view names[3] = {"api.example.com", "x.example.com", "nope"};
  Match out[2];
  v.find_burst(names, out);
  EXPECT_EQ(out[0].kind, MatchKind::kExact);
  EXPECT_EQ(out[1].kind, MatchKind::kWildcard);
}

TEST(RouteTable, LookupIsNoexcept) {
  const RouteTableView v;
  static_assert(noexcept(v.find("x")));
  static_assert(noexcept(v.find_default()));
  static_assert(noexcept(RouteTableView::open({})));
}

// --- Builder refusals ----------------------------------------------------

TEST(RouteTableBuilder, DuplicateNameIsRefusedNamingBothRoutes) {
  RouteTableBuilder b(kSeed);
  const uint32_t r0 = b.add_route({"first", Action::kTerminate, 0, 0, 0});
  const uint32_t r1 = b.add_route({"second", Action::kTerminate, 0, 1, 1});
  ASSERT_TRUE(b.add_name("a.example.com", r0).has_value());
  const auto e = b.add_name("a.example.com", r1);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().kind, BuildErrorKind::kDuplicate);
  EXPECT_NE(e.error().message.find("\"a.example.com\""), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("\"first\""), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("\"second\""), std::string::npos) << e.error().message;
  EXPECT_EQ(b.name_count(), 1u);
}

TEST(RouteTableBuilder, DuplicateOnTheSameRouteIsRefused) {
  RouteTableBuilder b(kSeed);
  const uint32_t r = b.add_route({"only", Action::kTerminate, 0, 0, 0});
  ASSERT_TRUE(b.add_name("a.example.com", r).has_value());
  const auto e = b.add_name("a.example.com", r);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().kind, BuildErrorKind::kDuplicate);
  EXPECT_NE(e.error().message.find("same route"), std::string::npos) << e.error().message;
}

TEST(RouteTableBuilder, DuplicateAfterNormalizationIsRefused) {
  RouteTableBuilder b(kSeed);
  const uint32_t r0 = b.add_route({"r0", Action::kTerminate, 0, 0, 0});
  const uint32_t r1 = b.add_route({"r1", Action::kTerminate, 0, 0, 0});
  ASSERT_TRUE(b.add_name("a.example.com", r0).has_value());
  ASSERT_TRUE(b.add_name("*.example.com", r0).has_value());
  for (std::string_view dup :
       {"A.Example.COM", "a.example.com.", "A.EXAMPLE.COM.", "*.EXAMPLE.com", "*.example.com."}) {
    const auto e = b.add_name(dup, r1);
    ASSERT_FALSE(e.has_value()) << dup;
    EXPECT_EQ(e.error().kind, BuildErrorKind::kDuplicate) << dup;
    EXPECT_NE(e.error().message.find(std::string(dup)), std::string::npos) << e.error().message;
  }
  EXPECT_EQ(b.name_count(), 2u);
}

TEST(RouteTableBuilder, BadPatternsAreRefused) {
  RouteTableBuilder b(kSeed);
  const uint32_t r = b.add_route({"r", Action::kTerminate, 0, 0, 0});
  const std::string long_label(64, 'a');
  const std::string long_suffix = std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                                  std::string(63, 'd') + "." + std::string(62, 'e');  // 254
  const std::string suffix_252 = std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                                 std::string(63, 'd') + "." + std::string(60, 'e');  // 252
  const std::string cases[] = {"*",
                               "*.",
                               "*..",
                               "f*o.com",
                               "a.*.com",
                               "**.com",
                               "*.*.com",
                               "*example.com",
                               "a*.com",
                               "*a.example.com",
                               "example.*",
                               "",
                               ".",
                               "..",
                               "a..b",
                               ".a",
                               "1.2.3.4",
                               "::1",
                               "[::1]",
                               "*.1.2.3.4",
                               "*.::1",
                               long_label + ".com",
                               "*." + long_label,
                               long_suffix,
                               "*." + suffix_252,
                               std::string("a\0b.com", 7),
                               "caf\xc3\xa9.com",
                               "a b.com",
                               "a_b/c.com",
                               "*.a b.com"};
  for (const std::string& p : cases) {
    const auto e = b.add_name(p, r);
    ASSERT_FALSE(e.has_value()) << "accepted: " << p;
    EXPECT_EQ(e.error().kind, BuildErrorKind::kBadPattern) << p;
    EXPECT_NE(e.error().message.find("bad name pattern"), std::string::npos) << e.error().message;
  }
  EXPECT_EQ(b.name_count(), 0u);
  // The longest wildcard that can match: "x." + 251 bytes = 253.
  const std::string suffix_251 = std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                                 std::string(63, 'd') + "." + std::string(59, 'e');
  ASSERT_EQ(suffix_251.size(), 251u);
  EXPECT_TRUE(b.add_name("*." + suffix_251, r).has_value());
}

TEST(RouteTableBuilder, WildcardMessageSaysWhere) {
  RouteTableBuilder b(kSeed);
  const uint32_t r = b.add_route({"r", Action::kTerminate, 0, 0, 0});
  const auto e = b.add_name("a.*.com", r);
  ASSERT_FALSE(e.has_value());
  EXPECT_NE(e.error().message.find("leftmost label"), std::string::npos) << e.error().message;
  EXPECT_NE(e.error().message.find("\"a.*.com\""), std::string::npos) << e.error().message;
  const auto ip = b.add_name("10.0.0.1", r);
  ASSERT_FALSE(ip.has_value());
  EXPECT_NE(ip.error().message.find("IP address"), std::string::npos) << ip.error().message;
}

TEST(RouteTableBuilder, UnknownRouteIsRefused) {
  RouteTableBuilder b(kSeed);
  EXPECT_EQ(b.add_name("a.test", 0).error().kind, BuildErrorKind::kNoSuchRoute);
  EXPECT_EQ(b.set_default(0).error().kind, BuildErrorKind::kNoSuchRoute);
  b.add_route({"r", Action::kTerminate, 0, 0, 0});
  EXPECT_EQ(b.add_name("a.test", 1).error().kind, BuildErrorKind::kNoSuchRoute);
  EXPECT_EQ(b.add_name("a.test", kNoIndex).error().kind, BuildErrorKind::kNoSuchRoute);
  EXPECT_EQ(b.set_default(kNoIndex).error().kind, BuildErrorKind::kNoSuchRoute);
  EXPECT_TRUE(b.add_name("a.test", 0).has_value());
}

TEST(RouteTableBuilder, RoutesTheFormatCannotHoldAreRefused) {
  {
    RouteTableBuilder b(kSeed);
    b.add_route({"r", Action::kTerminate, 0x80, 0, 0});
    EXPECT_EQ(b.build().error().kind, BuildErrorKind::kBadRoute);
  }
  {
    RouteTableBuilder b(kSeed);
    b.add_route({"r", static_cast<Action>(7), 0, 0, 0});
    EXPECT_EQ(b.build().error().kind, BuildErrorKind::kBadRoute);
  }
  {
    RouteTableBuilder b(kSeed);
    b.add_route({"bad\nname", Action::kTerminate, 0, 0, 0});
    EXPECT_EQ(b.build().error().kind, BuildErrorKind::kBadRoute);
  }
  {
    RouteTableBuilder b(kSeed);
    b.add_route({std::string(70000, 'n'), Action::kTerminate, 0, 0, 0});
    EXPECT_EQ(b.build().error().kind, BuildErrorKind::kBadRoute);
  }
}

// --- open(): corrupted blocks ---------------------------------------------

FlatTable sample_table() {
  Sample s;
  return s.build();
}

K open_error(std::span<const std::byte> block) {
  auto v = RouteTableView::open(block);
  EXPECT_FALSE(v.has_value()) << "a corrupted block opened";
  return v ? K::kTooSmall : v.error().kind;
}

// Returns the index of the first occupied (or empty) slot of a table.
size_t find_slot(const Block& b, size_t table_off, uint32_t slots, bool occupied) {
  for (size_t i = 0; i < slots; ++i) {
    const bool occ = b.get<uint16_t>(table_off + i * layout::kSlotSize + layout::kSlotNameLen) != 0;
    if (occ == occupied) return i;
  }
  ADD_FAILURE() << "no such slot";
  return 0;
}

struct CorruptTest : ::testing::Test {
  FlatTable table = sample_table();
  Block b{table.bytes()};
  size_t exact_off() const { return b.get<uint64_t>(layout::kHdrExactOffset); }
  size_t wild_off() const { return b.get<uint64_t>(layout::kHdrWildOffset); }
  size_t routes_off() const { return b.get<uint64_t>(layout::kHdrRoutesOffset); }
  uint32_t exact_slots() const { return b.get<uint32_t>(layout::kHdrExactSlots); }
  size_t occupied_exact_slot() const {
    return exact_off() + find_slot(b, exact_off(), exact_slots(), true) * layout::kSlotSize;
  }
  size_t empty_exact_slot() const {
    return exact_off() + find_slot(b, exact_off(), exact_slots(), false) * layout::kSlotSize;
  }
};

TEST_F(CorruptTest, TheUncorruptedCopyOpens) {
  open_ok(b.cbytes());
}

TEST_F(CorruptTest, TooSmallIsRefused) {
  EXPECT_EQ(open_error({}), K::kTooSmall);
  EXPECT_EQ(open_error(b.cbytes().first(8)), K::kTooSmall);
  EXPECT_EQ(open_error(b.cbytes().first(layout::kHeaderSize - 1)), K::kTooSmall);
}

TEST_F(CorruptTest, TruncationAtEveryLengthIsRefused) {
  for (size_t n = 0; n < b.size; ++n) {
    const auto v = RouteTableView::open(b.cbytes().first(n));
    EXPECT_FALSE(v.has_value()) << n;
  }
}

TEST_F(CorruptTest, TruncationWithAMatchingTotalSizeIsRefused) {
  for (size_t n = layout::kHeaderSize; n < b.size; ++n) {
    Block c(b.cbytes().first(n));
    c.set<uint64_t>(layout::kHdrTotalSize, n);
    const auto v = RouteTableView::open(c.cbytes());
    EXPECT_FALSE(v.has_value()) << n;
  }
}

TEST_F(CorruptTest, BadMagic) {
  b.set<uint8_t>(0, 'X');
  EXPECT_EQ(open_error(b.cbytes()), K::kBadMagic);
}

TEST_F(CorruptTest, BadVersion) {
  b.set<uint32_t>(layout::kHdrVersion, 2);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadVersion);
  b.set<uint32_t>(layout::kHdrVersion, 0);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadVersion);
}

TEST_F(CorruptTest, BadHeaderSize) {
  b.set<uint32_t>(layout::kHdrHeaderSize, 64);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadHeaderSize);
}

TEST_F(CorruptTest, TotalSizeOtherThanTheBlock) {
  b.set<uint64_t>(layout::kHdrTotalSize, b.size + 8);
  EXPECT_EQ(open_error(b.cbytes()), K::kSizeMismatch);
  b.set<uint64_t>(layout::kHdrTotalSize, b.size - 8);
  EXPECT_EQ(open_error(b.cbytes()), K::kSizeMismatch);
}

TEST_F(CorruptTest, SectionOffsetOutOfBounds) {
  for (size_t field : {layout::kHdrRoutesOffset, layout::kHdrExactOffset, layout::kHdrWildOffset,
                       layout::kHdrPoolOffset}) {
    Block c(b.cbytes());
    c.set<uint64_t>(field, c.size + 64);
    EXPECT_EQ(open_error(c.cbytes()), K::kSectionOutOfBounds) << field;
    c.set<uint64_t>(field, ~uint64_t{7});  // aligned, far past the end, overflows offset + size
    EXPECT_EQ(open_error(c.cbytes()), K::kSectionOutOfBounds) << field;
  }
}

TEST_F(CorruptTest, PoolSizePastTheEnd) {
  b.set<uint64_t>(layout::kHdrPoolSize, b.size);
  EXPECT_EQ(open_error(b.cbytes()), K::kSectionOutOfBounds);
  b.set<uint64_t>(layout::kHdrPoolSize, ~uint64_t{0});
  EXPECT_EQ(open_error(b.cbytes()), K::kSectionOutOfBounds);
}

TEST_F(CorruptTest, MisalignedSection) {
  b.set<uint64_t>(layout::kHdrExactOffset, exact_off() + 4);
  EXPECT_EQ(open_error(b.cbytes()), K::kMisaligned);
}

TEST_F(CorruptTest, OverlappingSections) {
  b.set<uint64_t>(layout::kHdrExactOffset, routes_off());  // on top of the routes
  EXPECT_EQ(open_error(b.cbytes()), K::kSectionOverlap);
  Block c(table.bytes());
  c.set<uint64_t>(layout::kHdrRoutesOffset, 0);  // on top of the header
  EXPECT_EQ(open_error(c.cbytes()), K::kSectionOverlap);
}

TEST_F(CorruptTest, SlotCountNotAPowerOfTwo) {
  b.set<uint32_t>(layout::kHdrExactSlots, exact_slots() - 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadSlotCount);
  b.set<uint32_t>(layout::kHdrExactSlots, 0);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadSlotCount);
  Block c(table.bytes());
  c.set<uint32_t>(layout::kHdrWildSlots, 3);
  EXPECT_EQ(open_error(c.cbytes()), K::kBadSlotCount);
}

TEST_F(CorruptTest, MoreNamesThanHalfTheSlots) {
  b.set<uint32_t>(layout::kHdrExactNames, exact_slots() / 2 + 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kOverloaded);
}

TEST_F(CorruptTest, NameCountDisagreesWithTheSlots) {
  b.set<uint32_t>(layout::kHdrExactNames, b.get<uint32_t>(layout::kHdrExactNames) - 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kCountMismatch);
  Block c(table.bytes());
  c.set<uint32_t>(layout::kHdrWildNames, c.get<uint32_t>(layout::kHdrWildNames) - 1);
  EXPECT_EQ(open_error(c.cbytes()), K::kCountMismatch);
}

TEST_F(CorruptTest, DefaultRouteOutOfRange) {
  b.set<uint32_t>(layout::kHdrDefaultRoute, b.get<uint32_t>(layout::kHdrRouteCount));
  EXPECT_EQ(open_error(b.cbytes()), K::kBadDefault);
}

TEST_F(CorruptTest, RouteCountReservedValue) {
  b.set<uint32_t>(layout::kHdrRouteCount, kNoIndex);
  EXPECT_FALSE(RouteTableView::open(b.cbytes()).has_value());
}

TEST_F(CorruptTest, SlotNameOffsetOutsideThePool) {
  const size_t s = occupied_exact_slot();
  b.set<uint32_t>(s + layout::kSlotNameOffset,
                  static_cast<uint32_t>(b.get<uint64_t>(layout::kHdrPoolSize)));
  EXPECT_EQ(open_error(b.cbytes()), K::kNameOutOfBounds);
  b.set<uint32_t>(s + layout::kSlotNameOffset, 0xFFFFFFF0u);
  EXPECT_EQ(open_error(b.cbytes()), K::kNameOutOfBounds);
}

TEST_F(CorruptTest, SlotNameLengthPastThePool) {
  b.set<uint16_t>(occupied_exact_slot() + layout::kSlotNameLen, 0xFFFF);
  EXPECT_EQ(open_error(b.cbytes()), K::kNameOutOfBounds);
}

TEST_F(CorruptTest, SlotRouteIndexOutOfRange) {
  const size_t s = occupied_exact_slot();
  b.set<uint32_t>(s + layout::kSlotRoute, b.get<uint32_t>(layout::kHdrRouteCount));
  EXPECT_EQ(open_error(b.cbytes()), K::kRouteOutOfRange);
  b.set<uint32_t>(s + layout::kSlotRoute, kNoIndex);
  EXPECT_EQ(open_error(b.cbytes()), K::kRouteOutOfRange);
}

TEST_F(CorruptTest, SlotTagThatIsNotTheHash) {
  const size_t s = occupied_exact_slot();
  b.set<uint32_t>(s + layout::kSlotTag, b.get<uint32_t>(s + layout::kSlotTag) ^ 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kHashMismatch);
}

TEST_F(CorruptTest, OtherHashSeed) {
  b.set<uint64_t>(layout::kHdrHashSeed, kSeed + 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kHashMismatch);
}

TEST_F(CorruptTest, KeyThatIsNotNormalized) {
  const size_t s = occupied_exact_slot();
  const size_t key =
      b.get<uint64_t>(layout::kHdrPoolOffset) + b.get<uint32_t>(s + layout::kSlotNameOffset);
  b.set<uint8_t>(key, static_cast<uint8_t>(b.get<uint8_t>(key) & ~0x20));  // upper case
  EXPECT_EQ(open_error(b.cbytes()), K::kBadName);
}

TEST_F(CorruptTest, NonZeroEmptySlot) {
  b.set<uint32_t>(empty_exact_slot() + layout::kSlotRoute, 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadEmptySlot);
}

TEST_F(CorruptTest, NonZeroSlotPadding) {
  b.set<uint16_t>(occupied_exact_slot() + layout::kSlotPad, 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadPadding);
}

TEST_F(CorruptTest, NonZeroTail) {
  const uint64_t pool_end =
      b.get<uint64_t>(layout::kHdrPoolOffset) + b.get<uint64_t>(layout::kHdrPoolSize);
  ASSERT_LT(pool_end, b.size) << "the sample must end in padding";
  b.set<uint8_t>(b.size - 1, 1);
  EXPECT_EQ(open_error(b.cbytes()), K::kBadPadding);
}

TEST_F(CorruptTest, KeyMovedPastAnEmptySlotIsUnreachable) {
  // Move an occupied slot two places on, over an empty one.
  const size_t off = exact_off();
  const uint32_t n = exact_slots();
  auto slot = [&](size_t i) { return off + (i % n) * layout::kSlotSize; };
  auto empty = [&](size_t i) { return b.get<uint16_t>(slot(i) + layout::kSlotNameLen) == 0; };
  size_t i = 0;
  while (i < n && (empty(i) || !empty(i + 1) || !empty(i + 2))) ++i;
  ASSERT_LT(i, n);
  std::memcpy(b.mem.get() + slot(i + 2), b.mem.get() + slot(i), layout::kSlotSize);
  std::memset(b.mem.get() + slot(i), 0, layout::kSlotSize);
  EXPECT_EQ(open_error(b.cbytes()), K::kUnreachable);
}

TEST_F(CorruptTest, RouteRecordFields) {
  const size_t r = routes_off();
  {
    Block c(b.cbytes());
    c.set<uint8_t>(r + layout::kRouteAction, 3);
    EXPECT_EQ(open_error(c.cbytes()), K::kBadAction);
  }
  {
    Block c(b.cbytes());
    c.set<uint8_t>(r + layout::kRouteFlags, 0x04);  // not a known flag (0x01 reset, 0x02 steer by client)
    EXPECT_EQ(open_error(c.cbytes()), K::kBadFlags);
  }
  {
    Block c(b.cbytes());
    c.set<uint32_t>(r + layout::kRouteNameOffset, 0xFFFFFF00u);
    EXPECT_EQ(open_error(c.cbytes()), K::kNameOutOfBounds);
  }
  {
    Block c(b.cbytes());
    c.set<uint16_t>(r + layout::kRouteNameLen, 0xFFFF);
    EXPECT_EQ(open_error(c.cbytes()), K::kNameOutOfBounds);
  }
  {
    Block c(b.cbytes());
    const size_t name =
        c.get<uint64_t>(layout::kHdrPoolOffset) + c.get<uint32_t>(r + layout::kRouteNameOffset);
    c.set<uint8_t>(name, '\n');
    EXPECT_EQ(open_error(c.cbytes()), K::kBadRouteName);
  }
}

// Every byte of the block inverted, one at a time: refused, except the two
// fields open() cannot check (pool and cert indexes point into sections of
// the snapshot that come later); then the table must still answer lookups.
TEST_F(CorruptTest, EveryInvertedByteIsRefusedOrHarmless) {
  const uint32_t routes = b.get<uint32_t>(layout::kHdrRouteCount);
  auto unchecked = [&](size_t p) {
    if (p < routes_off() || p >= routes_off() + routes * layout::kRouteSize) return false;
    const size_t f = (p - routes_off()) % layout::kRouteSize;
    return f >= layout::kRoutePool;  // pool and cert
  };
  size_t opened = 0;
  for (size_t p = 0; p < b.size; ++p) {
    Block c(b.cbytes());
    c.set<uint8_t>(p, static_cast<uint8_t>(c.get<uint8_t>(p) ^ 0xFF));
    const auto v = RouteTableView::open(c.cbytes());
    if (unchecked(p)) {
      ASSERT_TRUE(v.has_value()) << p;
      ++opened;
      EXPECT_EQ(v->find("api.example.com").route, 0u);
      continue;
    }
    EXPECT_FALSE(v.has_value()) << "byte " << p << " inverted and the block still opened";
  }
  EXPECT_EQ(opened, routes * 8u);
}

// Single bit flips anywhere: never a crash (ASan), and whatever opens answers
// lookups in bounds.
TEST_F(CorruptTest, EveryBitFlipIsSafe) {
  for (size_t p = 0; p < b.size; ++p) {
    for (int bit = 0; bit < 8; ++bit) {
      Block c(b.cbytes());
      c.set<uint8_t>(p, static_cast<uint8_t>(c.get<uint8_t>(p) ^ (1u << bit)));
      const auto v = RouteTableView::open(c.cbytes());
      if (!v) continue;
      for (std::string_view n :
           {"api.example.com", "x.example.com", "a.shop.example.org", "zz", ""}) {
        const Match m = v->find(n);
        if (m.found()) {
          ASSERT_LT(m.route, v->route_count());
          (void)v->route(m.route).name.size();
        }
      }
    }
  }
}

TEST(RouteTableFormatError, MessageNamesTheProblem) {
  const FormatError e{K::kNameOutOfBounds, "exact", 12, 4096};
  const std::string m = e.message();
  EXPECT_NE(m.find("name outside the string pool"), std::string::npos) << m;
  EXPECT_NE(m.find("exact #12"), std::string::npos) << m;
}

// --- Scale ------------------------------------------------------------------

TEST(RouteTable, HundredThousandNames) {
  constexpr size_t kNames = 100'000;
  RouteTableBuilder b(kSeed);
  for (uint32_t i = 0; i < 64; ++i) {
    b.add_route({"route" + std::to_string(i), Action::kTerminate, 0, i, i});
  }
  const uint32_t fallback = b.add_route({"fallback", Action::kReject, 0, kNoIndex, kNoIndex});
  ASSERT_TRUE(b.set_default(fallback).has_value());
  b.reserve(kNames, kNames * 24);
  std::mt19937_64 rng(42);
  std::vector<std::string> exact, wild;
  exact.reserve(kNames);
  char buf[64];
  for (size_t i = 0; i < kNames; ++i) {
    const uint32_t route = static_cast<uint32_t>(i % 64);
    if (i % 10 == 0) {
      std::snprintf(buf, sizeof buf, "z%zx.s%u.example.net", i, static_cast<unsigned>(rng() % 300));
      wild.emplace_back(buf);
      ASSERT_TRUE(b.add_name("*." + wild.back(), route).has_value());
    } else {
      std::snprintf(buf, sizeof buf, "h%zx-%x.s%u.example.com", i,
                    static_cast<unsigned>(rng() & 0xfff), static_cast<unsigned>(rng() % 300));
      exact.emplace_back(buf);
      ASSERT_TRUE(b.add_name(exact.back(), route).has_value());
    }
  }
  const FlatTable t = build_ok(b);
  const RouteTableView v = open_ok(t.bytes());
  EXPECT_EQ(v.name_count(), kNames);
  for (size_t i = 0; i < exact.size(); ++i) {
    const Match m = v.find(exact[i]);
    ASSERT_EQ(m.kind, MatchKind::kExact) << exact[i];
    ASSERT_EQ(m.pattern, exact[i]);
  }
  {
    const std::vector<std::string_view> views(exact.begin(), exact.end());
    std::vector<Match> out(views.size());
    v.find_burst(views, out);
    for (size_t i = 0; i < views.size(); ++i) ASSERT_EQ(out[i].pattern, exact[i]);
  }
  for (const std::string& w : wild) {
    const Match m = v.find("q." + w);
    ASSERT_EQ(m.kind, MatchKind::kWildcard) << w;
    ASSERT_EQ(m.pattern, w);
    ASSERT_EQ(v.find(w).kind, MatchKind::kDefault) << w;
    ASSERT_EQ(v.find("a.b." + w).kind, MatchKind::kDefault) << w;
  }
  for (size_t i = 0; i < 10'000; ++i) {
    std::snprintf(buf, sizeof buf, "m%zx.nowhere.example.org", i);
    ASSERT_EQ(v.find(buf).kind, MatchKind::kDefault);
  }
  // Duplicates are still found at this size.
  EXPECT_EQ(b.add_name(exact[kNames / 3], 1).error().kind, BuildErrorKind::kDuplicate);
}

}  // namespace
}  // namespace lode::route
