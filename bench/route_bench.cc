// SNI route table: lookup cost at 1k, 100k and 1M names (exact hit, wildcard
// hit, miss), the cost of building and of opening (validating) a table, and
// the table's bytes per name. The same lookups against a
// std::unordered_map<std::string_view, uint32_t> of the same exact names run
// in the same process, and the ratios are printed at the end.
//
// Names are generated: one or two random labels (4..10 bytes) in front of one
// of a few hundred suffixes, 20-25 bytes on average; 1% of the names are
// wildcards. The queries of each benchmark are a pre-built array in random
// order, so a lookup touches the table where a real client mix would.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/route_table_builder.h"
#include "lodestone/route_table.h"

namespace {

using lode::route::Action;
using lode::route::FlatTable;
using lode::route::Match;
using lode::route::MatchKind;
using lode::route::RouteTableBuilder;
using lode::route::RouteTableView;

constexpr uint32_t kRoutes = 1000;
constexpr size_t kMaxQueries = 1'000'000;

// Strings back to back in one buffer; views into it stay valid (reserved).
class Strings {
 public:
  explicit Strings(size_t bytes) { buf_.reserve(bytes); }
  std::string_view add(std::string_view s) {
    if (buf_.size() + s.size() > buf_.capacity()) std::abort();  // views must not move
    const size_t at = buf_.size();
    buf_.insert(buf_.end(), s.begin(), s.end());
    return {buf_.data() + at, s.size()};
  }

 private:
  std::vector<char> buf_;
};

std::string random_label(std::mt19937_64& rng, size_t min_len, size_t max_len) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  const size_t len = min_len + rng() % (max_len - min_len + 1);
  std::string s(len, 'a');
  s[0] = kAlphabet[rng() % 26];  // a letter first, like most real labels
  for (size_t i = 1; i < len; ++i) s[i] = kAlphabet[rng() % 36];
  return s;
}

std::vector<std::string> make_suffixes(std::mt19937_64& rng, size_t n, std::string_view tag) {
  static constexpr const char* kTlds[] = {"com", "net", "org", "io", "co.uk", "de", "fr", "cloud"};
  std::vector<std::string> v;
  for (size_t i = 0; i < n; ++i) {
    v.push_back(random_label(rng, 4, 8) + std::string(tag) + "." + kTlds[rng() % 8]);
  }
  return v;
}

struct Corpus {
  size_t names = 0;
  std::unique_ptr<Strings> strings;
  std::vector<std::string_view> exact;      // the exact names
  std::vector<std::string_view> wild_keys;  // "*." + key was added
  std::vector<std::string_view> q_exact;    // exact names, shuffled
  std::vector<std::string_view> q_wild;     // one more label on a wildcard key
  std::vector<std::string_view> q_miss;     // names under suffixes that are not in the table
  FlatTable table;
  RouteTableView view;
  double avg_name_len = 0;
};

// Adds the corpus's names to `b` (routes first).
void fill(RouteTableBuilder& b, const Corpus& c) {
  for (uint32_t r = 0; r < kRoutes; ++r) {
    b.add_route({"route" + std::to_string(r), Action::kTerminate, 0, r, r});
  }
  b.reserve(c.exact.size() + c.wild_keys.size(), c.names * 26);
  uint32_t r = 0;
  for (std::string_view n : c.exact) {
    if (!b.add_name(n, r++ % kRoutes)) std::abort();
  }
  std::string w;
  for (std::string_view k : c.wild_keys) {
    w.assign("*.").append(k);
    if (!b.add_name(w, r++ % kRoutes)) std::abort();
  }
}

