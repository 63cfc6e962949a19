// The worker's own record layer (dataplane/worker/record_layer.h), end to end
// on loopback against real OpenSSL clients: once the handshake is done the
// worker seals and opens the client's records itself and frees the SSL.
// `[tls] ktls = false` makes the tests take this path on any kernel (with
// kTLS on, a kernel that has the tls ULP would take the records instead).
// Covered: the six AEAD suites of TLS 1.2 and 1.3 with bulk both ways and
// equal SHA-256, close_notify both ways, KeyUpdate (requested or not) in the
// middle of a stream, resumption with the tickets we sealed, a tampered
// record, a TLS 1.2 renegotiation (refused with OpenSSL's warning, once per
// connection however many records it comes in), an
// oversized record, and the switch that
// leaves the records to OpenSSL.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <thread>

#include "worker/mem_client.h"
#include "worker/worker_fixture.h"

namespace lode::worker {
namespace {

using namespace std::chrono_literals;
using namespace fixture;

constexpr const char* kOwn = "[tls]\nktls = false\n";

class OwnRecordsTest : public WorkerTest {
 protected:
  // Starts the worker (our record layer on) and a client done with its
  // handshake.
  std::unique_ptr<MemClient> handshaken(int version, const char* cipher) {
    start(backend_.port(), kOwn);
    auto c = std::make_unique<MemClient>(ca_pem_, version, cipher);
    if (!c->handshake(port_)) ADD_FAILURE() << "handshake: " << c->error();
    return c;
  }
  std::string only_log_line() {
    if (!wait_log(1, 10s)) return "(no log line)";
    return log()[0];
  }
  // Sends `bytes` as they are (records the test built or spoiled) and reads
  // until the worker ends the connection; true when it did (FIN or reset).
  static bool ended_after_raw(MemClient& c, std::string_view bytes) {
    if (send(c.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) return true;
    const auto end = std::chrono::steady_clock::now() + 5s;
    std::string ignored;
    while (std::chrono::steady_clock::now() < end) {
      if (!c.recv_some(100)) return true;
      c.read_available(ignored);
    }
    return false;
  }
  EchoBackend backend_;
};


class OwnRecordsSuiteTest : public OwnRecordsTest, public ::testing::WithParamInterface<Suite> {};

TEST_P(OwnRecordsSuiteTest, BulkBothWaysThroughOurRecordLayerWithEqualSha256) {
  const Suite& s = GetParam();
  auto client = handshaken(s.version, s.cipher);
  if (HasFailure()) return;
  MemClient& c = *client;
  // Sizes around the 16 KiB record limit first, then bulk.
  std::string small;
  for (size_t n : {1u, 100u, 16383u, 16384u, 16385u}) {
    const std::string d = pattern(n, n);
    small += echo_both_ways(c, d, d.size(), false);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(small.size(), 1u + 100u + 16383u + 16384u + 16385u);
  const std::string data = pattern(2 << 20, 1);
  const std::string got = echo_both_ways(c, data, data.size());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_EQ(sha256(got), sha256(data));
  EXPECT_TRUE(c.clean()) << "no close_notify after the backend closed: " << c.error();
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_TRUE(has(line, R"("records":"lodestone")")) << line;
  EXPECT_TRUE(has(line, R"("ktls":"none")")) << line;
  EXPECT_EQ(stats().own_records.load(), 1u);
  EXPECT_EQ(stats().own_records_declined.load(), 0u);
  EXPECT_EQ(stats().own_records_errors.load(), 0u);
  EXPECT_EQ(stats().ktls_unavailable.load(), 0u) << "kTLS is off: nothing was offered to the kernel";
}

INSTANTIATE_TEST_SUITE_P(Suites, OwnRecordsSuiteTest, ::testing::ValuesIn(kAeadSuites), suite_name);

TEST_F(OwnRecordsTest, SwitchedOffLeavesTheRecordsToOpenSsl) {
  EchoBackend backend;
  start(backend.port(), "[tls]\nktls = false\nown_records = false\n");
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  const std::string data = pattern(300000, 2);
  const std::string got = echo_both_ways(c, data, data.size());
  EXPECT_EQ(sha256(got), sha256(data));
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("records":"openssl")")) << line;
  EXPECT_EQ(stats().own_records.load(), 0u);
}

// Records left to OpenSSL: a client that asks for answers (a KeyUpdate
// request each, which OpenSSL answers with a KeyUpdate) and never reads
// them. What we owe it is bounded (the relay cap and a 64 KiB slack): then
// its reads pause until it takes what it is owed. Before, every request
// was read and answered, the answers piling up without end.
TEST_F(OwnRecordsTest, AClientThatAsksForAnswersAndNeverReadsThemIsBounded) {
  EchoBackend backend;
  start(backend.port(), "[tls]\nktls = false\nown_records = false\n");
  MemClient c(ca_pem_, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  const int small = 4096;
  setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  const auto end = std::chrono::steady_clock::now() + 20s;
  int asked = 0;
  for (; asked < 200000 && std::chrono::steady_clock::now() < end; ++asked) {
    ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    ASSERT_EQ(SSL_do_handshake(c.ssl()), 1);
    // The connection may end first: under ASan the loop outlasts the echo
    // backend's 5 s receive timeout (it sees no byte: KeyUpdates are not
    // relayed), it ends its side and the connection ends soon after (access
    // log: client_send:Broken pipe at 5.4 s, ~160,000 requests). Nothing
    // is held then.
    if (!c.send_pending(false)) break;
    if (c.pending() > 256 * 1024) break;  // the worker stopped reading us
  }
  std::this_thread::sleep_for(1000ms);
  // What it owes the client (the cap and the slack), what it has received
  // and not yet read (a recv's worth), a send in flight: about 540 KiB
  // here; unbounded (3.7 MB after 300,000 requests) before.
  const uint64_t held = stats().buffered_bytes.load();
  EXPECT_LE(held, 1024u * 1024) << asked << " requests";
}

TEST_F(OwnRecordsTest, KeyUpdatesRequestedOrNotAreFollowedBothWays) {
  auto client = handshaken(TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384");
  if (HasFailure()) return;
  MemClient& c = *client;
  std::string all, sent;
  for (int i = 0; i < 4; ++i) {
    // 1: the client changes its key; 2: and asks for ours to change; 3: both again.
    if (i == 1) ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    if (i >= 2) ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    const std::string d = pattern(100000, 10 + i);
    sent += d;
    all += echo_both_ways(c, d, d.size(), i == 3);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(sha256(all), sha256(sent));
  EXPECT_TRUE(c.clean()) << c.error();
  EXPECT_EQ(stats().own_records_key_updates.load(), 3u);
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"ok")")) << line;
  EXPECT_TRUE(has(line, R"("records":"lodestone")")) << line;
}

TEST_F(OwnRecordsTest, ManyKeyUpdateRequestsWhileWeAreSilentShareOneAnswer) {
  auto client = handshaken(TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  if (HasFailure()) return;
  MemClient& c = *client;
  const std::string a = "before";
  ASSERT_EQ(echo_both_ways(c, a, a.size(), false), a);
  const uint64_t sent_before = stats().bytes_client_out.load();
  // 500 requests in a row, no data between them: RFC 8446 4.6.3 has the
  // receiver answer with a single KeyUpdate before its next data, so a
  // client cannot make the worker write as much as it sends.
  for (int i = 0; i < 500; ++i) {
    ASSERT_EQ(SSL_key_update(c.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    ASSERT_EQ(SSL_do_handshake(c.ssl()), 1);
  }
  ASSERT_TRUE(c.send_pending(true));
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (stats().own_records_key_updates.load() < 500 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(stats().own_records_key_updates.load(), 500u) << "every client key change followed";
  // Then data both ways: the client follows our one KeyUpdate, we its 500.
  const std::string b = pattern(50000, 8);
  EXPECT_EQ(sha256(echo_both_ways(c, b, b.size())), sha256(b));
  EXPECT_TRUE(c.clean()) << c.error();
  // One KeyUpdate record (22 bytes) besides the echo and the close_notify.
  const uint64_t sent = stats().bytes_client_out.load() - sent_before;
  EXPECT_LT(sent, b.size() + 2000) << "answered more than once";
}

TEST_F(OwnRecordsTest, OurSendKeyChangesAfterItsRecordLimitAndTheClientFollows) {
  key_update_after_ = 8;  // 2^24 in service (RFC 8446 5.5's AES-GCM bound)
  auto client = handshaken(TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  if (HasFailure()) return;
  MemClient& c = *client;
  const std::string d = pattern(400000, 12);  // 25 or more records back
  EXPECT_EQ(sha256(echo_both_ways(c, d, d.size())), sha256(d));
  EXPECT_TRUE(c.clean()) << c.error();
  EXPECT_GE(stats().own_records_key_updates_sent.load(), 2u);
  EXPECT_EQ(stats().own_records_key_updates.load(), 0u) << "the client changed nothing";
}

TEST_F(OwnRecordsTest, SessionTicketsWeSealedResumeTheSession) {
  EchoBackend backend;
  start(backend.port(), kOwn);
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SSL_SESSION* session = nullptr;
    {
      MemClient c(ca_pem_, version, version == TLS1_3_VERSION ? "TLS_AES_128_GCM_SHA256" : "ECDHE-ECDSA-AES128-GCM-SHA256");
      ASSERT_TRUE(c.handshake(port_)) << c.error();
      const std::string d = pattern(1000, 3);
      EXPECT_EQ(echo_both_ways(c, d, d.size()), d);  // TLS 1.3: the tickets arrive with it
      session = SSL_get1_session(c.ssl());
      ASSERT_NE(session, nullptr);
      ASSERT_EQ(SSL_SESSION_is_resumable(session), 1) << version;
    }
    MemClient c(ca_pem_, version, version == TLS1_3_VERSION ? "TLS_AES_128_GCM_SHA256" : "ECDHE-ECDSA-AES128-GCM-SHA256");
    ASSERT_EQ(SSL_set_session(c.ssl(), session), 1);
    SSL_SESSION_free(session);
    ASSERT_TRUE(c.handshake(port_)) << c.error();
    EXPECT_EQ(SSL_session_reused(c.ssl()), 1) << version;
    const std::string d = pattern(50000, 4);
    EXPECT_EQ(sha256(echo_both_ways(c, d, d.size())), sha256(d));
  }
  ASSERT_TRUE(wait_log(4, 10s));
  EXPECT_EQ(stats().own_records.load(), 4u);
  EXPECT_EQ(stats().handshakes_resumed.load(), 2u);
}

TEST_F(OwnRecordsTest, ATamperedRecordResetsTheConnectionAndNothingOfItReachesTheBackend) {
  auto client = handshaken(TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256");
  if (HasFailure()) return;
  MemClient& c = *client;
  const std::string first = "first-record";
  ASSERT_EQ(echo_both_ways(c, first, first.size(), false), first);
  ASSERT_TRUE(c.write("second-record-spoiled"));
  std::string rec = c.take_written();
  ASSERT_GT(rec.size(), 20u);
  rec[rec.size() - 20] = static_cast<char>(rec[rec.size() - 20] ^ 0x01);  // one bit of the ciphertext
  EXPECT_TRUE(ended_after_raw(c, rec));
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"client_tls:alert_20")")) << line;  // bad_record_mac
  EXPECT_TRUE(has(line, R"("bytes_to_backend":12,)")) << line;          // the first record only
  EXPECT_EQ(stats().own_records_errors.load(), 1u);
}

TEST_F(OwnRecordsTest, ARenegotiationAttemptIsRefusedWithANoRenegotiationWarning) {
  auto client = handshaken(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
  if (HasFailure()) return;
  MemClient& c = *client;
  const std::string d = "before";
  ASSERT_EQ(echo_both_ways(c, d, d.size(), false), d);
  ASSERT_EQ(SSL_renegotiate(c.ssl()), 1);
  // The ClientHello goes out encrypted under the current keys; the answer is
  // OpenSSL 3.0's own: a warning alert no_renegotiation (100).
  bool refused = false;
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (!refused && std::chrono::steady_clock::now() < end) {
    ERR_clear_error();
    if (SSL_do_handshake(c.ssl()) == 1) break;
    const unsigned long e = ERR_peek_error();
    refused = ERR_GET_REASON(e) == SSL_R_NO_RENEGOTIATION;
    if (e != 0 && !refused) break;
    if (!c.send_pending(true) || !c.recv_some(100)) break;
  }
  EXPECT_TRUE(refused) << ERR_error_string(ERR_peek_error(), nullptr);
  EXPECT_EQ(stats().own_records_errors.load(), 0u);
  EXPECT_EQ(stats().own_records.load(), 1u);
}

// One warning per connection, however many records the refused hello
// comes in: a client cannot make us write as much as it sends. A 2 KB
// session ticket extension and 512-byte fragments spread the renegotiation's ClientHello over
// several records; the client never reads the answer (so it sends no alert
// of its own), and the alert records coming back are counted on the wire.
TEST_F(OwnRecordsTest, ARenegotiationInManyRecordsGetsOneWarning) {
  start(backend_.port(), kOwn);
  MemClient c(ca_pem_, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
  // No ticket from the first handshake: OpenSSL 3.0 would leak it when the
  // ticket extension set below replaces it in the renegotiation's hello.
  SSL_set_options(c.ssl(), SSL_OP_NO_TICKET);
  ASSERT_TRUE(c.handshake(port_)) << c.error();
  SSL_clear_options(c.ssl(), SSL_OP_NO_TICKET);
  const std::string d = "before";
  ASSERT_EQ(echo_both_ways(c, d, d.size(), false), d);
  const std::string ticket(2000, 't');  // sent as the hello's session ticket extension
  ASSERT_EQ(SSL_set_session_ticket_ext(c.ssl(), const_cast<char*>(ticket.data()), static_cast<int>(ticket.size())), 1);
  ASSERT_EQ(SSL_set_max_send_fragment(c.ssl(), 512), 1);
  ASSERT_EQ(SSL_renegotiate(c.ssl()), 1);
  ERR_clear_error();
  ASSERT_NE(SSL_do_handshake(c.ssl()), 1);
  const std::string hello = c.take_written();
  size_t records = 0;
  for (size_t at = 0; at + 5 <= hello.size(); at += 5 + (size_t{static_cast<uint8_t>(hello[at + 3])} << 8 |
                                                         static_cast<uint8_t>(hello[at + 4]))) {
    EXPECT_EQ(hello[at], 22) << "record " << records << " is not a handshake record";
    ++records;
  }
  ASSERT_GE(records, 4u) << "the hello was not spread over records: " << hello.size() << " bytes";
  ASSERT_EQ(send(c.fd(), hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
  // What comes back within half a second, read raw: records, by type.
  std::string back;
  const auto end = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{c.fd(), POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(c.fd(), buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    back.append(buf, static_cast<size_t>(n));
  }
  size_t alerts = 0, others = 0;
  for (size_t at = 0; at + 5 <= back.size();
       at += 5 + (size_t{static_cast<uint8_t>(back[at + 3])} << 8 | static_cast<uint8_t>(back[at + 4]))) {
    (back[at] == 21 ? alerts : others) += 1;
  }
  EXPECT_EQ(alerts, 1u) << "one no_renegotiation warning for " << records << " records of hello";
  EXPECT_EQ(others, 0u);
  EXPECT_EQ(stats().own_records_errors.load(), 0u);
}

TEST_F(OwnRecordsTest, AnOversizedRecordIsRefusedFromItsHeader) {
  auto client = handshaken(TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
  if (HasFailure()) return;
  MemClient& c = *client;
  const std::string d = "x";
  ASSERT_EQ(echo_both_ways(c, d, d.size(), false), d);
  // 2^14 + 257 bytes announced: over TLS 1.3's limit. Only the header is
  // sent: the worker must not wait for a body it will never accept.
  const std::string header = {23, 3, 3, static_cast<char>(0x41), static_cast<char>(0x01)};
  EXPECT_TRUE(ended_after_raw(c, header));
  const std::string line = only_log_line();
  EXPECT_TRUE(has(line, R"("result":"client_tls:alert_22")")) << line;  // record_overflow
}

}  // namespace
}  // namespace lode::worker
