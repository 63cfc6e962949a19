#include "tools/lodeload/options.h"

#include <openssl/ssl.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

namespace lode::load {

namespace {

constexpr uint64_t kMaxConcurrency = 1'000'000;
constexpr uint64_t kMaxRequestBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxTimeoutMs = 3'600'000;
constexpr size_t kMaxSniFileBytes = size_t{64} << 20;

using Error = unexpected<std::string>;

Error bad(std::string_view option, const std::string& what) {
  return Error("lodeload: " + std::string(option) + ": " + what);
}

// A non-negative integer with an optional decimal (k, M, G) or binary (Ki,
// Mi, Gi) multiplier.
Result<uint64_t, std::string> parse_size(std::string_view opt, std::string_view v) {
  uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end == v.data())
    return bad(opt, "expected a non-negative integer, got '" + std::string(v) + "'");
  const std::string_view suffix(end, static_cast<size_t>(v.data() + v.size() - end));
  uint64_t mul = 1;
  if (suffix == "k" || suffix == "K")
    mul = 1000;
  else if (suffix == "M")
    mul = 1000'000;
  else if (suffix == "G")
    mul = 1000'000'000;
  else if (suffix == "Ki")
    mul = uint64_t{1} << 10;
  else if (suffix == "Mi")
    mul = uint64_t{1} << 20;
  else if (suffix == "Gi")
    mul = uint64_t{1} << 30;
  else if (!suffix.empty())
    return bad(opt, "unknown unit '" + std::string(suffix) + "' (k, M, G, Ki, Mi, Gi)");
  if (n > UINT64_MAX / mul) return bad(opt, "number too large");
  return n * mul;
}

Result<uint64_t, std::string> parse_range(std::string_view opt, std::string_view v, uint64_t lo,
                                          uint64_t hi) {
  auto n = parse_size(opt, v);
  if (!n) return n;
  if (*n < lo || *n > hi) {
    return bad(opt, "must be " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                        std::string(v));
  }
  return n;
}

// A decimal number >= 0 (seconds or a rate), at most `hi`.
Result<double, std::string> parse_decimal(std::string_view opt, std::string_view v, double hi) {
  double d = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d) || d < 0 || d > hi) {
    std::ostringstream os;
    os << "expected a number 0.." << hi << ", got '" << v << "'";
    return bad(opt, os.str());
  }
  return d;
}

Result<uint64_t, std::string> parse_seconds_ms(std::string_view opt, std::string_view v,
                                               bool allow_zero) {
  auto s = parse_decimal(opt, v, 30.0 * 24 * 3600);
  if (!s) return unexpected(s.error());
  const auto ms = static_cast<uint64_t>(std::llround(*s * 1000));
  if (ms == 0 && !allow_zero) return bad(opt, "must be at least 0.001 seconds");
  return ms;
}

Result<std::vector<std::string>, std::string> parse_alpn(std::string_view opt, std::string_view v) {
  std::vector<std::string> out;
  while (true) {
    const size_t comma = v.find(',');
    const std::string_view p = v.substr(0, comma);
    if (p.empty() || p.size() > 255)
      return bad(opt, "each protocol is 1..255 bytes, comma-separated");
    out.emplace_back(p);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  if (out.size() > 16) return bad(opt, "at most 16 protocols");
  return out;
}

Result<std::string, std::string> read_file(std::string_view opt, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(opt, "cannot read '" + path + "'");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxSniFileBytes) return bad(opt, "'" + path + "' is larger than 64 MiB");
  }
  return text;
}

std::optional<Mode> mode_named(std::string_view s) {
  if (s == "handshakes") return Mode::kHandshakes;
  if (s == "requests") return Mode::kRequests;
  if (s == "bulk") return Mode::kBulk;
  if (s == "idle") return Mode::kIdle;
  return std::nullopt;
}

// Options that take a value, and the modes they apply to (empty = all).
struct Spec {
  std::string_view name;
  bool takes_value;
  std::set<Mode> modes;
};
const std::vector<Spec>& specs() {
  static const std::vector<Spec> all = {
      {"--mode", true, {}},
      {"--connect", true, {}},
      {"--sni", true, {}},
      {"--sni-file", true, {}},
      {"--ca", true, {}},
      {"--insecure", false, {}},
      {"--tls", true, {}},
      {"--cipher", true, {}},
      {"--ciphersuites", true, {}},
      {"--alpn", true, {}},
      {"--rate", true, {Mode::kHandshakes, Mode::kRequests}},
      {"--concurrency", true, {}},
      {"--duration", true, {Mode::kHandshakes, Mode::kRequests}},
      {"--count", true, {Mode::kHandshakes, Mode::kRequests}},
      {"--request", true, {Mode::kHandshakes, Mode::kRequests}},
      {"--response", true, {Mode::kHandshakes, Mode::kRequests}},
      {"--bytes", true, {Mode::kBulk}},
      {"--hold", true, {Mode::kIdle}},
      {"--resume", false, {Mode::kHandshakes}},
      {"--timeout-ms", true, {}},
      {"--seed", true, {}},
      {"--quiet", false, {}},
  };
  return all;
}

