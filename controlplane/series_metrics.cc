#include "controlplane/series_metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "lodestone/client_hello_info.h"

namespace lode::cp {

std::string prometheus_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string alert_name(uint8_t code) {
  switch (code) {
    case 0: return "close_notify";
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 22: return "record_overflow";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 113: return "bad_certificate_status_response";
    case 115: return "unknown_psk_identity";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
  }
  return "alert_" + std::to_string(code);
}

namespace {

struct Series {
  uint32_t slot;
  std::string labels;  // listener="..",route=".." or pool="..",backend=".."
  stats::SeriesLabel name;
};

std::vector<Series> live_routes(const stats::StatsView& v) {
  std::vector<Series> out;
  for (uint32_t s = 0; s < v.route_slots(); ++s) {
    stats::SeriesLabel l;
    if (!v.route_label(s, l) || l.retired) continue;
    // "(other)" only once something overflowed into it.
    if (s == stats::kOtherSlot && v.route_total(s, 0) == 0) continue;
    out.push_back({s, "listener=\"" + prometheus_label(l.a) + "\",route=\"" + prometheus_label(l.b) + "\"", l});
  }
  return out;
}

std::vector<Series> live_backends(const stats::StatsView& v) {
  std::vector<Series> out;
  for (uint32_t s = 0; s < v.backend_slots(); ++s) {
    stats::SeriesLabel l;
    if (!v.backend_label(s, l) || l.retired) continue;
    if (s == stats::kOtherSlot && v.backend_total(s, 0) == 0) continue;
    out.push_back({s, "pool=\"" + prometheus_label(l.a) + "\",backend=\"" + prometheus_label(l.b) + "\"", l});
  }
  return out;
}

size_t route_index(std::string_view name) {
  for (size_t c = 0; c < stats::kRouteCounterCount; ++c) {
    if (stats::kRouteCounters[c].name == name) return c;
  }
  return 0;
}

size_t backend_index(std::string_view name) {
  for (size_t c = 0; c < stats::kBackendCounterCount; ++c) {
    if (stats::kBackendCounters[c].name == name) return c;
  }
  return 0;
}

class Text {
 public:
  explicit Text(std::string& out) : out_(out) {}
  void head(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
    out_.append(type).append("\n");
  }
  void sample(std::string_view name, std::string_view labels, uint64_t value) {
    out_.append(name);
    if (!labels.empty()) out_.append("{").append(labels).append("}");
    out_.append(" ").append(std::to_string(value)).append("\n");
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", value);
    out_.append(name);
    if (!labels.empty()) out_.append("{").append(labels).append("}");
    out_.append(" ").append(buf).append("\n");
  }

 private:
  std::string& out_;
};

std::string bound_seconds(uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(us) / 1e6);
  return buf;
}

}  // namespace

void append_series_metrics(const stats::StatsView& v, std::string& out) {
  Text t(out);
  const std::vector<Series> routes = live_routes(v);
  // Route families: one per counter, except that full/resumed handshakes
  // and in/out bytes are one family each with a label.
  struct Family {
    const char* name;
    const char* type;
    const char* help;
    std::vector<std::pair<const char*, std::string>> parts;  // (counter, extra label)
  };
  const Family families[] = {
      {"lodestone_route_connections_total", "counter", "connections routed to the route", {{"connections", ""}}},
      {"lodestone_route_active_connections", "gauge", "connections of the route open now", {{"active", ""}}},
      {"lodestone_route_handshakes_total",
       "counter",
       "TLS handshakes completed on the route",
       {{"handshakes_full", "kind=\"full\""}, {"handshakes_resumed", "kind=\"resumed\""}}},
      {"lodestone_route_handshake_failures_total", "counter", "TLS handshakes that failed on the route",
       {{"handshake_failures", ""}}},
      {"lodestone_route_rejects_total", "counter",
       "connections refused on the route: reject action, no certificate, withheld certificate",
       {{"refused", ""}}},
      {"lodestone_route_ktls_connections_total", "counter",
       "connections of the route whose records the kernel encrypts (kTLS TX)", {{"ktls", ""}}},
      {"lodestone_route_bytes_total",
       "counter",
       "bytes between clients and Lodestone on the route",
       {{"bytes_in", "direction=\"in\""}, {"bytes_out", "direction=\"out\""}}},
  };
  for (const Family& f : families) {
    t.head(f.name, f.type, f.help);
    for (const Series& r : routes) {
      for (const auto& [counter, extra] : f.parts) {
        const std::string labels = extra.empty() ? r.labels : r.labels + "," + extra;
        t.sample(f.name, labels, v.route_total(r.slot, route_index(counter)));
      }
    }
  }
  t.head("lodestone_handshake_duration_seconds", "histogram",
         "TLS handshake time on the route, from the first handshake step to the last (server side)");
  const size_t sum_index = route_index("handshake_us_sum");
  for (const Series& r : routes) {
    uint64_t cumulative = 0;
    for (size_t b = 0; b < stats::kHandshakeBuckets; ++b) {
      cumulative += v.route_bucket_total(r.slot, b);
      const std::string le = b < stats::kHandshakeBucketsUs.size() ? bound_seconds(stats::kHandshakeBucketsUs[b]) : "+Inf";
      t.sample("lodestone_handshake_duration_seconds_bucket", r.labels + ",le=\"" + le + "\"", cumulative);
    }
    t.sample("lodestone_handshake_duration_seconds_sum", r.labels,
             static_cast<double>(v.route_total(r.slot, sum_index)) / 1e6);
    t.sample("lodestone_handshake_duration_seconds_count", r.labels, cumulative);
  }

  const std::vector<Series> backends = live_backends(v);
  const Family backend_families[] = {
      {"lodestone_backend_connections_total", "counter", "connections sent to the backend (connect attempts)",
       {{"picks", ""}}},
      {"lodestone_backend_active_connections", "gauge", "connections to the backend open now", {{"active", ""}}},
      {"lodestone_backend_established_total", "counter", "backend connections established", {{"connects", ""}}},
      {"lodestone_backend_connect_failures_total", "counter", "backend connect attempts that failed",
       {{"connect_failures", ""}}},
  };
  for (const Family& f : backend_families) {
    t.head(f.name, f.type, f.help);
    for (const Series& b : backends) t.sample(f.name, b.labels, v.backend_total(b.slot, backend_index(f.parts[0].first)));
  }

  t.head("lodestone_hello_rejected_total", "counter", "ClientHellos refused, by reason (not TLS included)");
  for (size_t code = 0; code < stats::kHelloErrorSlots; ++code) {
    uint64_t n = 0;
    for (uint32_t w = 0; w < v.workers(); ++w) n += v.worker(w).hello_errors_by_reason[code].load(std::memory_order_relaxed);
    if (n == 0) continue;
    t.sample("lodestone_hello_rejected_total",
             "reason=\"" + std::string(tls::to_string(static_cast<tls::HelloError>(code))) + "\"", n);
  }
  t.head("lodestone_alerts_sent_total", "counter", "fatal TLS alerts sent to clients, by alert");
  for (size_t code = 0; code < 256; ++code) {
    uint64_t n = 0;
    for (uint32_t w = 0; w < v.workers(); ++w) n += v.worker(w).alerts_sent[code].load(std::memory_order_relaxed);
    if (n == 0) continue;
    t.sample("lodestone_alerts_sent_total", "alert=\"" + alert_name(static_cast<uint8_t>(code)) + "\"", n);
  }
  append_front_metrics(v, out);
}

