#include "tools/lodectl/explain.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/fixtures.h"
#include "support/hello_builder.h"

namespace lode::tools {
namespace {

class Explain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lode-explain-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    write("cfg.toml", R"(
[[listener]]
name = "https"
listen = ["127.0.0.1:44312"]
default_route = "fallback"
[[listener]]
name = "strict"
listen = ["127.0.0.1:9443"]
[[pool]]
name = "app"
backends = ["127.0.0.1:9001"]
[[certificate]]
name = "a"
cert = "a.pem"
key = "a.key"
[[route]]
name = "a"
listener = "https"
names = ["a.test", "*.wild.test"]
action = "terminate"
pool = "app"
certificate = "a"
[[route]]
name = "pass"
listener = "https"
names = ["b.test"]
action = "passthrough"
pool = "app"
[[route]]
name = "fallback"
listener = "https"
action = "reject"
reject_with = "reset"
[[route]]
name = "s"
listener = "strict"
names = ["s.test"]
action = "passthrough"
pool = "app"
)");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const auto p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::string write(const std::string& name, const std::vector<uint8_t>& b) {
    return write(name, std::string(b.begin(), b.end()));
  }
  std::string cfg() const { return (dir_ / "cfg.toml").string(); }

  struct Out {
    int rc;
    std::string out, err;
  };
  Out run(ExplainOptions opt) {
    std::ostringstream o, e;
    const int rc = run_explain(opt, o, e);
    return {rc, o.str(), e.str()};
  }
  Out run_hello(const std::vector<uint8_t>& hello, const std::string& listener = "") {
    ExplainOptions opt;
    opt.config = cfg();
    opt.listener = listener;
    opt.inputs = {write("hello.bin", hello)};
    return run(opt);
  }

  std::filesystem::path dir_;
};

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

TEST_F(Explain, ExactNameTerminates) {
  const Out o = run_hello(test::HelloBuilder::typical("A.Test").records());
  EXPECT_EQ(o.rc, 0) << o.err;
  EXPECT_TRUE(has(o.out, R"("sni":"a.test")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("match":"exact")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("decision":"terminate")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("certificate":"a")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("listener_why":"the first listener")")) << o.out;
}

TEST_F(Explain, WildcardAndPassthrough) {
  Out o = run_hello(test::HelloBuilder().sni("x.wild.test").records());
  EXPECT_TRUE(has(o.out, R"(matches the wildcard '*.wild.test')")) << o.out;
  o = run_hello(test::HelloBuilder().sni("b.test").records());
  EXPECT_TRUE(has(o.out, R"("decision":"passthrough")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("pool":"app")")) << o.out;
}

TEST_F(Explain, UnknownNameGoesToTheDefaultWhichResets) {
  const Out o = run_hello(test::HelloBuilder().sni("nope.test").records());
  EXPECT_TRUE(has(o.out, R"("match":"default")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("decision":"reset")")) << o.out;
}

TEST_F(Explain, NoDefaultMeansUnrecognizedName) {
  const Out o = run_hello(test::HelloBuilder().sni("nope.test").records(), "strict");
  EXPECT_TRUE(has(o.out, R"("match":"none")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("alert":"unrecognized_name")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("listener_why":"chosen with --listener")")) << o.out;
}

TEST_F(Explain, IpLiteralIsExplained) {
  const Out o = run_hello(test::HelloBuilder().sni("10.1.2.3").records());
  EXPECT_TRUE(has(o.out, "an IP literal in SNI counts as no SNI")) << o.out;
}

TEST_F(Explain, MalformedHelloShowsTheAlert) {
  const Out o = run_hello(test::HelloBuilder().sni({"a.test", "b.test"}).records());
  EXPECT_TRUE(has(o.out, R"("status":"error")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("error":"multiple_server_names")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("alert":"decode_error")")) << o.out;
  EXPECT_TRUE(has(o.out, "before any route is chosen")) << o.out;
}

TEST_F(Explain, HttpAndTruncationAreExplained) {
  Out o = run_hello({'G', 'E', 'T', ' ', '/'});
  EXPECT_TRUE(has(o.out, R"("decision":"http_400")")) << o.out;
  auto hello = test::HelloBuilder::typical("a.test").records();
  hello.resize(hello.size() / 2);
  o = run_hello(hello);
  EXPECT_TRUE(has(o.out, R"("status":"need_more")")) << o.out;
  EXPECT_TRUE(has(o.out, R"("decision":"incomplete")")) << o.out;
}

TEST_F(Explain, PcapFlowsPickTheListenerByDestination) {
  ExplainOptions opt;
  opt.config = cfg();
  opt.pcap = true;
  opt.inputs = {test::fixture_path("pcap/clients.pcap")};
  const Out o = run(opt);
  ASSERT_EQ(o.rc, 0) << o.err;
  std::istringstream lines(o.out);
  std::vector<std::string> ls;
  for (std::string l; std::getline(lines, l);) ls.push_back(l);
  ASSERT_EQ(ls.size(), 4u) << o.out;
  EXPECT_TRUE(has(ls[0], R"("sni":"a.test")"));
  EXPECT_TRUE(has(ls[0], "is a listen address")) << ls[0];
  EXPECT_TRUE(has(ls[1], R"("sni":"b.test")"));
  EXPECT_TRUE(has(ls[1], R"("decision":"passthrough")"));
  EXPECT_TRUE(has(ls[3], R"("sni":"c.test")"));
  EXPECT_TRUE(has(ls[3], R"("decision":"reset")"));
}

TEST_F(Explain, WithoutConfigOnlyTheParse) {
  ExplainOptions opt;
  opt.inputs = {test::fixture_path("client_hello/chromium_pq.bin")};
  const Out o = run(opt);
  EXPECT_EQ(o.rc, 0);
  EXPECT_TRUE(has(o.out, R"("post_quantum":true)")) << o.out;
  EXPECT_TRUE(has(o.out, R"("ech":true)")) << o.out;
  EXPECT_FALSE(has(o.out, R"("route")")) << o.out;
}

TEST_F(Explain, BadInputsAndConfigsFail) {
  ExplainOptions opt;
  opt.inputs = {(dir_ / "missing.bin").string()};
  Out o = run(opt);
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(has(o.err, "cannot read")) << o.err;
  opt.pcap = true;
  opt.inputs = {write("bad.pcap", std::string("not a pcap at all, not at all"))};
  o = run(opt);
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(has(o.err, "bad magic")) << o.err;
  opt = {};
  opt.config = write("bad.toml", std::string("[[listener]]\nlisten = [\"nope\"]\n"));
  opt.inputs = {test::fixture_path("client_hello/curl.bin")};
  o = run(opt);
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(has(o.err, "bad.toml:2:")) << o.err;
  opt.config = cfg();
  opt.listener = "nosuch";
  o = run(opt);
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(has(o.err, "no listener named 'nosuch'")) << o.err;
}

TEST_F(Explain, TheLodectlBinaryRunsIt) {
  const std::string cmd = std::string(LODECTL_PATH) + " explain --config " + cfg() + " " +
                          test::fixture_path("client_hello/openssl_tls13.bin") + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_TRUE(has(out, R"("route_name":"a")")) << out;
  const std::string usage = std::string(LODECTL_PATH) + " explain >/dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(usage.c_str())), 2);
}

}  // namespace
}  // namespace lode::tools
