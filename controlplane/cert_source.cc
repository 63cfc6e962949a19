#include "controlplane/cert_source.h"

#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "lodestone/hostname.h"

namespace lode::cp {

namespace {

constexpr std::string_view kNameToken = "%n";

// The cert pattern split around its "%n" component:
// <base><prefix>%n<suffix><after>, e.g. "live/" "" "%n" "" "/fullchain.pem".
struct Pattern {
  std::string root;    // spec.path with a trailing '/' ("" when empty)
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

bool has_dotdot(std::string_view p) {
  size_t from = 0;
  while (from <= p.size()) {
    const size_t end = std::min(p.find('/', from), p.size());
    if (p.substr(from, end - from) == "..") return true;
    from = end + 1;
  }
  return false;
}

Result<Pattern, std::string> parse_pattern(const DirectorySpec& spec) {
  const std::string& p = spec.cert_pattern;
  const std::string where = "cert directory " + spec.path + ": cert_pattern \"" + p + "\"";
  if (count_tokens(p) != 1) return unexpected(where + " must contain %n exactly once");
  if (p.front() == '/') return unexpected(where + " must be relative to the directory");
  if (has_dotdot(p)) return unexpected(where + " must not contain \"..\"");
  const std::string& k = spec.key_pattern;
  if (k.empty() || k.front() == '/' || has_dotdot(k)) {
    return unexpected("cert directory " + spec.path + ": key_pattern \"" + k +
                      "\" must be a non-empty path relative to the directory, without \"..\"");
  }
  const size_t at = p.find(kNameToken);
  const size_t slash = p.rfind('/', at);
  const size_t comp_begin = slash == std::string::npos ? 0 : slash + 1;
  const size_t comp_end = std::min(p.find('/', at), p.size());
  Pattern out;
  out.root = spec.path.empty() || spec.path.back() == '/' ? spec.path : spec.path + "/";
  out.base = p.substr(0, comp_begin);
  out.prefix = p.substr(comp_begin, at - comp_begin);
  out.suffix = p.substr(at + kNameToken.size(), comp_end - at - kNameToken.size());
  out.after = p.substr(comp_end);
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

// The text "%n" stands for when `path` is `pattern` with every "%n" replaced
// by the same non-empty text without '/'. The text's length follows from the
// lengths alone, so this is one comparison.
std::optional<std::string> match_pattern(std::string_view pattern, std::string_view path) {
  const size_t k = count_tokens(pattern);
  if (k == 0) return std::nullopt;
  const size_t literal = pattern.size() - k * kNameToken.size();
  if (path.size() <= literal || (path.size() - literal) % k != 0) return std::nullopt;
  const size_t len = (path.size() - literal) / k;
  const size_t first = pattern.find(kNameToken);
  std::string raw(path.substr(first, len));
  if (raw.find('/') != std::string::npos || substitute(pattern, raw) != path) return std::nullopt;
  return raw;
}

// The name for `raw` (what "%n" stood for), or a reason it is not one.
Result<DirectoryName, std::string> classify(const Pattern& p, std::string raw) {
  const bool wildcard = raw.starts_with(kWildcardFilePrefix);
  const std::string_view host_part =
      wildcard ? std::string_view(raw).substr(kWildcardFilePrefix.size()) : std::string_view(raw);
  char buf[kHostnameBufSize];
  const auto n = normalize_hostname(host_part, buf);
  if (!n) {
    return unexpected("\"" + raw + "\" is not a host name (" + std::string(to_string(n.error())) +
                      ")");
  }
  if (n->kind != HostnameKind::kName) {
    return unexpected("\"" + raw + "\" is an IP address literal, not a host name");
  }
  DirectoryName out;
  out.entry = p.prefix + raw + p.suffix;
  out.host.assign(buf, n->len);
  out.wildcard = wildcard;
  out.raw = std::move(raw);
  return out;
}

Result<std::optional<DirectoryName>, std::string> parse_entry(const Pattern& p,
                                                              std::string_view entry) {
  if (entry.size() < p.prefix.size() + p.suffix.size() || !entry.starts_with(p.prefix) ||
      !entry.ends_with(p.suffix) || entry.find('/') != std::string_view::npos) {
    return std::optional<DirectoryName>();
  }
  const std::string_view raw =
      entry.substr(p.prefix.size(), entry.size() - p.prefix.size() - p.suffix.size());
  auto name = classify(p, std::string(raw));
  if (!name) return unexpected(name.error());
  return std::optional<DirectoryName>(std::move(*name));
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "none" : out;
}

}  // namespace

bool covers(const CertBundle& b, const DirectoryName& name) {
  if (name.wildcard) {
    const std::string want = "*." + name.host;
    return std::find(b.info.names.begin(), b.info.names.end(), want) != b.info.names.end();
  }
  const bool ok = X509_check_host(b.leaf.get(), name.host.data(), name.host.size(),
                                  X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) == 1;
  ERR_clear_error();
  return ok;
}

std::optional<DirectoryName> entry_name_of(std::string_view key) {
  if (key.substr(0, 4) != "dir:") return std::nullopt;
  const size_t slash = key.rfind('/');  // a directory's name may hold '/', a host name never
  if (slash == std::string_view::npos || slash < 4 || slash + 1 >= key.size()) return std::nullopt;
  DirectoryName n;
  std::string_view host = key.substr(slash + 1);
  n.wildcard = host.substr(0, 2) == "*.";
  if (n.wildcard) host.remove_prefix(2);
  n.host = std::string(host);
  n.entry = n.raw = std::string(key.substr(slash + 1));
  return n;
}

namespace {

Result<std::optional<DirectoryEntry>, std::string> load_entry(
    const Pattern& p, const DirectorySpec& spec, const DirectoryName& name, const CertTrust& trust,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings) {
  DirectoryEntry out;
  out.cert_path = p.root + p.base + name.entry + p.after;
  out.key_path = p.root + substitute(spec.key_pattern, name.raw);
  if (!is_regular_file(out.cert_path)) return std::optional<DirectoryEntry>();
  if (!is_regular_file(out.key_path)) {
    return unexpected(out.cert_path + ": no key file " + out.key_path);
  }
  std::vector<std::string> notes;
  auto bundle = load_cert_bundle(out.cert_path, out.key_path, trust, now, notes);
  if (!bundle) return unexpected(bundle.error());
  if (!covers(*bundle, name)) {
    const std::string shown = name.wildcard ? "*." + name.host : name.host;
    return unexpected(out.cert_path + ": the certificate's names (" +
                      join_names(bundle->info.names) + ") do not cover " + shown);
  }
  warnings.insert(warnings.end(), notes.begin(), notes.end());
  out.host = name.host;
  out.wildcard = name.wildcard;
  out.entry = name.entry;
  out.bundle = std::move(*bundle);
  return std::optional<DirectoryEntry>(std::move(out));
}

}  // namespace

Result<void, std::string> check_directory_spec(const DirectorySpec& spec) {
  auto p = parse_pattern(spec);
  if (!p) return unexpected(p.error());
  return {};
}

namespace {

// The names of the files in the directory `base` (pattern root + base), in
// byte order: the same result from the same files, always.
Result<std::vector<std::string>, std::string> sorted_entries(const std::string& base) {
  const std::string shown =
      base.empty()
          ? "."
          : (base.size() > 1 && base.back() == '/' ? base.substr(0, base.size() - 1) : base);
  std::error_code ec;
  std::filesystem::directory_iterator it(shown, ec);
  if (ec) return unexpected("cert directory " + shown + ": cannot read: " + ec.message());
  std::vector<std::string> entries;
  for (const std::filesystem::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) return unexpected("cert directory " + shown + ": cannot read: " + ec.message());
    entries.push_back(it->path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

}  // namespace

std::optional<DirectoryEntry> next_entry_for(const DirectorySpec& spec, const DirectoryName& name,
                                             std::string_view skip, const CertTrust& trust,
                                             std::chrono::sys_seconds now, std::vector<std::string>& warnings) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return std::nullopt;
  auto listed = sorted_entries(pattern->root + pattern->base);
  if (!listed) return std::nullopt;
  for (const std::string& entry : *listed) {
    if (entry == skip) continue;
    auto other = parse_entry(*pattern, entry);
    if (!other || !*other || (*other)->host != name.host || (*other)->wildcard != name.wildcard) continue;
    std::vector<std::string> notes;
    auto loaded = load_entry(*pattern, spec, **other, trust, now, notes);
    if (!loaded || !*loaded) continue;
    warnings.insert(warnings.end(), notes.begin(), notes.end());
    return std::move(**loaded);
  }
  return std::nullopt;
}

Result<std::vector<DirectoryEntry>, std::string> scan_cert_directory(
    const DirectorySpec& spec, const CertTrust& trust, std::chrono::sys_seconds now,
    std::vector<std::string>& warnings) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return unexpected(pattern.error());
  const Pattern& p = *pattern;
  const std::string base = p.root + p.base;

