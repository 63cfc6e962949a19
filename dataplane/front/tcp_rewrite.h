// Forwarding a TCP segment without copying it: the headers of a parsed frame
// rewritten where they are (MACs, addresses, ports, sequence and
// acknowledgement numbers, window, timestamps, SACK blocks), the IPv4 header
// checksum recomputed (20-60 bytes) and the TCP checksum updated from the
// changed 16-bit words only (RFC 1624), so the payload is never read.
//
// The frame must be the one `p` was parsed from, with its checksums valid
// (the parser checked them, or the NIC did). Same address family in and out.
#pragma once

#include <cstdint>
#include <span>

#include "dataplane/front/packet.h"

namespace lode::front {

struct TcpRewrite {
  MacAddr src_mac{}, dst_mac{};
  FlowKey flow;  // the segment's new addresses and ports
  uint32_t seq = 0, ack = 0;
  uint16_t window = 0;
  bool timestamps = false;  // write ts_val / ts_ecr (the segment must carry the option)
  uint32_t ts_val = 0, ts_ecr = 0;
  uint32_t sack_shift = 0;  // added to every SACK block edge
  uint16_t vlan = 0;        // the 802.1Q VLAN the frame goes out on (0: untagged)
};

// False (nothing written) when the rewrite does not fit the frame: another
// address family, timestamps asked for on a segment without them, or a tag
// to add or take off (the frame would change length; a tagged frame gets the
// tag build_tcp writes: the VLAN id, priority 0).
[[nodiscard]] bool rewrite_tcp(std::span<uint8_t> frame, const Packet& p, const TcpRewrite& r) noexcept;

}  // namespace lode::front
