#include "controlplane/cert_catalog.h"

#include <string_view>
#include <unordered_map>
#include <vector>

#include "controlplane/cert_source.h"
#include "controlplane/ocsp.h"
#include "dataplane/control/snapshot_state.h"

namespace lode::cp {

CertValidation validation_for(const config::Config& cfg) {
  CertValidation v;
  v.trusted_ca_file = cfg.control.trusted_ca;
  v.intermediates_file = cfg.control.intermediates;
  v.expiry_warning = std::chrono::days(cfg.control.expiry_warning_days);
  return v;
}

void resolve_ocsp(const config::Config& cfg, CatalogEntry& e) {
  const config::CertificateConfig* named = nullptr;
  for (const auto& nc : cfg.certificates) {
    if (e.dir.empty() && control::named_cert_key(nc.name) == e.key) named = &nc;
  }
  resolve_ocsp(cfg, named, e);
}

void resolve_ocsp(const config::Config& cfg, const config::CertificateConfig* named, CatalogEntry& e) {
  const config::OcspPolicy p = e.policy == config::OcspPolicy::kInherit ? cfg.ocsp.policy : e.policy;
  e.strict = p == config::OcspPolicy::kStrict || must_staple(e.bundle.leaf.get());
  e.ocsp_url = named != nullptr ? named->ocsp_url : std::string();
  if (e.ocsp_url.empty()) {
    const auto urls = ocsp_urls(e.bundle.leaf.get());
    if (!urls.empty()) e.ocsp_url = urls.front();
  }
}

Result<std::vector<CatalogEntry>, std::vector<std::string>> load_certificates(const config::Config& cfg,
                                                                              const CertTrust& trust,
                                                                              std::chrono::sys_seconds now,
                                                                              std::vector<std::string>& warnings,
                                                                              std::vector<std::string>* refused) {
  std::vector<std::string> errors;
  std::vector<CatalogEntry> out;
  // The routes of each certificate name, found once (100,000 certificates
  // each looking through 100,000 routes took minutes).
  std::unordered_map<std::string_view, std::vector<const config::RouteConfig*>> routes_of;
  for (const auto& r : cfg.routes) {
    if (!r.certificate.empty()) routes_of[r.certificate].push_back(&r);
  }
  for (const auto& nc : cfg.certificates) {
    auto b = load_cert_bundle(nc.cert, nc.key, trust, now, warnings);
    if (!b) {
      errors.push_back(cfg.path + ": certificate '" + nc.name + "': " + b.error());
      continue;
    }
    CatalogEntry e;
    e.key = control::named_cert_key(nc.name);
    e.cert_path = nc.cert;
    e.key_path = nc.key;
    e.bundle = std::move(*b);
    e.policy = nc.ocsp_policy;
    resolve_ocsp(cfg, &nc, e);
    // Route names this certificate does not cover: a warning each.
    static const std::vector<const config::RouteConfig*> kNone;
    const auto mine = routes_of.find(nc.name);
    for (const config::RouteConfig* r : mine != routes_of.end() ? mine->second : kNone) {
      std::vector<std::string> names;
      for (const auto& n : r->names) names.push_back(n.pattern);
      for (const auto& n : uncovered_names(e.bundle.info, names)) {
        warnings.push_back(cfg.path + ": route '" + r->name + "': certificate '" + nc.name +
                           "' does not cover the name '" + n + "'");
      }
    }
    out.push_back(std::move(e));
  }
  for (const auto& d : cfg.certificate_dirs) {
    DirectorySpec spec{d.name, d.path, d.cert_pattern, d.key_pattern};
    auto entries = scan_cert_directory(spec, trust, now, warnings);
    if (!entries) {
      errors.push_back(cfg.path + ": certificate_dir '" + d.name + "': " + entries.error());
      continue;
    }
    for (auto& de : *entries) {
      CatalogEntry e;
      e.key = de.wildcard ? control::dir_wildcard_key(d.name, de.host) : control::dir_cert_key(d.name, de.host);
      e.dir = d.name;
      e.dir_entry = de.entry;
      e.cert_path = de.cert_path;
      e.key_path = de.key_path;
      e.bundle = std::move(de.bundle);
      resolve_ocsp(cfg, nullptr, e);
      out.push_back(std::move(e));
    }
  }
  if (!errors.empty()) {
    if (refused == nullptr) return unexpected(std::move(errors));
    *refused = std::move(errors);
  }
  return out;
}

}  // namespace lode::cp