  auto listed = sorted_entries(base);
  if (!listed) return unexpected(listed.error());
  const std::vector<std::string>& entries = *listed;

  // Which files are candidates (cheap, in order), then load them on every
  // core (parsing and verifying is the cost: ~0.3-0.7 ms per certificate
  // with OpenSSL 3.0's decoders), then keep them in byte order of their file
  // names so the same files always give the same result.
  struct Candidate {
    DirectoryName name;
    std::string served;
    Result<std::optional<DirectoryEntry>, std::string> loaded{std::optional<DirectoryEntry>{}};
    std::vector<std::string> warnings;
  };
  std::vector<Candidate> candidates;
  for (const std::string& entry : entries) {
    auto name = parse_entry(p, entry);
    if (name && !*name) continue;  // not this pattern's file
    if (!name) {
      const std::string cert_path = base + entry + p.after;
      if (is_regular_file(cert_path)) {
        warnings.push_back(cert_path + ": skipped: " + name.error());
      }
      continue;
    }
    Candidate c;
    c.served = (*name)->wildcard ? "*." + (*name)->host : (*name)->host;
    c.name = std::move(**name);
    candidates.push_back(std::move(c));
  }
  const size_t threads =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, std::max<size_t>(1, candidates.size() / 64));
  auto load_some = [&](size_t first) {
    for (size_t i = first; i < candidates.size(); i += threads) {
      Candidate& c = candidates[i];
      c.loaded = load_entry(p, spec, c.name, trust, now, c.warnings);
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(load_some, t);
  load_some(0);
  for (auto& t : pool) t.join();

  std::vector<DirectoryEntry> out;
  out.reserve(candidates.size());
  std::unordered_map<std::string, std::string> served_by;  // "a.test" / "*.b.test" → cert path
  for (Candidate& c : candidates) {
    if (auto seen = served_by.find(c.served); seen != served_by.end()) {
      warnings.push_back(base + c.name.entry + p.after + ": skipped: " + c.served + " is already served by " +
                         seen->second);
      continue;
    }
    for (auto& w : c.warnings) warnings.push_back(std::move(w));
    if (!c.loaded) {
      warnings.push_back(c.loaded.error() + " (skipped)");
      continue;
    }
    if (!*c.loaded) continue;  // a subdirectory without the certificate file
    served_by.emplace(c.served, (*c.loaded)->cert_path);
    out.push_back(std::move(**c.loaded));
  }
  if (!out.empty() && !trust.has_anchor()) {
    warnings.push_back(trust.no_anchor_warning("cert directory " + spec.path));
  }
  return out;
}

Result<std::vector<DirectoryEntry>, std::string> scan_cert_directory(
    const DirectorySpec& spec, const CertValidation& v, std::chrono::sys_seconds now,
    std::vector<std::string>& warnings) {
  auto trust = CertTrust::load(v);
  if (!trust) return unexpected(trust.error());
  return scan_cert_directory(spec, *trust, now, warnings);
}

Result<std::optional<DirectoryEntry>, std::string> load_directory_file(
    const DirectorySpec& spec, std::string_view file_name, const CertTrust& trust,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return unexpected(pattern.error());
  const std::string shown_path = pattern->root + pattern->base + std::string(file_name);
  auto name = parse_entry(*pattern, file_name);
  if (!name) return unexpected(shown_path + pattern->after + ": " + name.error());
  if (!*name) {
    return unexpected(shown_path + ": does not fit cert_pattern \"" + spec.cert_pattern + "\"");
  }
  return load_entry(*pattern, spec, **name, trust, now, warnings);
}

Result<std::optional<DirectoryEntry>, std::string> load_directory_file(
    const DirectorySpec& spec, std::string_view file_name, const CertValidation& v,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings) {
  auto trust = CertTrust::load(v);
  if (!trust) return unexpected(trust.error());
  auto out = load_directory_file(spec, file_name, *trust, now, warnings);
  if (out && *out && !trust->has_anchor()) {
    warnings.push_back(trust->no_anchor_warning((**out).cert_path));
  }
  return out;
}

Result<std::optional<DirectoryName>, std::string> parse_directory_entry(
    const DirectorySpec& spec, std::string_view file_name) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return unexpected(pattern.error());
  return parse_entry(*pattern, file_name);
}

std::vector<DirectoryName> names_for_changed_path(const DirectorySpec& spec,
                                                  std::string_view path) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return {};
  const Pattern& p = *pattern;
  if (!p.root.empty() && path.starts_with(p.root)) path.remove_prefix(p.root.size());
  while (path.starts_with("./")) path.remove_prefix(2);

