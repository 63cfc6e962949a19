// SNI confusion (issue 9): the route (and so the backend) comes from our
// parser's reading of the ClientHello, the certificate from OpenSSL's own
// reading. For every hello fixture and every entry of the parser's fuzz
// corpus, the two must agree or the connection must be refused: either our
// parser rejects the hello (nothing reaches OpenSSL), or OpenSSL, given the
// name we routed by, reads the same name (its servername callback sees no
// mismatch), or OpenSSL itself refuses the bytes before naming anything.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dataplane/tls/client_hello_parser.h"
#include "dataplane/tls/tls_context.h"
#include "tests/support/test_pki.h"

namespace lode::tls {
namespace {

std::vector<std::filesystem::path> inputs() {
  std::vector<std::filesystem::path> out;
  for (const char* dir : {"/tests/fixtures/client_hello", "/tests/fuzz/corpus/client_hello_fuzz"}) {
    const std::filesystem::path d = std::string(LODE_SOURCE_DIR) + dir;
    if (!std::filesystem::is_directory(d)) continue;
    for (const auto& e : std::filesystem::directory_iterator(d)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  }
  return out;
}

std::vector<uint8_t> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

enum class Outcome { kParserRejects, kAgree, kOpenSslRejects, kDisagree };

TEST(SniAgreement, ParserAndOpenSslReadTheSameNameOrTheHelloIsRefused) {
  test::TempDir dir;
  const test::TestPki& pki = test::shared_test_pki();
  const auto leaf = pki.leaf("a.test");
  const CertFiles files{dir.write("a.pem", pki.server_chain_pem(leaf)), dir.write("a.key", leaf.key_pem())};
  auto cert = load_server_cert(files, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();

  const auto all = inputs();
  ASSERT_GE(all.size(), 20u) << "fixtures and corpus under " << LODE_SOURCE_DIR;
  size_t counts[4] = {};
  for (const auto& path : all) {
    const std::vector<uint8_t> bytes = read_all(path);
    ClientHelloParser parser;
    const ParseStatus st = parse_client_hello(bytes, parser);
    Outcome o;
    if (st != ParseStatus::kDone) {
      o = Outcome::kParserRejects;
    } else {
      const std::string routed = parser.info().has_sni ? std::string(parser.info().sni()) : std::string();
      SslPtr ssl = new_server_ssl(cert->ctx.get(), routed);
      ASSERT_TRUE(ssl) << path;
      BIO* in = BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size()));
      BIO_set_mem_eof_return(in, -1);  // the end of the hello: "more later", like a socket
      BIO* out = BIO_new(BIO_s_mem());
      SSL_set_bio(ssl.get(), in, out);
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl.get());
      const int e = SSL_get_error(ssl.get(), r);
      ERR_clear_error();
      if (sni_mismatch(ssl.get())) {
        o = Outcome::kDisagree;
      } else {
        // OpenSSL went on (it wants the client's next flight, or answered)
        // with the name we routed by, or refused the bytes on its own.
        const char* seen = SSL_get_servername(ssl.get(), TLSEXT_NAMETYPE_host_name);
        const bool named_the_same = routed.empty() ? seen == nullptr || *seen == 0 : seen != nullptr;
        o = (e == SSL_ERROR_WANT_READ || r == 1) && named_the_same ? Outcome::kAgree : Outcome::kOpenSslRejects;
      }
    }
    ++counts[static_cast<int>(o)];
    EXPECT_NE(o, Outcome::kDisagree) << path.filename() << ": our parser routed by one name, OpenSSL read another";
  }
  // The corpus must exercise both sides: hellos both read, and hellos we refuse.
  EXPECT_GT(counts[static_cast<int>(Outcome::kAgree)], 5u);
  EXPECT_GT(counts[static_cast<int>(Outcome::kParserRejects)], 0u);
  RecordProperty("agree", static_cast<int>(counts[1]));
  RecordProperty("parser_rejects", static_cast<int>(counts[0]));
  RecordProperty("openssl_rejects", static_cast<int>(counts[2]));
}

// The check itself can fail: a name routed by that is not the one in the
// hello is caught by OpenSSL's reading (what a parser disagreement would be).
TEST(SniAgreement, ADifferentRoutedNameIsCaught) {
  test::TempDir dir;
  const test::TestPki& pki = test::shared_test_pki();
  const auto leaf = pki.leaf("a.test");
  const CertFiles files{dir.write("a.pem", pki.server_chain_pem(leaf)), dir.write("a.key", leaf.key_pem())};
  auto cert = load_server_cert(files, {}, nullptr);
  ASSERT_TRUE(cert) << cert.error();
  const auto bytes = read_all(std::string(LODE_SOURCE_DIR) + "/tests/fixtures/client_hello/curl.bin");
  ClientHelloParser parser;
  ASSERT_EQ(parse_client_hello(bytes, parser), ParseStatus::kDone);
  ASSERT_TRUE(parser.info().has_sni);
  SslPtr ssl = new_server_ssl(cert->ctx.get(), "not-" + std::string(parser.info().sni()));
  ASSERT_TRUE(ssl);
  SSL_set_bio(ssl.get(), BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())), BIO_new(BIO_s_mem()));
  EXPECT_NE(SSL_do_handshake(ssl.get()), 1);
  ERR_clear_error();
  EXPECT_TRUE(sni_mismatch(ssl.get()));
}

}  // namespace
}  // namespace lode::tls
