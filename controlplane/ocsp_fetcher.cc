#include "controlplane/ocsp_fetcher.h"

#include <sys/eventfd.h>
#include <unistd.h>

namespace lode::cp {

OcspFetcher::OcspFetcher(unsigned threads) {
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

OcspFetcher::~OcspFetcher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (auto& j : jobs_) {
    X509_free(j.cert);
    X509_free(j.issuer);
  }
  if (event_fd_ >= 0) close(event_fd_);
}

void OcspFetcher::submit(OcspJob job) {
  X509_up_ref(job.cert);
  X509_up_ref(job.issuer);
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

std::vector<OcspResult> OcspFetcher::take_results() {
  uint64_t v;
  [[maybe_unused]] ssize_t n = read(event_fd_, &v, sizeof v);
  std::lock_guard lock(mu_);
  return std::exchange(results_, {});
}

size_t OcspFetcher::in_flight() const {
  std::lock_guard lock(mu_);
  return jobs_.size() + busy_ + results_.size();
}

Result<OcspStatus, std::string> OcspFetcher::check_crl_at(const OcspJob& job) {
  auto crl = fetch_url(job.url, job.timeout, kMaxCrlBytes);
  if (!crl) return unexpected(crl.error());
  const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto st = check_crl(*crl, job.cert, job.issuer, now);
  if (!st) return unexpected(job.url + ": " + st.error());
  OcspStatus s;
  s.status = st->revoked ? OcspStatus::Cert::kRevoked : OcspStatus::Cert::kGood;
  s.this_update = st->this_update;
  s.next_update = st->next_update;
  s.revoked_at = st->revoked_at;
  s.revocation_reason = st->revocation_reason;
  return s;
}

void OcspFetcher::run() {
  while (true) {
    OcspJob job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++busy_;
    }
    OcspResult r{job.key, job.cert_version, job.url, unexpected(std::string())};
    if (job.crl) {
      r.status = check_crl_at(job);
    } else if (auto req = make_ocsp_request(job.cert, job.issuer); !req) {
      r.status = unexpected(req.error());
    } else {
      auto der = fetch_ocsp(job.url, *req, job.method, job.timeout);
      if (!der) {
        r.status = unexpected(der.error());
      } else {
        const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
        r.status = verify_ocsp_response(*der, job.cert, job.issuer, now);
        if (!r.status) r.status = unexpected(job.url + ": " + r.status.error());
      }
    }
    X509_free(job.cert);
    X509_free(job.issuer);
    {
      std::lock_guard lock(mu_);
      results_.push_back(std::move(r));
      --busy_;
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
  }
}

}  // namespace lode::cp