Corpus& corpus(size_t names) {
  static std::map<size_t, std::unique_ptr<Corpus>> cache;
  auto& slot = cache[names];
  if (slot) return *slot;
  slot = std::make_unique<Corpus>();
  Corpus& c = *slot;
  c.names = names;
  std::mt19937_64 rng(names);
  const size_t queries = std::min(names, kMaxQueries);
  c.strings = std::make_unique<Strings>((names + 3 * queries) * 48);
  const std::vector<std::string> suffixes = make_suffixes(rng, 300, "");
  const std::vector<std::string> foreign = make_suffixes(rng, 100, "-nomatch");

  const size_t wild = std::max<size_t>(10, names / 100);
  std::unordered_map<std::string_view, bool> seen;
  seen.reserve(names * 2);
  size_t total_len = 0;
  while (c.exact.size() + c.wild_keys.size() < names) {
    const bool is_wild = c.wild_keys.size() < wild && rng() % 100 == 0;
    std::string n = random_label(rng, 4, 10);
    if (!is_wild && rng() % 10 < 3) n += "." + random_label(rng, 3, 6);
    n += "." + suffixes[rng() % suffixes.size()];
    if (seen.count(n) != 0) continue;  // wildcard keys and exact names never collide
    const std::string_view v = c.strings->add(n);
    seen.emplace(v, true);
    (is_wild ? c.wild_keys : c.exact).push_back(v);
    total_len += n.size() + (is_wild ? 2 : 0);
  }
  while (c.wild_keys.size() < wild) {  // small tables: top up the wildcards
    const std::string n = random_label(rng, 4, 10) + ".w." + suffixes[rng() % suffixes.size()];
    if (seen.count(n) != 0) continue;
    const std::string_view v = c.strings->add(n);
    seen.emplace(v, true);
    c.wild_keys.push_back(v);
    total_len += n.size() + 2;
  }
  c.avg_name_len =
      static_cast<double>(total_len) / static_cast<double>(c.exact.size() + c.wild_keys.size());

  // The queries: copied, in the order they are asked, into one array (a
  // name just parsed from a hello is in cache; the table is not).
  std::vector<std::string_view> order = c.exact;
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::min(order.size(), queries));
  for (std::string_view n : order) c.q_exact.push_back(c.strings->add(n));
  for (size_t i = 0; i < queries; ++i) {
    const std::string_view key = c.wild_keys[rng() % c.wild_keys.size()];
    c.q_wild.push_back(c.strings->add(random_label(rng, 3, 8) + "x." + std::string(key)));
    c.q_miss.push_back(
        c.strings->add(random_label(rng, 4, 10) + "." + foreign[rng() % foreign.size()]));
  }

  RouteTableBuilder b(0x600DF00D);
  fill(b, c);
  auto built = b.build();
  if (!built) std::abort();
  c.table = std::move(built).value();
  auto v = RouteTableView::open(c.table.bytes());
  if (!v) std::abort();
  c.view = *v;
  return c;
}

void set_counters(benchmark::State& state, const Corpus& c) {
  state.counters["bytes_per_name"] =
      static_cast<double>(c.table.size()) / static_cast<double>(c.view.name_count());
  state.counters["avg_name_len"] = c.avg_name_len;
}

