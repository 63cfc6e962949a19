// `lodectl top`'s arithmetic: rates from two "stats" answers, the order of
// routes, and what a terminal gets for attacker-chosen names.
#include "tools/lodectl/top.h"

#include <gtest/gtest.h>

#include "tools/lodectl/admin.h"

#include <sstream>

namespace lode::tools {
namespace {

JsonValue parse(const std::string& s) {
  auto v = parse_json(s);
  EXPECT_TRUE(v) << s;
  return v ? *v : JsonValue{};
}

TEST(LodectlTop, RatesAreCounterGrowthOverTheInterval) {
  const JsonValue before = parse(
      R"({"ok":true,"generation":3,"routes":[{"listener":"https","route":"app","connections":10,"active":1,)"
      R"("handshakes_full":8,"handshakes_resumed":2,"handshake_failures":0,"refused":0,"bytes_in":1000,"bytes_out":5000}],)"
      R"("workers":[{"worker":0,"accepted":100,"active":1,"handshakes":40}],"recent_refused":[]})");
  const JsonValue after = parse(
      R"({"ok":true,"generation":4,"routes":[{"listener":"https","route":"app","connections":30,"active":3,)"
      R"("handshakes_full":20,"handshakes_resumed":10,"handshake_failures":1,"refused":3,"bytes_in":3000,"bytes_out":9000},)"
      R"({"listener":"https","route":"new","connections":2,"active":0,"handshakes_full":2}],)"
      R"("workers":[{"worker":0,"accepted":120,"active":3,"handshakes":70}],)"
      R"("recent_refused":[{"reason":"no_route","sni":"x.test"}]})");
  const TopFrame f = top_frame(before, after, 2.0);
  EXPECT_EQ(f.generation, 4u);
  ASSERT_EQ(f.routes.size(), 2u);
  EXPECT_EQ(f.routes[0].route, "app") << "busiest first";
  EXPECT_DOUBLE_EQ(f.routes[0].connections_per_s, 10.0);
  EXPECT_DOUBLE_EQ(f.routes[0].handshakes_per_s, 10.0);  // (12 + 8) / 2
  EXPECT_DOUBLE_EQ(f.routes[0].errors_per_s, 2.0);       // (1 + 3) / 2
  EXPECT_DOUBLE_EQ(f.routes[0].bytes_in_per_s, 1000.0);
  EXPECT_DOUBLE_EQ(f.routes[0].bytes_out_per_s, 2000.0);
  EXPECT_EQ(f.routes[0].active, 3u);
  EXPECT_DOUBLE_EQ(f.routes[1].connections_per_s, 1.0) << "a route new in this interval counts from zero";
  ASSERT_EQ(f.workers.size(), 1u);
  EXPECT_DOUBLE_EQ(f.workers[0].accepts_per_s, 10.0);
  EXPECT_DOUBLE_EQ(f.workers[0].handshakes_per_s, 15.0);
  ASSERT_EQ(f.refused.size(), 1u);
  EXPECT_EQ(f.refused[0].second, "x.test");
}

TEST(LodectlTop, ACounterThatWentBackwardsCountsFromZero) {
  const JsonValue before = parse(R"({"workers":[{"worker":0,"accepted":500,"handshakes":500}]})");
  const JsonValue after = parse(R"({"workers":[{"worker":0,"accepted":20,"handshakes":10}]})");  // restarted
  const TopFrame f = top_frame(before, after, 1.0);
  ASSERT_EQ(f.workers.size(), 1u);
  EXPECT_DOUBLE_EQ(f.workers[0].accepts_per_s, 20.0);
}

TEST(LodectlTop, NamesReachTheTerminalInertAndJsonEscaped) {
  TopFrame f;
  f.interval_s = 1;
  f.routes.push_back({"https", "app\x1b[2J", 1, 0, 0, 0, 1, 0});
  f.refused.emplace_back("hello:bad_host_name", "<script>\x07\"");
  std::ostringstream human, json;
  print_top(human, f, false, 10);
  EXPECT_EQ(human.str().find('\x1b'), std::string::npos) << "no escape sequence from a name";
  EXPECT_NE(human.str().find("app\\x1b[2J"), std::string::npos);
  EXPECT_NE(human.str().find("<script>\\x07\""), std::string::npos);
  print_top(json, f, true, 10);
  auto v = parse_json(json.str());
  ASSERT_TRUE(v) << json.str();
  EXPECT_EQ(v->find("recent_refused")->items[0].str("sni"), "<script>\x07\"");
  EXPECT_EQ(v->find("routes")->items[0].str("route"), "app\x1b[2J");
}

TEST(LodectlTop, BadArgumentsAreUsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(top_main({"top", "--interval", "0"}, out, err), kExitUsage);
  EXPECT_EQ(top_main({"top", "--interval", "x"}, out, err), kExitUsage);
  EXPECT_EQ(top_main({"top", "--count", "-1"}, out, err), kExitUsage);
  EXPECT_EQ(top_main({"top", "--bogus"}, out, err), kExitUsage);
  EXPECT_EQ(top_main({"top", "--socket", "/nonexistent/admin.sock", "--count", "1"}, out, err), kExitDown);
}

}  // namespace
}  // namespace lode::tools
