#include "tools/lodectl/admin.h"

#include <openssl/crypto.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>

#include "controlplane/admin_server.h"
#include "lodestone/json_reader.h"
#include "lodestone/json_writer.h"

namespace lode::tools {

namespace {

constexpr std::string_view kDefaultSocket = "/run/lodestone/admin.sock";

struct Call {
  int exit_code = 0;
  std::string reply;  // one JSON line
  std::string error;  // when the daemon could not be asked
};

// "N s" or "N ms", for messages.
std::string duration_text(std::chrono::milliseconds t) {
  return t.count() % 1000 == 0 ? std::to_string(t.count() / 1000) + " s" : std::to_string(t.count()) + " ms";
}

// One request, one answer (`timeout` at most for each of sending it and
// the answer's every read). `changes_state`: a timeout says the command may
// still be applied.
Call call(const std::string& path, const std::string& request, std::chrono::milliseconds timeout,
          bool changes_state) {
  Call c;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    c.exit_code = kExitUsage;
    c.error = "socket path too long: " + path;
    return c;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    close(fd);
    if (e == EACCES || e == EPERM) {
      c.exit_code = kExitDenied;
      c.error = "permission denied on " + path + " (root, the daemon's user or its [admin] group only)";
    } else {
      c.exit_code = kExitDown;
      c.error = "Lodestone is not running (or not at " + path + "): " + std::strerror(e);
    }
    return c;
  }
  const std::string line = request + "\n";
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()) &&
      errno != EPIPE) {  // EPIPE: it answered (a refusal) and closed before reading: read that below
    const int e = errno;
    close(fd);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      // Not taken whole, so not parsed: nothing was applied.
      c.exit_code = kExitNoAnswer;
      c.error = "Lodestone at " + path + " did not take the request within " + duration_text(timeout);
    } else {
      c.exit_code = kExitDown;
      c.error = std::string("sending the request: ") + std::strerror(e);
    }
    return c;
  }
  char buf[65536];
  bool timed_out = false;
  while (c.reply.find('\n') == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out = true;
    if (n <= 0) break;
    c.reply.append(buf, static_cast<size_t>(n));
    if (c.reply.size() > (64u << 20)) break;
  }
  close(fd);
  if (timed_out) {
    // Lodestone runs (it took the request): not kExitDown, and not a
    // refusal either, since the command may be applied after all.
    c.exit_code = kExitNoAnswer;
    c.error = "no answer from " + path + " within " + duration_text(timeout) +
              (changes_state ? ": the command may still be applied (check with `lodectl status` or the command's "
                               "list before repeating it; --timeout SECONDS waits longer)"
                             : " (--timeout SECONDS waits longer)");
  } else if (c.reply.empty()) {
    c.exit_code = kExitDown;
    c.error = "no answer from " + path;
  }
  return c;
}

void print_value(std::ostream& out, const JsonValue& v, const std::string& indent) {
  using K = JsonValue::Kind;
  if (v.kind == K::kObject) {
    for (const auto& [k, f] : v.fields) {
      if (f.kind == K::kObject || (f.kind == K::kArray && !f.items.empty() && f.items[0].kind == K::kObject)) {
        out << indent << k << ":\n";
        print_value(out, f, indent + "  ");
      } else if (f.kind == K::kArray) {
        out << indent << k << ": ";
        for (size_t i = 0; i < f.items.size(); ++i) out << (i ? ", " : "") << f.items[i].text;
        out << (f.items.empty() ? "-" : "") << '\n';
      } else {
        out << indent << k << ": " << (f.text.empty() ? "-" : f.text) << '\n';
      }
    }
  } else if (v.kind == K::kArray) {
    for (const auto& item : v.items) {
      print_value(out, item, indent + "  ");
      out << '\n';
    }
  } else {
    out << indent << v.text << '\n';
  }
}

