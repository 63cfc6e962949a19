// FlowEngine::prefetch_flow and prefetch_flow_links (flow_engine_forward.cc),
// the burst loop's prefetches: they must change nothing. Two engines with
// the same configuration get the same frames in the same bursts, one with
// the prefetch calls of the dpdk front's lcore loop before each frame (for
// frame i + K while handling frame i), one without; what comes out must be
// the same bytes, in the same order, with the same counters. And the calls
// on frames of every other shape (garbage, short, not TCP, IPv6, IPv4
// options, fragments, VLAN-tagged) read nothing past the frame (ASan) and
// change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "dataplane/front/flow_engine.h"
#include "support/flow_engine_fixture.h"
#include "support/hello_builder.h"

namespace lode::front {
namespace {

using namespace fixture;
using Frame = std::vector<uint8_t>;

const IpAddr kBackend1 = IpAddr::v4(0x0a000009);  // 10.0.0.9
const IpAddr kBackend2 = IpAddr::v4(0x0a00000a);  // 10.0.0.10

std::shared_ptr<worker::Runtime> two_backend_runtime() {
  return runtime_from(
      "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\", \"[fd00::1]:443\"]\n"
      "[[pool]]\nname = \"p\"\nbackends = [\"10.0.0.9:443\", \"10.0.0.10:443\"]\n"
      "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n"
      "[[route]]\nname = \"p\"\nnames = [\"p.test\"]\naction = \"passthrough\"\npool = \"p\"\n",
      "prefetch.toml");
}

std::unique_ptr<FlowEngine> make_engine(const std::shared_ptr<worker::Runtime>& rt,
                                        uint32_t max_flows) {
  EngineConfig ec = engine_config(*rt);
  ec.max_flows = max_flows;
  ec.cookie_key = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
  return std::make_unique<FlowEngine>(ec, rt);
}

void expect_same_counters(const FrontStats& a, const FrontStats& b) {
#define LODE_PREFETCH_TEST_EQ(name, help) EXPECT_EQ(a.name, b.name) << #name;
  LODE_FRONT_COUNTERS(LODE_PREFETCH_TEST_EQ)
#undef LODE_PREFETCH_TEST_EQ
}

// Two engines fed the same bursts: `prefetching` with the lcore loop's
// prefetch calls, `plain` without.
class EnginePair {
 public:
  // distance: prefetch_flow for frame i + distance (the first `distance`
  // before the loop), prefetch_flow_links for frame i + links_distance.
  EnginePair(uint32_t max_flows, uint16_t distance, uint16_t links_distance)
      : rt_(two_backend_runtime()), distance_(distance), links_(links_distance) {
    prefetching_ = make_engine(rt_, max_flows);
    plain_ = make_engine(rt_, max_flows);
    a_.in_place = b_.in_place = true;
  }

  // One burst at `now`; returns what came out (checked to be the same from
  // both engines), parsed, and keeps the frames.
  std::vector<Packet> burst(const std::vector<Frame>& frames, uint64_t now) {
    std::vector<Frame> fa = frames, fb = frames;  // each engine rewrites its own copy
    a_.frames.clear();
    b_.frames.clear();
    const size_t n = fa.size();
    for (size_t i = 0; i < distance_ && i < n; ++i) prefetching_->prefetch_flow(fa[i]);
    for (size_t i = 0; i < links_ && i < n; ++i) prefetching_->prefetch_flow_links(fa[i]);
    for (size_t i = 0; i < n; ++i) {
      if (i + distance_ < n) prefetching_->prefetch_flow(fa[i + distance_]);
      if (links_ > 0 && i + links_ < n) prefetching_->prefetch_flow_links(fa[i + links_]);
      prefetching_->on_frame_in_place(fa[i], now, a_);
      plain_->on_frame_in_place(fb[i], now, b_);
    }
    // The timers, as the lcore runs them between bursts.
    prefetching_->on_tick(now, a_);
    plain_->on_tick(now, b_);
    EXPECT_EQ(a_.frames, b_.frames) << "the prefetching engine sent other frames";
    expect_same_counters(prefetching_->stats(), plain_->stats());
    EXPECT_EQ(prefetching_->flows(), plain_->flows());
    std::vector<Packet> out;
    for (const Frame& f : a_.frames) {
      kept_.push_back(f);
      out.push_back(parse_frame(kept_.back()));
    }
    return out;
  }
  const FlowEngine& engine() const { return *prefetching_; }
  FlowEngine& prefetching() { return *prefetching_; }

