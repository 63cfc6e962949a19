// libFuzzer target for `lodectl explain --pcap`'s capture reader
// (tools/lodectl/pcap_flows.*): captures of internet traffic are hostile
// input. The input is a classic pcap file; it is read with small limits:
// - an error is a non-empty sentence;
// - otherwise at most max_flows flows; each flow's reassembled prefix within
//   max_bytes_per_flow; segment ends ascending, distinct, within the prefix;
//   the prefixes together no longer than the file (holes are bounded by
//   max_total_bytes; what the reader dropped for it is marked `truncated`);
// - flows are left out (PcapSummary::flows_ignored) only once max_flows
//   are taken;
// - reading the same file again gives the same flows.
// Any breach aborts. Also built without libFuzzer as pcap_fuzz_replay and run
// over the committed corpus by ctest.
#include <cstdint>
#include <cstdlib>
#include <span>

#include "tools/lodectl/pcap_flows.h"

namespace {

#define FUZZ_CHECK(cond)       \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lode::tools::PcapOptions opt;
  opt.max_flows = 16;
  opt.max_bytes_per_flow = 2048;
  opt.max_total_bytes = 8192;
  const std::span<const uint8_t> file(data, size);
  lode::tools::PcapSummary summary;
  auto flows = lode::tools::read_pcap_flows(file, opt, &summary);
  auto again = lode::tools::read_pcap_flows(file, opt);
  FUZZ_CHECK(flows.has_value() == again.has_value());
  if (!flows) {
    FUZZ_CHECK(!flows.error().empty() && flows.error() == again.error());
    return 0;
  }
  FUZZ_CHECK(flows->size() <= opt.max_flows && flows->size() == again->size());
  // Flows are left out only once max_flows are taken, each counted once, at most max_flows counted.
  FUZZ_CHECK(summary.flows_ignored <= opt.max_flows);
  FUZZ_CHECK(summary.flows_ignored == 0 || flows->size() == opt.max_flows);
  size_t total = 0;
  for (size_t i = 0; i < flows->size(); ++i) {
    const auto& f = (*flows)[i];
    const auto& g = (*again)[i];
    FUZZ_CHECK(f.bytes.size() <= opt.max_bytes_per_flow);
    total += f.bytes.size();
    for (size_t k = 0; k < f.segment_ends.size(); ++k) {
      FUZZ_CHECK(f.segment_ends[k] <= f.bytes.size());
      FUZZ_CHECK(k == 0 || f.segment_ends[k - 1] < f.segment_ends[k]);
    }
    FUZZ_CHECK(f.bytes == g.bytes && f.segment_ends == g.segment_ends && f.segments == g.segments &&
               f.gap == g.gap && f.truncated == g.truncated && f.saw_syn == g.saw_syn);
    FUZZ_CHECK(f.client.to_string() == g.client.to_string() && f.server.to_string() == g.server.to_string());
  }
  FUZZ_CHECK(total <= size);  // every prefix byte is a distinct payload byte of the file
  return 0;
}
