#include "tools/lodectl/explain.h"

#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <ostream>

#include "controlplane/config.h"
#include "controlplane/route_tables.h"
#include "dataplane/tls/client_hello_json.h"
#include "dataplane/tls/client_hello_parser.h"
#include "lodestone/json_writer.h"
#include "tools/lodectl/pcap_flows.h"

namespace lode::tools {
namespace {

struct Routing {
  config::Config cfg;
  std::vector<config::ListenerTable> tables;
  std::vector<route::RouteTableView> views;
};

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool wildcard_address(const SocketAddress& a) {
  if (a.family() == AF_INET) return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == 0;
  if (a.family() == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&in6);
  }
  return false;
}

// Which listener a flow to `server` reached, and why.
size_t pick_listener(const Routing& r, const ExplainOptions& opt, const SocketAddress* server, std::string& why) {
  if (!opt.listener.empty()) {
    for (size_t i = 0; i < r.cfg.listeners.size(); ++i) {
      if (r.cfg.listeners[i].name == opt.listener) {
        why = "chosen with --listener";
        return i;
      }
    }
  }
  if (server != nullptr) {
    for (size_t i = 0; i < r.cfg.listeners.size(); ++i) {
      for (const SocketAddress& a : r.cfg.listeners[i].listen) {
        if (a == *server) {
          why = "the flow's destination " + server->to_string() + " is a listen address";
          return i;
        }
        if (wildcard_address(a) && a.port() == server->port() && a.family() == server->family()) {
          why = "the flow's destination port " + std::to_string(server->port()) + " matches " + a.to_string();
          return i;
        }
      }
    }
  }
  why = server != nullptr ? "no listen address matches the flow's destination: the first listener"
                          : "the first listener";
  return 0;
}

void explain_route(JsonWriter& w, const Routing& r, size_t li, const std::string& listener_why,
                   const tls::ClientHelloParser& p) {
  const config::ListenerConfig& l = r.cfg.listeners[li];
  w.key("route").begin_object();
  w.field("listener", l.name);
  w.field("listener_why", listener_why);
  if (p.status() == ParseStatus::kNeedMore) {
    w.field("decision", "incomplete");
    w.field("why", "the capture ends before the ClientHello does; a live connection would wait up to the hello "
                   "timeout and then be closed");
    w.end_object();
    return;
  }
  if (p.status() == ParseStatus::kError) {
    const tls::HelloParseError& e = p.error();
    if (e.code == tls::HelloError::kHttpRequest) {
      w.field("decision", "http_400");
      w.field("why", "plain HTTP on the TLS port: answered 400 and closed");
    } else if (tls::is_not_tls(e.code)) {
      w.field("decision", "closed");
      w.field("why", "not TLS (" + std::string(tls::to_string(e.code)) + "): closed without an answer");
    } else {
      w.field("decision", "alert");
      w.field("alert", to_string(e.alert));
      w.field("why", "malformed ClientHello (" + std::string(tls::to_string(e.code)) + "): the client gets alert " +
                         std::string(to_string(e.alert)) + " (" + std::to_string(static_cast<int>(e.alert)) +
                         ") before any route is chosen");
    }
    w.end_object();
    return;
  }
  const tls::ClientHelloInfo& h = p.info();
  const route::RouteTableView& view = r.views[li];
  const route::Match m = h.has_sni ? view.find(h.sni()) : view.find_default();
  w.field("match", route::to_string(m.kind));
  std::string why;
  switch (m.kind) {
    case route::MatchKind::kExact:
      why = "SNI '" + std::string(h.sni()) + "' is the exact name '" + std::string(m.pattern) + "'";
      break;
    case route::MatchKind::kWildcard:
      why = "SNI '" + std::string(h.sni()) + "' matches the wildcard '*." + std::string(m.pattern) + "'";
      break;
    case route::MatchKind::kDefault:
      why = h.has_sni ? "SNI '" + std::string(h.sni()) + "' matches no name: the listener's default route"
            : h.sni_ip_literal ? std::string("an IP literal in SNI counts as no SNI: the listener's default route")
                               : std::string("no SNI: the listener's default route");
      break;
    case route::MatchKind::kNone:
      why = (h.has_sni ? "SNI '" + std::string(h.sni()) + "' matches no name" : std::string("no SNI")) +
            " and the listener has no default route: alert unrecognized_name (112)";
      break;
  }
  if (!m.found()) {
    w.field("decision", "alert");
    w.field("alert", "unrecognized_name");
    w.field("why", why);
    w.end_object();
    return;
  }
  const route::RouteView rv = view.route(m.route);
  const config::RouteConfig* rc = r.cfg.find_route(rv.name);
  w.field("pattern", m.pattern);
  w.field("route_name", rv.name);
  w.field("action", config::to_string(rv.action));
  switch (rv.action) {
    case route::Action::kReject:
      w.field("decision", rv.reject_with_reset() ? "reset" : "alert");
      why += rv.reject_with_reset() ? ": rejected with a TCP reset" : ": rejected with alert unrecognized_name (112)";
      break;
    case route::Action::kPassthrough:
      w.field("decision", "passthrough");
      w.field("pool", rc != nullptr ? rc->pool : std::string());
      why += ": passed through untouched to pool '" + (rc != nullptr ? rc->pool : std::string()) + "'";
      break;
    case route::Action::kTerminate:
      w.field("decision", "terminate");
      w.field("pool", rc != nullptr ? rc->pool : std::string());
      w.field("certificate", rc != nullptr ? rc->certificate : std::string());
      why += ": TLS terminated with certificate '" + (rc != nullptr ? rc->certificate : std::string()) +
             "', relayed to pool '" + (rc != nullptr ? rc->pool : std::string()) + "'";
      break;
  }
  w.field("why", why);
  w.end_object();
}

void explain_one(std::ostream& out, const Routing* r, const ExplainOptions& opt, std::span<const uint8_t> bytes,
                 const std::vector<size_t>& segment_ends, const std::function<void(JsonWriter&)>& source,
                 const SocketAddress* server) {
  tls::ClientHelloParser p;
  // Feed as the bytes arrived: segment by segment when the capture says so.
  ParseStatus st = ParseStatus::kNeedMore;
  size_t segments = 0;
  for (size_t end : segment_ends) {
    if (st != ParseStatus::kNeedMore) break;
    st = p.parse(bytes.first(std::min(end, bytes.size())));
    ++segments;
  }
  if (st == ParseStatus::kNeedMore) st = p.parse(bytes);
  JsonWriter w;
  w.begin_object();
  source(w);
  w.field("bytes", static_cast<uint64_t>(bytes.size()));
  if (!segment_ends.empty()) w.field("segments", static_cast<uint64_t>(segments));
  tls::write_hello_fields(w, p);
  if (r != nullptr) {
    std::string why;
    const size_t li = pick_listener(*r, opt, server, why);
    explain_route(w, *r, li, why, p);
  }
  w.end_object();
  out << w.str() << '\n';
}

}  // namespace

