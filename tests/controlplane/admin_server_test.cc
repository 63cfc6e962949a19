// The control plane's admin endpoints (controlplane/admin_server.h): the flat
// JSON request parser, and the server driven by a poll loop in the test
// thread (fill_poll / poll / on_poll), as the control plane's event loop
// drives it. Clients are real unix and TCP sockets.
#include "controlplane/admin_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------ parse_admin_request

AdminRequest parse_ok(std::string_view line) {
  auto r = parse_admin_request(line);
  EXPECT_TRUE(r.has_value()) << "refused: " << line << " -> " << (r ? "" : r.error());
  return r ? *r : AdminRequest{};
}

std::string parse_error(std::string_view line) {
  auto r = parse_admin_request(line);
  EXPECT_FALSE(r.has_value()) << "accepted: " << line;
  return r ? "" : r.error();
}

TEST(AdminRequest, FlatObjectOfStringsNumbersAndBooleans) {
  const AdminRequest r =
      parse_ok(R"({"v":1,"cmd":"certs.list","name":"a","dry_run":true,"n":-12.5e3,"x":false})");
  EXPECT_EQ(r.fields.size(), 6u);
  EXPECT_EQ(r.get("v"), "1");
  EXPECT_EQ(r.get("cmd"), "certs.list");
  EXPECT_EQ(r.get("name"), "a");
  EXPECT_EQ(r.get("n"), "-12.5e3");
  EXPECT_TRUE(r.flag("dry_run"));
  EXPECT_FALSE(r.flag("x"));
  EXPECT_FALSE(r.flag("missing"));
  EXPECT_FALSE(r.flag("name"));  // "a" is not true
  EXPECT_EQ(r.get("missing"), "");
  EXPECT_EQ(r.get("missing", "fallback"), "fallback");
}

TEST(AdminRequest, WhitespaceAroundEverything) {
  const AdminRequest r = parse_ok(" \t{ \"cmd\" :\t\"status\" ,\r\n \"v\" : 1 }\r\n ");
  EXPECT_EQ(r.get("cmd"), "status");
  EXPECT_EQ(r.get("v"), "1");
}

TEST(AdminRequest, StringEscapes) {
  const AdminRequest r =
      parse_ok(R"({"s":"a\"b\\c\/d\ne\tf\rg\bh\fi\u0041\u007e","k\u0065y":"v"})");
  EXPECT_EQ(r.get("s"), "a\"b\\c/d\ne\tf\rg\bh\fiA~");
  EXPECT_EQ(r.get("key"), "v");  // escapes in keys too
}

TEST(AdminRequest, NullIsKeptAsText) {
  const AdminRequest r = parse_ok(R"({"name":null})");
  EXPECT_EQ(r.get("name", "absent"), "null");
}

TEST(AdminRequest, EmptyObject) {
  EXPECT_TRUE(parse_ok("{}").fields.empty());
  EXPECT_TRUE(parse_ok(" { } ").fields.empty());
}

TEST(AdminRequest, RefusesWhatIsNotAnObject) {
  for (std::string_view s : {"", " ", "[]", R"(["cmd","status"])", R"("status")", "42", "null",
                             "true", "cmd=status", "{'cmd':'status'}"}) {
    EXPECT_FALSE(parse_admin_request(s).has_value()) << "accepted: " << s;
  }
  EXPECT_EQ(parse_error("[]"), "expected a JSON object");
}

TEST(AdminRequest, RefusesNestedValues) {
  for (std::string_view s : {R"({"a":{}})", R"({"a":{"b":1}})", R"({"a":[]})", R"({"a":[1,2]})",
                             R"({"cmd":"status","args":["x"]})"}) {
    const std::string e = parse_error(s);
    EXPECT_NE(e.find("strings, numbers and booleans only"), std::string::npos) << s << " -> " << e;
  }
}

TEST(AdminRequest, RefusesBareWordsThatAreNotLiterals) {
  for (std::string_view s :
       {R"({"a":tru})", R"({"a":yes})", R"({"a":nan})", R"({"a":True})", R"({"a":NULL})"}) {
    const std::string e = parse_error(s);
    EXPECT_NE(e.find("\"a\""), std::string::npos) << "the error names the key: " << e;
  }
}