// `routes diff`: one line per name added (+), removed (-) or changed (~,
// with what changed), by section; "no change" when there is none.
void print_diff(std::ostream& out, const JsonValue& v) {
  size_t lines = 0;
  for (const char* section : {"routes", "pools", "certificates"}) {
    const std::string s = section;
    const std::string singular = s.substr(0, s.size() - 1);
    if (const JsonValue* a = v.find(s + "_added"); a != nullptr) {
      for (const auto& n : a->items) out << "+ " << singular << ' ' << n.text << '\n';
      lines += a->items.size();
    }
    if (const JsonValue* r = v.find(s + "_removed"); r != nullptr) {
      for (const auto& n : r->items) out << "- " << singular << ' ' << n.text << '\n';
      lines += r->items.size();
    }
    if (const JsonValue* c = v.find(s + "_changed"); c != nullptr) {
      for (const auto& e : c->items) {
        out << "~ " << singular << ' ' << e.str("name") << '\n';
        ++lines;
        if (const JsonValue* ch = e.find("changes"); ch != nullptr) {
          for (const auto& x : ch->items) out << "    " << x.text << '\n';
        }
      }
    }
  }
  for (const char* what : {"added", "removed", "changed"}) {
    if (const JsonValue* k = v.find(std::string("certificate_records_") + what); k != nullptr && !k->items.empty()) {
      out << "certificate records " << what << ':';
      for (const auto& n : k->items) out << ' ' << n.text;
      out << '\n';
      ++lines;
    }
  }
  if (const JsonValue* w = v.find("warnings"); w != nullptr) {
    for (const auto& x : w->items) out << "warning: " << x.text << '\n';
  }
  if (lines == 0) out << (v.str("config_changed") == "true" ? "no change to routes, pools or certificates\n" : "no change\n");
}

// `backends list`: per pool a header, then one line per backend.
void print_backends(std::ostream& out, const JsonValue& v) {
  const JsonValue* pools = v.find("pools");
  if (pools == nullptr) return;
  for (const auto& p : pools->items) {
    out << "pool " << p.str("pool") << "  " << p.str("algorithm") << "  when_all_down " << p.str("when_all_down")
        << "  health check " << p.str("health_check");
    if (p.str("health_check") != "none") {
      out << " every " << p.str("interval_ms") << " ms (rise " << p.str("rise") << ", fall " << p.str("fall") << ")";
    }
    out << '\n';
    if (const JsonValue* bs = p.find("backends"); bs != nullptr) {
      for (const auto& b : bs->items) {
        out << "  " << b.str("backend") << "  " << b.str("health") << "  " << b.str("admin") << "  weight "
            << b.str("weight");
        if (b.str("weight") != b.str("configured_weight")) out << " (configured " << b.str("configured_weight") << ")";
        if (b.find("last_check") != nullptr) {
          out << "  checks " << b.str("checks_ok") << " ok / " << b.str("checks_failed") << " failed, last: "
              << b.str("last_check");
        }
        out << '\n';
      }
    }
  }
}

// Human output: "key: value" lines; certificate lists as a table.
void print_human(std::ostream& out, const std::string& cmd, const JsonValue& v) {
  if (cmd == "certs.list" || cmd == "ocsp.status") {
    const JsonValue* certs = v.find("certificates");
    if (certs == nullptr) return;
    for (const auto& c : certs->items) {
      out << c.str("key");
      if (cmd == "certs.list") {
        out << "  " << c.str("state") << "  expires in " << c.str("expires_in_days") << " days";
        if (const JsonValue* names = c.find("names"); names != nullptr) {
          out << "  names:";
          for (const auto& n : names->items) out << ' ' << n.text;
        }
      }
      out << "  revocation: " << c.str("revocation_source") << ' ' << c.str("status");
      if (c.str("stapled") == "true") out << " (stapled, age " << c.str("staple_age_s") << " s)";
      if (c.str("failures") != "0") out << " failures " << c.str("failures");
      if (c.str("chain_revoked") == "true") out << " CHAIN REVOKED";
      out << '\n';
    }
    return;
  }
  if (cmd == "routes.diff") {
    print_diff(out, v);
    return;
  }
  if (cmd == "backends.list") {
    print_backends(out, v);
    return;
  }
  for (const auto& [k, f] : v.fields) {
    if (k == "v" || k == "ok") continue;
    JsonValue one;
    one.kind = JsonValue::Kind::kObject;
    one.fields.push_back(JsonField{k, f});
    print_value(out, one, "");
  }
}

}  // namespace

