#include "tools/lodectl/pcap_flows.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <set>
#include <tuple>
#include <utility>

namespace lode::tools {
namespace {

constexpr uint32_t kLinkNull = 0;       // BSD loopback: 4-byte family
constexpr uint32_t kLinkEthernet = 1;
constexpr uint32_t kLinkRaw = 101;
constexpr uint32_t kLinkRawAlt = 12;
constexpr uint32_t kLinkLinuxSll = 113;
constexpr uint32_t kLinkLinuxSll2 = 276;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
uint32_t rd32(const uint8_t* p, bool swap) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swap ? __builtin_bswap32(v) : v;
}

struct Key {
  std::array<uint8_t, 16> a{}, b{};
  uint16_t pa = 0, pb = 0;
  uint8_t family = 0;
  bool operator<(const Key& o) const { return std::tie(family, a, pa, b, pb) < std::tie(o.family, o.a, o.pa, o.b, o.pb); }
};

SocketAddress make_addr(int family, const uint8_t* ip, uint16_t port) {
  SocketAddress s;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&s.storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, ip, 4);
    in->sin_port = htons(port);
    s.len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s.storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, ip, 16);
    in6->sin6_port = htons(port);
    s.len = sizeof(sockaddr_in6);
  }
  return s;
}

struct FlowState {
  size_t index;            // into the output vector
  bool client_is_a;        // which endpoint of the key is the client
  bool have_base = false;
  uint32_t base = 0;       // sequence number of stream offset 0
  std::vector<uint8_t> data;
  std::vector<bool> filled;
};

class Reassembler {
 public:
  explicit Reassembler(PcapOptions opt) : opt_(opt) {}

  // One TCP segment; ips are 4 or 16 bytes.
  void segment(int family, const uint8_t* src, const uint8_t* dst, const uint8_t* tcp, size_t tcp_len) {
    if (tcp_len < 20) return;
    const size_t hlen = static_cast<size_t>(tcp[12] >> 4) * 4;
    if (hlen < 20 || hlen > tcp_len) return;
    const uint16_t sport = be16(tcp), dport = be16(tcp + 2);
    const uint32_t seq = be32(tcp + 4);
    const uint8_t flags = tcp[13];
    const bool syn = flags & 0x02, ack = flags & 0x10;
    const size_t alen = family == AF_INET ? 4 : 16;

    Key k;
    k.family = static_cast<uint8_t>(family);
    const bool src_first = std::memcmp(src, dst, alen) < 0 || (std::memcmp(src, dst, alen) == 0 && sport <= dport);
    std::memcpy(k.a.data(), src_first ? src : dst, alen);
    std::memcpy(k.b.data(), src_first ? dst : src, alen);
    k.pa = src_first ? sport : dport;
    k.pb = src_first ? dport : sport;

    auto it = flows_.find(k);
    const size_t payload = tcp_len - hlen;
    if (it == flows_.end()) {
      // A flow starts with the client's SYN, or (capture started late) with
      // the first segment that carries data; a SYN-ACK alone starts nothing.
      if ((syn && ack) || (!syn && payload == 0)) return;
      if (out_.size() >= opt_.max_flows) {
        // Counted once per flow: its key is remembered (without state) so
        // its later segments are not counted again.
        if (ignored_.size() < opt_.max_flows) ignored_.insert(k);
        return;
      }
      FlowState st;
      st.index = out_.size();
      st.client_is_a = src_first;
      PcapFlow f;
      f.client = make_addr(family, src, sport);
      f.server = make_addr(family, dst, dport);
      f.saw_syn = syn;
      out_.push_back(std::move(f));
      it = flows_.emplace(k, std::move(st)).first;
    }
    FlowState& st = it->second;
    if (st.client_is_a != src_first) return;  // server to client
    if (syn) {
      st.have_base = true;
      st.base = seq + 1;
      return;
    }
    if (payload == 0) return;
    if (!st.have_base) {
      st.have_base = true;
      st.base = seq;
    }
    PcapFlow& f = out_[st.index];
    const uint32_t rel = seq - st.base;  // modulo 2^32
    if (rel >= opt_.max_bytes_per_flow) return;
    const size_t end = std::min<size_t>(rel + payload, opt_.max_bytes_per_flow);
    if (st.data.size() < end) {
      // What lies between the data so far and this segment's start is a
      // hole: memory the capture did not bring (the bytes themselves are in
      // the file). Holes are what is bounded over all flows.
      const size_t hole = rel > st.data.size() ? rel - st.data.size() : 0;
      if (hole > opt_.max_total_bytes - holes_) {
        f.truncated = true;
        return;
      }
      holes_ += hole;
      st.data.resize(end);
      st.filled.resize(end, false);
    }
    for (size_t i = rel; i < end; ++i) {
      if (st.filled[i]) continue;  // first bytes win
      st.data[i] = tcp[hlen + (i - rel)];
      st.filled[i] = true;
    }
    ++f.segments;
    f.segment_ends.push_back(end);
  }