TEST(AdminRequest, RefusesDuplicateKeys) {
  EXPECT_EQ(parse_error(R"({"cmd":"status","cmd":"tickets.rotate"})"), "duplicate key \"cmd\"");
  // the same key spelled with an escape is the same key
  EXPECT_EQ(parse_error(R"({"cmd":"status","\u0063md":"x"})"), "duplicate key \"cmd\"");
}

TEST(AdminRequest, RefusesTrailingBytes) {
  for (std::string_view s :
       {R"({"cmd":"status"} x)", "{}{}", "{} {}", R"({"a":1}})", "{}\n{}", "{},"}) {
    EXPECT_FALSE(parse_admin_request(s).has_value()) << "accepted: " << s;
  }
  EXPECT_EQ(parse_error(R"({"cmd":"status"} x)"), "trailing bytes after the value");
  // a NUL after the object is a trailing byte, not an end of string
  EXPECT_FALSE(parse_admin_request(std::string_view("{}\0", 3)).has_value());
}

TEST(AdminRequest, RefusesUnterminatedAndTruncated) {
  for (std::string_view s : {"{", R"({")", R"({"cmd)", R"({"cmd")", R"({"cmd":)", R"({"cmd":")",
                             R"({"cmd":"sta)", R"({"cmd":"status")", R"({"cmd":"status",)",
                             R"({"cmd":"a\)", R"({"a":"\u00)", R"({"a":"\u004)"}) {
    EXPECT_FALSE(parse_admin_request(s).has_value()) << "accepted: " << s;
  }
  EXPECT_EQ(parse_error(R"({"cmd":"sta)"), "\"cmd\": unterminated string");
  EXPECT_EQ(parse_error(R"({"a":"\u00)"), "\"a\": truncated \\u escape");
}

TEST(AdminRequest, RefusesControlCharactersInStrings) {
  for (char c : {'\x01', '\n', '\t', '\r', '\x1f', '\0'}) {
    std::string s = R"({"cmd":"sta)";
    s += c;
    s += R"(tus"})";
    EXPECT_EQ(parse_error(s), "\"cmd\": control character in a string") << "byte " << int(c);
  }
  std::string in_key = R"({"c)";
  in_key += '\x02';
  in_key += R"(":"x"})";
  EXPECT_EQ(parse_error(in_key), "control character in a string");
}

TEST(AdminRequest, NulEscapeRefusedOtherEscapesAreBytesOrQuestionMarks) {
  // \u00XX is a byte (what JsonWriter writes for bytes outside printable
  // ASCII); larger code points are not Lodestone's and read as '?'.
  EXPECT_EQ(parse_error(R"({"a":"\u0000"})"), "\"a\": \\u0000 in a string");
  auto r = parse_admin_request(R"({"a":"\u00e9","b":"\u263A"})");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->get("a"), "\xe9");
  EXPECT_EQ(r->get("b"), "?");
}

TEST(AdminRequest, RefusesBadEscapes) {
  for (std::string_view s : {R"({"a":"\x41"})", R"({"a":"\'"})", R"({"a":"\u00zz"})",
                             R"({"a":"\u 041"})", R"({"a":"\U0041"})"}) {
    EXPECT_FALSE(parse_admin_request(s).has_value()) << "accepted: " << s;
  }
}

TEST(AdminRequest, RefusesMissingColonOrComma) {
  EXPECT_EQ(parse_error(R"({"cmd" "status"})"), "expected ':' after \"cmd\"");
  EXPECT_EQ(parse_error(R"({"cmd" = "status"})"), "expected ':' after \"cmd\"");
  EXPECT_EQ(parse_error(R"({"v":1 "cmd":"status"})"), "expected ',' or '}'");
  EXPECT_EQ(parse_error(R"({"v":"1" "cmd":"status"})"), "expected ',' or '}'");
  EXPECT_EQ(parse_error(R"({"v":1;"cmd":"status"})"), "expected ',' or '}'");
}