  std::vector<DirectoryName> out;
  auto add = [&](std::optional<std::string> raw) {
    if (!raw) return;
    auto name = classify(p, std::move(*raw));
    if (!name) return;
    const bool dup = std::any_of(out.begin(), out.end(),
                                 [&](const DirectoryName& n) { return n.entry == name->entry; });
    if (!dup) out.push_back(std::move(*name));
  };
  add(match_pattern(spec.cert_pattern, path));
  if (!p.after.empty()) add(match_pattern(p.base + p.prefix + "%n" + p.suffix, path));
  add(match_pattern(spec.key_pattern, path));
  return out;
}

std::vector<std::string> directories_to_watch(const DirectorySpec& spec,
                                              const std::vector<DirectoryEntry>& entries) {
  auto pattern = parse_pattern(spec);
  if (!pattern) return {};
  auto dir_of = [](const std::string& file) {
    const size_t slash = file.rfind('/');
    return slash == std::string::npos ? std::string(".") : file.substr(0, slash);
  };
  auto without_slash = [](std::string d) {
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    return d.empty() ? std::string(".") : d;
  };
  std::set<std::string> dirs;
  dirs.insert(without_slash(pattern->root + pattern->base));
  const std::string key_dir = dir_of(pattern->root + spec.key_pattern);
  if (key_dir.find(kNameToken) == std::string::npos) dirs.insert(without_slash(key_dir));
  for (const auto& e : entries) {
    dirs.insert(dir_of(e.cert_path));
    dirs.insert(dir_of(e.key_path));
  }
  return {dirs.begin(), dirs.end()};
}

}  // namespace lode::cp
