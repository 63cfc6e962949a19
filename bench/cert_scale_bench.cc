// 100,000 certificates: how long the control plane takes to load and publish
// them, what they cost in memory, and how fast one replaced certificate is
// live on every worker, against republishing everything for that one change
// (what a store without deltas must do; Envoy re-sends every secret when one
// is added, envoyproxy/envoy#30715).
//
//   build/release/bench/cert_scale_bench [N=100000] [REPLACEMENTS=200] [WORKERS=2]
//
// 1. N ECDSA P-256 leaf certificates (each its own key, one issuing CA) are
//    generated into a temporary certificate directory (%n.pem / %n.key); not
//    timed as Lodestone's.
// 2. Control plane: scan_cert_directory() loads and validates every file
//    (key matches, chain links, expiry), then one full segment is built and
//    sealed into a memfd. Timed.
// 3. Dataplane: the sealed segment is mapped read-only, validated
//    (SegmentView::open) and applied (apply_segment), then published to real
//    workers (lode::worker::Worker, io_uring, one listener each). Timed.
// 4. REPLACEMENTS times: one file is replaced on disk, reloaded alone
//    (load_directory_file), sent as a delta segment, mapped, applied and
//    published; the clock stops when every worker has picked the generation
//    up. p50 / p99 / max. Then the same change as a full republish (a few
//    times: it is slow), and the ratio.
// 5. A TLS handshake to a replaced name through a worker gets the new
//    certificate (checked, not timed).
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "controlplane/cert_source.h"
#include "support/loopback.h"
#include "controlplane/config.h"
#include "controlplane/snapshot_writer.h"
#include "dataplane/control/snapshot_state.h"
#include "dataplane/worker/worker.h"
#include "tools/lodestone/runtime_builder.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

struct Key {
  EVP_PKEY* p = EVP_EC_gen("P-256");
  ~Key() { EVP_PKEY_free(p); }
};

std::string pem_of(X509* x) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* d;
  const long n = BIO_get_mem_data(b, &d);
  std::string s(d, static_cast<size_t>(n));
  BIO_free(b);
  return s;
}

std::string pem_of_key(EVP_PKEY* k) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* d;
  const long n = BIO_get_mem_data(b, &d);
  std::string s(d, static_cast<size_t>(n));
  BIO_free(b);
  return s;
}

X509* make_cert(EVP_PKEY* key, EVP_PKEY* signer, X509* issuer, const std::string& cn, bool ca, long serial) {
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 90L * 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& v) {
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, v.c_str());
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (ca) add(NID_key_usage, "critical,keyCertSign,cRLSign");
  if (!ca) add(NID_subject_alt_name, "DNS:" + cn);
  X509_sign(x, signer, EVP_sha256());
  return x;
}

struct Ca {
  Key key;
  X509* cert = nullptr;
  std::string pem;
  Ca() {
    cert = make_cert(key.p, key.p, nullptr, "Bench Issuing CA", true, 1);
    pem = pem_of(cert);
  }
  ~Ca() { X509_free(cert); }
  // Leaf chain (leaf + CA) and key for `host`.
  std::pair<std::string, std::string> leaf(const std::string& host, long serial) const {
    Key k;
    X509* x = make_cert(k.p, key.p, cert, host, false, serial);
    std::pair<std::string, std::string> out{pem_of(x) + pem, pem_of_key(k.p)};
    X509_free(x);
    return out;
  }
};

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

std::string host_of(size_t i) { return "h" + std::to_string(i) + ".bench.test"; }

// The serial of the certificate a TLS handshake for `host` gets.
long served_serial(uint16_t port, const std::string& host) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, host.c_str());
  long serial = -1;
  if (SSL_connect(ssl) == 1) {
    X509* peer = SSL_get1_peer_certificate(ssl);
    if (peer != nullptr) serial = ASN1_INTEGER_get(X509_get0_serialNumber(peer));
    X509_free(peer);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return serial;
}


