// Background revocation checks for the control plane: a few threads take
// jobs (OCSP: build the request, fetch, verify; CRL: fetch, verify, look the
// serial up) and hand results back to the event loop, which polls fd() and
// drains take_results(). The loop never blocks on a responder; a slow or dead
// one delays only its own certificates. A CRL result comes back as an
// OcspStatus without DER (good or revoked, thisUpdate/nextUpdate of the CRL):
// nothing to staple, the same revocation decision.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/ocsp.h"
#include "lodestone/result.h"

namespace lode::cp {

struct OcspJob {
  std::string key;        // the certificate record's key
  uint64_t cert_version;  // the bundle it was made for
  std::string url;
  X509* cert = nullptr;    // owned (up-referenced) by the job
  X509* issuer = nullptr;
  OcspMethod method = OcspMethod::kPost;
  std::chrono::milliseconds timeout{3000};
  bool crl = false;  // url is a CRL distribution point, not an OCSP responder
};

struct OcspResult {
  std::string key;
  uint64_t cert_version;
  std::string url;
  Result<OcspStatus, std::string> status;
};

inline constexpr size_t kMaxCrlBytes = 16 * 1024 * 1024;

class OcspFetcher {
 public:
  explicit OcspFetcher(unsigned threads);
  ~OcspFetcher();
  OcspFetcher(const OcspFetcher&) = delete;
  OcspFetcher& operator=(const OcspFetcher&) = delete;

  // Takes references on job.cert / job.issuer (the caller keeps its own).
  void submit(OcspJob job);
  int fd() const noexcept { return event_fd_; }
  std::vector<OcspResult> take_results();
  size_t in_flight() const;

 private:
  void run();
  static Result<OcspStatus, std::string> check_crl_at(const OcspJob& job);

  int event_fd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<OcspJob> jobs_;
  std::vector<OcspResult> results_;
  size_t busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace lode::cp
