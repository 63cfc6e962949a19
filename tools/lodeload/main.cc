// lodeload: a TLS load generator (handshakes, requests, bulk, idle); see
// usage() in options.cc or `lodeload --help`.
#include <signal.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "tools/lodeload/options.h"
#include "tools/lodeload/run.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

}  // namespace

int main(int argc, char** argv) {
  auto options = lode::load::parse_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!options) {
    if (options.error() == lode::load::kHelpRequested) {
      std::cout << lode::load::usage();
      return 0;
    }
    std::cerr << options.error() << "\n";
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  options->stop = &g_stop;

  auto report = lode::load::run(*options);
  if (!report) {
    std::cerr << report.error() << "\n";
    return 3;
  }
  std::cout << lode::load::report_json(*report) << std::flush;
  if (!options->quiet) std::cerr << lode::load::report_table(*report);
  return lode::load::exit_status(*report);
}
