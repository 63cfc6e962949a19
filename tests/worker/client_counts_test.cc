// ClientCounts: [limits] connections_per_client's table.
#include "dataplane/worker/client_counts.h"

#include "lodestone/socket_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace lode::worker {
namespace {

using Addr = SocketAddress;

// "192.0.2.1" or "2001:db8::1" (port 1000), or with the port written.
Addr addr(const std::string& ip, uint16_t port = 1000) {
  const std::string text = ip.find(':') != std::string::npos ? "[" + ip + "]:" + std::to_string(port)
                                                              : ip + ":" + std::to_string(port);
  auto a = parse_socket_address(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a ? *a : Addr{};
}
Addr v4(const std::string& ip, uint16_t port = 1000) { return addr(ip, port); }
Addr v6(const std::string& ip, uint16_t port = 1000) { return addr(ip, port); }

TEST(ClientCounts, AnAddressHoldsAtMostItsLimitAndReleasesFreeIt) {
  ClientCounts counts;
  const Addr a = v4("192.0.2.1");
  std::vector<ClientCounts::Hold> held(3);
  for (auto& h : held) ASSERT_TRUE(counts.admit(a.sa(), a.len, 3, h));
  ClientCounts::Hold over;
  EXPECT_FALSE(counts.admit(a.sa(), a.len, 3, over));
  EXPECT_FALSE(over.held) << "a refusal holds nothing";
  EXPECT_EQ(counts.count(a.sa(), a.len), 3u) << "a refusal leaves the count as it was";
  // The port is not part of the client.
  const Addr same_host = v4("192.0.2.1", 2000);
  EXPECT_FALSE(counts.admit(same_host.sa(), same_host.len, 3, over));
  // Another address is not affected.
  const Addr b = v4("192.0.2.2");
  ClientCounts::Hold hb;
  EXPECT_TRUE(counts.admit(b.sa(), b.len, 3, hb));
  counts.release(held[0]);
  EXPECT_FALSE(held[0].held);
  counts.release(held[0]);  // twice: nothing more
  EXPECT_EQ(counts.count(a.sa(), a.len), 2u);
  EXPECT_TRUE(counts.admit(a.sa(), a.len, 3, held[0]));
  for (auto& h : held) counts.release(h);
  counts.release(hb);
  EXPECT_EQ(counts.count(a.sa(), a.len), 0u);
  EXPECT_EQ(counts.count(b.sa(), b.len), 0u);
}

TEST(ClientCounts, AnIpv6ClientIsItsSlash64AndAMappedAddressIsTheIpv4One) {
  ClientCounts counts;
  ClientCounts::Hold h1, h2, h3, h4;
  const Addr a = v6("2001:db8:1:2::1");
  const Addr same64 = v6("2001:db8:1:2:ffff:1:2:3");
  const Addr other64 = v6("2001:db8:1:3::1");
  ASSERT_TRUE(counts.admit(a.sa(), a.len, 1, h1));
  EXPECT_FALSE(counts.admit(same64.sa(), same64.len, 1, h2)) << "the same /64 is one client";
  EXPECT_TRUE(counts.admit(other64.sa(), other64.len, 1, h2));
  const Addr ip4 = v4("198.51.100.9");
  const Addr mapped = v6("::ffff:198.51.100.9");
  ASSERT_TRUE(counts.admit(ip4.sa(), ip4.len, 1, h3));
  EXPECT_FALSE(counts.admit(mapped.sa(), mapped.len, 1, h4)) << "a dual-stack socket's IPv4 client";
  counts.release(h1);
  counts.release(h2);
  counts.release(h3);
}

TEST(ClientCounts, AnAddressOfAnotherFamilyIsAdmittedHoldingNothing) {
  ClientCounts counts;
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  ClientCounts::Hold h;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(counts.admit(reinterpret_cast<const sockaddr*>(&un), sizeof un, 1, h));
    EXPECT_FALSE(h.held);
  }
  EXPECT_TRUE(counts.admit(nullptr, 0, 1, h));
  Addr short_v4 = v4("192.0.2.1");
  short_v4.len = 4;  // truncated
  EXPECT_TRUE(counts.admit(short_v4.sa(), short_v4.len, 1, h));
  EXPECT_FALSE(h.held);
}

// A table far too small for its clients: counts only ever err upwards, so
// no client passes the limit however the addresses collide.
TEST(ClientCounts, CollisionsOnlyMakeCountsLarger) {
  ClientCounts counts(4);
  std::vector<Addr> clients;
  for (int i = 0; i < 64; ++i) clients.push_back(v4("10.0.0." + std::to_string(i)));
  std::vector<int> admitted(clients.size(), 0);
  std::vector<ClientCounts::Hold> holds;
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < clients.size(); ++i) {
      ClientCounts::Hold h;
      if (counts.admit(clients[i].sa(), clients[i].len, 3, h)) {
        ++admitted[i];
        holds.push_back(h);
      }
    }
  }
  for (size_t i = 0; i < clients.size(); ++i) {
    EXPECT_LE(admitted[i], 3);
    EXPECT_GE(counts.count(clients[i].sa(), clients[i].len), static_cast<uint32_t>(admitted[i]));
  }
  for (auto& h : holds) counts.release(h);
  for (const Addr& a : clients) EXPECT_EQ(counts.count(a.sa(), a.len), 0u);
}