  std::vector<PcapFlow> finish() {
    for (auto& [k, st] : flows_) {
      PcapFlow& f = out_[st.index];
      size_t n = 0;
      while (n < st.filled.size() && st.filled[n]) ++n;
      f.gap = n < st.filled.size();
      st.data.resize(n);
      f.bytes = std::move(st.data);  // moved, not copied: no second copy of every flow at the end
      st.filled = {};
      std::sort(f.segment_ends.begin(), f.segment_ends.end());
      f.segment_ends.erase(std::unique(f.segment_ends.begin(), f.segment_ends.end()), f.segment_ends.end());
      while (!f.segment_ends.empty() && f.segment_ends.back() > n) f.segment_ends.pop_back();
    }
    return std::move(out_);
  }

  uint64_t flows_ignored() const noexcept { return ignored_.size(); }

 private:
  PcapOptions opt_;
  size_t holes_ = 0;  // hole bytes made room for over all flows (<= max_total_bytes)
  std::set<Key> ignored_;  // the flows left out (bounded like the flows themselves)
  std::map<Key, FlowState> flows_;
  std::vector<PcapFlow> out_;
};

// IPv4 or IPv6 packet at `p`; other protocols and fragments are skipped.
void ip_packet(Reassembler& r, const uint8_t* p, size_t len) {
  if (len < 1) return;
  const int version = p[0] >> 4;
  if (version == 4) {
    if (len < 20) return;
    const size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
    const size_t total = be16(p + 2);
    if (ihl < 20 || total < ihl || total > len) return;
    if (p[9] != 6) return;                          // TCP only
    if ((be16(p + 6) & 0x3fff) != 0) return;        // fragment
    r.segment(AF_INET, p + 12, p + 16, p + ihl, total - ihl);
  } else if (version == 6) {
    if (len < 40) return;
    const size_t plen = be16(p + 4);
    if (40 + plen > len) return;
    if (p[6] != 6) return;  // TCP directly after the fixed header only
    r.segment(AF_INET6, p + 8, p + 24, p + 40, plen);
  }
}

void link_frame(Reassembler& r, uint32_t link, const uint8_t* p, size_t len) {
  switch (link) {
    case kLinkEthernet: {
      if (len < 14) return;
      size_t off = 12;
      uint16_t type = be16(p + off);
      while ((type == 0x8100 || type == 0x88a8) && off + 6 <= len) {  // VLAN tags
        off += 4;
        type = be16(p + off);
      }
      off += 2;
      if (off > len || (type != 0x0800 && type != 0x86dd)) return;
      ip_packet(r, p + off, len - off);
      return;
    }
    case kLinkLinuxSll:
      if (len >= 16) ip_packet(r, p + 16, len - 16);
      return;
    case kLinkLinuxSll2:
      if (len >= 20) ip_packet(r, p + 20, len - 20);
      return;
    case kLinkNull:
      if (len >= 4) ip_packet(r, p + 4, len - 4);
      return;
    case kLinkRaw:
    case kLinkRawAlt:
      ip_packet(r, p, len);
      return;
    default:
      return;
  }
}

}  // namespace

Result<std::vector<PcapFlow>, std::string> read_pcap_flows(std::span<const uint8_t> file, PcapOptions opt,
                                                          PcapSummary* summary) {
  if (file.size() >= 4 && be32(file.data()) == 0x0a0d0d0a) {
    return unexpected(std::string("pcapng is not supported: convert with `editcap -F pcap IN OUT` or capture "
                                  "with `tshark -F pcap`"));
  }
  if (file.size() < 24) return unexpected(std::string("not a pcap file: shorter than the 24-byte header"));
  const uint32_t magic = rd32(file.data(), false);
  bool swap;
  if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
    swap = false;
  } else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
    swap = true;
  } else {
    return unexpected(std::string("not a pcap file: bad magic"));
  }
  const uint32_t link = rd32(file.data() + 20, swap) & 0x0fffffff;
  if (link != kLinkEthernet && link != kLinkLinuxSll && link != kLinkLinuxSll2 && link != kLinkNull &&
      link != kLinkRaw && link != kLinkRawAlt) {
    return unexpected("unsupported link type " + std::to_string(link));
  }
  Reassembler r(opt);
  size_t off = 24;
  while (off < file.size()) {
    if (file.size() - off < 16) return unexpected("truncated record header at byte " + std::to_string(off));
    const uint32_t incl = rd32(file.data() + off + 8, swap);
    if (incl > file.size() - off - 16) return unexpected("record at byte " + std::to_string(off) + " runs past the end");
    link_frame(r, link, file.data() + off + 16, incl);
    off += 16 + incl;
  }
  if (summary != nullptr) summary->flows_ignored = r.flows_ignored();
  return r.finish();
}

}  // namespace lode::tools
