// Reads a classic pcap capture and reassembles, for every TCP flow, the first
// bytes the client sent (its ClientHello), in sequence order: out-of-order
// segments are placed, retransmissions and overlaps keep the first bytes
// seen. Pure: the caller reads the file; every length is bounds-checked.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lodestone/result.h"
#include "lodestone/socket_address.h"

namespace lode::tools {

struct PcapFlow {
  SocketAddress client;
  SocketAddress server;
  bool saw_syn = false;
  uint32_t segments = 0;            // client segments that carried payload
  std::vector<uint8_t> bytes;       // contiguous prefix of the client's stream
  std::vector<size_t> segment_ends; // stream offsets where received segments ended, ascending
  bool gap = false;                 // data beyond a hole was dropped
  bool truncated = false;           // a segment was dropped: the holes' budget (max_total_bytes) ran out
};

struct PcapOptions {
  size_t max_bytes_per_flow = 70 * 1024;  // enough for a 64 KiB hello in records
  size_t max_flows = 100000;
  // Holes over all flows. A segment far into a flow makes room up to its
  // end (a 60-byte packet can ask for max_bytes_per_flow), so a capture of
  // hostile traffic could otherwise ask for max_flows x max_bytes_per_flow
  // (7 GB) with a few MB of packets; past this, segments that open a hole
  // are dropped and their flows marked `truncated`. Bytes that arrive in
  // order are not counted (they are in the file); memory stays within
  // about twice the file's payload plus twice this (vectors grow by
  // doubling).
  size_t max_total_bytes = 256 * 1024 * 1024;
};

// What a read left out, for the caller to say.
struct PcapSummary {
  uint64_t flows_ignored = 0;  // flows that began after max_flows were taken
};

// Flows in the order their first packet appears. Errors name the byte offset.
Result<std::vector<PcapFlow>, std::string> read_pcap_flows(std::span<const uint8_t> file, PcapOptions opt = {},
                                                          PcapSummary* summary = nullptr);

}  // namespace lode::tools