TEST(AdminRequest, RefusesMalformedMembers) {
  EXPECT_EQ(parse_error(R"({cmd:"status"})"), "expected a key string");
  EXPECT_EQ(parse_error(R"({"cmd":"status",})"), "expected a key string");
  EXPECT_EQ(parse_error(R"({,"cmd":"status"})"), "expected a key string");
  EXPECT_EQ(parse_error(R"({1:"status"})"), "expected a key string");
  EXPECT_FALSE(parse_admin_request(R"({"cmd":})").has_value());
  EXPECT_FALSE(parse_admin_request(R"({"cmd":,"v":1})").has_value());
}

// ------------------------------------------------------------------ AdminServer

void set_nonblocking(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int unix_client(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    close(fd);
    return -1;
  }
  set_nonblocking(fd);
  return fd;
}

int tcp_client(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "connect 127.0.0.1:" << port << ": " << std::strerror(errno);
    close(fd);
    return -1;
  }
  set_nonblocking(fd);
  return fd;
}

// A listening TCP socket on 127.0.0.1 (port chosen by the kernel).
int tcp_listener(uint16_t& port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "listener: " << std::strerror(errno);
  }
  port = ntohs(a.sin_port);
  return fd;
}

uint16_t free_port() {
  uint16_t port = 0;
  close(tcp_listener(port));
  return port;
}

// Writes all of `data` (the client sockets are nonblocking; the server is not
// running meanwhile, so this only works for what fits in the socket buffers).
void send_all(int fd, std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << std::strerror(errno);
    off += static_cast<size_t>(n);
  }
}

// What a client socket has received so far; true once the server closed it.
struct Reader {
  int fd;
  std::string got;
  bool closed = false;
  bool pull() {
    char buf[8192];
    while (!closed) {
      const ssize_t n = read(fd, buf, sizeof buf);  // sockets and pipes
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        closed = true;
      } else {
        break;
      }
    }
    return closed;
  }
};

class AdminServerTest : public ::testing::Test {
 protected:
  test::TempDir dir;
  std::string sock = dir.path() + "/admin.sock";
  std::vector<AdminRequest> requests;
  int metrics_calls = 0;
  std::string metrics_body = "# TYPE lode_test_total counter\nlode_test_total 7\n";
  std::vector<std::string> warnings;
  int other_pipe[2] = {-1, -1};  // an unrelated descriptor polled before the server's

  AdminServer::Handler handler() {
    return [this](const AdminRequest& r) {
      requests.push_back(r);
      return R"({"v":1,"ok":true,"echo":")" + r.get("cmd") + R"("})";
    };
  }
  AdminServer::Metrics metrics() {
    return [this] {
      ++metrics_calls;
      return metrics_body;
    };
  }
  std::unique_ptr<AdminServer> make(std::string metrics_addr = "") {
    return std::make_unique<AdminServer>(AdminServer::Options{sock, "", std::move(metrics_addr)},
                                         handler(), metrics(), warnings);
  }

  void SetUp() override { ASSERT_EQ(pipe2(other_pipe, O_CLOEXEC), 0); }
  void TearDown() override {
    close(other_pipe[0]);
    close(other_pipe[1]);
  }

