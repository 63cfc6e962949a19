// libFuzzer target for the configuration loader (TOML text -> Config) and
// what is built from a loaded Config (the listeners' route tables).
//
// An operator's file is not hostile, but `lodestone check` and a reload must
// answer any file with a Config or with errors, never a crash or a hang:
// 1. load_config_string on the input: a failure carries at least one error,
//    each naming the file and saying what is wrong (to_string() starts with
//    the file's name); the same text loads the same way again.
// 2. A loaded Config: every listener gets its route table or errors come
//    back; same_listeners / same_front hold for the Config with itself.
// Any breach aborts. Also built without libFuzzer as config_fuzz_replay and
// run over the committed corpus by ctest. The loader reads no file itself
// (paths are only resolved), so inputs naming files are harmless.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "controlplane/config.h"
#include "controlplane/route_tables.h"

namespace {

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

constexpr std::string_view kSource = "/fuzz/lodestone.toml";

void check_errors(const lode::config::ConfigErrors& errors) {
  FUZZ_CHECK(!errors.empty());
  for (const auto& e : errors) {
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.file == kSource);
    FUZZ_CHECK(std::string_view(e.to_string()).starts_with(kSource));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cfg = lode::config::load_config_string(text, kSource);
  auto again = lode::config::load_config_string(text, kSource);
  FUZZ_CHECK(cfg.has_value() == again.has_value());
  if (!cfg) {
    check_errors(cfg.error());
    FUZZ_CHECK(cfg.error().size() == again.error().size());
    for (size_t i = 0; i < cfg.error().size(); ++i) FUZZ_CHECK(cfg.error()[i].to_string() == again.error()[i].to_string());
    return 0;
  }
  FUZZ_CHECK(cfg->listeners.size() == again->listeners.size() && cfg->routes.size() == again->routes.size() &&
             cfg->pools.size() == again->pools.size());
  FUZZ_CHECK(lode::config::same_listeners(*cfg, *again));
  FUZZ_CHECK(lode::config::same_front(*cfg, *again));
  // A fixed hash seed: the same input takes the same paths every run.
  auto tables = lode::config::build_route_tables(*cfg, 0x10de57011e);
  if (tables) {
    FUZZ_CHECK(tables->size() == cfg->listeners.size());
  } else {
    FUZZ_CHECK(!tables.error().empty());
    for (const auto& e : tables.error()) FUZZ_CHECK(!e.message.empty());
  }
  return 0;
}
