#include "controlplane/config_diff.h"

namespace lode::config {

namespace {

std::string join(const std::vector<std::string>& v) {
  if (v.empty()) return "(none)";
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string or_none(const std::string& s) { return s.empty() ? "(none)" : s; }

void field(std::vector<std::string>& out, const char* what, const std::string& a, const std::string& b) {
  if (a != b) out.push_back(std::string(what) + ": " + or_none(a) + " -> " + or_none(b));
}

std::vector<std::string> route_names(const RouteConfig& r) {
  std::vector<std::string> v;
  for (const auto& n : r.names) v.push_back(n.pattern);
  return v;
}

std::vector<std::string> backends(const PoolConfig& p) {
  std::vector<std::string> v;
  for (const auto& b : p.backends) {
    v.push_back(b.address.to_string() + (b.weight != 1 ? " weight " + std::to_string(b.weight) : std::string()));
  }
  return v;
}

std::string backend_tls(const BackendTlsConfig& t) {
  if (!t.enabled) return "off";
  std::string s = t.verify ? "verify" : "no-verify";
  if (t.server_name_set) s += " server_name=" + t.server_name;
  if (!t.ca_file.empty()) s += " ca_file=" + t.ca_file;
  if (!t.ca_path.empty()) s += " ca_path=" + t.ca_path;
  return s;
}

std::string policy(OcspPolicy p) {
  switch (p) {
    case OcspPolicy::kInherit: return "inherit";
    case OcspPolicy::kLenient: return "lenient";
    case OcspPolicy::kStrict: return "strict";
  }
  return "?";
}

// Matches the entries of two lists by name; `compare` fills the changes of
// one pair.
template <class T, class Compare>
ConfigDiff::Section diff_named(const std::vector<T>& from, const std::vector<T>& to, Compare compare) {
  ConfigDiff::Section s;
  auto find = [](const std::vector<T>& v, const std::string& name) -> const T* {
    for (const auto& e : v) {
      if (e.name == name) return &e;
    }
    return nullptr;
  };
  for (const auto& b : to) {
    const T* a = find(from, b.name);
    if (a == nullptr) {
      s.added.push_back(b.name);
      continue;
    }
    ConfigDiff::Changed c{b.name, {}};
    compare(*a, b, c.changes);
    if (!c.changes.empty()) s.changed.push_back(std::move(c));
  }
  for (const auto& a : from) {
    if (find(to, a.name) == nullptr) s.removed.push_back(a.name);
  }
  return s;
}

}  // namespace

ConfigDiff diff_configs(const Config& from, const Config& to) {
  ConfigDiff d;
  d.routes = diff_named(from.routes, to.routes, [](const RouteConfig& a, const RouteConfig& b, auto& out) {
    field(out, "action", std::string(to_string(a.action)), std::string(to_string(b.action)));
    field(out, "listener", a.listener, b.listener);
    field(out, "pool", a.pool, b.pool);
    field(out, "certificate", a.certificate, b.certificate);
    field(out, "names", join(route_names(a)), join(route_names(b)));
    field(out, "reject_with", a.reject_with_reset ? "reset" : "alert", b.reject_with_reset ? "reset" : "alert");
  });
  d.pools = diff_named(from.pools, to.pools, [](const PoolConfig& a, const PoolConfig& b, auto& out) {
    field(out, "backends", join(backends(a)), join(backends(b)));
    field(out, "algorithm", std::string(to_string(a.algorithm)), std::string(to_string(b.algorithm)));
    field(out, "send_proxy_v2", a.send_proxy_v2 ? "true" : "false", b.send_proxy_v2 ? "true" : "false");
    field(out, "tls", backend_tls(a.tls), backend_tls(b.tls));
  });
  d.certificates =
      diff_named(from.certificates, to.certificates, [](const CertificateConfig& a, const CertificateConfig& b, auto& out) {
        field(out, "cert", a.cert, b.cert);
        field(out, "key", a.key, b.key);
        field(out, "ocsp_url", a.ocsp_url, b.ocsp_url);
        field(out, "ocsp", policy(a.ocsp_policy), policy(b.ocsp_policy));
      });
  // Certificate directories share the certificates' name space (routes name either).
  ConfigDiff::Section dirs = diff_named(
      from.certificate_dirs, to.certificate_dirs, [](const CertificateDirConfig& a, const CertificateDirConfig& b, auto& out) {
        field(out, "path", a.path, b.path);
        field(out, "cert_pattern", a.cert_pattern, b.cert_pattern);
        field(out, "key_pattern", a.key_pattern, b.key_pattern);
      });
  for (auto& n : dirs.added) d.certificates.added.push_back(std::move(n));
  for (auto& n : dirs.removed) d.certificates.removed.push_back(std::move(n));
  for (auto& c : dirs.changed) d.certificates.changed.push_back(std::move(c));
  return d;
}

}  // namespace lode::config