  // One pass of the loop: the server's descriptors after an unrelated one
  // (so that on_poll's `first` is not 0), poll, on_poll.
  void step(AdminServer& s, int max_ms = 20) {
    std::vector<pollfd> fds{{other_pipe[0], POLLIN, 0}};
    s.fill_poll(fds);
    int t = s.timeout_ms();
    t = t < 0 ? max_ms : std::min(t, max_ms);
    const int n = poll(fds.data(), fds.size(), t);
    ASSERT_GE(n, 0) << std::strerror(errno);
    EXPECT_EQ(fds[0].revents, 0) << "the unrelated descriptor is never touched";
    s.on_poll(fds, 1);
  }
  // Runs the loop until `done` or `limit`; returns whether `done` held.
  // A child as uid/gid 65534 (with `groups` supplementary) asks for the
  // status: 0 when its connect was refused with EACCES, 1 when it got an
  // answer (in `answer`), 10 or 11 when it could not become nobody or
  // connect, 100 when it did not exit.
  int status_as_nobody(AdminServer& s, const std::vector<gid_t>& groups, std::string& answer) {
    int out[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    const pid_t pid = fork();
    if (pid == 0) {
      close(out[0]);
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
      const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) _exit(errno == EACCES ? 0 : 11);
      timeval tv{5, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      [[maybe_unused]] ssize_t w = send(fd, "{\"cmd\":\"status\"}\n", 17, MSG_NOSIGNAL);
      char buf[512];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) w = write(out[1], buf, static_cast<size_t>(n));
      _exit(1);
    }
    close(out[1]);
    set_nonblocking(out[0]);
    Reader r{out[0]};
    EXPECT_TRUE(run_until(
        s, [&] { return r.pull(); }, 5s));
    close(out[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    answer = r.got;
    EXPECT_TRUE(WIFEXITED(status))
        << "status " << status << " signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
  }
  bool run_until(AdminServer& s, const std::function<bool()>& done,
                 std::chrono::milliseconds limit = 3s) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      step(s);
      if (done()) return true;
    }
    return done();
  }
  // Runs the loop until the server closed the client's connection.
  std::string exchange(AdminServer& s, int fd, std::chrono::milliseconds limit = 3s) {
    Reader r{fd};
    EXPECT_TRUE(run_until(
        s, [&] { return r.pull(); }, limit))
        << "the server did not close the connection";
    return r.got;
  }
};

TEST_F(AdminServerTest, RequestGetsTheHandlersAnswerAndANewline) {
  auto s = make();
  ASSERT_TRUE(warnings.empty()) << warnings.front();
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"v\":1,\"cmd\":\"status\",\"dry_run\":true}\n");
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"status\"}\n");
  close(fd);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].get("v"), "1");
  EXPECT_TRUE(requests[0].flag("dry_run"));
  EXPECT_EQ(metrics_calls, 0);
  EXPECT_EQ(s->refused_peers(), 0u);
}

TEST_F(AdminServerTest, RequestArrivingInPiecesIsAnsweredOnceComplete) {
  auto s = make();
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  Reader r{fd};
  send_all(fd, "{\"cmd\":");
  run_until(
      *s, [&] { return r.pull(); }, 200ms);
  EXPECT_FALSE(r.closed) << "closed before the request was complete";
  EXPECT_TRUE(requests.empty());
  send_all(fd, "\"certs.list\"}\r\n");
  EXPECT_TRUE(run_until(*s, [&] { return r.pull(); }));
  EXPECT_EQ(r.got, "{\"v\":1,\"ok\":true,\"echo\":\"certs.list\"}\n");
  close(fd);
}

TEST_F(AdminServerTest, OneRequestPerConnection) {
  auto s = make();
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\n");
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"a\"}\n");
  close(fd);
  ASSERT_EQ(requests.size(), 1u);
}

TEST_F(AdminServerTest, RequestFollowedByHalfCloseIsAnswered) {
  // `socat`, `nc -N` and scripts send the line, then shut down their side.
  auto s = make();
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"status\"}\n");
  ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"status\"}\n");
  close(fd);
}

TEST_F(AdminServerTest, MalformedRequestsGetOkFalse) {
  auto s = make();
  for (std::string_view bad : {"not json", "[]", R"({"cmd":{"x":1}})", R"({"cmd":"a","cmd":"b"})",
                               R"({"cmd":"a"} x)", R"({"cmd":"\u0000"})", R"({"cmd")", ""}) {
    const int fd = unix_client(sock);
    ASSERT_GE(fd, 0);
    send_all(fd, std::string(bad) + "\n");
    const std::string got = exchange(*s, fd);
    close(fd);
    EXPECT_EQ(got.rfind("{\"v\":1,\"ok\":false,\"error\":\"bad request: ", 0), 0u)
        << bad << " -> " << got;
    EXPECT_EQ(got.find('\n'), got.size() - 1) << "one line: " << got;
  }
  EXPECT_TRUE(requests.empty()) << "the handler saw a malformed request";
}

