// The dataplane's counters in shared memory, for the control plane (the
// admin API, `lodectl status`, Prometheus /metrics) to read.
//
// The dataplane creates one memfd (mode 0600) at start: a StatsHeader, then
// one cache-aligned block per worker holding the counters below as 64-bit
// atomics, each written only by its worker (relaxed stores, no shared writes
// on the hot path). It passes the memfd to every control plane that attaches
// (control channel message kStats); the control plane maps it read-only,
// checks the header once (magic, layout version, sizes against the file
// size) and sums the blocks whenever it is asked.
//
// The counter list is the contract: its order is the layout. New counters go
// at the end and bump kStatsLayoutVersion.
//
// Layout, version 21 (offsets from the header's fields; see SegmentLayout):
//
//   0                   StatsHeader (128 bytes; its last 8, at
//                       kReloadsAskedOffset, count the reloads asked of the
//                       dataplane by SIGHUP, written by its main thread)
//   128                 WorkerStats[workers]: the counters below, then hello
//                       errors by reason, alerts sent by code, and a ring of
//                       the last names refused (for the status page)
//   front_offset        FrontArea: the dpdk front's lcores' counters
//   names_offset        SeriesName[route_slots + backend_slots]: which route
//                       (listener, route) or backend (pool, backend id) each
//                       series slot counts, written by the dataplane's main
//                       thread when a configuration is applied
//   routes_offset       RouteSeries[workers + front_rows][route_slots]
//   backends_offset     BackendSeries[workers + front_rows][backend_slots]
//
// Series rows: one per worker, then (front = "dpdk") front_rows for the
// front's lcores, lcore l in row workers + l: the flows the dataplane
// routes itself (passthrough, reject; terminate flows are counted by the
// worker that takes them). Readers sum the workers' rows and the rows of
// the lcores started (FrontArea::lcores), never the untouched rest.
//
// Series slots: slot 0 of each kind is "(other)" (a configuration with more
// routes or backends than slots counts the rest there). A name keeps its slot
// across reloads; a name that leaves the configuration is marked retired (its
// open connections still count into it) and its slot is reused only when no
// never-used slot is left, the longest-retired first. Names are read under a
// per-entry sequence lock (odd while written) from 64-bit atomic words, so a
// reader in another process never sees a torn name.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lode::stats {

