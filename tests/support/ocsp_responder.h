// Real OCSP peers for the tests: the PKI of tools/make-ocsp-pki.sh made once
// per test binary on freshly chosen loopback ports, `openssl ocsp` responders
// behind a request-counting proxy, and a scripted HTTP server for the
// negative cases (garbage, slow, wrong type, errors, redirects, hang-ups) and
// for serving CRLs.
//
// Every process is started with fork/exec, remembered by PID and stopped by
// that PID (SIGTERM, then SIGKILL after 2 s); children also get SIGKILL if the
// test binary dies (PR_SET_PDEATHSIG). Every thread is joined on destruction.
#pragma once

#include <openssl/x509.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace lode::test {

class TempDir;

// A TCP port free on 127.0.0.1 right now (bound to port 0, then released).
uint16_t free_loopback_port();

// tools/make-ocsp-pki.sh DIR, run once per process in a temporary directory
// (removed at exit) with three free loopback ports. Aborts if the script fails.
struct OcspPki {
  std::string dir;
  uint16_t ocsp_port = 0;       // the intermediate's responder (leaves' AIA)
  uint16_t crl_port = 0;        // the leaves' CRL distribution point
  uint16_t root_ocsp_port = 0;  // the root's responder (intermediate's AIA)
  std::string path(std::string_view file) const { return dir + "/" + std::string(file); }
};
const OcspPki& shared_ocsp_pki();

// The first certificate of a PEM file; aborts when there is none.
std::shared_ptr<X509> load_pem_cert(const std::string& path);
// The whole file; aborts when it cannot be read.
std::string file_contents(const std::string& path);

// The shared PKI's certificates (the first certificate of each file).
struct OcspCerts {
  std::shared_ptr<X509> root, intermediate;
  std::shared_ptr<X509> good, revoked, muststaple;  // serials 7, 8, 9
  std::shared_ptr<X509> responder, root_responder;  // delegated responders
};
const OcspCerts& ocsp_certs();

// What `openssl ocsp` is started with.
struct OcspResponderSpec {
  std::string index;               // -index
  std::string ca;                  // -CA
  std::string rsigner;             // -rsigner (the first certificate of the file)
  std::string rkey;                // -rkey
  int ndays = 1;                   // -ndays; -1 leaves it out (no nextUpdate unless -nmin)
  std::vector<std::string> extra;  // e.g. {"-resp_no_certs"}, {"-nmin", "5"}
};
// The intermediate's responder of the shared PKI (the article's shape).
OcspResponderSpec intermediate_responder_spec();
// The root's responder of the shared PKI.
OcspResponderSpec root_responder_spec();

// `openssl ocsp -port 0 ...` (it listens on an ephemeral port on all
// addresses) behind a proxy on 127.0.0.1:`port` (0: a free one) that counts
// the connections carrying a request: the responder answers one request per
// connection (HTTP/1.0), so that is its request count.
class OcspResponder {
 public:
  explicit OcspResponder(const OcspResponderSpec& spec, uint16_t port = 0);
  ~OcspResponder();
  OcspResponder(const OcspResponder&) = delete;
  OcspResponder& operator=(const OcspResponder&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }  // why it did not start
  uint16_t port() const { return port_; }
  std::string url() const;  // http://127.0.0.1:port
  pid_t pid() const { return pid_; }
  int requests() const { return requests_.load(); }
  // Stops the proxy and the responder (by PID); idempotent.
  void stop();

 private:
  void accept_loop();
  void relay(int client);

  std::string error_;
  std::unique_ptr<TempDir> logs_;  // the responder's stdout and stderr
  pid_t pid_ = -1;
  uint16_t backend_port_ = 0;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> relays_;
};

// Starts a responder from `spec` on a free port, POSTs one request for
// (cert, issuer) through lode::cp::fetch_ocsp, stops it and returns the DER
// response; empty with *error set on failure.
std::string response_from(const OcspResponderSpec& spec, X509* cert, X509* issuer,
                          std::string* error);

// What the scripted server answers to every request.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/ocsp-response";  // empty: no header
  std::string body;
  std::string location;                // a Location header when not empty
  std::chrono::milliseconds delay{0};  // wait this long before answering
  bool hang_up = false;                // close the connection without answering
};

// A one-thread HTTP/1.1 server on 127.0.0.1:`port` (0: a free one), one
// connection at a time, "Connection: close".
class FakeHttpServer {
 public:
  explicit FakeHttpServer(HttpReply reply, uint16_t port = 0);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  bool ok() const { return listen_fd_ >= 0; }
  uint16_t port() const { return port_; }
  std::string url() const;  // http://127.0.0.1:port
  int requests() const { return requests_.load(); }
  // The head (request line and headers) of the last request, and its body.
  std::string last_head() const;
  std::string last_body() const;

 private:
  void serve();
  void answer(int fd);

  HttpReply reply_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::string last_head_;
  std::string last_body_;
  std::thread thread_;
};

}  // namespace lode::test