TEST_F(AdminServerTest, RequestOver64KiBIsDroppedUnanswered) {
  auto s = make();
  // Just under the cap: answered.
  const std::string pad(60 * 1024, 'x');
  int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"big\",\"pad\":\"" + pad + "\"}\n");
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"big\"}\n");
  close(fd);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].get("pad").size(), pad.size());

  // Over it, with or without a newline: closed without an answer.
  for (const std::string& big :
       {std::string(70 * 1024, 'a'),
        "{\"cmd\":\"big\",\"pad\":\"" + std::string(65 * 1024, 'x') + "\"}\n"}) {
    fd = unix_client(sock);
    ASSERT_GE(fd, 0);
    send_all(fd, big);
    const auto t0 = Clock::now();
    EXPECT_EQ(exchange(*s, fd), "");
    EXPECT_LT(Clock::now() - t0, 1500ms) << "dropped at once, not at the deadline";
    close(fd);
  }
  EXPECT_EQ(requests.size(), 1u) << "the handler saw an oversized request";

  // Still serving.
  fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"after\"}\n");
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"after\"}\n");
  close(fd);
}

TEST_F(AdminServerTest, SilentClientIsClosedAtTheDeadlineAndBlocksNoOne) {
  auto s = make();
  EXPECT_EQ(s->timeout_ms(), -1) << "no connection, no deadline";
  const auto t0 = Clock::now();
  const int silent = unix_client(sock);
  const int partial = unix_client(sock);
  ASSERT_GE(silent, 0);
  ASSERT_GE(partial, 0);
  send_all(partial, "{\"cmd\":\"never finished\"");
  Reader rs{silent}, rp{partial};
  run_until(
      *s, [&] { return rs.pull() || rp.pull(); }, 300ms);  // both accepted
  ASSERT_FALSE(rs.closed || rp.closed) << "closed long before the deadline";
  const int t = s->timeout_ms();
  EXPECT_GT(t, 1000);
  EXPECT_LE(t, 2001);

  // Another client is answered at once meanwhile.
  const int other = unix_client(sock);
  ASSERT_GE(other, 0);
  send_all(other, "{\"cmd\":\"status\"}\n");
  const auto t1 = Clock::now();
  EXPECT_EQ(exchange(*s, other, 1s), "{\"v\":1,\"ok\":true,\"echo\":\"status\"}\n");
  EXPECT_LT(Clock::now() - t1, 500ms);
  close(other);
  EXPECT_FALSE(rs.pull() || rp.pull()) << "the silent clients are still open";

  // The silent ones go at their deadline (2 s after their connect).
  EXPECT_TRUE(run_until(
      *s, [&] { return rs.pull() && rp.pull(); }, 4s));
  const auto waited = Clock::now() - t0;
  EXPECT_GE(waited, 1900ms);
  EXPECT_LT(waited, 3000ms);
  EXPECT_EQ(rs.got, "");
  EXPECT_EQ(rp.got, "");
  EXPECT_EQ(s->timeout_ms(), -1);
  EXPECT_EQ(requests.size(), 1u);
  close(silent);
  close(partial);
}

TEST_F(AdminServerTest, SocketIsMode0600AndRemovedAtTheEnd) {
  dir.write("admin.sock", "a stale file where the socket goes");
  auto s = make();
  ASSERT_TRUE(warnings.empty()) << warnings.front();
  struct stat st {};
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  s.reset();
  EXPECT_NE(stat(sock.c_str(), &st), 0) << "the socket file outlives the server";
}

TEST_F(AdminServerTest, OtherUidIsRefusedBySoPeercred) {
  if (geteuid() != 0)
    GTEST_SKIP() << "needs root to act as uid 65534 (the e2e test test_admin.sh covers it too)";
  auto s = make();
  ASSERT_EQ(chmod(dir.path().c_str(), 0711), 0);
  auto as_nobody = [&](std::string& answer) { return status_as_nobody(*s, {}, answer); };
  std::string answer;
  EXPECT_EQ(as_nobody(answer), 0) << "uid 65534 connected to the 0600 socket";
  EXPECT_EQ(s->refused_peers(), 0u);

  ASSERT_EQ(chmod(sock.c_str(), 0666), 0);  // by hand: SO_PEERCRED still refuses
  EXPECT_EQ(as_nobody(answer), 1);
  EXPECT_EQ(answer.rfind("{\"v\":1,\"ok\":false,\"error\":\"permission denied", 0), 0u) << answer;
  EXPECT_EQ(s->refused_peers(), 1u);
  EXPECT_TRUE(requests.empty()) << "the handler ran for a refused peer";
}

