// Shared parts of the dpdk front's flow engine tests (tests/front/*): the
// addresses of the test link, a runtime built from a TOML configuration, the
// EngineConfig around it, and a FrameSink that records what it is given.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config.h"
#include "dataplane/front/flow_engine.h"
#include "dataplane/front/packet.h"
#include "dataplane/tls/ticket_keys.h"
#include "tools/lodestone/runtime_builder.h"

namespace lode::front::fixture {

inline constexpr MacAddr kOurMac = {0x02, 0, 0, 0, 0, 1};
inline constexpr MacAddr kClientMac = {0x02, 0, 0, 0, 0, 2};
inline constexpr MacAddr kBackendMac = {0x02, 0, 0, 0, 0, 9};
inline constexpr MacAddr kExcMac = {0x02, 0, 0, 0, 0, 0x31};     // ours on the exception port
inline constexpr MacAddr kKernelMac = {0x02, 0, 0, 0, 0, 0x32};  // the kernel's tap
inline const IpAddr kVip = IpAddr::v4(0x0a000001);               // 10.0.0.1
inline const IpAddr kClient = IpAddr::v4(0x0a000002);            // 10.0.0.2
inline constexpr uint32_t kExcAddr = 0xa9fe4d02;                 // 169.254.77.2
inline constexpr uint32_t kKernelAddr = 0xa9fe4d01;              // 169.254.77.1
inline constexpr uint64_t kT = 1'000'000;

inline uint32_t u32(size_t v) { return static_cast<uint32_t>(v); }
inline std::vector<uint8_t> as_vec(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

// A segment from src_mac to dst_mac on `flow` (no options, no VLAN).
inline TcpSegment segment(const MacAddr& src_mac, const MacAddr& dst_mac, const FlowKey& flow, uint8_t flags,
                          uint32_t seq, uint32_t ack, uint16_t window, std::span<const uint8_t> payload = {}) {
  TcpSegment s;
  s.src_mac = src_mac;
  s.dst_mac = dst_mac;
  s.flow = flow;
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = window;
  s.payload = payload;
  return s;
}

// The frame of segment `s` (built in `room` bytes); checks it was built.
inline std::vector<uint8_t> frame_of(const TcpSegment& s, size_t room = kMaxFrame) {
  std::vector<uint8_t> f(room);
  f.resize(build_tcp(f, s));
  EXPECT_GT(f.size(), 0u);
  return f;
}

// The runtime of `cfg`, with fresh ticket keys (generation 1); null, the
// test failed with the reason, when it does not build.
inline std::shared_ptr<worker::Runtime> runtime_of(const config::Config& cfg) {
  auto keys = tls::TicketKeys::create(1);
  EXPECT_TRUE(keys.has_value());
  if (!keys) return nullptr;
  auto built = app::build_runtime(cfg, *keys, 1);
  EXPECT_TRUE(built.has_value()) << built.error()[0];
  if (!built) return nullptr;
  return built->runtime;
}

// The runtime of the configuration `toml` (`name` for its errors); null,
// the test failed with the reason, when it does not load or build.
inline std::shared_ptr<worker::Runtime> runtime_from(const std::string& toml, const std::string& name) {
  auto cfg = config::load_config_string(toml, name);
  EXPECT_TRUE(cfg.has_value()) << (cfg ? std::string() : cfg.error()[0].to_string());
  if (!cfg) return nullptr;
  return runtime_of(*cfg);
}

// An engine's configuration for `runtime`: our MAC and its VIPs.
inline EngineConfig engine_config(const worker::Runtime& runtime) {
  EngineConfig ec;
  ec.mac = kOurMac;
  ec.vips = vips_of(runtime);
  return ec;
}

// Terminate flows handed to `workers` workers through the exception port
// (kExcMac / kExcAddr ours, kKernelAddr the kernel's, ports from 20443).
inline void enable_handoff(EngineConfig& ec, uint16_t workers) {
  ec.handoff.enabled = true;
  ec.handoff.mac = kExcMac;
  ec.handoff.address = kExcAddr;
  ec.handoff.kernel = kKernelAddr;
  ec.handoff.first_port = 20443;
  ec.handoff.workers = workers;
}

// Keeps every frame the engine sends. exhausted: no buffer to give;
// in_place: frames rewritten where they were received are taken too;
// exception: the exception port's sink, if any.
class RecordingSink : public FrameSink {
 public:
  std::span<uint8_t> buffer() noexcept override {
    if (exhausted) return {};
    scratch_.assign(kMaxFrame, 0);
    return scratch_;
  }
  void send(size_t len) noexcept override { frames.emplace_back(scratch_.begin(), scratch_.begin() + len); }
  bool send_in_place(std::span<uint8_t> frame) noexcept override {
    if (!in_place) return false;
    frames.emplace_back(frame.begin(), frame.end());
    ++in_place_sent;
    return true;
  }
  FrameSink* exception_sink() noexcept override { return exception; }

  std::vector<std::vector<uint8_t>> frames;
  bool exhausted = false;
  bool in_place = false;
  size_t in_place_sent = 0;
  FrameSink* exception = nullptr;

 private:
  std::vector<uint8_t> scratch_;
};

}  // namespace lode::front::fixture
