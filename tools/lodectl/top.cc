#include "tools/lodectl/top.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <ostream>
#include <thread>

#include "lodestone/json_writer.h"
#include "tools/lodectl/admin.h"

namespace lode::tools {

namespace {

uint64_t num(const JsonValue& v, std::string_view key) {
  const std::string t = v.str(key, "0");
  return std::strtoull(t.c_str(), nullptr, 10);
}

// Counter growth per second; a counter that went down (a restart) counts from 0.
double rate(uint64_t before, uint64_t after, double dt) {
  if (dt <= 0) return 0;
  return static_cast<double>(after >= before ? after - before : after) / dt;
}

const JsonValue* items(const JsonValue& v, std::string_view key) {
  const JsonValue* a = v.find(key);
  return a != nullptr && a->kind == JsonValue::Kind::kArray ? a : nullptr;
}

std::string human_rate(double per_s) {
  char buf[32];
  if (per_s >= 1e9) std::snprintf(buf, sizeof buf, "%.1fG", per_s / 1e9);
  else if (per_s >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", per_s / 1e6);
  else if (per_s >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", per_s / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", per_s);
  return buf;
}

// Names are attacker-chosen (refused SNIs) or operator-chosen: printable
// ASCII only on a terminal, the rest as \xNN.
std::string printable(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

TopFrame top_frame(const JsonValue& before, const JsonValue& after, double dt_s) {
  TopFrame f;
  f.generation = num(after, "generation");
  f.interval_s = dt_s;
  std::map<std::pair<std::string, std::string>, const JsonValue*> old_routes;
  if (const JsonValue* a = items(before, "routes"); a != nullptr) {
    for (const auto& r : a->items) old_routes[{r.str("listener"), r.str("route")}] = &r;
  }
  if (const JsonValue* a = items(after, "routes"); a != nullptr) {
    for (const auto& r : a->items) {
      TopRoute t;
      t.listener = r.str("listener");
      t.route = r.str("route");
      static const JsonValue kZero{};
      auto it = old_routes.find({t.listener, t.route});
      const JsonValue& o = it == old_routes.end() ? kZero : *it->second;
      auto delta = [&](std::string_view k) { return rate(num(o, k), num(r, k), dt_s); };
      t.handshakes_per_s = delta("handshakes_full") + delta("handshakes_resumed");
      t.errors_per_s = delta("handshake_failures") + delta("refused");
      t.bytes_in_per_s = delta("bytes_in");
      t.bytes_out_per_s = delta("bytes_out");
      t.connections_per_s = delta("connections");
      t.active = num(r, "active");
      f.routes.push_back(std::move(t));
    }
  }
  std::stable_sort(f.routes.begin(), f.routes.end(), [](const TopRoute& a, const TopRoute& b) {
    return a.connections_per_s + static_cast<double>(a.active) > b.connections_per_s + static_cast<double>(b.active);
  });
  const JsonValue* wb = items(before, "workers");
  if (const JsonValue* wa = items(after, "workers"); wa != nullptr) {
    for (size_t i = 0; i < wa->items.size(); ++i) {
      const JsonValue& w = wa->items[i];
      static const JsonValue kZero{};
      const JsonValue& o = wb != nullptr && i < wb->items.size() ? wb->items[i] : kZero;
      TopWorker t;
      t.worker = static_cast<uint32_t>(num(w, "worker"));
      t.accepts_per_s = rate(num(o, "accepted"), num(w, "accepted"), dt_s);
      t.handshakes_per_s = rate(num(o, "handshakes"), num(w, "handshakes"), dt_s);
      t.active = num(w, "active");
      f.workers.push_back(t);
    }
  }
  if (const JsonValue* a = items(after, "recent_refused"); a != nullptr) {
    for (const auto& r : a->items) f.refused.emplace_back(r.str("reason"), r.str("sni"));
  }
  return f;
}

void print_top(std::ostream& out, const TopFrame& f, bool json, size_t max_routes) {
  if (json) {
    JsonWriter w;
    w.begin_object().field("generation", f.generation);
    auto real = [&](std::string_view k, double v) { w.field(k, v); };
    real("interval_s", f.interval_s);
    w.key("routes").begin_array();
    for (const auto& r : f.routes) {
      w.begin_object().field("listener", r.listener).field("route", r.route);
      real("connections_per_s", r.connections_per_s);
      real("handshakes_per_s", r.handshakes_per_s);
      real("errors_per_s", r.errors_per_s);
      real("bytes_in_per_s", r.bytes_in_per_s);
      real("bytes_out_per_s", r.bytes_out_per_s);
      w.field("active", r.active).end_object();
    }
    w.end_array().key("workers").begin_array();
    for (const auto& t : f.workers) {
      w.begin_object().field("worker", t.worker);
      real("accepts_per_s", t.accepts_per_s);
      real("handshakes_per_s", t.handshakes_per_s);
      w.field("active", t.active).end_object();
    }
    w.end_array().key("recent_refused").begin_array();
    for (const auto& [reason, name] : f.refused) w.begin_object().field("reason", reason).field("sni", name).end_object();
    w.end_array().end_object();
    out << w.str() << '\n';
    return;
  }
  char line[256];
  std::snprintf(line, sizeof line, "lodestone top  generation %llu  every %.1f s\n\n",
                static_cast<unsigned long long>(f.generation), f.interval_s);
  out << line;
  std::snprintf(line, sizeof line, "%-28s %9s %9s %8s %9s %9s %7s\n", "ROUTE (LISTENER/ROUTE)", "CONN/s", "HSHAKE/s",
                "ERR/s", "IN B/s", "OUT B/s", "OPEN");
  out << line;
  size_t shown = 0;
  for (const auto& r : f.routes) {
    if (shown++ == max_routes) {
      out << "  ... " << (f.routes.size() - max_routes) << " more routes\n";
      break;
    }
    std::snprintf(line, sizeof line, "%-28s %9s %9s %8s %9s %9s %7llu\n",
                  printable(r.listener + "/" + r.route, 28).c_str(), human_rate(r.connections_per_s).c_str(),
                  human_rate(r.handshakes_per_s).c_str(), human_rate(r.errors_per_s).c_str(),
                  human_rate(r.bytes_in_per_s).c_str(), human_rate(r.bytes_out_per_s).c_str(),
                  static_cast<unsigned long long>(r.active));
    out << line;
  }
  out << '\n';
  std::snprintf(line, sizeof line, "%-8s %10s %10s %7s\n", "WORKER", "ACCEPT/s", "HSHAKE/s", "OPEN");
  out << line;
  for (const auto& t : f.workers) {
    std::snprintf(line, sizeof line, "%-8u %10s %10s %7llu\n", t.worker, human_rate(t.accepts_per_s).c_str(),
                  human_rate(t.handshakes_per_s).c_str(), static_cast<unsigned long long>(t.active));
    out << line;
  }
  if (!f.refused.empty()) {
    out << "\nrefused last:\n";
    for (size_t i = 0; i < f.refused.size() && i < 5; ++i) {
      out << "  " << printable(f.refused[i].first, 24) << "  " << printable(f.refused[i].second, 64) << '\n';
    }
  }
}

int top_main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  std::string socket_flag;
  double interval = 1.0;
  long count = -1;
  bool json = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    const bool has_value = i + 1 < argv.size();
    if (a == "--socket" && has_value) {
      socket_flag = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else if (a == "--interval" && has_value) {
      char* end = nullptr;
      interval = std::strtod(argv[++i].c_str(), &end);
      if (end == nullptr || *end != 0 || !(interval >= 0.1 && interval <= 3600)) {
        err << "lodectl top: --interval takes seconds between 0.1 and 3600\n";
        return kExitUsage;
      }
    } else if (a == "--count" && has_value) {
      char* end = nullptr;
      count = std::strtol(argv[++i].c_str(), &end, 10);
      if (end == nullptr || *end != 0 || count < 1) {
        err << "lodectl top: --count takes a positive number of frames\n";
        return kExitUsage;
      }
    } else if (a != "top") {
      err << "usage: lodectl [--socket PATH] top [--interval SECONDS] [--count N] [--json]\n";
      return kExitUsage;
    }
  }
  const bool tty = !json && isatty(STDOUT_FILENO) == 1;
  if (count < 0) count = tty ? 0 : 1;  // 0: until interrupted
  const std::string path = admin_socket_path(socket_flag);
  const std::string request = R"({"v":1,"cmd":"stats"})";
  auto sample = [&](JsonValue& v) -> int {
    const AdminCall c = admin_call(path, request);
    if (c.exit_code != 0) {
      err << "lodectl: " << c.error << '\n';
      return c.exit_code;
    }
    auto parsed = parse_json(c.reply.substr(0, c.reply.find('\n')));
    if (!parsed) {
      err << "lodectl: unreadable answer: " << parsed.error() << '\n';
      return kExitFailed;
    }
    if (parsed->str("ok") != "true") {
      err << "lodectl: " << parsed->str("error", "refused") << '\n';
      return kExitFailed;
    }
    v = std::move(*parsed);
    return kExitOk;
  };
  JsonValue before;
  if (int rc = sample(before); rc != 0) return rc;
  auto t0 = std::chrono::steady_clock::now();
  for (long frame = 0; count == 0 || frame < count; ++frame) {
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    JsonValue after;
    if (int rc = sample(after); rc != 0) return rc;
    const auto t1 = std::chrono::steady_clock::now();
    const TopFrame f = top_frame(before, after, std::chrono::duration<double>(t1 - t0).count());
    size_t max_routes = 1000;
    if (tty) {
      winsize ws{};
      if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) {
        const size_t fixed = 10 + f.workers.size() + std::min<size_t>(f.refused.size(), 5);
        max_routes = ws.ws_row > fixed ? ws.ws_row - fixed : 1;
      }
      out << "\x1b[H\x1b[2J";  // home, clear: redraw in place
    } else if (frame > 0 && !json) {
      out << '\n';
    }
    print_top(out, f, json, max_routes);
    out.flush();
    before = std::move(after);
    t0 = t1;
  }
  return kExitOk;
}

}  // namespace lode::tools