// [admin] group: its members by their primary group or by a supplementary
// one (`usermod -aG`, the usual way in); no group, nobody else.
TEST(AdminPeerAllowed, RootOwnUidAndTheGroupByPrimaryOrSupplementaryGroup) {
  const uid_t own = 998;
  const gid_t admins = 1500;
  EXPECT_TRUE(admin_peer_allowed({0, 0, {}}, own, std::nullopt));
  EXPECT_TRUE(admin_peer_allowed({own, 5, {}}, own, std::nullopt));
  EXPECT_FALSE(admin_peer_allowed({1000, 1000, {}}, own, std::nullopt));
  EXPECT_FALSE(admin_peer_allowed({1000, 1000, {admins}}, own, std::nullopt)) << "no [admin] group: nobody else";
  EXPECT_TRUE(admin_peer_allowed({1000, admins, {}}, own, admins));
  EXPECT_TRUE(admin_peer_allowed({1000, 1000, {27, admins, 100}}, own, admins)) << "a supplementary member";
  EXPECT_TRUE(admin_peer_allowed({1000, 1000, {admins}}, own, admins));
  EXPECT_FALSE(admin_peer_allowed({1000, 1000, {27, 100}}, own, admins));
  EXPECT_FALSE(admin_peer_allowed({1000, 1000, {}}, own, admins));
}

TEST(AdminPeer, IsWhatTheKernelSaysOfTheConnectingProcess) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const auto peer = admin_peer(sv[0]);
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->uid, geteuid());
  EXPECT_EQ(peer->gid, getegid());
  std::vector<gid_t> mine(static_cast<size_t>(getgroups(0, nullptr)));
  ASSERT_EQ(getgroups(static_cast<int>(mine.size()), mine.data()), static_cast<int>(mine.size()));
  std::vector<gid_t> got = peer->groups;
  std::sort(mine.begin(), mine.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, mine);
  close(sv[0]);
  close(sv[1]);
}

TEST_F(AdminServerTest, SupplementaryMemberOfTheAdminGroupIsAllowed) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as uid 65534 with chosen groups";
  // A group of this machine that is neither root's nor nobody's primary one.
  const group* admins = nullptr;
  for (const char* name : {"adm", "users", "staff", "daemon", "sys", "disk"}) {
    admins = getgrnam(name);
    if (admins != nullptr && admins->gr_gid != 0 && admins->gr_gid != 65534) break;
    admins = nullptr;
  }
  ASSERT_NE(admins, nullptr) << "no usable group on this machine";
  const gid_t gid = admins->gr_gid;
  auto s = std::make_unique<AdminServer>(AdminServer::Options{sock, admins->gr_name, ""}, handler(), metrics(),
                                         warnings);
  ASSERT_TRUE(warnings.empty()) << warnings.front();
  ASSERT_EQ(chmod(dir.path().c_str(), 0711), 0);
  // A child as uid/gid 65534 with `groups` supplementary: its answer.
  auto as_nobody = [&](const std::vector<gid_t>& groups) {
    std::string answer;
    EXPECT_EQ(status_as_nobody(*s, groups, answer), 1) << "connected and answered";
    return answer;
  };
  EXPECT_EQ(as_nobody({gid}), "{\"v\":1,\"ok\":true,\"echo\":\"status\"}\n")
      << "a member of " << admins->gr_name << " by a supplementary group";
  EXPECT_EQ(s->refused_peers(), 0u);
  // Not a member: the socket's mode (0660) refuses the connect; by hand
  // 0666, the peer check still refuses.
  ASSERT_EQ(chmod(sock.c_str(), 0666), 0);
  const std::string refused = as_nobody({});
  EXPECT_EQ(refused.rfind("{\"v\":1,\"ok\":false,\"error\":\"permission denied", 0), 0u) << refused;
  EXPECT_EQ(s->refused_peers(), 1u);
  EXPECT_EQ(requests.size(), 1u);
}

