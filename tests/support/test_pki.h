// Throwaway PKI for tests, made in memory with the OpenSSL C API: keys
// (ECDSA P-256, RSA-2048, Ed25519), self-signed roots, intermediates and
// leaves with chosen CN, DNS / IP subjectAltNames and validity, their PEM
// forms (plain and encrypted keys), and a temporary directory to write them
// into. Keys are generated once per process and reused (RSA keygen is slow);
// ask for another `slot` to get a different key of the same kind.
//
// Nothing here touches the network or a fixed path; failures abort the test
// binary (they mean OpenSSL itself is broken).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lode::test {

enum class KeyKind { kEcdsaP256, kRsa2048, kEd25519 };

// A process-wide cached key; the same (kind, slot) always gives the same key.
std::shared_ptr<EVP_PKEY> test_key(KeyKind kind, int slot = 0);

struct CertSpec {
  std::string cn;                         // empty = no CN in the subject
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries
  KeyKind key_kind = KeyKind::kEcdsaP256;
  int key_slot = 0;
  bool is_ca = false;
  // extendedKeyUsage of a non-CA certificate ("" = none; "OCSPSigning" for a
  // delegated OCSP responder).
  std::string ext_key_usage = "serverAuth,clientAuth";
  // Validity relative to now.
  std::chrono::seconds not_before = -std::chrono::hours(1);
  std::chrono::seconds not_after = std::chrono::hours(24 * 30);
};

struct TestCert {
  std::shared_ptr<X509> cert;
  std::shared_ptr<EVP_PKEY> key;

  std::string cert_pem() const;
  std::string key_pem() const;              // PKCS#8 "PRIVATE KEY"
  std::string traditional_key_pem() const;  // "EC PRIVATE KEY" / "RSA PRIVATE KEY"
  std::string encrypted_key_pem(std::string_view passphrase) const;              // PKCS#8
  std::string encrypted_traditional_key_pem(std::string_view passphrase) const;  // Proc-Type
};

// A self-signed CA.
TestCert make_root_ca(const std::string& cn, KeyKind kind = KeyKind::kEcdsaP256, int slot = 0);
// A certificate for `spec` signed by `issuer` (spec.is_ca for intermediates).
TestCert issue_cert(const TestCert& issuer, const CertSpec& spec);
// PEM of the certificates in order (e.g. leaf then intermediate).
std::string chain_pem(const std::vector<const TestCert*>& certs);

// Root → intermediate → leaves, made once per process.
struct TestPki {
  TestCert root;
  TestCert intermediate;
  // A leaf for `name` (CN and first DNS SAN), issued by the intermediate.
  // Extra SANs and the key come from `spec` when given (its cn/dns_names are
  // completed with `name`).
  TestCert leaf(const std::string& name, CertSpec spec = {}) const;
  // leaf + intermediate, the usual server chain file.
  std::string server_chain_pem(const TestCert& leaf) const;
};
const TestPki& shared_test_pki();
// A second, unrelated hierarchy (for "wrong CA" tests).
const TestPki& other_test_pki();

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `content` to path()/rel (creating parent directories, mode 0600)
  // and returns the full path.
  std::string write(std::string_view rel, std::string_view content) const;
  void remove(std::string_view rel) const;
  std::string mkdir(std::string_view rel) const;

 private:
  std::string path_;
};

}  // namespace lode::test
