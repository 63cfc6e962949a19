#include "tests/support/test_pki.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <system_error>
#include <utility>

namespace lode::test {

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "test_pki: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  std::abort();
}

std::shared_ptr<EVP_PKEY> own(EVP_PKEY* k) {
  return {k, EVP_PKEY_free};
}
std::shared_ptr<X509> own(X509* x) {
  return {x, X509_free};
}

EVP_PKEY* generate(KeyKind kind) {
  switch (kind) {
    case KeyKind::kEcdsaP256:
      return EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    case KeyKind::kRsa2048:
      return EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
    case KeyKind::kEd25519:
      return EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  return nullptr;
}

template <class Write>
std::string to_pem(Write&& write) {
  BIO* bio = BIO_new(BIO_s_mem());
  check(bio != nullptr, "BIO_new");
  check(write(bio) == 1, "PEM write");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

void add_ext(X509* x, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  check(X509_add_ext(x, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

// Signs a certificate for `key` / `spec`; a self-signed one when issuer is null.
TestCert make_cert(const TestCert* issuer, const CertSpec& spec, std::shared_ptr<EVP_PKEY> key) {
  X509* x = X509_new();
  check(x != nullptr, "X509_new");
  check(X509_set_version(x, X509_VERSION_3) == 1, "X509_set_version");
  uint64_t serial = 0;
  check(RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof(serial)) == 1, "RAND_bytes");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1) == 1, "serial");
  check(X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(spec.not_before.count())) !=
            nullptr,
        "notBefore");
  check(
      X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(spec.not_after.count())) != nullptr,
      "notAfter");
  check(X509_set_pubkey(x, key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(x);
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("Lodestone Test"), -1, -1,
                                   0) == 1,
        "O");
  if (!spec.cn.empty()) {
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1,
                                     -1, 0) == 1,
          "CN");
  }
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : x;
  check(X509_set_issuer_name(x, X509_get_subject_name(issuer_cert)) == 1, "issuer");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer_cert, x, nullptr, nullptr, 0);
  add_ext(x, &ctx, NID_basic_constraints, spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  const bool rsa = EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_RSA;
  add_ext(x, &ctx, NID_key_usage,
          spec.is_ca
              ? "critical,keyCertSign,cRLSign"
              : (rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"));
  if (!spec.is_ca && !spec.ext_key_usage.empty()) add_ext(x, &ctx, NID_ext_key_usage, spec.ext_key_usage);
  add_ext(x, &ctx, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
  std::string san;
  for (const auto& d : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : spec.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) add_ext(x, &ctx, NID_subject_alt_name, san);

  EVP_PKEY* signer = issuer != nullptr ? issuer->key.get() : key.get();
  const EVP_MD* md = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  check(X509_sign(x, signer, md) > 0, "X509_sign");
  return TestCert{own(x), std::move(key)};
}

}  // namespace

std::shared_ptr<EVP_PKEY> test_key(KeyKind kind, int slot) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, std::shared_ptr<EVP_PKEY>> cache;
  std::lock_guard lock(mu);
  auto& k = cache[{static_cast<int>(kind), slot}];
  if (!k) {
    k = own(generate(kind));
    check(k != nullptr, "key generation");
  }
  return k;
}

std::string TestCert::cert_pem() const {
  return to_pem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
}

std::string TestCert::key_pem() const {
  return to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
}

std::string TestCert::traditional_key_pem() const {
  return to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey_traditional(b, key.get(), nullptr, nullptr, 0, nullptr,
                                                nullptr);
  });
}

std::string TestCert::encrypted_key_pem(std::string_view passphrase) const {
  std::string pass(passphrase);
  return to_pem([&](BIO* b) {
    return PEM_write_bio_PKCS8PrivateKey(b, key.get(), EVP_aes_256_cbc(), pass.data(),
                                         static_cast<int>(pass.size()), nullptr, nullptr);
  });
}

std::string TestCert::encrypted_traditional_key_pem(std::string_view passphrase) const {
  std::string pass(passphrase);
  return to_pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey_traditional(b, key.get(), EVP_aes_128_cbc(),
                                                reinterpret_cast<unsigned char*>(pass.data()),
                                                static_cast<int>(pass.size()), nullptr, nullptr);
  });
}

TestCert make_root_ca(const std::string& cn, KeyKind kind, int slot) {
  CertSpec spec;
  spec.cn = cn;
  spec.is_ca = true;
  spec.not_after = std::chrono::hours(24 * 365);
  return make_cert(nullptr, spec, test_key(kind, slot));
}

TestCert issue_cert(const TestCert& issuer, const CertSpec& spec) {
  return make_cert(&issuer, spec, test_key(spec.key_kind, spec.key_slot));
}

std::string chain_pem(const std::vector<const TestCert*>& certs) {
  std::string out;
  for (const TestCert* c : certs) out += c->cert_pem();
  return out;
}

TestCert TestPki::leaf(const std::string& name, CertSpec spec) const {
  if (spec.cn.empty()) spec.cn = name;
  spec.dns_names.insert(spec.dns_names.begin(), name);
  return issue_cert(intermediate, spec);
}

std::string TestPki::server_chain_pem(const TestCert& leaf_cert) const {
  return chain_pem({&leaf_cert, &intermediate});
}

namespace {

TestPki make_pki(const std::string& label, int slot) {
  TestPki pki;
  pki.root = make_root_ca("Lodestone Test Root " + label, KeyKind::kEcdsaP256, 100 + slot);
  CertSpec inter;
  inter.cn = "Lodestone Test Intermediate " + label;
  inter.is_ca = true;
  inter.key_slot = 200 + slot;
  inter.not_after = std::chrono::hours(24 * 365);
  pki.intermediate = issue_cert(pki.root, inter);
  return pki;
}

}  // namespace

const TestPki& shared_test_pki() {
  static const TestPki pki = make_pki("A", 0);
  return pki;
}

const TestPki& other_test_pki() {
  static const TestPki pki = make_pki("B", 1);
  return pki;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/lode-test-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(std::string_view rel, std::string_view content) const {
  const std::filesystem::path full = std::filesystem::path(path_) / rel;
  std::error_code ec;
  std::filesystem::create_directories(full.parent_path(), ec);
  const int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  check(fd >= 0, "open for write");
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    check(n > 0, "write");
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return full.string();
}

void TempDir::remove(std::string_view rel) const {
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(path_) / rel, ec);
}

std::string TempDir::mkdir(std::string_view rel) const {
  const std::filesystem::path full = std::filesystem::path(path_) / rel;
  std::error_code ec;
  std::filesystem::create_directories(full, ec);
  return full.string();
}

}  // namespace lode::test