// X(name, kind, help): kind is counter (only grows) or gauge.
#define LODE_WORKER_COUNTERS(X)                                                                    \
  X(accepted, counter, "connections accepted")                                                    \
  X(refused_over_limit, counter, "connections refused: worker at its connection cap")             \
  X(accept_errors, counter, "accept errors (EMFILE, ENFILE, ...)")                                \
  X(active, gauge, "connections open now")                                                        \
  X(hello_done, counter, "ClientHellos parsed")                                                   \
  X(hello_errors, counter, "ClientHellos refused as malformed")                                   \
  X(hello_not_tls, counter, "connections that were not TLS (HTTP, SSLv2, other)")                 \
  X(hello_timeouts, counter, "connections cut at the hello timeout")                              \
  X(sni_ip_literal, counter, "hellos with an IP literal as SNI (treated as no SNI)")              \
  X(proxy_errors, counter, "malformed PROXY protocol headers")                                    \
  X(routed_terminate, counter, "connections routed to terminate")                                 \
  X(routed_passthrough, counter, "connections routed to passthrough")                             \
  X(routed_reject, counter, "connections rejected by a route")                                    \
  X(no_route, counter, "connections with no matching route and no default")                      \
  X(no_certificate, counter, "terminate routes with no certificate for the name")                 \
  X(cert_withheld, counter, "handshakes refused: the control plane withholds the certificate")    \
  X(cert_ctx_builds, counter, "certificate SSL_CTXs built from the snapshot")                     \
  X(cert_ctx_errors, counter, "certificate SSL_CTXs that failed to build")                        \
  X(staples_requested, counter, "handshakes whose client asked for an OCSP staple")               \
  X(staples_sent, counter, "handshakes that got an OCSP staple")                                  \
  X(handshakes, counter, "TLS handshakes completed (client side)")                                \
  X(handshakes_resumed, counter, "of which resumed")                                              \
  X(handshake_errors, counter, "TLS handshakes that failed")                                      \
  X(backend_connects, counter, "backend connections established")                                \
  X(backend_connect_errors, counter, "backend connect failures")                                  \
  X(backend_retries, counter, "connects retried on another backend")                              \
  X(backend_tls_errors, counter, "backend TLS handshakes or verifications that failed")           \
  X(idle_timeouts, counter, "connections closed by the idle timeout")                             \
  X(resets, counter, "connections aborted by an error or a reset")                                \
  X(ktls_unavailable, counter, "kTLS offers declined: the kernel has no tls ULP")                 \
  X(splice_relays, counter, "passthrough relays moved by splice (no copy to user space)")         \
  X(splice_fallbacks, counter, "passthrough relays copied in user space: no pipes")               \
  X(bytes_client_in, counter, "bytes received from clients")                                      \
  X(bytes_client_out, counter, "bytes sent to clients")                                           \
  X(bytes_backend_in, counter, "bytes received from backends")                                    \
  X(bytes_backend_out, counter, "bytes sent to backends")                                        \
  X(ktls_tx, counter, "client connections whose TLS records the kernel encrypts (kTLS TX)")       \
  X(ktls_rx, counter, "client connections whose TLS records the kernel decrypts (kTLS RX)")       \
  X(ktls_declined, counter, "kTLS hand-overs declined or refused (busy socket, setsockopt error)") \
  X(ktls_key_updates, counter, "kTLS connections ended by a TLS 1.3 KeyUpdate the kernel cannot follow") \
  X(ring_sq_full, counter, "io_uring submission queue full: submitted early to make room")          \
  X(ring_cq_overflows, counter, "io_uring submissions refused for a full completion ring (handled)") \
  X(refused_route_full, counter, "connections reset after the hello: their route at its max_connections") \
  X(accept_emfile, counter, "accepts failed for want of descriptors (EMFILE, ENFILE; also in accept_errors)") \
  X(refused_memory, counter, "connections refused at accept: the worker's buffers above memory_per_worker_mb") \
  X(refused_client_limit, counter, "connections refused: their client address at connections_per_client") \
  X(buffered_bytes, gauge, "bytes the worker's connection buffers hold (relay queues)")             \
  X(pipes_created, counter, "splice pipe pairs created (pipe2)")                                   \
  X(pipes_reused, counter, "splice pipe pairs taken from the worker's pool of drained ones")   \
  X(own_records, counter, "client connections whose records Lodestone seals and opens itself (OpenSSL's state freed)") \
  X(own_records_declined, counter, "handshakes left to OpenSSL's record layer (a suite or state it cannot take)") \
  X(own_records_key_updates, counter, "TLS 1.3 KeyUpdates followed by Lodestone's record layer")   \
  X(own_records_key_updates_sent, counter, "TLS 1.3 send keys changed by Lodestone after 2^24 records (RFC 8446 5.5)") \
  X(own_records_errors, counter, "connections ended by a bad record (an alert sent: bad_record_mac, ...)") \
  X(ring_waits, counter, "event-loop passes: io_uring_enter calls that submitted and waited")        \
  X(sends_quiet, counter, "sends made quiet: run within their submission, no completion waited for unless short") \
  X(sends_waited, counter, "quiet sends that found the socket short of room: the rest waited for it") \
  X(sockets_stocked, counter, "backend sockets taken from the worker's stock (made ahead through the ring, no socket() call)") \
  X(recvs_poll_first, counter, "recvs armed on a socket the last recv emptied: they wait for bytes instead of trying first") \
  X(submits_early, counter, "submissions made within a pass of completions that had run 50 us: the work queued so far goes out at once") \
  X(pipes_grown, counter, "splice pipes grown for bulk (F_SETPIPE_SZ): a splice had filled the default 64 KiB") \
  X(half_closed_timeouts, counter, "connections reset after [timeouts] half_closed_ms of quiet with one direction ended") \
  X(pipes_grow_refused, counter, "splice pipes left at their size for bulk: the worker's growth budget spent, or the kernel refused") \
  X(cert_config_mismatch, counter, "handshakes refused: a reload was half taken (routes of one configuration, certificates of another)")