// Applies one option with its value to `o`.
Result<void, std::string> apply(Options& o, std::string_view name, const std::string& v) {
  auto take = [](auto r, auto& into) -> Result<void, std::string> {
    if (!r) return unexpected(r.error());
    into = *r;
    return {};
  };
  if (name == "--mode") {
    const auto m = mode_named(v);
    if (!m) return bad(name, "expected handshakes, requests, bulk or idle, got '" + v + "'");
    o.mode = *m;
    return {};
  }
  if (name == "--connect") {
    const auto a = parse_socket_address(v);
    if (!a) return bad(name, "'" + v + "': " + std::string(a.error()));
    o.target = *a;
    o.target_text = v;
    return {};
  }
  if (name == "--sni") {
    if (!valid_sni(v)) return bad(name, "a server name is 1..255 printable bytes, got '" + v + "'");
    o.snis.push_back({v, 1});
    return {};
  }
  if (name == "--sni-file") {
    auto text = read_file(name, v);
    if (!text) return unexpected(text.error());
    auto entries = parse_sni_file(*text, v);
    if (!entries) return bad(name, entries.error());
    o.snis.insert(o.snis.end(), entries->begin(), entries->end());
    return {};
  }
  if (name == "--ca") {
    o.ca_file = v;
    return {};
  }
  if (name == "--tls") {
    if (v == "1.2")
      o.tls_version = TLS1_2_VERSION;
    else if (v == "1.3")
      o.tls_version = TLS1_3_VERSION;
    else
      return bad(name, "expected 1.2 or 1.3, got '" + v + "'");
    return {};
  }
  if (name == "--cipher") {
    o.cipher_list = v;
    return {};
  }
  if (name == "--ciphersuites") {
    o.ciphersuites = v;
    return {};
  }
  if (name == "--alpn") return take(parse_alpn(name, v), o.alpn);
  if (name == "--rate") return take(parse_decimal(name, v, 10'000'000), o.rate);
  if (name == "--concurrency") {
    auto n = parse_range(name, v, 1, kMaxConcurrency);
    if (!n) return unexpected(n.error());
    o.concurrency = static_cast<uint32_t>(*n);
    return {};
  }
  if (name == "--duration") return take(parse_seconds_ms(name, v, false), o.duration_ms);
  if (name == "--count") return take(parse_range(name, v, 1, UINT64_MAX), o.count);
  if (name == "--request") return take(parse_range(name, v, 0, kMaxRequestBytes), o.request_bytes);
  if (name == "--response")
    return take(parse_range(name, v, 0, kMaxRequestBytes), o.response_bytes);
  if (name == "--bytes") return take(parse_range(name, v, 1, UINT64_MAX / 2), o.bulk_bytes);
  if (name == "--hold") return take(parse_seconds_ms(name, v, true), o.hold_ms);
  if (name == "--timeout-ms") return take(parse_range(name, v, 1, kMaxTimeoutMs), o.timeout_ms);
  if (name == "--seed") return take(parse_size(name, v), o.seed);
  return bad(name, "unknown option");
}

// Checks that hold across options once all are read.
Result<void, std::string> check(const Options& o, const std::set<std::string_view>& seen) {
  for (const auto& s : specs()) {
    if (seen.count(s.name) != 0 && !s.modes.empty() && s.modes.count(o.mode) == 0) {
      return bad(s.name, std::string("does not apply to the ") + to_string(o.mode) + " mode");
    }
  }
  if (o.target.len == 0) return bad("--connect", "required (HOST:PORT, IPv6 as [ADDR]:PORT)");
  if (!o.ca_file.empty() && o.insecure) return bad("--insecure", "contradicts --ca");
  if (o.tls_version == TLS1_3_VERSION && !o.cipher_list.empty()) {
    return bad("--cipher", "is the TLS 1.2 list; with --tls 1.3 use --ciphersuites");
  }
  if (o.tls_version == TLS1_2_VERSION && !o.ciphersuites.empty()) {
    return bad("--ciphersuites", "is the TLS 1.3 list; with --tls 1.2 use --cipher");
  }
  if (o.mode == Mode::kRequests && o.request_bytes == 0) {
    return bad("--request", "the requests mode needs a request size of at least 1 byte");
  }
  if (o.response_bytes && o.request_bytes == 0 && o.mode == Mode::kRequests) {
    return bad("--response", "needs --request");
  }
  return {};
}

}  // namespace

const char* to_string(Mode m) noexcept {
  switch (m) {
    case Mode::kHandshakes:
      return "handshakes";
    case Mode::kRequests:
      return "requests";
    case Mode::kBulk:
      return "bulk";
    case Mode::kIdle:
      return "idle";
  }
  return "?";
}

uint32_t default_concurrency(Mode m) noexcept {
  switch (m) {
    case Mode::kHandshakes:
    case Mode::kRequests:
      return 8;
    case Mode::kBulk:
      return 1;
    case Mode::kIdle:
      return 100;
  }
  return 1;
}

