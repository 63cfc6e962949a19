#include "dataplane/tls/cert_store.h"

#include <sys/stat.h>

#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <system_error>

#include "lodestone/hostname.h"

namespace lode::tls {

namespace {

constexpr std::string_view kNameToken = "%n";

// "%n" in one path component of a cert pattern: <base>/<prefix>%n<suffix><after>.
struct Pattern {
  std::string base;    // components before the one holding %n ("" or "a/b/")
  std::string prefix;  // of the component holding %n
  std::string suffix;
  std::string after;  // the components after it, with their leading '/'
};

size_t count_tokens(std::string_view s) {
  size_t n = 0;
  for (size_t at = s.find(kNameToken); at != std::string_view::npos;
       at = s.find(kNameToken, at + kNameToken.size())) {
    ++n;
  }
  return n;
}

Result<Pattern, std::string> parse_pattern(const CertDirectory& dir) {
  const std::string& p = dir.cert_pattern;
  const std::string where = "cert directory " + dir.path + ": cert_pattern \"" + p + "\"";
  if (count_tokens(p) != 1) return unexpected(where + " must contain %n exactly once");
  if (p.front() == '/') return unexpected(where + " must be relative to the directory");
  if (dir.key_pattern.empty() || dir.key_pattern.front() == '/') {
    return unexpected("cert directory " + dir.path + ": key_pattern \"" + dir.key_pattern +
                      "\" must be a non-empty path relative to the directory");
  }
  const size_t at = p.find(kNameToken);
  const size_t comp_begin = p.rfind('/', at) == std::string::npos ? 0 : p.rfind('/', at) + 1;
  const size_t comp_end = std::min(p.find('/', at), p.size());
  Pattern out;
  out.base = p.substr(0, comp_begin);
  out.prefix = p.substr(comp_begin, at - comp_begin);
  out.suffix = p.substr(at + kNameToken.size(), comp_end - at - kNameToken.size());
  out.after = p.substr(comp_end);
  for (std::string_view part : {std::string_view(out.base), std::string_view(out.after)}) {
    if (part.find("..") != std::string_view::npos) {
      return unexpected(where + " must not contain \"..\"");
    }
  }
  return out;
}

std::string substitute(std::string_view pattern, std::string_view name) {
  std::string out;
  size_t from = 0;
  for (size_t at = pattern.find(kNameToken); at != std::string_view::npos;
       at = pattern.find(kNameToken, from)) {
    out.append(pattern.substr(from, at - from));
    out.append(name);
    from = at + kNameToken.size();
  }
  out.append(pattern.substr(from));
  return out;
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string iso_date(std::chrono::sys_seconds t) {
  const std::time_t tt = t.time_since_epoch().count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Warnings about the validity period, for named and directory certificates.
void check_validity(const std::string& cert_path, const CertInfo& info,
                    std::vector<std::string>& warnings) {
  const auto now =
      std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  if (info.expired_at(now)) {
    warnings.push_back(cert_path + ": certificate expired at " + iso_date(info.not_after) +
                       " (served anyway; clients will reject it)");
  } else if (info.not_yet_valid_at(now)) {
    warnings.push_back(cert_path + ": certificate is not valid before " +
                       iso_date(info.not_before) + " (served anyway; clients will reject it)");
  }
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out.empty() ? "none" : out;
}

}  // namespace

void CertStoreConfig::add_named(std::string name, CertFiles files) {
  named.push_back(NamedCert{std::move(name), std::move(files)});
}

void CertStoreConfig::add_directory(std::string name, std::string path, std::string cert_pattern,
                                    std::string key_pattern) {
  directories.push_back(CertDirectory{std::move(name), std::move(path), std::move(cert_pattern),
                                      std::move(key_pattern)});
}

Result<CertStoreBuild, std::string> CertStore::build(const CertStoreConfig& config,
                                                     const TlsSettings& settings,
                                                     std::shared_ptr<TicketKeys> ticket_keys) {
  if (auto ok = validate_settings(settings); !ok) return unexpected(ok.error());
  CertStoreBuild out{CertStore(), {}};
  CertStore& store = out.store;
  for (const NamedCert& nc : config.named) {
    if (nc.name.empty()) return unexpected(std::string("certificate with an empty name"));
    if (store.named_.contains(std::string_view(nc.name))) {
      return unexpected("certificate \"" + nc.name + "\" is defined twice");
    }
    auto cert = load_server_cert(nc.files, settings, ticket_keys);
    if (!cert) return unexpected("certificate \"" + nc.name + "\": " + cert.error());
    check_validity(nc.files.cert_path, cert->info, out.warnings);
    store.named_.emplace(nc.name, std::move(cert->ctx));
  }
  for (const CertDirectory& cd : config.directories) {
    if (cd.name.empty()) {
      return unexpected("cert directory " + cd.path + ": the directory needs a name");
    }
    if (store.dirs_.contains(std::string_view(cd.name))) {
      return unexpected("cert directory \"" + cd.name + "\" is defined twice");
    }
    Dir dir;
    auto r = scan_directory(cd, settings, ticket_keys, dir, out.warnings);
    if (!r) return unexpected(r.error());
    store.dirs_.emplace(cd.name, std::move(dir));
  }
  return out;
}

Result<void, std::string> CertStore::scan_directory(const CertDirectory& dir,
                                                    const TlsSettings& settings,
                                                    const std::shared_ptr<TicketKeys>& ticket_keys,
                                                    Dir& out, std::vector<std::string>& warnings) {
  auto pattern = parse_pattern(dir);
  if (!pattern) return unexpected(pattern.error());
  const std::string root = dir.path.empty() || dir.path.back() == '/' ? dir.path : dir.path + "/";
  const std::string base = root + pattern->base;

  std::error_code ec;
  std::filesystem::directory_iterator it(base.empty() ? "." : base, ec);
  if (ec) return unexpected("cert directory " + base + ": cannot read: " + ec.message());
  std::vector<std::string> entries;
  for (const std::filesystem::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) return unexpected("cert directory " + base + ": cannot read: " + ec.message());
    entries.push_back(it->path().filename().string());
  }
  std::sort(entries.begin(), entries.end());  // the same store from the same files, always

  std::unordered_map<std::string, std::string> served_by;  // map key → cert path
  for (const std::string& entry : entries) {
    const Pattern& p = *pattern;
    if (entry.size() < p.prefix.size() + p.suffix.size() || !entry.starts_with(p.prefix) ||
        !entry.ends_with(p.suffix)) {
      continue;
    }
    const std::string cert_path = base + entry + p.after;
    if (!is_regular_file(cert_path)) continue;  // a directory, or no cert inside it
    const std::string raw =
        entry.substr(p.prefix.size(), entry.size() - p.prefix.size() - p.suffix.size());

    const bool wildcard = raw.starts_with(kWildcardFilePrefix);
    const std::string_view host_part =
        wildcard ? std::string_view(raw).substr(kWildcardFilePrefix.size()) : std::string_view(raw);
    char buf[kHostnameBufSize];
    const auto n = normalize_hostname(host_part, buf);
    if (!n) {
      warnings.push_back(cert_path + ": skipped: \"" + raw + "\" is not a host name (" +
                         std::string(to_string(n.error())) + ")");
      continue;
    }
    if (n->kind != HostnameKind::kName) {
      warnings.push_back(cert_path + ": skipped: \"" + raw +
                         "\" is an IP address literal, not a host name");
      continue;
    }
    const std::string host(buf, n->len);
    Map& map = wildcard ? out.wildcard : out.exact;
    const std::string shown = wildcard ? "*." + host : host;
    if (auto seen = served_by.find(shown); seen != served_by.end()) {
      warnings.push_back(cert_path + ": skipped: " + shown + " is already served by " +
                         seen->second);
      continue;
    }
    const std::string key_path = root + substitute(dir.key_pattern, raw);
    if (!is_regular_file(key_path)) {
      warnings.push_back(cert_path + ": skipped: no key file " + key_path);
      continue;
    }
    auto cert = load_server_cert(CertFiles{cert_path, key_path}, settings, ticket_keys);
    if (!cert) {
      warnings.push_back(cert.error() + " (skipped)");  // the error names the file
      continue;
    }
    bool covers = false;
    if (wildcard) {
      const auto& names = cert->info.names;
      covers = std::find(names.begin(), names.end(), shown) != names.end();
    } else {
      X509* leaf = SSL_CTX_get0_certificate(cert->ctx.get());
      covers =
          leaf != nullptr && X509_check_host(leaf, host.data(), host.size(),
                                             X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) == 1;
    }
    if (!covers) {
      warnings.push_back(cert_path + ": skipped: the certificate's names (" +
                         join_names(cert->info.names) + ") do not cover " + shown);
      continue;
    }
    check_validity(cert_path, cert->info, warnings);
    served_by.emplace(shown, cert_path);
    map.emplace(host, std::move(cert->ctx));
  }
  return {};
}

SSL_CTX* CertStore::find_by_name(std::string_view cert_name) const noexcept {
  const auto it = named_.find(cert_name);
  return it == named_.end() ? nullptr : it->second.get();
}

SSL_CTX* CertStore::find_for_host(std::string_view dir_name,
                                  std::string_view normalized_host) const noexcept {
  const auto dir = dirs_.find(dir_name);
  if (dir == dirs_.end()) return nullptr;
  const Dir& d = dir->second;
  if (const auto it = d.exact.find(normalized_host); it != d.exact.end()) return it->second.get();
  const size_t dot = normalized_host.find('.');
  if (dot == std::string_view::npos || dot == 0) return nullptr;
  const auto it = d.wildcard.find(normalized_host.substr(dot + 1));
  return it == d.wildcard.end() ? nullptr : it->second.get();
}

size_t CertStore::directory_cert_count(std::string_view dir_name) const noexcept {
  const auto dir = dirs_.find(dir_name);
  return dir == dirs_.end() ? 0 : dir->second.exact.size() + dir->second.wildcard.size();
}

}  // namespace lode::tls