// A handler that takes long (a reload validating every certificate) and an
// answer larger than the socket's buffer: the client gets all of it, not
// what fit before the request's 2 s deadline.
TEST_F(AdminServerTest, SlowAnswerLargerThanTheSocketBufferIsSentWhole) {
  const std::string big(4u << 20, 'x');
  AdminServer s(AdminServer::Options{sock, "", ""},
                [&](const AdminRequest&) {
                  std::this_thread::sleep_for(2100ms);
                  return big;
                },
                metrics(), warnings);
  ASSERT_TRUE(warnings.empty()) << warnings.front();
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"routes.reload\"}\n");
  const std::string got = exchange(s, fd, 10s);
  close(fd);
  EXPECT_EQ(got.size(), big.size() + 1) << "the answer was cut";
}

// ------------------------------------------------------------------ /metrics

struct HttpReply {
  std::string status_line;
  std::string headers;
  std::string body;
};

HttpReply split_http(const std::string& raw) {
  HttpReply r;
  const size_t eol = raw.find("\r\n");
  const size_t end = raw.find("\r\n\r\n");
  if (eol == std::string::npos || end == std::string::npos) {
    r.status_line = raw;
    return r;
  }
  r.status_line = raw.substr(0, eol);
  r.headers = raw.substr(eol + 2, end - eol);
  r.body = raw.substr(end + 4);
  return r;
}

class AdminMetricsTest : public AdminServerTest {
 protected:
  uint16_t port = free_port();
  std::unique_ptr<AdminServer> s;
  void SetUp() override {
    AdminServerTest::SetUp();
    s = make("127.0.0.1:" + std::to_string(port));
    ASSERT_TRUE(warnings.empty()) << warnings.front();
  }
  HttpReply get(const std::string& request) {
    const int fd = tcp_client(port);
    if (fd < 0) return {};
    send_all(fd, request);
    const std::string raw = exchange(*s, fd);
    close(fd);
    return split_http(raw);
  }
};

