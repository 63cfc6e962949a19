#include "tools/lodeload/report.h"

#include <cmath>
#include <cstdio>

#include "lodestone/json_writer.h"

namespace lode::load {

namespace {

constexpr size_t kMaxSniListed = 64;

uint64_t per_second(uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<uint64_t>(std::llround(static_cast<double>(n) / seconds)) : 0;
}

struct Quantile {
  const char* name;
  double q;
};
constexpr Quantile kQuantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99_9", 0.999}};

void histogram_json(JsonWriter& w, const char* name, const Histogram& h) {
  w.key(name).begin_object();
  w.field("count", h.count());
  w.field("min", h.min());
  w.field("mean", static_cast<uint64_t>(std::llround(h.mean())));
  for (const auto& q : kQuantiles) w.field(q.name, h.quantile(q.q));
  w.field("max", h.max());
  w.end_object();
}

void map_json(JsonWriter& w, const char* name, const std::map<std::string, uint64_t>& m) {
  w.key(name).begin_object();
  for (const auto& [k, v] : m) w.field(k, v);
  w.end_object();
}

std::string histogram_row(const char* name, const Histogram& h) {
  char line[200];
  std::snprintf(
      line, sizeof line, "  %-10s %8llu %9llu %9llu %9llu %9llu %9llu\n", name,
      static_cast<unsigned long long>(h.count()), static_cast<unsigned long long>(h.quantile(0.5)),
      static_cast<unsigned long long>(h.quantile(0.9)),
      static_cast<unsigned long long>(h.quantile(0.99)),
      static_cast<unsigned long long>(h.quantile(0.999)), static_cast<unsigned long long>(h.max()));
  return line;
}

}  // namespace

uint64_t Report::error_total() const noexcept {
  uint64_t n = 0;
  for (const auto& [k, v] : errors) n += v;
  return n;
}

bool Report::bulk_ok() const noexcept {
  if (bulk.empty()) return false;
  for (const auto& s : bulk) {
    if (!s.equal) return false;
  }
  return true;
}

std::string report_json(const Report& r) {
  const double s = r.elapsed_s;
  JsonWriter w;
  w.begin_object();
  w.field("mode", to_string(r.mode));
  w.field("target", r.target);
  w.field("elapsed_ms", static_cast<uint64_t>(std::llround(s * 1000)));

  w.key("connections").begin_object();
  w.field("started", r.connections_started);
  w.field("ok", r.connections_ok);
  w.field("failed", r.connections_failed);
  w.field("aborted", r.connections_aborted);
  w.field("peak_open", r.peak_open);
  w.field("per_s", per_second(r.connections_started, s));
  w.end_object();

  const uint64_t handshakes = r.handshakes_full + r.handshakes_resumed;
  w.key("handshakes").begin_object();
  w.field("total", handshakes);
  w.field("full", r.handshakes_full);
  w.field("resumed", r.handshakes_resumed);
  w.field("resumptions_refused", r.resumptions_refused);
  w.field("tickets_received", r.tickets_received);
  w.field("per_s", per_second(handshakes, s));
  w.end_object();

  w.key("requests").begin_object();
  w.field("completed", r.requests);
  w.field("per_s", per_second(r.requests, s));
  w.end_object();

  if (r.mode == Mode::kIdle) w.key("idle").begin_object().field("held", r.idle_held).end_object();

  w.key("bytes").begin_object();
  w.field("sent", r.bytes_sent);
  w.field("received", r.bytes_received);
  w.field("sent_per_s", per_second(r.bytes_sent, s));
  w.field("received_per_s", per_second(r.bytes_received, s));
  w.end_object();

  w.key("errors").begin_object();
  w.field("total", r.error_total());
  for (const auto& [k, v] : r.errors) w.field(k, v);
  w.end_object();
  w.key("error_samples").begin_object();
  for (const auto& [k, v] : r.error_samples) w.field(k, v);
  w.end_object();

  w.key("closes").begin_object();
  w.field("clean", r.close_clean);
  w.field("reset", r.close_reset);
  w.field("timeout", r.close_timeout);
  w.end_object();

  w.key("tls").begin_object();
  map_json(w, "versions", r.versions);
  map_json(w, "ciphers", r.ciphers);
  map_json(w, "alpn", r.alpn);
  w.end_object();

  w.field("sni_names", static_cast<uint64_t>(r.sni.size()));
  if (r.sni.size() <= kMaxSniListed) map_json(w, "sni", r.sni);

  if (r.mode == Mode::kBulk) {
    w.key("bulk").begin_object();
    w.field("ok", r.bulk_ok());
    w.key("streams").begin_array();
    for (const auto& b : r.bulk) {
      w.begin_object();
      w.field("index", b.index);
      w.field("bytes_sent", b.bytes_sent);
      w.field("bytes_received", b.bytes_received);
      w.field("sent_sha256", b.sent_sha256);
      w.field("received_sha256", b.received_sha256);
      w.field("equal", b.equal);
      w.end_object();
    }
    w.end_array();
    w.end_object();
  }

  w.key("latency_us").begin_object();
  histogram_json(w, "connect", r.connect_us);
  histogram_json(w, "handshake", r.handshake_us);
  histogram_json(w, "ttfb", r.ttfb_us);
  histogram_json(w, "response", r.response_us);
  w.end_object();

  w.end_object();
  return w.take() + "\n";
}

std::string report_table(const Report& r) {
  const double s = r.elapsed_s;
  std::string out;
  char line[400];
  std::snprintf(line, sizeof line, "lodeload %s %s: %.3f s\n", to_string(r.mode), r.target.c_str(),
                s);
  out += line;
  std::snprintf(
      line, sizeof line,
      "  connections %llu started, %llu ok, %llu failed, peak %llu open\n"
      "  handshakes  %llu full, %llu resumed (%llu/s)\n",
      static_cast<unsigned long long>(r.connections_started),
      static_cast<unsigned long long>(r.connections_ok),
      static_cast<unsigned long long>(r.connections_failed),
      static_cast<unsigned long long>(r.peak_open),
      static_cast<unsigned long long>(r.handshakes_full),
      static_cast<unsigned long long>(r.handshakes_resumed),
      static_cast<unsigned long long>(per_second(r.handshakes_full + r.handshakes_resumed, s)));
  out += line;
  if (r.requests > 0) {
    std::snprintf(line, sizeof line, "  requests    %llu (%llu/s)\n",
                  static_cast<unsigned long long>(r.requests),
                  static_cast<unsigned long long>(per_second(r.requests, s)));
    out += line;
  }
  std::snprintf(line, sizeof line, "  bytes       %llu sent, %llu received (%.1f / %.1f MB/s)\n",
                static_cast<unsigned long long>(r.bytes_sent),
                static_cast<unsigned long long>(r.bytes_received),
                s > 0 ? static_cast<double>(r.bytes_sent) / s / 1e6 : 0.0,
                s > 0 ? static_cast<double>(r.bytes_received) / s / 1e6 : 0.0);
  out += line;
  for (const auto& b : r.bulk) {
    out += "  bulk        sent " + b.sent_sha256.substr(0, 16) + "... received " +
           b.received_sha256.substr(0, 16) + "... " + (b.equal ? "EQUAL" : "DIFFERENT") + "\n";
  }
  out += "  errors      " + std::to_string(r.error_total());
  for (const auto& [k, v] : r.errors) out += " " + k + "=" + std::to_string(v);
  out += "\n  latency us      count       p50       p90       p99     p99.9       max\n";
  const std::pair<const char*, const Histogram*> rows[] = {{"connect", &r.connect_us},
                                                           {"handshake", &r.handshake_us},
                                                           {"ttfb", &r.ttfb_us},
                                                           {"response", &r.response_us}};
  for (const auto& [name, h] : rows) {
    if (h->count() > 0) out += histogram_row(name, *h);
  }
  return out;
}

}  // namespace lode::load
