// A Google Benchmark main that also prints, for each pair of benchmarks
// "<name>/lodestone" and "<name>/<baseline>", the ratio baseline/lodestone
// measured in the same run. Absolute times drift on shared machines; the
// ratio is the figure to quote.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace lode::bench {

class RatioReporter : public ::benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      times_[r.benchmark_name()] = r.GetAdjustedCPUTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void print_ratios(const char* lode_tag, const char* base_tag) const {
    std::printf("\n%-40s %12s %12s %8s\n", "comparison", "lodestone ns", "baseline ns", "ratio");
    for (const auto& [name, t] : times_) {
      const size_t at = name.find(lode_tag);
      if (at == std::string::npos) continue;
      std::string base = name;
      base.replace(at, std::string(lode_tag).size(), base_tag);
      auto it = times_.find(base);
      if (it == times_.end()) continue;
      std::printf("%-40s %12.1f %12.1f %7.1fx\n", name.substr(0, at).c_str(), t, it->second, it->second / t);
    }
  }

 private:
  std::map<std::string, double> times_;
};

}  // namespace lode::bench

#define LODE_BENCHMARK_MAIN_WITH_RATIOS(lode_tag, base_tag)  \
  int main(int argc, char** argv) {                          \
    ::benchmark::Initialize(&argc, argv);                    \
    ::lode::bench::RatioReporter reporter;                   \
    ::benchmark::RunSpecifiedBenchmarks(&reporter);          \
    reporter.print_ratios(lode_tag, base_tag);               \
    ::benchmark::Shutdown();                                 \
    return 0;                                                \
  }
