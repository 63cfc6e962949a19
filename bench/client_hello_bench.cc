// ns per ClientHello: Lodestone's parser against the way Envoy's
// tls_inspector reads a hello (OpenSSL over a memory BIO, stopped in the
// client-hello callback), on the same real hellos, in the same run.
//
//   ./build/release/bench/client_hello_bench --benchmark_min_time=0.5
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstring>
#include <string>
#include <vector>

#include "bench_ratio.h"
#include "dataplane/tls/client_hello_parser.h"
#include "support/fixtures.h"
#include "support/hello_builder.h"

namespace {

using Bytes = std::vector<uint8_t>;

struct Input {
  Bytes bytes;
  std::vector<size_t> segments;  // cumulative ends of TCP segments
};

Input load(const std::string& name) {
  Input in;
  in.bytes = lode::test::read_fixture("client_hello/" + name + ".bin");
  size_t end = 0;
  for (size_t s : lode::test::read_segments("client_hello/" + name + ".segments")) in.segments.push_back(end += s);
  return in;
}

Input two_records(const std::string& name) {
  const Bytes b = lode::test::read_fixture("client_hello/" + name + ".bin");
  const Bytes msg(b.begin() + 5, b.end());
  Input in;
  in.bytes = lode::test::HelloBuilder::to_records(msg, msg.size() / 2 + 1);
  in.segments = {in.bytes.size()};
  return in;
}

const Input& input(int which) {
  static const Input inputs[] = {load("openssl_tls13"), load("curl"), load("chromium_pq"), two_records("curl")};
  return inputs[which];
}
const char* kNames[] = {"tls13_openssl_258B", "tls13_curl_517B", "pq_chromium_2seg", "curl_2records"};

void BM_Lodestone(benchmark::State& state) {
  const Input& in = input(static_cast<int>(state.range(0)));
  lode::tls::ClientHelloParser parser;
  for (auto _ : state) {
    parser.reset();
    lode::ParseStatus st = lode::ParseStatus::kNeedMore;
    for (size_t end : in.segments) st = parser.parse({in.bytes.data(), end});
    if (st != lode::ParseStatus::kDone) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(parser.info().sni_len);
  }
  state.SetLabel(kNames[state.range(0)]);
}

// Envoy's tls_inspector way: an SSL per connection reading from a memory BIO,
// the client-hello callback extracts SNI and ALPN and stops the handshake.
struct Extracted {
  char sni[256];
  size_t alpn_len;
};

int on_client_hello(SSL* ssl, int* alert, void* arg) {
  auto* out = static_cast<Extracted*>(arg);
  const unsigned char* ext;
  size_t len;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) == 1 && len > 5) {
    const size_t n = std::min<size_t>((ext[3] << 8 | ext[4]), std::min<size_t>(len - 5, 255));
    std::memcpy(out->sni, ext + 5, n);
    out->sni[n] = 0;
  }
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) == 1) {
    out->alpn_len = len;
  }
  *alert = SSL_AD_INTERNAL_ERROR;
  return SSL_CLIENT_HELLO_ERROR;  // stop here: the inspector only looks
}

void BM_OpenSSL(benchmark::State& state) {
  const Input& in = input(static_cast<int>(state.range(0)));
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  Extracted ex{};
  SSL_CTX_set_client_hello_cb(ctx, on_client_hello, &ex);
  for (auto _ : state) {
    SSL* ssl = SSL_new(ctx);
    BIO* rbio = BIO_new(BIO_s_mem());
    BIO* wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_accept_state(ssl);
    size_t fed = 0;
    for (size_t end : in.segments) {
      BIO_write(rbio, in.bytes.data() + fed, static_cast<int>(end - fed));
      fed = end;
      SSL_do_handshake(ssl);
    }
    benchmark::DoNotOptimize(ex.sni[0]);
    SSL_free(ssl);
  }
  SSL_CTX_free(ctx);
  state.SetLabel(kNames[state.range(0)]);
}

BENCHMARK(BM_Lodestone)->Name("hello/tls13_openssl_258B/lodestone")->Arg(0);
BENCHMARK(BM_OpenSSL)->Name("hello/tls13_openssl_258B/openssl")->Arg(0);
BENCHMARK(BM_Lodestone)->Name("hello/tls13_curl_517B/lodestone")->Arg(1);
BENCHMARK(BM_OpenSSL)->Name("hello/tls13_curl_517B/openssl")->Arg(1);
BENCHMARK(BM_Lodestone)->Name("hello/pq_chromium_1979B_2seg/lodestone")->Arg(2);
BENCHMARK(BM_OpenSSL)->Name("hello/pq_chromium_1979B_2seg/openssl")->Arg(2);
BENCHMARK(BM_Lodestone)->Name("hello/curl_2records/lodestone")->Arg(3);
BENCHMARK(BM_OpenSSL)->Name("hello/curl_2records/openssl")->Arg(3);

}  // namespace

LODE_BENCHMARK_MAIN_WITH_RATIOS("/lodestone", "/openssl")