// X(name, help): one dpdk-front lcore's counters (single writer; summed by
// the readers over the lcores).
#define LODE_FRONT_COUNTERS(X)                                                          \
  X(rx_frames, "frames received")                                                      \
  X(rx_bad, "frames dropped as malformed (truncated, bad checksum, bad options)")      \
  X(rx_not_vip, "frames dropped: not for a VIP, or a VIP's port nobody listens on")    \
  X(rx_fragments, "IP fragments to a VIP, dropped")                                    \
  X(arp_replies, "ARP requests for a VIP answered")                                    \
  X(nd_adverts, "neighbour solicitations for a VIP answered")                          \
  X(echo_replies, "pings to a VIP answered")                                           \
  X(syn_cookies, "SYNs answered with a SYN cookie")                                    \
  X(cookie_invalid, "ACKs with an invalid or expired cookie, dropped")                 \
  X(stray_segments, "segments of no known flow (not a cookie ACK), dropped")           \
  X(flows_created, "flows created from a valid cookie")                                \
  X(flows_table_full, "valid cookies dropped: the flow table was full")                \
  X(hello_done, "ClientHellos parsed")                                                 \
  X(hello_errors, "ClientHellos refused as malformed")                                 \
  X(hello_not_tls, "flows that were not TLS")                                          \
  X(hello_timeouts, "flows cut at the hello timeout")                                  \
  X(hello_too_large, "hellos larger than the listener's cap")                          \
  X(hello_out_of_order, "segments held beyond a gap")                                  \
  X(hello_gap_drops, "segments dropped: too many gaps")                                \
  X(client_aborts, "flows ended by the client (FIN or RST) before the hello")          \
  X(no_route, "hellos with no matching route")                                         \
  X(rejects, "flows rejected by a route or for no route (alert)")                      \
  X(rejects_reset, "flows rejected with a reset")                                      \
  X(action_unsupported, "terminate flows reset: no exception port configured")         \
  X(handoff_flows, "terminate flows handed to a worker through the exception port")    \
  X(handoff_failures, "hand-offs reset: the worker's listener refused or never answered") \
  X(exception_rx, "frames received from the exception port")                         \
  X(exception_stray, "exception-port frames of no flow (TCP ones answered with a RST)") \
  X(passthrough_flows, "flows passed through to a backend")                            \
  X(backend_no_pick, "passthrough flows reset: no backend to pick")                    \
  X(backend_connect_failures, "backend SYNs unanswered or refused")                    \
  X(backend_arp_requests, "ARP requests for backends")                                 \
  X(replay_retransmits, "hello replays sent again to a backend")                       \
  X(spliced_to_backend, "segments translated client -> backend")                       \
  X(spliced_to_client, "segments translated backend -> client")                        \
  X(idle_timeouts, "spliced flows reset at the idle timeout")                          \
  X(forwarded_in_place, "spliced segments rewritten in the received buffer (no copy)") \
  X(tx_frames, "frames sent")                                                          \
  X(tx_no_buffer, "frames not sent: no buffer")                                       \
  X(redirected_out, "frames handed to the lcore that holds their flow, or neighbour answers copied to the others") \
  X(redirected_in, "frames taken from other lcores (redirected to this one)")          \
  X(redirect_drops, "frames for another lcore dropped: its ring was full or no buffer") \
  X(icmp_too_big, "ICMP too-big errors for a spliced flow passed on to the sender (or the hello replay re-cut)") \
  X(icmp_too_big_no_flow, "ICMP too-big errors of no spliced flow (or a flow still at its hello), dropped") \
  X(icmp_too_big_bad_seq, "ICMP too-big errors quoting a sequence number outside the unacknowledged window, dropped") \
  X(icmp_too_big_bad, "ICMP too-big errors with a malformed quote or an implausible MTU, dropped") \
  X(icmp_rate_limited, "ICMP errors not sent (or not copied to the other lcores): the lcore's ICMP rate limit") \
  X(backend_nd_solicits, "neighbour solicitations for backends' IPv6 next hops")         \
  X(backend_no_route, "passthrough flows reset: backend off the link with no gateway, or no VIP of its family") \
  X(neighbor_ignored, "ARP replies / neighbour advertisements we did not ask for, ignored") \
  X(flows_ended, "flows ended, whatever the reason (flows_created - flows_ended: flows held now)") \
  X(rss_port_fallbacks, "backend / hand-off legs given a local port by the port rule: no port hashing to the lcore's RSS queue was free, or the NIC's hash disagreed with ours (rss_hash_disabled)") \
  X(rss_hash_checked, "received TCP segments whose NIC RSS hash was compared with our Toeplitz hash (the first 64 per lcore, then 1 in 1,024)") \
  X(rss_hash_mismatches, "of those, segments whose NIC RSS hash differed from ours") \
  X(icmp_too_big_shared, "ICMP too-big errors about a client leg this lcore does not hold, copied to every other lcore (no RSS hash to name the holder); counted again where one holds it") \
  X(rss_hash_disabled, "1 on the lcore whose mismatches turned local port choice by RSS hash off for every lcore (new legs: the port rule); summed: 0 or 1") \
  X(rst_out_of_window, "RSTs dropped: their sequence number is outside the receiver's window (a blind reset, RFC 5961)") \
  X(rst_in_window, "RSTs in the window but not at the sequence number expected: passed on to a spliced flow's receiver, which decides (RFC 5961), or answered with a challenge ACK while collecting; the flow kept") \
  X(segments_out_of_window, "segments beyond the receiver's window: of a spliced flow, passed on (its receiver drops them), the flow's sequence state not moved; while collecting the hello, dropped with a duplicate ACK") \
  X(replay_overlaps, "client segments with bytes inside the replayed hello before the backend acknowledged it: passed on from the replay's end (those bytes were routed already)") \
  X(refused_route_full, "passthrough flows reset after the hello: their route at its max_connections over the lcores")