// Two tables (two processes) hash differently: which clients collide is
// not known to someone who does not know the key.
TEST(ClientCounts, TheKeyDecidesWhichClientsShareCounters) {
  const std::array<uint8_t, 16> k1{1}, k2{2};
  ClientCounts t1(16, k1), t2(16, k2);
  // Hold one connection of each of 200 addresses in both tables; count the
  // addresses whose count differs between them: the same key would give
  // identical counts everywhere.
  std::vector<ClientCounts::Hold> h1, h2;
  std::vector<Addr> clients;
  for (int i = 0; i < 200; ++i) clients.push_back(v4("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250)));
  for (const Addr& a : clients) {
    ClientCounts::Hold x, y;
    ASSERT_TRUE(t1.admit(a.sa(), a.len, 1000, x));
    ASSERT_TRUE(t2.admit(a.sa(), a.len, 1000, y));
    h1.push_back(x);
    h2.push_back(y);
  }
  int differ = 0;
  for (const Addr& a : clients) differ += t1.count(a.sa(), a.len) != t2.count(a.sa(), a.len);
  EXPECT_GT(differ, 0);
  ClientCounts t3(16, k1);
  for (const Addr& a : clients) {
    ClientCounts::Hold z;
    ASSERT_TRUE(t3.admit(a.sa(), a.len, 1000, z));
  }
  for (const Addr& a : clients) EXPECT_EQ(t1.count(a.sa(), a.len), t3.count(a.sa(), a.len));
  for (auto& h : h1) t1.release(h);
  for (auto& h : h2) t2.release(h);
}

void admit_and_release_in_threads(uint32_t kLimit) {
  ClientCounts counts;
  const Addr a = v4("192.0.2.50");
  std::atomic<int> open{0}, most{0};
  std::atomic<uint64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<ClientCounts::Hold> mine;
      for (int i = 0; i < 200000; ++i) {
        ClientCounts::Hold h;
        if (counts.admit(a.sa(), a.len, kLimit, h)) {
          const int now = open.fetch_add(1) + 1;
          int m = most.load();
          while (now > m && !most.compare_exchange_weak(m, now)) {
          }
          admitted.fetch_add(1);
          mine.push_back(h);
        }
        if (mine.size() >= 2 || (i % 3 == 0 && !mine.empty())) {
          open.fetch_sub(1);
          counts.release(mine.back());
          mine.pop_back();
        }
      }
      for (auto& h : mine) {
        open.fetch_sub(1);
        counts.release(h);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(most.load(), static_cast<int>(kLimit));
  EXPECT_GT(admitted.load(), 1000u);
  EXPECT_EQ(counts.count(a.sa(), a.len), 0u);
}

// Workers admitting and releasing one address at once never hold more than
// the limit together, and everything released leaves the count at zero.
TEST(ClientCounts, ConcurrentAdmissionsNeverPassTheLimit) {
  for (const uint32_t limit : {1u, 2u, 5u}) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    admit_and_release_in_threads(limit);
  }
}

TEST(ClientCounts, TheTableHas32CountersPerConnectionSlot) {
  EXPECT_EQ(ClientCounts::slots_for(0), size_t{1} << 12) << "a floor";
  EXPECT_EQ(ClientCounts::slots_for(32768), size_t{1} << 20);
  EXPECT_EQ(ClientCounts::slots_for(32769), size_t{1} << 21);
  EXPECT_EQ(ClientCounts::slots_for(uint64_t{1} << 40), size_t{1} << 26) << "a ceiling";
  ClientCounts big(ClientCounts::slots_for(uint64_t{16} * 1'000'000));  // mapped, not touched
  const Addr a = v4("192.0.2.1");
  ClientCounts::Hold h;
  EXPECT_TRUE(big.admit(a.sa(), a.len, 1, h));
  EXPECT_EQ(big.count(a.sa(), a.len), 1u);
  big.release(h);
}

}  // namespace
}  // namespace lode::worker