void append_front_metrics(const stats::StatsView& v, std::string& out) {
  const uint32_t lcores = v.front_lcores();
  if (lcores == 0) return;  // the kernel front
  Text t(out);
  for (size_t c = 0; c < stats::kFrontCounterCount; ++c) {
    const std::string name = "lodestone_front_" + std::string(stats::kFrontCounters[c].name) + "_total";
    t.head(name, "counter", "dpdk front: " + std::string(stats::kFrontCounters[c].help));
    for (uint32_t l = 0; l < lcores; ++l) t.sample(name, "lcore=\"" + std::to_string(l) + "\"", v.front_value(l, c));
  }
}

void write_series_json(const stats::StatsView& v, JsonWriter& w) {
  w.key("routes").begin_array();
  for (const Series& r : live_routes(v)) {
    w.begin_object().field("listener", r.name.a).field("route", r.name.b);
    for (size_t c = 0; c < stats::kRouteCounterCount; ++c) w.field(stats::kRouteCounters[c].name, v.route_total(r.slot, c));
    w.end_object();
  }
  w.end_array();
  w.key("backends").begin_array();
  for (const Series& b : live_backends(v)) {
    w.begin_object().field("pool", b.name.a).field("backend", b.name.b);
    for (size_t c = 0; c < stats::kBackendCounterCount; ++c) {
      w.field(stats::kBackendCounters[c].name, v.backend_total(b.slot, c));
    }
    w.end_object();
  }
  w.end_array();
  w.key("workers").begin_array();
  for (uint32_t wk = 0; wk < v.workers(); ++wk) {
    w.begin_object().field("worker", wk);
    for (size_t c = 0; c < stats::kCounterCount; ++c) w.field(stats::kCounters[c].name, v.value(wk, c));
    w.end_object();
  }
  w.end_array();
}

uint64_t unix_ms_now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

void write_recent_refused(const stats::StatsView& v, JsonWriter& w, size_t limit, uint64_t now_unix_ms) {
  struct Item {
    stats::Refused r;
    uint32_t worker;
  };
  std::vector<Item> all;
  for (uint32_t wk = 0; wk < v.workers(); ++wk) {
    for (auto& r : v.refused(wk)) all.push_back({std::move(r), wk});
  }
  std::stable_sort(all.begin(), all.end(), [](const Item& a, const Item& b) { return a.r.unix_ms > b.r.unix_ms; });
  if (all.size() > limit) all.resize(limit);
  w.key("recent_refused").begin_array();
  for (const Item& i : all) {
    w.begin_object().field("sni", i.r.name).field("reason", i.r.reason).field("worker", i.worker);
    w.field("age_s", now_unix_ms > i.r.unix_ms ? (now_unix_ms - i.r.unix_ms) / 1000 : uint64_t{0});
    w.end_object();
  }
  w.end_array();
}

}  // namespace lode::cp
