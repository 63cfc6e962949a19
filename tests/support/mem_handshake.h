// Runs a client SSL and a server SSL against each other through memory BIOs,
// with no sockets: each side writes into its own memory BIO and transfer()
// copies the bytes to the other side's read BIO. Records every alert each
// side sent and received, and the OpenSSL error of a side that failed.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/tls/tls_context.h"

namespace lode::test {

struct AlertSeen {
  int level = 0;        // 1 warning, 2 fatal
  int description = 0;  // RFC 8446 section 6 AlertDescription
};

struct HandshakeResult {
  bool client_done = false;
  bool server_done = false;
  std::string client_error;  // OpenSSL's reasons when the client failed
  std::string server_error;
  // The first fatal alert (or else the first alert) each side sent and got;
  // -1 when none.
  int client_alert_sent = -1;
  int client_alert_received = -1;
  int server_alert_sent = -1;
  int server_alert_received = -1;

  bool ok() const { return client_done && server_done; }
};

class MemHandshake {
 public:
  MemHandshake(tls::SslPtr client, tls::SslPtr server);
  ~MemHandshake();
  MemHandshake(const MemHandshake&) = delete;
  MemHandshake& operator=(const MemHandshake&) = delete;

  // Drives both handshakes until both finished, one failed and the other can
  // make no progress, or max_rounds passed.
  HandshakeResult run(int max_rounds = 32);
  // Copies pending bytes both ways; returns how many moved.
  size_t transfer();

  // Lets the client read what the server sent after its handshake (TLS 1.3
  // NewSessionTicket) and returns the client's session for resumption.
  tls::SslSessionPtr client_session();
  // Sends `data` from one side and returns what the other side read.
  std::string client_to_server(std::string_view data);
  std::string server_to_client(std::string_view data);

  SSL* client() const;
  SSL* server() const;
  const std::vector<AlertSeen>& client_alerts_sent() const;
  const std::vector<AlertSeen>& client_alerts_received() const;
  const std::vector<AlertSeen>& server_alerts_sent() const;
  const std::vector<AlertSeen>& server_alerts_received() const;

  struct Side;

 private:
  HandshakeResult result() const;
  std::string send(Side& from, Side& to, std::string_view data);

  std::unique_ptr<Side> client_;
  std::unique_ptr<Side> server_;
};

// A client SSL_CTX for tests.
struct TestClientOptions {
  std::string ca_pem;  // trusted roots; empty = no verification
  int min_version = TLS1_2_VERSION;
  int max_version = TLS1_3_VERSION;
  std::string cipher_list;   // TLS 1.2 ciphers; empty = OpenSSL's default
  std::string ciphersuites;  // TLS 1.3; empty = OpenSSL's default
  std::vector<std::string> alpn;
};
tls::SslCtxPtr make_test_client_ctx(const TestClientOptions& options);
// A client SSL with SNI `sni` (empty = none), verifying that name when the
// context verifies, resuming `session` when given.
tls::SslPtr new_test_client(SSL_CTX* ctx, std::string_view sni, SSL_SESSION* session = nullptr);

// The CN of the certificate the peer presented ("" if none).
std::string peer_cn(const SSL* ssl);
// The 16-byte key name at the start of a session's ticket ("" if none), hex.
std::string ticket_key_name_hex(const SSL_SESSION* session);
std::string hex(const unsigned char* p, size_t n);

}  // namespace lode::test