void run_lookups(benchmark::State& state, const std::vector<std::string_view>& q, MatchKind want) {
  const Corpus& c = corpus(static_cast<size_t>(state.range(0)));
  if (c.view.find(q[0]).kind != want) {
    state.SkipWithError("corpus does not give the expected kind of match");
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    const Match m = c.view.find(q[i]);
    benchmark::DoNotOptimize(m);
    if (++i == q.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  set_counters(state, c);
}

// The same queries through find_burst(), kBurst names per call.
void run_bursts(benchmark::State& state, const std::vector<std::string_view>& q, MatchKind want) {
  constexpr size_t kBurst = RouteTableView::kBurst;
  const Corpus& c = corpus(static_cast<size_t>(state.range(0)));
  std::vector<Match> out(kBurst);
  c.view.find_burst(std::span(q.data(), 1), std::span(out.data(), 1));
  if (out[0].kind != want) {
    state.SkipWithError("corpus does not give the expected kind of match");
    return;
  }
  const size_t usable = q.size() / kBurst * kBurst;
  size_t i = 0;
  for (auto _ : state) {
    c.view.find_burst(std::span(q.data() + i, kBurst), out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    i += kBurst;
    if (i == usable) i = 0;
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBurst));
  // Seconds per name (printed as "54.9ns").
  state.counters["per_name"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kBurst,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  set_counters(state, c);
}

void BM_FindExactBurst(benchmark::State& state) {
  run_bursts(state, corpus(static_cast<size_t>(state.range(0))).q_exact, MatchKind::kExact);
}
void BM_FindWildcardBurst(benchmark::State& state) {
  run_bursts(state, corpus(static_cast<size_t>(state.range(0))).q_wild, MatchKind::kWildcard);
}
void BM_FindMissBurst(benchmark::State& state) {
  run_bursts(state, corpus(static_cast<size_t>(state.range(0))).q_miss, MatchKind::kNone);
}

void BM_FindExact(benchmark::State& state) {
  run_lookups(state, corpus(static_cast<size_t>(state.range(0))).q_exact, MatchKind::kExact);
}
void BM_FindWildcard(benchmark::State& state) {
  run_lookups(state, corpus(static_cast<size_t>(state.range(0))).q_wild, MatchKind::kWildcard);
}
void BM_FindMiss(benchmark::State& state) {
  run_lookups(state, corpus(static_cast<size_t>(state.range(0))).q_miss, MatchKind::kNone);
}

// The reference: a node-based hash map of the exact names, same queries.
void BM_UnorderedMapExact(benchmark::State& state) {
  const Corpus& c = corpus(static_cast<size_t>(state.range(0)));
  std::unordered_map<std::string_view, uint32_t> map;
  map.reserve(c.exact.size());
  uint32_t r = 0;
  for (std::string_view n : c.exact) map.emplace(n, r++);
  size_t i = 0;
  for (auto _ : state) {
    const auto it = map.find(c.q_exact[i]);
    uint32_t route = it == map.end() ? lode::route::kNoIndex : it->second;
    benchmark::DoNotOptimize(route);
    if (++i == c.q_exact.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Build(benchmark::State& state) {
  const Corpus& c = corpus(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    RouteTableBuilder b(0x600DF00D);
    fill(b, c);
    auto t = b.build();
    if (!t) std::abort();
    bytes = t->size();
    benchmark::DoNotOptimize(t->bytes().data());
  }
  state.counters["bytes_per_name"] = static_cast<double>(bytes) / static_cast<double>(c.names);
  state.counters["table_MiB"] = static_cast<double>(bytes) / (1024.0 * 1024.0);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(c.names));
}

void BM_Open(benchmark::State& state) {
  const Corpus& c = corpus(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto v = RouteTableView::open(c.table.bytes());
    if (!v) std::abort();
    benchmark::DoNotOptimize(v->name_count());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(c.names));
}

BENCHMARK(BM_FindExact)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_UnorderedMapExact)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_FindWildcard)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_FindMiss)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_FindExactBurst)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_FindWildcardBurst)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_FindMissBurst)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
BENCHMARK(BM_Build)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_Open)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

// Keeps each run's time so the ratios can be printed after the table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      // ns per name: the iteration time, or the burst's per-name counter.
      const auto per_name = r.counters.find("per_name");
      ns_[r.benchmark_name()] =
          per_name != r.counters.end() ? per_name->second.value * 1e9 : r.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void print_ratios() const {
    std::printf("\nns per name, same run, same queries (unordered_map: exact names only)\n");
    std::printf("  %8s  %7s %7s %7s  %7s %7s %7s  %9s  %s\n", "names", "exact", "wild", "miss",
                "exact/b", "wild/b", "miss/b", "umap", "exact/umap");
    for (const char* n : {"1000", "100000", "1000000"}) {
      auto get = [&](const char* bench) {
        const auto it = ns_.find(std::string(bench) + "/" + n);
        return it == ns_.end() ? 0.0 : it->second;
      };
      const double exact = get("BM_FindExact"), umap = get("BM_UnorderedMapExact");
      if (exact == 0 && umap == 0 && get("BM_FindExactBurst") == 0) continue;  // filtered out
      std::printf("  %8s  %7.1f %7.1f %7.1f  %7.1f %7.1f %7.1f  %9.1f  %.2f\n", n, exact,
                  get("BM_FindWildcard"), get("BM_FindMiss"), get("BM_FindExactBurst"),
                  get("BM_FindWildcardBurst"), get("BM_FindMissBurst"), umap,
                  umap > 0 ? exact / umap : 0.0);
    }
  }

 private:
  std::map<std::string, double> ns_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