 private:
  std::shared_ptr<worker::Runtime> rt_;
  std::unique_ptr<FlowEngine> prefetching_, plain_;
  RecordingSink a_, b_;
  uint16_t distance_, links_;
  std::vector<Frame> kept_;
};

// One client's flow through its life, as the test drives it.
struct Client {
  FlowKey key;           // as the client sends
  uint32_t isn = 0;      // the client's
  uint32_t our_isn = 0;  // the cookie's
  uint32_t nxt = 0;      // the client's next sequence number
  FlowKey bkey;          // as the backend sends (backend -> VIP:local port)
  uint32_t bnxt = 0;     // the backend's next sequence number
  bool spliced = false, closed = false;
};

Frame client_frame(const Client& c, uint8_t flags, uint32_t seq, uint32_t ack,
                   std::span<const uint8_t> data = {}) {
  return frame_of(segment(kClientMac, kOurMac, c.key, flags, seq, ack, 64240, data));
}
Frame backend_frame(const Client& c, uint8_t flags, uint32_t seq, uint32_t ack,
                    std::span<const uint8_t> data = {}) {
  return frame_of(segment(kBackendMac, kOurMac, c.bkey, flags, seq, ack, 1000, data));
}

// Frames that are no flow's and of shapes the fast path does not take;
// mixed into the bursts.
std::vector<Frame> odd_frames(std::mt19937& rng) {
  std::vector<Frame> out;
  Frame junk(static_cast<size_t>(rng() % 80));
  for (auto& b : junk) b = static_cast<uint8_t>(rng());
  out.push_back(junk);
  // A SYN-less ACK to the VIP from an unknown client (a forged cookie ACK).
  out.push_back(
      frame_of(segment(kClientMac, kOurMac, FlowKey{IpAddr::v4(0x0a0000fe), kVip, 5555, 443},
                       kTcpAck, 1, static_cast<uint32_t>(rng()), 100)));
  return out;
}

// Many flows opened, spliced, used both ways in a random order and closed,
// in bursts of 32, with the prefetch at several distances: the prefetching
// engine's output and counters are the plain one's after every burst.
void run_many_flows(uint16_t distance, uint16_t links_distance) {
  SCOPED_TRACE("distance " + std::to_string(distance) + ", links " +
               std::to_string(links_distance));
  // 200 flows in 256 slots: the index (512 entries) has probe runs.
  constexpr size_t kFlows = 200;
  EnginePair pair(256, distance, links_distance);
  std::mt19937 rng(1234 + distance * 7 + links_distance);
  uint64_t now = kT;
  std::vector<Client> clients(kFlows);
  for (size_t j = 0; j < kFlows; ++j) {
    Client& c = clients[j];
    c.key = FlowKey{IpAddr::v4(0x0a010000u + static_cast<uint32_t>(j / 50)), kVip,
                    static_cast<uint16_t>(30000 + j), 443};
    c.isn = 1'000'000u * static_cast<uint32_t>(j + 1);
  }
  auto bursts_of = [&](std::vector<Frame> frames) {
    std::vector<Packet> out;
    for (size_t at = 0; at < frames.size(); at += 32) {
      std::vector<Frame> b(frames.begin() + static_cast<long>(at),
                           frames.begin() + static_cast<long>(std::min(frames.size(), at + 32)));
      if (rng() % 2) {
        for (Frame& f : odd_frames(rng))
          b.insert(b.begin() + static_cast<long>(rng() % (b.size() + 1)), f);
      }
      for (Packet& p : pair.burst(b, now)) out.push_back(p);
      ++now;
    }
    return out;
  };

  // SYNs: cookie SYN-ACKs.
  std::vector<Frame> syns;
  for (const Client& c : clients) syns.push_back(client_frame(c, kTcpSyn, c.isn, 0));
  for (const Packet& p : bursts_of(syns)) {
    ASSERT_EQ(p.flags, kTcpSyn | kTcpAck);
    clients[p.dport - 30000].our_isn = p.seq;
  }
  // The cookie ACK and the hello of each flow, in the same burst.
  static const test::Bytes hello = test::HelloBuilder().sni("p.test").records();
  std::vector<Frame> hellos;
  for (Client& c : clients) {
    hellos.push_back(client_frame(c, kTcpAck, c.isn + 1, c.our_isn + 1));
    hellos.push_back(client_frame(c, kTcpAck | kTcpPsh, c.isn + 1, c.our_isn + 1, hello));
    c.nxt = c.isn + 1 + static_cast<uint32_t>(hello.size());
  }
  std::vector<Packet> out = bursts_of(hellos);
  // The backends' ARP replies, when asked: our SYNs to the backends follow.
  std::vector<Frame> arps;
  for (const Packet& p : out) {
    if (p.l3 != L3::kArp) continue;
    Frame reply(64);
    reply.resize(build_arp_reply(reply, p, kBackendMac, p.arp.target_ip));
    ASSERT_GT(reply.size(), 0u);
    arps.push_back(reply);
  }
  ASSERT_EQ(arps.size(), 2u) << "one ARP request per backend";
  for (const Packet& p : bursts_of(arps)) out.push_back(p);
  std::vector<Frame> synacks;
  for (const Packet& p : out) {
    if (p.l3 != L3::kIpv4 || p.flags != kTcpSyn) continue;
    ASSERT_TRUE(p.dst == kBackend1 || p.dst == kBackend2);
    const size_t j = (p.seq - 1'000'000u) / 1'000'000u;  // our SYN carries the client's ISN
    ASSERT_LT(j, kFlows);
    Client& c = clients[j];
    c.bkey = FlowKey{p.dst, kVip, 443, p.sport};
    c.bnxt = 5000u * static_cast<uint32_t>(j + 1);
    synacks.push_back(backend_frame(c, kTcpSyn | kTcpAck, c.bnxt, c.isn + 1));
    ++c.bnxt;
  }
  ASSERT_EQ(synacks.size(), kFlows);
  bursts_of(synacks);  // the hellos replayed to the backends
  // The backends acknowledge the replay (and answer): spliced.
  std::vector<Frame> acks;
  const std::vector<uint8_t> answer(300, 0x42);
  for (Client& c : clients) {
    if (c.bkey.sport == 0) continue;
    acks.push_back(backend_frame(c, kTcpAck, c.bnxt, c.nxt, answer));
    c.bnxt += static_cast<uint32_t>(answer.size());
    c.spliced = true;
  }
  bursts_of(acks);
  ASSERT_EQ(pair.engine().flows(), kFlows);

  // Data both ways, flows in a random order, some closing (FIN both ways,
  // or a RST) while the others go on, then frames for the closed ones.
  const std::vector<uint8_t> data(700, 0x17);
  std::vector<Frame> traffic;
  for (int round = 0; round < 40; ++round) {
    const size_t j = rng() % kFlows;
    for (int k = 0; k < 20; ++k) {
      Client& c = clients[(j + static_cast<size_t>(k) * 37) % kFlows];
      if (c.closed) {
        traffic.push_back(client_frame(c, kTcpAck, c.nxt, c.our_isn + 1, data));
        continue;
      }
      const unsigned what = rng() % 100;
      if (what < 45) {
        traffic.push_back(client_frame(c, kTcpAck | kTcpPsh, c.nxt, c.our_isn + 1 + 300, data));
        c.nxt += static_cast<uint32_t>(data.size());
      } else if (what < 90) {
        traffic.push_back(backend_frame(c, kTcpAck, c.bnxt, c.nxt, data));
        c.bnxt += static_cast<uint32_t>(data.size());
      } else if (what < 93) {
        TcpSegment s = segment(kClientMac, kOurMac, c.key, kTcpAck, c.nxt, c.our_isn + 1, 64240);
        s.options.sack_count = 1;  // not the fast path's shape
        s.options.sack[0] = SackBlock{c.our_isn + 10, c.our_isn + 20};
        traffic.push_back(frame_of(s));
      } else if (what < 96) {
        traffic.push_back(client_frame(c, kTcpFin | kTcpAck, c.nxt, c.our_isn + 1));
        traffic.push_back(backend_frame(c, kTcpFin | kTcpAck, c.bnxt, c.nxt + 1));
        c.closed = true;
      } else {
        traffic.push_back(client_frame(c, kTcpRst, c.nxt, 0));
        c.closed = true;
      }
    }
  }
  bursts_of(traffic);
  EXPECT_GT(pair.engine().stats().forwarded_in_place, 500u) << "the fast path was taken";
  EXPECT_GT(pair.engine().stats().spliced_to_client, 200u);
  // Timeouts: the closed flows leave, both engines alike.
  now += 5000;
  pair.burst({}, now);
}

TEST(FlowEnginePrefetchTest, ManyFlowsSameOutputWithAndWithoutPrefetch) {
  for (const uint16_t distance : {1, 4, 8, 31}) {
    for (const uint16_t links : {0, 2}) run_many_flows(distance, links);
  }
}

// Every prefix of frames of every shape, and random bytes: the prefetch
// calls read inside the frame only (ASan: each is its own exact-size heap
// block) and change nothing; a spliced flow's next segment still goes out
// as it does from an engine that never saw them.
TEST(FlowEnginePrefetchTest, OddFramesArePrefetchedHarmlessly) {
  EnginePair pair(64, 4, 2);
  // One flow, spliced (the calls then find a flow for some frames).
  std::vector<Packet> out =
      pair.burst({frame_of(segment(kClientMac, kOurMac, FlowKey{kClient, kVip, 40000, 443}, kTcpSyn,
                                   100, 0, 64240))},
                 kT);
  ASSERT_EQ(out.size(), 1u);
  const uint32_t our_isn = out[0].seq;
  Client c;
  c.key = FlowKey{kClient, kVip, 40000, 443};
  static const test::Bytes hello = test::HelloBuilder().sni("p.test").records();
  out = pair.burst({client_frame(c, kTcpAck, 101, our_isn + 1),
                    client_frame(c, kTcpAck | kTcpPsh, 101, our_isn + 1, hello)},
                   kT);
  const auto arp =
      std::find_if(out.begin(), out.end(), [](const Packet& p) { return p.l3 == L3::kArp; });
  ASSERT_NE(arp, out.end());
  Frame reply(64);
  reply.resize(build_arp_reply(reply, *arp, kBackendMac, arp->arp.target_ip));
  out = pair.burst({reply}, kT);
  ASSERT_EQ(out.size(), 1u);
  c.bkey = FlowKey{out[0].dst, kVip, 443, out[0].sport};
  const uint32_t after_hello = 101 + static_cast<uint32_t>(hello.size());
  pair.burst({backend_frame(c, kTcpSyn | kTcpAck, 5000, 101)}, kT);
  pair.burst({backend_frame(c, kTcpAck, 5001, after_hello)}, kT);
  const uint64_t forwarded = pair.engine().stats().forwarded_in_place;

  // Frames of the flow in other shapes, whole and cut short.
  std::vector<Frame> shapes;
  const std::vector<uint8_t> data(100, 0x33);
  shapes.push_back(
      client_frame(c, kTcpAck, after_hello, our_isn + 1, data));  // the fast path's own
  TcpSegment tagged =
      segment(kClientMac, kOurMac, c.key, kTcpAck, after_hello, our_isn + 1, 64240, data);
  tagged.vlan = 7;
  shapes.push_back(frame_of(tagged));
  TcpSegment v6 = segment(
      kClientMac, kOurMac,
      FlowKey{
          IpAddr::v6(std::array<uint8_t, 16>{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}),
          IpAddr::v6(std::array<uint8_t, 16>{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
          40000, 443},
      kTcpAck, 1, 1, 64240, data);
  shapes.push_back(frame_of(v6));
  {
    Frame udp = shapes[0];
    udp[14 + 9] = 17;  // UDP
    shapes.push_back(udp);
    Frame icmp = shapes[0];
    icmp[14 + 9] = 1;
    shapes.push_back(icmp);
    Frame options = shapes[0];
    options[14] = 0x46;  // IHL 6: an IPv4 option
    shapes.push_back(options);
    Frame more_fragments = shapes[0];
    more_fragments[14 + 6] = 0x20;  // MF
    shapes.push_back(more_fragments);
    Frame offset = shapes[0];
    offset[14 + 7] = 0x10;  // fragment offset 16
    shapes.push_back(offset);
    Frame arp_type = shapes[0];
    arp_type[12] = 0x08;
    arp_type[13] = 0x06;
    shapes.push_back(arp_type);
    Frame v4_in_v6_type = shapes[0];
    v4_in_v6_type[12] = 0x86;
    v4_in_v6_type[13] = 0xdd;
    shapes.push_back(v4_in_v6_type);
    Frame bad_version = shapes[0];
    bad_version[14] = 0x65;
    shapes.push_back(bad_version);
  }
  std::vector<Frame> odd;
  for (const Frame& f : shapes) {
    for (size_t len = 0; len <= f.size(); len += (len < 80 ? 1 : 97))
      odd.emplace_back(f.begin(), f.begin() + static_cast<long>(len));
  }
  std::mt19937 rng(99);
  for (int i = 0; i < 2000; ++i) {
    Frame junk(static_cast<size_t>(rng() % 120));
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    // Half of them look like IPv4 TCP up to where the prefetch stops looking.
    if (i % 2 == 0 && junk.size() >= 24) {
      junk[12] = 0x08;
      junk[13] = 0x00;
      junk[14] = 0x45;
      junk[14 + 9] = 6;
      junk[14 + 6] = junk[14 + 7] = 0;
    }
    odd.push_back(junk);
  }
  // Each one alone in its own heap block, exactly its size: both calls,
  // many times; then nothing changed.
  FlowEngine& engine = pair.prefetching();
  const FrontStats before = engine.stats();
  const size_t flows = engine.flows();
  for (const Frame& f : odd) {
    const auto block = std::make_unique<uint8_t[]>(f.size() + (f.empty() ? 1 : 0));
    std::copy(f.begin(), f.end(), block.get());
    const std::span<const uint8_t> view(block.get(), f.size());
    engine.prefetch_flow(view);
    engine.prefetch_flow_links(view);
  }
  expect_same_counters(engine.stats(), before);
  EXPECT_EQ(engine.flows(), flows);
  // All of them through both engines in bursts (the prefetching one
  // prefetches them as the lcore would): the same output, the same counters.
  for (size_t at = 0; at < odd.size(); at += 32) {
    pair.burst(std::vector<Frame>(odd.begin() + static_cast<long>(at),
                                  odd.begin() + static_cast<long>(std::min(odd.size(), at + 32))),
               kT + 1);
  }
  // And the flow still forwards on the fast path.
  out = pair.burst({client_frame(c, kTcpAck, after_hello + 100, our_isn + 1, data)}, kT + 2);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dst, c.bkey.src);
  EXPECT_GT(pair.engine().stats().forwarded_in_place, forwarded);
}

}  // namespace
}  // namespace lode::front