Result<Options, std::string> parse_options(const std::vector<std::string>& args) {
  Options o;
  std::set<std::string_view> seen;
  bool mode_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return unexpected(std::string(kHelpRequested));
    if (a.rfind("--", 0) != 0) {
      const auto m = mode_named(a);
      if (!m) return Error("lodeload: unknown mode or argument '" + a + "' (see --help)");
      if (mode_given) return Error("lodeload: the mode is given twice ('" + a + "')");
      o.mode = *m;
      mode_given = true;
      continue;
    }
    const size_t eq = a.find('=');
    const std::string_view name = std::string_view(a).substr(0, eq);
    const Spec* spec = nullptr;
    for (const auto& s : specs()) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr)
      return Error("lodeload: unknown option '" + std::string(name) + "' (see --help)");
    if (name == "--mode") {
      if (mode_given) return Error("lodeload: the mode is given twice (--mode)");
      mode_given = true;
    }
    seen.insert(spec->name);
    if (!spec->takes_value) {
      if (eq != std::string::npos) return bad(name, "takes no value");
      if (name == "--insecure") o.insecure = true;
      if (name == "--resume") o.resume = true;
      if (name == "--quiet") o.quiet = true;
      continue;
    }
    std::string value;
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return bad(name, "needs a value");
    }
    if (auto r = apply(o, spec->name, value); !r) return unexpected(r.error());
  }
  if (!mode_given)
    return Error("lodeload: no mode given (handshakes, requests, bulk or idle; see --help)");
  if (auto r = check(o, seen); !r) return unexpected(r.error());
  if (o.concurrency == 0) o.concurrency = default_concurrency(o.mode);
  if ((o.mode == Mode::kHandshakes || o.mode == Mode::kRequests) && !o.count && !o.duration_ms) {
    o.duration_ms = 10'000;
  }
  return o;
}

const char* usage() noexcept {
  return R"(usage: lodeload MODE --connect HOST:PORT [options]

A TLS load generator: many connections from one thread on io_uring, OpenSSL
over memory BIOs. Every run ends by itself (count, duration, hold, bytes or
timeouts). The report is one JSON object on stdout; a short table goes to
stderr unless --quiet.

modes:
  handshakes   open connections at --rate with at most --concurrency open; each
               does the TLS handshake, optionally one request/response, closes.
               Runs for --count connections or --duration seconds (default 10 s).
  requests     --concurrency kept connections, each sending --request bytes and
               reading the response, again and again, for --count requests (all
               connections together) or --duration seconds (default 10 s).
  bulk         --concurrency connections (default 1) each sending --bytes of
               deterministic pseudo-random data (xoshiro256**, seeded by --seed)
               while reading the echo back (an echo server behind); SHA-256 of
               what was sent and of what came back, per connection.
  idle         open --concurrency connections (default 100), complete their
               handshakes, hold each --hold seconds, close.

target and TLS:
  --connect HOST:PORT     IPv4 literal or [IPv6]:PORT (required)
  --sni NAME              server name to send (repeatable; picked evenly)
  --sni-file FILE         one name per line, optional weight: "a.example 5";
                          '#' starts a comment line. Names are picked by weight.
                          Without names, no SNI is sent and the certificate is
                          checked against the target's IP address.
  --ca FILE               PEM roots to verify the server with (the hostname
                          checked is the SNI); default: the system's store
  --insecure              do not verify the server's certificate
  --tls 1.2|1.3           only this version (default: 1.2 or 1.3)
  --cipher LIST           TLS 1.2 cipher list (OpenSSL syntax)
  --ciphersuites LIST     TLS 1.3 cipher suites (OpenSSL syntax)
  --alpn LIST             ALPN protocols to offer, comma-separated

load shape:
  --rate N                handshakes: new connections per second; requests:
                          requests per second (all connections); 0 = as fast as
                          possible (default 0)
  --concurrency C         open connections at most (handshakes/requests 8,
                          bulk 1, idle 100)
  --duration S            handshakes/requests: seconds to run (decimal allowed);
                          connections in progress then finish
  --count N               handshakes: connections to open; requests: requests
  --request BYTES         handshakes/requests: bytes of pseudo-random data to
                          send after the handshake (requests: at least 1)
  --response BYTES        bytes to read back as the response; default: the echo
                          of the request, checked byte for byte
  --bytes N               bulk: bytes to send per connection (default 10M)
  --hold S                idle: seconds to hold each connection (default 10)
  --resume                handshakes: resume with session tickets. The first
                          connection to each name does a full handshake alone;
                          then the others go, each offering the latest ticket
                          for its name. The report counts full and resumed
                          handshakes (SSL_session_reused) and tickets offered
                          but refused

limits and output:
  --timeout-ms MS         the longest wait for the server: TCP connect, the
                          handshake, each response, bulk progress, the close
                          (default 5000)
  --seed N                seed of the pseudo-random names and data (default 1)
  --quiet                 no table on stderr
  --help                  this text

Sizes take k, M, G (x1000) or Ki, Mi, Gi (x1024): --bytes 100M.

exit status: 0 no errors; 1 errors were counted (bulk: also digests differ or
the echo was short); 2 bad arguments; 3 the run could not start (CA file,
io_uring, file descriptor limit). Ctrl-C ends the run early with a report.
)";
}

}  // namespace lode::load
