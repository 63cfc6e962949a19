#include "controlplane/published_config.h"

#include <cstdio>
#include <toml++/toml.h>

namespace lode::cp {

namespace {

constexpr std::string_view kMarker = "# lodestone control plane: run-time state (generated; not in the file)\n";
constexpr std::string_view kPathLine = "# path = ";

}  // namespace

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

bool valid_runtime_certificate_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return false;
  for (const char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::set<std::string> defined_certificate_names(std::string_view text) {
  std::set<std::string> out;
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error&) {
    return out;
  }
  for (const char* kind : {"certificate", "certificate_dir"}) {
    const toml::array* arr = root[kind].as_array();
    if (arr == nullptr) continue;
    for (const toml::node& e : *arr) {
      if (const toml::table* t = e.as_table()) {
        if (auto name = (*t)["name"].value<std::string>()) out.insert(*name);
      }
    }
  }
  return out;
}

std::string compose_published_config(std::string_view file_text, std::string_view path,
                                     const std::vector<RuntimeCertificate>& certs,
                                     std::vector<std::string>* superseded) {
  std::string out(file_text);
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += kMarker;
  out += kPathLine;
  out += toml_quote(path);
  out += '\n';
  const std::set<std::string> in_file = certs.empty() ? std::set<std::string>{} : defined_certificate_names(file_text);
  for (const auto& c : certs) {
    if (in_file.count(c.name) != 0) {
      if (superseded != nullptr) superseded->push_back(c.name);
      continue;
    }
    out += "[[certificate]]\nname = " + toml_quote(c.name) + "\ncert = " + toml_quote(c.cert_path) +
           "\nkey = " + toml_quote(c.key_path) + "\n";
  }
  return out;
}

PublishedConfig split_published_config(std::string_view text) {
  PublishedConfig out;
  // The last marker at the start of a line: ours is appended after the file.
  size_t at = text.rfind(kMarker);
  while (at != std::string_view::npos && at != 0 && text[at - 1] != '\n') {
    at = text.rfind(kMarker, at - 1);
  }
  if (at == std::string_view::npos) {
    out.file_text = std::string(text);
    return out;
  }
  out.file_text = std::string(text.substr(0, at));
  const std::string_view rest = text.substr(at + kMarker.size());
  if (rest.substr(0, kPathLine.size()) == kPathLine) {
    const size_t eol = rest.find('\n');
    if (eol != std::string_view::npos) out.tables = std::string(rest.substr(eol + 1));
    const std::string_view line = rest.substr(2, eol - 2);  // path = "..."
    try {
      const toml::table t = toml::parse(line);
      if (auto p = t["path"].value<std::string>()) out.path = *p;
    } catch (const toml::parse_error&) {
    }
  }
  return out;
}

}  // namespace lode::cp
