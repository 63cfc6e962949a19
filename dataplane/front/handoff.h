// The dpdk front's terminate action: a flow handed to a TLS worker's kernel
// TCP stack through the exception interface, so the worker's io_uring +
// OpenSSL (+ kTLS) code runs unchanged. Pure parts: where the flow goes
// (which worker, which port) and the PROXY v2 header put in front of the
// hello. The engine side is in flow_engine_splice.cc (it is the passthrough
// splice with the worker's listener as the backend).
//
// How (the choice, measured; bench/tcp_repair_handoff_bench.cc prototypes the other way):
//
//   (a) replay, what is built: the front opens a connection from its own
//   address on the exception link (HandoffConfig::address, a local port) to
//   the chosen worker's listener (kernel_address : port) exactly as it opens
//   a passthrough backend: a SYN with the client's MSS, window scale, SACK and
//   TSval, then the bytes it parsed, then translation both ways. The stream
//   the worker reads is a PROXY v2 header (client address, VIP, SNI as
//   AUTHORITY) and then the hello, so the worker logs and routes as it would
//   for a direct client. The header's length H is folded into the ISN of our
//   SYN (client ISN - H) instead of shifting every segment: the worker reads
//   the header at ISN+1..ISN+H and the hello from the client's ISN+1 on, so
//   the client's sequence numbers, and the worker's acknowledgements and
//   SACK blocks of them, are the same numbers on both legs. Only the worker's
//   sequence space (and TSval) moves, by delta, as for passthrough; the
//   in-place rewrite serves both.
//
//   (b) TCP_REPAIR, prototyped: a socket made established from a hand-off
//   message (ISNs, options, hello bytes queued) needs no translation, but the
//   socket carries the client's and the VIP's addresses, so the kernel must
//   own the VIP and route every client address back out through the
//   exception interface (policy routing per VIP), the worker must create the
//   socket itself from a message on a new control channel (its accept path
//   does not run: the code does not run unchanged), and the worker needs
//   CAP_NET_ADMIN. What it saves is small: bench/tcp_repair_handoff_bench
//   measured 15-16 us of CPU to build a repaired socket with the hello
//   queued and read it, against 29-30 us for a whole loopback connect +
//   accept + read + close (both ends: an upper bound for the replay's
//   kernel side, whose client half the dataplane does without the kernel),
//   next to the ~300 us of a full TLS handshake in the worker. So (a).
//
// Steering: each worker listens on its own port per listener
// (handoff_port()), and the front picks the worker by a stable hash of the
// SNI, so one name keeps landing on one worker and its session and
// certificate caches stay warm. Hellos without an SNI spread by the client
// address and port. A worker per exception queue (one tap per worker, the
// kernel routes by destination) fits the same scheme later.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/front/flow_key.h"
#include "dataplane/front/packet.h"

namespace lode::front {

struct HandoffConfig {
  bool enabled = false;
  MacAddr mac{};             // ours on the exception port
  uint32_t address = 0;      // ours on the link (IPv4, host order): hand-off flows come from here
  uint32_t kernel = 0;       // the kernel's address on the link: the workers listen there
  uint16_t first_port = 0;   // see handoff_port()
  uint16_t workers = 1;
};

// The port worker `worker` listens on for listener `listener` (the front and
// the workers compute the same). 0 when it would not fit below 65536.
[[nodiscard]] uint16_t handoff_port(uint16_t first_port, uint32_t listener, uint32_t worker,
                                    uint32_t workers) noexcept;

// The worker for a name: FNV-1a of the name (ASCII case folded; the parser
// already lowered it), modulo workers. Stable across processes and nodes.
[[nodiscard]] uint32_t steer_by_name(std::string_view sni, uint32_t workers) noexcept;

// The largest header write_handoff_header() writes: 16 fixed + 36 (IPv6
// addresses) + 3 + 255 (a DNS name in AUTHORITY).
inline constexpr size_t kHandoffHeaderMax = 16 + 36 + 3 + 255;

// The PROXY v2 header in front of the replayed hello: PROXY command, TCP
// over the client's family, source = the client, destination = the VIP,
// AUTHORITY = the SNI when there is one (names over 255 bytes are left out).
// Returns the length, 0 if `out` is too small.
[[nodiscard]] size_t write_handoff_header(std::span<uint8_t> out, const FlowKey& client_flow,
                                          std::string_view sni) noexcept;

}  // namespace lode::front