CommandKind command_kind(std::string_view cmd, bool dry_run) {
  for (std::string_view read : {"status", "certs.list", "ocsp.status", "routes.show", "backends.list"}) {
    if (cmd == read) return {kReadTimeout, false};
  }
  // Validates a whole configuration, every certificate in it, changes nothing.
  if (cmd == "routes.diff" || (cmd == "routes.reload" && dry_run)) return {kChangeTimeout, false};
  // Everything else changes state (an unknown command too: the daemon may
  // know it), and may wait for the dataplane.
  return {kChangeTimeout, true};
}

AdminCall admin_call(const std::string& socket_path, const std::string& request, std::chrono::milliseconds timeout) {
  Call c = call(socket_path, request, timeout, false);
  return AdminCall{c.exit_code, std::move(c.reply), std::move(c.error)};
}

std::string admin_socket_path(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("LODESTONE_ADMIN_SOCKET"); env != nullptr && *env != 0) return env;
  return std::string(kDefaultSocket);
}

bool is_admin_command(const std::string& cmd) {
  return cmd == "status" || cmd == "certs" || cmd == "ocsp" || cmd == "tickets" || cmd == "routes" ||
         cmd == "backends" || cmd == "drain-node" || cmd == "undrain";
}

int admin_main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  std::string socket_path;
  if (const char* env = std::getenv("LODESTONE_ADMIN_SOCKET"); env != nullptr) socket_path = env;
  bool json = false, dry_run = false;
  std::string cert_file, key_file;
  std::vector<std::string> words;
  std::chrono::milliseconds timeout{0};  // 0: command_kind's
  for (size_t i = 0; i < argv.size(); ++i) {
    if (argv[i] == "--timeout" && i + 1 < argv.size()) {
      // Seconds, fractions allowed: 1 ms .. 1 day.
      const std::string& v = argv[++i];
      char* end = nullptr;
      errno = 0;
      const double s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != 0 || errno != 0 || !(s >= 0.001 && s <= 86400)) {
        err << "lodectl: --timeout '" << v << "': expected seconds, 0.001 to 86400\n";
        return kExitUsage;
      }
      timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000 + 0.5));
    } else if (argv[i] == "--cert" && i + 1 < argv.size()) {
      cert_file = argv[++i];
    } else if (argv[i] == "--key" && i + 1 < argv.size()) {
      key_file = argv[++i];
    } else if (argv[i] == "--json") {
      json = true;
    } else if (argv[i] == "--dry-run") {
      dry_run = true;
    } else if (argv[i] == "--socket" && i + 1 < argv.size()) {
      socket_path = argv[++i];
    } else {
      words.push_back(argv[i]);
    }
  }
  if (socket_path.empty()) socket_path = std::string(kDefaultSocket);
  auto usage = [&] {
    err << "usage: lodectl [--socket PATH] [--json] [--timeout SECONDS] status\n"
           "       lodectl ... certs list [NAME]\n"
           "       lodectl ... certs replace NAME --cert FILE --key FILE\n"
           "       lodectl ... certs add NAME --cert FILE --key FILE   (a new certificate routes can name)\n"
           "       lodectl ... certs rm NAME             (one added with certs add, unused by any route)\n"
           "       lodectl ... ocsp status|refresh [NAME]\n"
           "       lodectl ... tickets rotate\n"
           "       lodectl ... routes reload [CONFIG] [--dry-run]   (CONFIG: from now on the configuration file)\n"
           "       lodectl ... routes diff CONFIG        (what a reload to CONFIG would change; changes nothing)\n"
           "       lodectl ... routes rollback           (back to the configuration before the last reload)\n"
           "       lodectl ... routes show [NAME]        (no NAME: a client without SNI)\n"
           "       lodectl ... backends list [POOL]      (health, drain, weight of each backend)\n"
           "       lodectl ... backends drain|enable POOL BACKEND   (BACKEND: its address, as listed)\n"
           "       lodectl ... backends weight POOL BACKEND N       (1..65535; until a restart)\n"
           "       lodectl ... drain-node [--cancel]     ([bgp]: withdraw this node's VIPs, keep serving)\n"
           "       lodectl ... undrain                   (announce them again; same as drain-node --cancel)\n"
           "--timeout: how long to wait for the answer (default 5 s for status and lists, 120 s for the rest)\n"
           "exit codes: 0 ok, 1 refused by Lodestone, 2 usage, 3 not running, 4 permission denied,\n"
           "            5 no answer in time (a command that changes state may still be applied)\n";
    return kExitUsage;
  };
  if (words.empty()) return usage();
  std::string cmd;
  std::string name;
  const std::string& w0 = words[0];
  if (w0 == "status" && words.size() == 1) {
    cmd = "status";
  } else if (w0 == "certs" && words.size() >= 2 && words.size() <= 3 && words[1] == "list") {
    cmd = "certs.list";
  } else if (w0 == "certs" && words.size() == 3 && words[1] == "replace" && !cert_file.empty() && !key_file.empty()) {
    cmd = "certs.replace";
  } else if (w0 == "certs" && words.size() == 3 && words[1] == "add" && !cert_file.empty() && !key_file.empty()) {
    cmd = "certs.add";
  } else if (w0 == "certs" && words.size() == 3 && words[1] == "rm") {
    cmd = "certs.rm";
  } else if (w0 == "ocsp" && words.size() >= 2 && words.size() <= 3 && (words[1] == "status" || words[1] == "refresh")) {
    cmd = "ocsp." + words[1];
  } else if (w0 == "tickets" && words.size() == 2 && words[1] == "rotate") {
    cmd = "tickets.rotate";
  } else if (w0 == "routes" && words.size() >= 2 && words.size() <= 3 && words[1] == "reload") {
    cmd = "routes.reload";
  } else if (w0 == "routes" && words.size() <= 3 && words.size() >= 2 && words[1] == "show") {
    cmd = "routes.show";
  } else if (w0 == "routes" && words.size() == 2 && words[1] == "rollback") {
    cmd = "routes.rollback";
  } else if (w0 == "routes" && words.size() == 3 && words[1] == "diff") {
    cmd = "routes.diff";
  } else if (w0 == "backends" && words.size() >= 2 && words.size() <= 3 && words[1] == "list") {
    cmd = "backends.list";
  } else if (w0 == "backends" && words.size() == 4 && (words[1] == "drain" || words[1] == "enable")) {
    cmd = "backends." + words[1];
  } else if (w0 == "backends" && words.size() == 5 && words[1] == "weight") {
    cmd = "backends.weight";
  } else if (w0 == "drain-node" && words.size() == 1) {
    cmd = "node.drain";
  } else if ((w0 == "drain-node" && words.size() == 2 && words[1] == "--cancel") || (w0 == "undrain" && words.size() == 1)) {
    cmd = "node.undrain";
  } else {
    return usage();
  }
  if (words.size() == 3) name = words[2];
  // backends: POOL [BACKEND [WEIGHT]].
  std::string pool, backend, weight;
  if (w0 == "backends") {
    if (words.size() >= 3) pool = words[2];
    if (words.size() >= 4) backend = words[3];
    if (words.size() == 5) weight = words[4];
    name.clear();
    if (cmd == "backends.weight" && weight.find_first_not_of("0123456789") != std::string::npos) {
      err << "lodectl: weight '" << weight << "': expected an integer 1..65535 (0 is a drain: backends drain)\n";
      return kExitUsage;
    }
  }
  JsonWriter req;
  req.begin_object().field("v", uint64_t{1}).field("cmd", cmd);
  if (cmd == "routes.diff") {
    // The file is read here and sent with its absolute path: the daemon
    // validates it as a reload would (relative paths from its directory).
    char* abs = realpath(name.c_str(), nullptr);
    const int e = errno;
    std::ifstream in(name, std::ios::binary);
    std::ostringstream ss;
    if (abs == nullptr || !in || !(ss << in.rdbuf()) || ss.str().size() > 48 * 1024) {
      err << "lodectl: cannot read " << name << (abs == nullptr ? std::string(": ") + std::strerror(e) : " (or larger than 48 KiB)")
          << '\n';
      std::free(abs);
      return kExitUsage;
    }
    req.field("path", std::string(abs)).field("config", ss.str());
    std::free(abs);
    name.clear();
  }
  if (cmd == "routes.reload" && !name.empty()) {
    // The daemon reads CONFIG itself (SIGHUP re-reads it later): sent as an
    // absolute path, checked readable here for a clear error.
    char* abs = realpath(name.c_str(), nullptr);
    const int e = errno;
    if (abs == nullptr || access(abs, R_OK) != 0) {
      err << "lodectl: cannot read " << name << ": " << std::strerror(abs == nullptr ? e : errno) << '\n';
      std::free(abs);
      return kExitUsage;
    }
    req.field("path", std::string(abs));
    std::free(abs);
    name.clear();
  }
  if (!name.empty()) req.field("name", name);
  if (!pool.empty()) req.field("pool", pool);
  if (!backend.empty()) req.field("backend", backend);
  if (!weight.empty()) req.field("weight", weight);
  if (dry_run) req.field("dry_run", true);
  std::string cert_pem, key_pem;
  if (cmd == "certs.replace" || cmd == "certs.add") {
    // The files are read here, by the operator's own permissions, and sent
    // over the admin socket (0600); the key is never printed.
    auto read = [&](const std::string& path, std::string& out) {
      std::ifstream in(path, std::ios::binary);
      if (!in) return false;
      std::ostringstream ss;
      ss << in.rdbuf();
      out = ss.str();
      return out.size() <= 48 * 1024;
    };
    if (!read(cert_file, cert_pem) || !read(key_file, key_pem)) {
      err << "lodectl: cannot read " << cert_file << " and " << key_file << " (or larger than 48 KiB)\n";
      OPENSSL_cleanse(key_pem.data(), key_pem.size());
      return kExitUsage;
    }
    req.field("cert", cert_pem).field("key", key_pem);
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
  }
  const CommandKind kind = command_kind(cmd, dry_run);
  std::string request = req.end_object().take();
  if (request.size() + 1 > cp::kMaxAdminRequest) {
    // The daemon drops a longer line unanswered: said here, before sending
    // (JSON escaping grows a file: up to 6 bytes for one).
    err << "lodectl: the request is " << request.size() + 1 << " bytes, over the admin API's "
        << cp::kMaxAdminRequest / 1024 << " KiB (the files it carries, escaped as JSON, are too large)\n";
    OPENSSL_cleanse(request.data(), request.size());
    return kExitUsage;
  }
  const Call c = call(socket_path, request, timeout.count() != 0 ? timeout : kind.timeout,
                      kind.changes_state);
  OPENSSL_cleanse(request.data(), request.size());  // it may hold a private key
  if (c.exit_code != 0) {
    err << "lodectl: " << c.error << '\n';
    return c.exit_code;
  }
  const std::string line = c.reply.substr(0, c.reply.find('\n'));
  auto v = parse_json(line);
  if (!v) {
    err << "lodectl: unreadable answer: " << v.error() << '\n';
    return kExitFailed;
  }
  const bool ok = v->str("ok") == "true";
  if (json) {
    out << line << '\n';
  } else if (ok) {
    print_human(out, cmd, *v);
  }
  if (!ok) {
    const std::string e = v->str("error", "refused");
    err << "lodectl: " << e << '\n';
    if (const JsonValue* errors = v->find("errors"); errors != nullptr) {
      for (size_t i = 1; i < errors->items.size(); ++i) err << "lodectl: " << errors->items[i].text << '\n';
    }
    return e.rfind("permission denied", 0) == 0 ? kExitDenied : kExitFailed;
  }
  return kExitOk;
}

}  // namespace lode::tools