int run_explain(const ExplainOptions& opt, std::ostream& out, std::ostream& err) {
  std::optional<Routing> routing;
  if (!opt.config.empty()) {
    auto cfg = config::load_config_file(opt.config);
    if (!cfg) {
      for (const auto& e : cfg.error()) err << e.to_string() << '\n';
      return 1;
    }
    auto tables = config::build_route_tables(*cfg);
    if (!tables) {
      for (const auto& e : tables.error()) err << e.to_string() << '\n';
      return 1;
    }
    routing.emplace();
    routing->cfg = std::move(*cfg);
    routing->tables = std::move(*tables);
    for (const auto& t : routing->tables) {
      auto v = route::RouteTableView::open(t.table.bytes());
      if (!v) {
        err << "internal error: built route table does not open: " << v.error().message() << '\n';
        return 1;
      }
      routing->views.push_back(*v);
    }
    if (!opt.listener.empty()) {
      bool found = false;
      for (const auto& l : routing->cfg.listeners) found = found || l.name == opt.listener;
      if (!found) {
        err << "lodectl explain: no listener named '" << opt.listener << "' in " << opt.config << '\n';
        return 1;
      }
    }
  }
  const Routing* r = routing ? &*routing : nullptr;
  int rc = 0;
  for (const std::string& path : opt.inputs) {
    auto bytes = read_file(path);
    if (!bytes) {
      err << "lodectl explain: cannot read " << path << '\n';
      rc = 1;
      continue;
    }
    if (!opt.pcap) {
      explain_one(out, r, opt, *bytes, {}, [&](JsonWriter& w) { w.field("input", path); }, nullptr);
      continue;
    }
    const PcapOptions popt;
    PcapSummary summary;
    auto flows = read_pcap_flows(*bytes, popt, &summary);
    if (!flows) {
      err << "lodectl explain: " << path << ": " << flows.error() << '\n';
      rc = 1;
      continue;
    }
    if (summary.flows_ignored != 0) {
      err << "lodectl explain: " << path << ": " << (summary.flows_ignored >= popt.max_flows ? "at least " : "")
          << summary.flows_ignored << " flows after the first " << popt.max_flows << " were not read\n";
    }
    size_t n = 0;
    for (const PcapFlow& f : *flows) {
      ++n;
      if (f.bytes.empty()) continue;  // no client payload captured
      explain_one(out, r, opt, f.bytes, f.segment_ends,
                  [&](JsonWriter& w) {
                    w.field("input", path);
                    w.field("flow", static_cast<uint64_t>(n));
                    w.field("client", f.client.to_string());
                    w.field("server", f.server.to_string());
                    if (f.truncated) w.field("truncated", true);  // reassembly memory ran out
                  },
                  &f.server);
    }
  }
  return rc;
}

int explain_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ExplainOptions opt;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= args.size()) return false;
      dst = args[++i];
      return true;
    };
    if (a == "--config" || a == "-c") {
      if (!value(opt.config)) goto usage;
    } else if (a == "--listener") {
      if (!value(opt.listener)) goto usage;
    } else if (a == "--pcap") {
      opt.pcap = true;
    } else if (a == "--help" || a == "-h") {
      goto usage;
    } else if (!a.empty() && a[0] == '-') {
      err << "lodectl explain: unknown option " << a << '\n';
      goto usage;
    } else {
      opt.inputs.push_back(a);
    }
  }
  if (opt.inputs.empty()) goto usage;
  return run_explain(opt, out, err);
usage:
  err << "usage: lodectl explain [--config FILE] [--listener NAME] [--pcap] INPUT...\n"
         "  INPUT: a file holding the raw bytes a client sent (one ClientHello),\n"
         "         or with --pcap a capture (pcap, not pcapng) whose TCP flows are read.\n"
         "  Prints one JSON line per hello: the parse result and, with --config, the route and why.\n";
  return 2;
}

}  // namespace lode::tools
