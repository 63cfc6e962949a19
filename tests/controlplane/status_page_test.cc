// The status page (controlplane/status_page.h) and its two GETs on the admin
// HTTP address (controlplane/admin_server.h): served only where the control
// plane gives the server its /status.json, headers that keep the page to its
// own script, and a page that loads nothing from elsewhere and never turns
// data into markup. The browser test is tests/e2e/test_status_page.sh.
#include "controlplane/status_page.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <regex>
#include <string>
#include <vector>

#include "controlplane/admin_server.h"
#include "tests/support/loopback.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;

struct Reply {
  std::string status_line, headers, body;
  std::string header(const std::string& name) const {
    const std::string key = "\r\n" + name + ": ";
    const size_t at = ("\r\n" + headers).find(key);
    if (at == std::string::npos) return "";
    const size_t from = at + key.size() - 2;
    return headers.substr(from, headers.find("\r\n", from) - from);
  }
};

class StatusHttpTest : public ::testing::Test {
 protected:
  uint16_t port = test::free_port();
  int status_calls = 0;
  std::vector<std::string> warnings;
  std::string json = R"({"v":1,"ok":true,"generation":3,"listeners":[]})";

  std::unique_ptr<AdminServer> make(bool with_status) {
    AdminServer::StatusJson status;
    if (with_status) {
      status = [this] {
        ++status_calls;
        return json;
      };
    }
    return std::make_unique<AdminServer>(AdminServer::Options{"", "", "127.0.0.1:" + std::to_string(port)},
                                         [](const AdminRequest&) { return std::string("{}"); },
                                         [] { return std::string("lode_x_total 1\n"); }, warnings, status);
  }

  // One request on a fresh connection, the server polled from this thread
  // until it closes the connection (3 s at most).
  Reply get(AdminServer& s, const std::string& request) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    std::string raw;
    const auto end = std::chrono::steady_clock::now() + 3s;
    for (bool closed = false; !closed && std::chrono::steady_clock::now() < end;) {
      std::vector<pollfd> fds;
      s.fill_poll(fds);
      fds.push_back({fd, POLLIN, 0});
      poll(fds.data(), fds.size(), 20);
      s.on_poll(fds, 0);
      if ((fds.back().revents & (POLLIN | POLLHUP)) != 0) {
        char buf[65536];
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) raw.append(buf, static_cast<size_t>(n));
        closed = n == 0;
      }
    }
    close(fd);
    Reply r;
    const size_t eol = raw.find("\r\n"), end_of_headers = raw.find("\r\n\r\n");
    if (eol == std::string::npos || end_of_headers == std::string::npos) return r;
    r.status_line = raw.substr(0, eol);
    r.headers = raw.substr(eol + 2, end_of_headers - eol);
    r.body = raw.substr(end_of_headers + 4);
    return r;
  }
};

