#include "tests/support/cert_fixtures.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>

#ifndef LODE_SOURCE_DIR
#error "LODE_SOURCE_DIR must point at the source tree"
#endif

namespace lode::test {

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "cert_fixtures: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  std::abort();
}

void add_ext(X509* x, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  check(X509_add_ext(x, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

}  // namespace

TestCert make_self_signed_leaf(const std::string& name, int key_slot) {
  std::shared_ptr<EVP_PKEY> key = test_key(KeyKind::kEcdsaP256, key_slot);
  X509* x = X509_new();
  check(x != nullptr, "X509_new");
  check(X509_set_version(x, X509_VERSION_3) == 1, "X509_set_version");
  uint64_t serial = 0;
  check(RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof(serial)) == 1, "RAND_bytes");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1) == 1, "serial");
  check(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nullptr, "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(x), 86400) != nullptr, "notAfter");
  check(X509_set_pubkey(x, key.get()) == 1, "X509_set_pubkey");
  X509_NAME* subject = X509_get_subject_name(x);
  check(X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1,
                                   0) == 1,
        "CN");
  check(X509_set_issuer_name(x, subject) == 1, "issuer");
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature");
  add_ext(x, &ctx, NID_ext_key_usage, "serverAuth");
  add_ext(x, &ctx, NID_subject_alt_name, "DNS:" + name);
  check(X509_sign(x, key.get(), EVP_sha256()) > 0, "X509_sign");
  return TestCert{std::shared_ptr<X509>(x, X509_free), std::move(key)};
}

bool run_make_test_pki(const std::string& dir, const std::string& name) {
  const std::string cmd = std::string("bash '") + LODE_SOURCE_DIR + "/tools/make-test-pki.sh' '" +
                          dir + "' '" + name + "' >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace lode::test