double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100'000;
  const size_t reps = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 200;
  const unsigned nworkers = argc > 3 ? static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10)) : 2;
  char tmpl[] = "/tmp/lode-cert-scale-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const fs::path certs = dir / "certs";
  fs::create_directories(certs);
  std::printf("cert_scale_bench: %zu certificates, %zu replacements, %u workers, in %s\n", n, reps, nworkers,
              dir.c_str());

  // 1. Generate.
  Ca ca;
  auto t0 = Clock::now();
  for (size_t i = 0; i < n; ++i) {
    auto [chain, key] = ca.leaf(host_of(i), static_cast<long>(i + 2));
    write_file(certs / (host_of(i) + ".pem"), chain);
    write_file(certs / (host_of(i) + ".key"), key);
  }
  std::printf("  generated %zu certificates in %.1f s (not Lodestone's time)\n", n, ms_since(t0) / 1000);
  std::vector<std::pair<std::string, std::string>> fresh;  // replacements, made before timing
  for (size_t r = 0; r < reps; ++r) fresh.push_back(ca.leaf(host_of((r * 7919) % n), static_cast<long>(1'000'000 + r)));

  // 2. Control plane: load + validate, full segment.
  const long rss0 = rss_kb();
  t0 = Clock::now();
  lode::cp::DirectorySpec spec{"sites", certs.string(), "%n.pem", "%n.key"};
  std::vector<std::string> warnings;
  const auto now = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  auto trust = lode::cp::CertTrust::load({});
  auto entries = lode::cp::scan_cert_directory(spec, *trust, now, warnings);
  if (!entries || entries->size() != n) {
    std::fprintf(stderr, "scan failed: %s (%zu warnings)\n", entries ? "count" : entries.error().c_str(), warnings.size());
    return 1;
  }
  const double load_ms = ms_since(t0);
  const long rss_loaded = rss_kb();
  const std::string config_text = "[[listener]]\nname = \"l\"\nlisten = [\"127.0.0.1:" + std::to_string(lode::test::free_port()) +
                                  "\"]\n[[pool]]\nname = \"p\"\nbackends = [\"127.0.0.1:9\"]\n"
                                  "[[certificate_dir]]\nname = \"sites\"\npath = \"" + certs.string() + "\"\n"
                                  "[[route]]\nname = \"all\"\nnames = [\"*.bench.test\"]\naction = \"terminate\"\n"
                                  "pool = \"p\"\ncertificate = \"sites\"\n";
  std::vector<std::byte> tickets(80, std::byte{7});
  auto full_segment = [&](uint64_t gen) {
    lode::cp::SegmentBuilder b;
    b.add_config(config_text, 1);
    b.add_ticket_keys(tickets, 1);
    for (const auto& e : *entries) {
      b.add_certificate(lode::control::dir_cert_key("sites", e.host), e.bundle.version, lode::snapshot::CertState::kServe,
                        e.bundle.info.not_after.time_since_epoch().count(), e.bundle.chain_pem, e.bundle.key_pem);
    }
    return b.seal(gen, 0);
  };
  t0 = Clock::now();
  auto fd = full_segment(1);
  const double seal_ms = ms_since(t0);
  // 3. Dataplane: map, validate, apply.
  t0 = Clock::now();
  auto seg = lode::control::MappedSegment::map(fd->get());
  if (!seg) {
    std::fprintf(stderr, "map: %s\n", seg.error().message.c_str());
    return 1;
  }
  auto applied = lode::control::apply_segment(nullptr, *seg);
  const double apply_ms = ms_since(t0);
  const long rss_applied = rss_kb();
  std::printf("  control plane: load + validate %zu certificates %.1f s (%.0f us each), full segment %.1f MB sealed in %.0f ms\n",
              n, load_ms / 1000, load_ms * 1000 / static_cast<double>(n), static_cast<double>((*seg)->size()) / 1e6, seal_ms);
  std::printf("  dataplane: map + validate + apply %.0f ms; total load-to-published %.1f s\n", apply_ms,
              (load_ms + seal_ms + apply_ms) / 1000);
  std::printf("  memory: control plane bundles %.0f MB (%.1f KB per certificate); dataplane index + mapped segment %.0f MB\n",
              static_cast<double>(rss_loaded - rss0) / 1024, static_cast<double>(rss_loaded - rss0) / static_cast<double>(n),
              static_cast<double>(rss_applied - rss_loaded) / 1024);

  // Real workers serving the snapshot.
  auto cfg = lode::config::load_config_string(applied->snapshot->config_text, (dir / "bench.toml").string());
  if (!cfg) {
    std::fprintf(stderr, "config: %s\n", cfg.error().front().to_string().c_str());
    return 1;
  }
  const uint16_t port = cfg->listeners[0].listen[0].port();
  auto keys = std::make_shared<lode::tls::TicketKeys>(1);
  auto built = lode::app::build_runtime(*cfg, keys, 1);
  if (!built) {
    std::fprintf(stderr, "runtime: %s\n", built.error().front().c_str());
    return 1;
  }
  built->runtime->config_version = applied->snapshot->config_version;
  lode::worker::RuntimeSlot rslot;
  rslot.publish(built->runtime);
  lode::control::SnapshotSlot sslot;
  sslot.publish(applied->snapshot);
  std::vector<std::unique_ptr<lode::worker::Worker>> workers;
  for (unsigned i = 0; i < nworkers; ++i) {
    lode::worker::WorkerOptions opt;
    opt.index = i;
    opt.snapshots = &sslot;
    workers.push_back(std::make_unique<lode::worker::Worker>(opt, rslot, lode::worker::AccessLog{}));
    if (!workers.back()->open() || !workers.back()->start()) {
      std::fprintf(stderr, "worker %u did not start\n", i);
      return 1;
    }
  }
  std::shared_ptr<const lode::control::Snapshot> current = applied->snapshot;
  const long first = served_serial(port, host_of(0));
  std::printf("  handshake for %s through a worker: serial %ld (expected 2)\n", host_of(0).c_str(), first);

  auto publish = [&](const std::shared_ptr<const lode::control::Snapshot>& s) {
    sslot.publish(s);
    for (auto& w : workers) w->wake();
    for (auto& w : workers) {
      while (w->snapshot_generation() < s->generation) std::this_thread::yield();
    }
    current = s;
  };

  // 4. One certificate replaced: delta vs full republish.
  std::vector<double> delta_ms;
  uint64_t gen = 1;
  size_t mismatches = 0;
  for (size_t r = 0; r < reps; ++r) {
    const std::string host = host_of((r * 7919) % n);
    write_file(certs / (host + ".pem.tmp"), fresh[r].first);
    write_file(certs / (host + ".key"), fresh[r].second);
    fs::rename(certs / (host + ".pem.tmp"), certs / (host + ".pem"));
    t0 = Clock::now();
    std::vector<std::string> w;
    auto one = lode::cp::load_directory_file(spec, host + ".pem", *trust, now, w);
    if (!one || !one->has_value()) {
      std::fprintf(stderr, "reload of %s failed\n", host.c_str());
      return 1;
    }
    lode::cp::SegmentBuilder b;
    b.add_certificate(lode::control::dir_cert_key("sites", host), (*one)->bundle.version,
                      lode::snapshot::CertState::kServe, 0, (*one)->bundle.chain_pem, (*one)->bundle.key_pem);
    auto dfd = b.seal(gen + 1, gen);
    auto dseg = lode::control::MappedSegment::map(dfd->get());
    auto da = lode::control::apply_segment(current, *dseg);
    if (!da) {
      std::fprintf(stderr, "delta refused\n");
      return 1;
    }
    publish(da->snapshot);
    ++gen;
    delta_ms.push_back(ms_since(t0));
    if (r % 50 == 0 || r + 1 == reps) {
      if (served_serial(port, host) != static_cast<long>(1'000'000 + r)) ++mismatches;
    }
  }
  std::vector<double> full_ms;
  for (int r = 0; r < 3; ++r) {
    t0 = Clock::now();
    auto ffd = full_segment(gen + 1);
    auto fseg = lode::control::MappedSegment::map(ffd->get());
    auto fa = lode::control::apply_segment(current, *fseg);
    publish(fa->snapshot);
    ++gen;
    full_ms.push_back(ms_since(t0));
  }
  std::printf("  one certificate replaced and live on all %u workers (reload file + delta + map + apply + workers):\n"
              "    p50 %.3f ms, p99 %.3f ms, max %.3f ms over %zu replacements; handshakes with the old certificate after it: %zu\n",
              nworkers, pct(delta_ms, 0.5), pct(delta_ms, 0.99), pct(delta_ms, 1.0), reps, mismatches);
  std::printf("  the same change as a full republish of %zu certificates: p50 %.0f ms (3 runs)\n", n, pct(full_ms, 0.5));
  std::printf("  ratio full/delta (p50): %.0fx\n", pct(full_ms, 0.5) / pct(delta_ms, 0.5));
  for (auto& w : workers) w->stop();
  for (auto& w : workers) w->join();
  std::error_code ec;
  fs::remove_all(dir, ec);
  return mismatches == 0 ? 0 : 1;
}