// Handshake duration histogram bounds (microseconds), per route; the last
// bucket is +Inf. Counts are per bucket (not cumulative) in memory; the
// reader makes them cumulative for Prometheus.
inline constexpr std::array<uint64_t, 11> kHandshakeBucketsUs = {250,    500,    1000,    2500,    5000,   10000,
                                                                 25000,  50000,  100000,  250000,  1000000};
inline constexpr size_t kHandshakeBuckets = kHandshakeBucketsUs.size() + 1;
inline constexpr size_t handshake_bucket(uint64_t us) noexcept {
  size_t b = 0;
  while (b < kHandshakeBucketsUs.size() && us > kHandshakeBucketsUs[b]) ++b;
  return b;
}

// X(name, kind, help), per route and worker.
#define LODE_ROUTE_COUNTERS(X)                                                                   \
  X(connections, counter, "connections routed to the route")                                     \
  X(active, gauge, "connections of the route open now")                                          \
  X(handshakes_full, counter, "full TLS handshakes completed")                                    \
  X(handshakes_resumed, counter, "resumed TLS handshakes completed")                              \
  X(handshake_failures, counter, "TLS handshakes that failed")                                    \
  X(refused, counter, "connections refused: reject action, no certificate, withheld, no backend") \
  X(ktls, counter, "connections whose records the kernel encrypts (kTLS TX)")                     \
  X(bytes_in, counter, "bytes received from clients")                                            \
  X(bytes_out, counter, "bytes sent to clients")                                                 \
  X(handshake_us_sum, counter, "sum of handshake durations, microseconds")

// X(name, kind, help), per backend and worker.
#define LODE_BACKEND_COUNTERS(X)                                                  \
  X(picks, counter, "connections sent to the backend (connect attempts)")        \
  X(active, gauge, "connections to the backend open now")                        \
  X(connects, counter, "backend connections established")                       \
  X(connect_failures, counter, "backend connect attempts that failed")

struct alignas(64) RouteSeries {
#define LODE_DECLARE(name, kind, help) std::atomic<uint64_t> name{0};
  LODE_ROUTE_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
  std::array<std::atomic<uint64_t>, kHandshakeBuckets> handshake_buckets{};
};