TEST_F(StatusHttpTest, StatusServesThePageWithItsPolicy) {
  auto s = make(true);
  ASSERT_TRUE(warnings.empty()) << warnings.front();
  for (const char* target : {"/status", "/status?refresh=5"}) {
    const Reply r = get(*s, std::string("GET ") + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK") << target;
    EXPECT_EQ(r.header("Content-Type"), "text/html; charset=utf-8");
    EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size()));
    EXPECT_EQ(r.body, status_page_html());
    EXPECT_EQ(r.header("Content-Security-Policy"), status_page_csp());
    EXPECT_EQ(r.header("X-Frame-Options"), "DENY");
    EXPECT_EQ(r.header("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(r.header("Cache-Control"), "no-store");
  }
  EXPECT_EQ(status_calls, 0) << "the page itself needs no data";
}

TEST_F(StatusHttpTest, StatusJsonIsTheControlPlanesAnswer) {
  auto s = make(true);
  const Reply r = get(*s, "GET /status.json?scrape=7 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.header("Content-Type"), "application/json; charset=utf-8");
  EXPECT_EQ(r.header("Cache-Control"), "no-store");
  EXPECT_EQ(r.body, json);
  EXPECT_EQ(status_calls, 1);
  const Reply m = get(*s, "GET /metrics?scrape=8 HTTP/1.1\r\n\r\n");
  EXPECT_EQ(m.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(m.body, "lode_x_total 1\n");
}

TEST_F(StatusHttpTest, NearMissesAndOtherMethodsAreRefused) {
  auto s = make(true);
  for (const char* path : {"/", "/status/", "/statusx", "/status.jsonx", "/status.json/", "/Status", "/status%2ejson",
                           "/status.html", "//status"}) {
    const Reply r = get(*s, std::string("GET ") + path + " HTTP/1.1\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << path;
    EXPECT_EQ(r.body, "see /metrics or /status\n");
  }
  // A request line without a version is not HTTP/1.x.
  EXPECT_EQ(get(*s, "GET /status\r\n\r\n").status_line, "HTTP/1.1 404 Not Found");
  for (const char* method : {"POST", "PUT", "DELETE", "HEAD", "OPTIONS"}) {
    const Reply r = get(*s, std::string(method) + " /status.json HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 405 Method Not Allowed") << method;
  }
  EXPECT_EQ(status_calls, 0);
}

TEST_F(StatusHttpTest, ThePagesAnswerOnlyToAnAddressOrLocalhost) {
  // DNS rebinding: a page served as evil.example whose name now points here.
  auto s = make(true);
  for (const char* host : {"127.0.0.1", "127.0.0.1:9180", "localhost", "localhost:9180", "[::1]:9180", "[::1]"}) {
    EXPECT_EQ(get(*s, std::string("GET /status.json HTTP/1.1\r\nHost: ") + host + "\r\n\r\n").status_line,
              "HTTP/1.1 200 OK")
        << host;
  }
  for (const char* host : {"evil.example", "evil.example:9180", "127.0.0.1.evil.example", "[::1", "localhost.evil"}) {
    for (const char* path : {"/status", "/status.json"}) {
      const Reply r = get(*s, std::string("GET ") + path + " HTTP/1.1\r\nhOsT:  " + host + "\r\n\r\n");
      EXPECT_EQ(r.status_line, "HTTP/1.1 403 Forbidden") << host << path;
    }
  }
  EXPECT_EQ(get(*s, "GET /metrics HTTP/1.1\r\nHost: prometheus-target.example:9180\r\n\r\n").status_line,
            "HTTP/1.1 200 OK")
      << "Prometheus may name its targets";
  EXPECT_EQ(get(*s, "POST /status HTTP/1.1\r\n\r\n").header("Allow"), "GET");
}

TEST_F(StatusHttpTest, WithoutStatusJsonThereIsNoPage) {
  auto s = make(false);
  for (const char* path : {"/status", "/status.json"}) {
    const Reply r = get(*s, std::string("GET ") + path + " HTTP/1.1\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << path;
    EXPECT_EQ(r.body, "see /metrics\n");
  }
}

// The text between the first `open` and the next `close`.
std::string between(std::string_view page, std::string_view open, std::string_view close) {
  const size_t a = page.find(open);
  if (a == std::string_view::npos) return "";
  const size_t b = page.find(close, a + open.size());
  return b == std::string_view::npos ? "" : std::string(page.substr(a + open.size(), b - a - open.size()));
}

std::string sha256_source(const std::string& text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(text.data(), text.size(), md.data(), &len, EVP_sha256(), nullptr), 1);
  std::array<unsigned char, 64> b64{};
  const int n = EVP_EncodeBlock(b64.data(), md.data(), static_cast<int>(len));
  return "'sha256-" + std::string(reinterpret_cast<const char*>(b64.data()), static_cast<size_t>(n)) + "'";
}

TEST(StatusPage, PolicyHashesAreThoseOfThePagesOwnScriptAndStyle) {
  const std::string_view page = status_page_html();
  const std::string script = between(page, "<script>", "</script>");
  const std::string style = between(page, "<style>", "</style>");
  ASSERT_FALSE(script.empty());
  ASSERT_FALSE(style.empty());
  const std::string& csp = status_page_csp();
  EXPECT_NE(csp.find("script-src " + sha256_source(script) + ";"), std::string::npos) << csp;
  EXPECT_NE(csp.find("style-src " + sha256_source(style) + ";"), std::string::npos) << csp;
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos);
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  // One script and one style: the hashes cover everything the page runs.
  EXPECT_EQ(page.find("<script", page.find("<script") + 1), std::string_view::npos);
  EXPECT_EQ(page.find("<style", page.find("<style") + 1), std::string_view::npos);
}

TEST(StatusPage, LoadsNothingFromElsewhereAndNeverParsesDataAsMarkup) {
  const std::string page(status_page_html());
  EXPECT_TRUE(page.starts_with("<!DOCTYPE html>"));
  EXPECT_NE(page.find("<meta charset=\"utf-8\">"), std::string::npos);
  // No other origin: no absolute or protocol-relative URL, no import.
  for (const char* needle : {"http://", "https://", "src=", "@import", "url(", "import(", "//cdn"}) {
    EXPECT_EQ(page.find(needle), std::string::npos) << needle;
  }
  // Every fetch is one of the two same-origin GETs.
  const std::regex fetch_call(R"(get\('(/[^']*)')");
  std::vector<std::string> fetched;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), fetch_call); it != std::sregex_iterator(); ++it) {
    fetched.push_back((*it)[1]);
  }
  EXPECT_EQ(fetched, (std::vector<std::string>{"/metrics?scrape=", "/status.json?scrape="}));
  EXPECT_EQ(page.find("method:"), std::string::npos) << "GET only";
  EXPECT_EQ(page.find("<form"), std::string::npos);
  // Text goes in with textContent; nothing that parses HTML or code.
  for (const char* sink : {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(",
                           "createContextualFragment", "DOMParser", "srcdoc"}) {
    EXPECT_EQ(page.find(sink), std::string::npos) << sink;
  }
  EXPECT_NE(page.find("textContent"), std::string::npos);
}

}  // namespace
}  // namespace lode::cp