TEST_F(AdminMetricsTest, GetMetricsReturnsTheBodyWithContentLength) {
  const HttpReply r = get("GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body, metrics_body);
  EXPECT_NE(r.headers.find("Content-Length: " + std::to_string(metrics_body.size()) + "\r\n"),
            std::string::npos)
      << r.headers;
  EXPECT_NE(r.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << r.headers;
  EXPECT_EQ(metrics_calls, 1);
  EXPECT_TRUE(requests.empty());
}

// Scrapes that arrive together share one render and one copy of the
// answer (64 at once were 64 renders, each held whole until sent:
// gigabytes at 100,000 certificates); a later pass renders anew (never a
// stale answer).
TEST_F(AdminMetricsTest, ScrapesInOnePassShareOneRender) {
  metrics_body.clear();
  for (int i = 0; i < 20000; ++i) metrics_body += "lode_big_total{i=\"" + std::to_string(i) + "\"} 1\n";
  std::vector<int> fds;
  for (int i = 0; i < 16; ++i) {
    const int fd = tcp_client(port);
    ASSERT_GE(fd, 0);
    send_all(fd, "GET /metrics HTTP/1.0\r\n\r\n");
    fds.push_back(fd);
  }
  std::vector<Reader> readers;
  for (int fd : fds) readers.push_back(Reader{fd});
  EXPECT_TRUE(run_until(
      *s,
      [&] {
        bool all = true;
        for (Reader& r : readers) all = r.pull() && all;
        return all;
      },
      5s));
  for (const Reader& r : readers) EXPECT_EQ(split_http(r.got).body, metrics_body);
  EXPECT_EQ(metrics_calls, 1) << "requests read in one pass share one render";
  for (int fd : fds) close(fd);
  metrics_body = "lode_test_total 8\n";
  EXPECT_EQ(get("GET /metrics HTTP/1.0\r\n\r\n").body, metrics_body) << "a later pass renders anew";
  EXPECT_EQ(metrics_calls, 2);
}

TEST_F(AdminMetricsTest, BigBodyIsSentWhole) {
  metrics_body.clear();
  for (int i = 0; i < 400000; ++i)
    metrics_body += "lode_big_total{i=\"" + std::to_string(i) + "\"} 1\n";
  // More than loopback's socket buffers take at once (about 4 MB here): the
  // rest goes out as the client reads.
  ASSERT_GT(metrics_body.size(), 10u << 20);
  const HttpReply r = get("GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(r.body.size(), metrics_body.size());
  EXPECT_TRUE(r.body == metrics_body);
}

TEST_F(AdminMetricsTest, OtherPathsAre404) {
  for (const char* path : {"/", "/metric", "/metrics/", "/metricsx", "/admin", "/metrics%20"}) {
    const HttpReply r = get(std::string("GET ") + path + " HTTP/1.1\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << path;
    EXPECT_NE(r.headers.find("Content-Length: " + std::to_string(r.body.size()) + "\r\n"),
              std::string::npos);
  }
  EXPECT_EQ(metrics_calls, 0);
}

TEST_F(AdminMetricsTest, OtherMethodsAre405) {
  for (const char* method : {"POST", "PUT", "DELETE", "HEAD", "get"}) {
    const HttpReply r =
        get(std::string(method) + " /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 405 Method Not Allowed") << method;
  }
  EXPECT_EQ(metrics_calls, 0);
}

TEST_F(AdminMetricsTest, IncompleteRequestIsClosedAtTheDeadlineUnanswered) {
  const int fd = tcp_client(port);
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n");  // no blank line
  const auto t0 = Clock::now();
  EXPECT_EQ(exchange(*s, fd, 4s), "");
  EXPECT_GE(Clock::now() - t0, 1500ms);
  close(fd);
  EXPECT_EQ(metrics_calls, 0);
}

TEST_F(AdminMetricsTest, OversizedRequestIsDropped) {
  const int fd = tcp_client(port);
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(70 * 1024, 'p') + "\r\n\r\n");
  EXPECT_EQ(exchange(*s, fd), "");
  close(fd);
  EXPECT_EQ(metrics_calls, 0);
}

TEST_F(AdminServerTest, MetricsAddressInUseIsAWarningNotACrash) {
  uint16_t port = 0;
  const int taken = tcp_listener(port);
  auto s = make("127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("metrics are not served on 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find(std::strerror(EADDRINUSE)), std::string::npos) << warnings[0];
  // The admin socket still works.
  const int fd = unix_client(sock);
  ASSERT_GE(fd, 0);
  send_all(fd, "{\"cmd\":\"status\"}\n");
  EXPECT_EQ(exchange(*s, fd), "{\"v\":1,\"ok\":true,\"echo\":\"status\"}\n");
  close(fd);
  close(taken);
}

TEST_F(AdminServerTest, BadMetricsAddressIsAWarning) {
  for (const char* addr : {"not-an-address", "127.0.0.1", "127.0.0.1:99999", "[::1:9180"}) {
    warnings.clear();
    auto s = make(addr);
    ASSERT_EQ(warnings.size(), 1u) << addr;
    EXPECT_NE(warnings[0].find(std::string("metrics are not served: '") + addr + "' is not an address:port"),
              std::string::npos)
        << warnings[0];
  }
}

TEST_F(AdminServerTest, UnusableSocketPathIsAWarning) {
  warnings.clear();
  sock = dir.path() + "/no/such/dir/admin.sock";
  auto s = make();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("admin socket " + sock), std::string::npos) << warnings[0];

  warnings.clear();
  sock = dir.path() + "/" + std::string(120, 's');
  auto t = make();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("admin socket path too long"), std::string::npos) << warnings[0];
}

TEST_F(AdminServerTest, UnknownGroupIsAWarningAndTheSocketStays0600) {
  auto s = std::make_unique<AdminServer>(AdminServer::Options{sock, "no-such-group-lode", ""},
                                         handler(), metrics(), warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("[admin] group 'no-such-group-lode' does not exist"),
            std::string::npos);
  struct stat st {};
  ASSERT_EQ(stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(AdminServerTest, NothingConfiguredPollsNothing) {
  sock.clear();
  auto s = make();
  EXPECT_TRUE(warnings.empty());
  std::vector<pollfd> fds;
  s->fill_poll(fds);
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_LT(fds[0].fd, 0);
  EXPECT_LT(fds[1].fd, 0);
  EXPECT_EQ(s->timeout_ms(), -1);
  step(*s, 1);  // poll ignores negative descriptors: nothing happens
}

}  // namespace
}  // namespace lode::cp