struct alignas(32) BackendSeries {
#define LODE_DECLARE(name, kind, help) std::atomic<uint64_t> name{0};
  LODE_BACKEND_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
};

struct CounterInfo {
  std::string_view name;
  bool gauge;
  std::string_view help;
};
#define LODE_INFO(name, kind, help) CounterInfo{#name, std::string_view(#kind) == "gauge", help},
inline constexpr std::array kCounters = {LODE_WORKER_COUNTERS(LODE_INFO)};
inline constexpr std::array kRouteCounters = {LODE_ROUTE_COUNTERS(LODE_INFO)};
inline constexpr std::array kBackendCounters = {LODE_BACKEND_COUNTERS(LODE_INFO)};
#undef LODE_INFO
inline constexpr size_t kCounterCount = kCounters.size();
inline constexpr size_t kRouteCounterCount = kRouteCounters.size();
inline constexpr size_t kBackendCounterCount = kBackendCounters.size();

// Text in 64-bit atomic words (names, refused SNIs): written by one thread,
// read by another process under a sequence lock.
template <size_t Words>
struct PackedText {
  std::array<std::atomic<uint64_t>, Words> w{};
  static constexpr size_t kBytes = Words * 8;
  void store(std::string_view t) noexcept {
    for (size_t i = 0; i < Words; ++i) {
      uint64_t v = 0;
      for (size_t b = 0; b < 8 && i * 8 + b < t.size(); ++b) {
        v |= uint64_t{static_cast<unsigned char>(t[i * 8 + b])} << (8 * b);
      }
      w[i].store(v, std::memory_order_relaxed);
    }
  }
  void load(char* out) const noexcept {  // kBytes bytes
    for (size_t i = 0; i < Words; ++i) {
      const uint64_t v = w[i].load(std::memory_order_relaxed);
      for (size_t b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<char>((v >> (8 * b)) & 0xff);
    }
  }
};

// Writer side of a sequence lock over `seq`; the reader retries on an odd or
// changed value.
inline void seq_begin(std::atomic<uint64_t>& seq) noexcept {
  seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}
inline void seq_end(std::atomic<uint64_t>& seq) noexcept {
  seq.store(seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
template <typename Read>
inline bool seq_read(const std::atomic<uint64_t>& seq, Read read) noexcept {
  for (int attempt = 0; attempt < 64; ++attempt) {
    const uint64_t a = seq.load(std::memory_order_acquire);
    if (a & 1) continue;
    read();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq.load(std::memory_order_relaxed) == a) return true;
  }
  return false;
}

enum class SeriesKind : uint8_t { kFree = 0, kRoute = 1, kBackend = 2 };

// One series slot's name: (listener, route) or (pool, backend id).
struct SeriesName {
  std::atomic<uint64_t> seq{0};
  // kind | retired << 8 | len_a << 16 | len_b << 24 | retired_at << 32
  std::atomic<uint64_t> meta{0};
  PackedText<14> text;  // a then b, 112 bytes
};
static_assert(sizeof(SeriesName) == 128);
inline constexpr size_t kSeriesNameBytes = PackedText<14>::kBytes;

// The last names refused by one worker (no route, a reject route, a malformed
// host name, no certificate): a ring the status page shows. Attacker-chosen
// bytes: readers must escape them.
struct RefusedName {
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> unix_ms{0};
  std::atomic<uint64_t> meta{0};  // reason_len | sni_len << 8
  PackedText<13> text;            // reason then the name, 104 bytes
};
static_assert(sizeof(RefusedName) == 128);
inline constexpr size_t kRefusedRing = 8;
inline constexpr size_t kRefusedReasonMax = 24;
inline constexpr size_t kHelloErrorSlots = 64;  // >= the number of HelloError codes

// One worker's block.
struct alignas(64) WorkerStats {
#define LODE_DECLARE(name, kind, help) std::atomic<uint64_t> name{0};
  LODE_WORKER_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
  std::array<std::atomic<uint64_t>, kHelloErrorSlots> hello_errors_by_reason{};  // by HelloError code
  std::array<std::atomic<uint64_t>, 256> alerts_sent{};                          // fatal alerts, by code
  std::array<RefusedName, kRefusedRing> refused{};
  std::atomic<uint64_t> refused_next{0};  // ring position (written by the worker only)
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "counters are read from another process");
static_assert(sizeof(WorkerStats) >= kCounterCount * 8);

// The dpdk front's lcores (front = "dpdk"): one block each, written by its
// lcore after every burst; `lcores` is set once the front has started.
inline constexpr uint32_t kMaxFrontLcores = 128;
struct alignas(64) FrontLcoreStats {
#define LODE_DECLARE(name, help) std::atomic<uint64_t> name{0};
  LODE_FRONT_COUNTERS(LODE_DECLARE)
#undef LODE_DECLARE
};
struct FrontArea {
  alignas(64) std::atomic<uint64_t> lcores{0};
  std::array<FrontLcoreStats, kMaxFrontLcores> lcore{};
};
struct FrontCounterInfo {
  std::string_view name;
  std::string_view help;
};
#define LODE_FRONT_INFO(name, help) FrontCounterInfo{#name, help},
inline constexpr std::array kFrontCounters = {LODE_FRONT_COUNTERS(LODE_FRONT_INFO)};
#undef LODE_FRONT_INFO
inline constexpr size_t kFrontCounterCount = kFrontCounters.size();

inline constexpr std::array<char, 8> kStatsMagic = {'L', 'O', 'D', 'E', 'S', 'T', 'A', 'T'};
inline constexpr uint32_t kStatsLayoutVersion = 22;
inline constexpr uint32_t kMaxWorkers = 4096;
inline constexpr uint32_t kRouteSlots = 4096;
inline constexpr uint32_t kBackendSlots = 4096;
inline constexpr uint32_t kOtherSlot = 0;

struct StatsHeader {
  std::array<char, 8> magic;
  uint32_t layout_version;
  uint32_t header_size;   // offset of the first worker block (multiple of 64)
  uint32_t workers;
  uint32_t counters;      // kCounterCount of the writer
  uint32_t block_size;    // sizeof(WorkerStats) of the writer
  uint32_t route_slots;
  uint64_t started_unix_ms;
  uint64_t pid;
  uint32_t backend_slots;
  uint32_t series_sizes;  // sizeof(RouteSeries) | sizeof(BackendSeries) << 16
  // The series' own shape (padding can hide a new counter from the sizes).
  uint16_t route_counters;     // kRouteCounterCount
  uint16_t backend_counters;   // kBackendCounterCount
  uint16_t handshake_buckets;  // kHandshakeBuckets
  uint16_t front_counters;     // kFrontCounterCount
  uint32_t front_rows;         // series rows for the dpdk front's lcores (0: kernel front)
};
inline constexpr size_t kStatsHeaderSize = 128;
// A 64-bit atomic in the header's padding, after the fields: the reloads
// asked by SIGHUP so far. The dataplane's main thread stores it before it
// passes a SIGHUP on to the control plane, which reads it when it takes the
// signal and answers with it (control channel), so each SIGHUP's READY=1
// waits for that reload's own answer.
inline constexpr size_t kReloadsAskedOffset = kStatsHeaderSize - sizeof(uint64_t);
static_assert(sizeof(StatsHeader) <= kReloadsAskedOffset);
// Read from a read-only mapping in another process: only a lock-free atomic
// (a plain load) may do that.
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Where each part of a segment lives.
struct SegmentLayout {
  size_t front_offset = 0, names_offset = 0, routes_offset = 0, backends_offset = 0, size = 0;
  static constexpr SegmentLayout of(uint64_t workers, uint64_t route_slots, uint64_t backend_slots,
                                    uint64_t front_rows = 0) noexcept {
    SegmentLayout l;
    const uint64_t rows = workers + front_rows;
    l.front_offset = kStatsHeaderSize + workers * sizeof(WorkerStats);
    l.names_offset = l.front_offset + sizeof(FrontArea);
    l.routes_offset = l.names_offset + (route_slots + backend_slots) * sizeof(SeriesName);
    l.backends_offset = l.routes_offset + rows * route_slots * sizeof(RouteSeries);
    l.size = l.backends_offset + rows * backend_slots * sizeof(BackendSeries);
    return l;
  }
};
inline size_t stats_size(uint32_t workers, uint32_t front_rows = 0) noexcept {
  return SegmentLayout::of(workers, kRouteSlots, kBackendSlots, front_rows).size;
}
inline constexpr uint32_t series_sizes() noexcept {
  return static_cast<uint32_t>(sizeof(RouteSeries) | sizeof(BackendSeries) << 16);
}

// A series slot's name as read: kind, the two parts, whether retired.
struct SeriesLabel {
  SeriesKind kind = SeriesKind::kFree;
  bool retired = false;
  std::string a, b;  // listener and route, or pool and backend id
};

// A refused name as read.
struct Refused {
  uint64_t unix_ms = 0;
  std::string reason, name;
};

// A validated read-only view of a stats segment.
class StatsView {
 public:
  StatsView() = default;
  static bool open(std::span<const std::byte> bytes, StatsView& out) noexcept {
    StatsHeader h;
    if (bytes.size() < kStatsHeaderSize) return false;
    std::memcpy(&h, bytes.data(), sizeof h);
    if (h.magic != kStatsMagic || h.layout_version != kStatsLayoutVersion || h.header_size != kStatsHeaderSize ||
        h.counters != kCounterCount || h.block_size != sizeof(WorkerStats) || h.workers > kMaxWorkers ||
        h.route_slots == 0 || h.route_slots > (1u << 20) || h.backend_slots == 0 || h.backend_slots > (1u << 20) ||
        h.series_sizes != series_sizes() || h.route_counters != kRouteCounterCount ||
        h.backend_counters != kBackendCounterCount || h.handshake_buckets != kHandshakeBuckets ||
        h.front_counters != kFrontCounterCount || h.front_rows > kMaxFrontLcores ||
        SegmentLayout::of(h.workers, h.route_slots, h.backend_slots, h.front_rows).size > bytes.size()) {
      return false;
    }
    out.bytes_ = bytes;
    out.header_ = h;
    out.layout_ = SegmentLayout::of(h.workers, h.route_slots, h.backend_slots, h.front_rows);
    return true;
  }
  uint32_t workers() const noexcept { return header_.workers; }
  const StatsHeader& header() const noexcept { return header_; }
  uint64_t reloads_asked() const noexcept {
    return reinterpret_cast<const std::atomic<uint64_t>*>(bytes_.data() + kReloadsAskedOffset)
        ->load(std::memory_order_acquire);
  }
  const WorkerStats& worker(uint32_t w) const noexcept {
    return *reinterpret_cast<const WorkerStats*>(bytes_.data() + kStatsHeaderSize + size_t{w} * sizeof(WorkerStats));
  }
  // Counter `c` (index into kCounters) of worker `w`.
  uint64_t value(uint32_t w, size_t c) const noexcept {
    return reinterpret_cast<const std::atomic<uint64_t>*>(&worker(w))[c].load(std::memory_order_relaxed);
  }
  uint64_t total(size_t c) const noexcept {
    uint64_t t = 0;
    for (uint32_t w = 0; w < header_.workers; ++w) t += value(w, c);
    return t;
  }

  // The dpdk front's lcores (0 with the kernel front) and lcore l's counter c
  // (index into kFrontCounters).
  uint32_t front_lcores() const noexcept {
    const uint64_t n = front().lcores.load(std::memory_order_acquire);
    return static_cast<uint32_t>(n < kMaxFrontLcores ? n : kMaxFrontLcores);
  }
  uint64_t front_value(uint32_t l, size_t c) const noexcept {
    return reinterpret_cast<const std::atomic<uint64_t>*>(&front().lcore[l])[c].load(std::memory_order_relaxed);
  }

  uint32_t route_slots() const noexcept { return header_.route_slots; }
  uint32_t backend_slots() const noexcept { return header_.backend_slots; }
  // Route slot `s` (0..route_slots) or backend slot `s`: false when the slot
  // is free or could not be read consistently.
  bool route_label(uint32_t s, SeriesLabel& out) const { return label(s, SeriesKind::kRoute, out); }
  bool backend_label(uint32_t s, SeriesLabel& out) const {
    return label(header_.route_slots + s, SeriesKind::kBackend, out);
  }
  const RouteSeries& route(uint32_t w, uint32_t s) const noexcept {
    return reinterpret_cast<const RouteSeries*>(bytes_.data() + layout_.routes_offset)[size_t{w} * header_.route_slots + s];
  }
  const BackendSeries& backend(uint32_t w, uint32_t s) const noexcept {
    return reinterpret_cast<const BackendSeries*>(bytes_.data() +
                                                  layout_.backends_offset)[size_t{w} * header_.backend_slots + s];
  }
  // The series rows in use: the workers', then those of the front's
  // lcores started.
  uint32_t series_rows() const noexcept { return header_.workers + std::min(front_lcores(), header_.front_rows); }
  // Route counter `c` (index into kRouteCounters) of slot `s`, summed over
  // the rows (workers and front lcores).
  uint64_t route_total(uint32_t s, size_t c) const noexcept {
    uint64_t t = 0;
    const uint32_t rows = series_rows();
    for (uint32_t w = 0; w < rows; ++w) {
      t += reinterpret_cast<const std::atomic<uint64_t>*>(&route(w, s))[c].load(std::memory_order_relaxed);
    }
    return t;
  }
  uint64_t route_bucket_total(uint32_t s, size_t bucket) const noexcept {
    uint64_t t = 0;
    const uint32_t rows = series_rows();
    for (uint32_t w = 0; w < rows; ++w) t += route(w, s).handshake_buckets[bucket].load(std::memory_order_relaxed);
    return t;
  }
  uint64_t backend_total(uint32_t s, size_t c) const noexcept {
    uint64_t t = 0;
    const uint32_t rows = series_rows();
    for (uint32_t w = 0; w < rows; ++w) {
      t += reinterpret_cast<const std::atomic<uint64_t>*>(&backend(w, s))[c].load(std::memory_order_relaxed);
    }
    return t;
  }
  // The worker's refused-name ring, newest first.
  std::vector<Refused> refused(uint32_t w) const {
    std::vector<Refused> out;
    const WorkerStats& ws = worker(w);
    const uint64_t next = ws.refused_next.load(std::memory_order_acquire);
    for (uint64_t k = 0; k < kRefusedRing && k < next; ++k) {
      const RefusedName& e = ws.refused[(next - 1 - k) % kRefusedRing];
      Refused r;
      char buf[PackedText<13>::kBytes];
      uint64_t meta = 0;
      if (!seq_read(e.seq, [&] {
            meta = e.meta.load(std::memory_order_relaxed);
            r.unix_ms = e.unix_ms.load(std::memory_order_relaxed);
            e.text.load(buf);
          })) {
        continue;
      }
      const size_t rl = std::min<size_t>(meta & 0xff, sizeof buf);
      const size_t nl = std::min<size_t>((meta >> 8) & 0xff, sizeof buf - rl);
      r.reason.assign(buf, rl);
      r.name.assign(buf + rl, nl);
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  bool label(uint32_t entry, SeriesKind want, SeriesLabel& out) const {
    const auto* names = reinterpret_cast<const SeriesName*>(bytes_.data() + layout_.names_offset);
    const SeriesName& n = names[entry];
    char buf[kSeriesNameBytes];
    uint64_t meta = 0;
    if (!seq_read(n.seq, [&] {
          meta = n.meta.load(std::memory_order_relaxed);
          n.text.load(buf);
        })) {
      return false;
    }
    if (static_cast<SeriesKind>(meta & 0xff) != want) return false;
    const size_t la = std::min<size_t>((meta >> 16) & 0xff, sizeof buf);
    const size_t lb = std::min<size_t>((meta >> 24) & 0xff, sizeof buf - la);
    out.kind = want;
    out.retired = ((meta >> 8) & 0xff) != 0;
    out.a.assign(buf, la);
    out.b.assign(buf + la, lb);
    return true;
  }

  const FrontArea& front() const noexcept {
    return *reinterpret_cast<const FrontArea*>(bytes_.data() + layout_.front_offset);
  }

  std::span<const std::byte> bytes_;
  StatsHeader header_{};
  SegmentLayout layout_{};
};

}  // namespace lode::stats
