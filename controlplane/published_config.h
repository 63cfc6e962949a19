// The configuration text the control plane publishes (the snapshot's config
// record) and saves beside the control socket for a re-attach: the file's
// text exactly as read, then a trailer of TOML comments and tables that
// carries the control plane's run-time state:
//
//   <the configuration file's text>
//   # lodestone control plane: run-time state (generated; not in the file)
//   # path = "/etc/lodestone/lodestone.toml"
//   [[certificate]]                       one per `lodectl certs add NAME`
//   name = "NAME"
//   cert = "RUN_DIR/lodestone-PID.sock.certs/NAME.pem"
//   key = "RUN_DIR/lodestone-PID.sock.certs/NAME.key"
//
// So the dataplane, which builds its route tables from this text alone,
// resolves a route naming a run-time certificate like any other, and reads
// relative paths (backend CA files) from the directory of the file in service
// (`lodectl routes reload CONFIG` can switch files). Line numbers of the
// file's own text are unchanged: the trailer comes after it.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace lode::cp {

struct RuntimeCertificate {
  std::string name;
  std::string cert_path, key_path;  // absolute: the control plane's certificate store
};

// The file's text with the trailer. Run-time certificates whose name the
// file itself defines are left out (the file wins) and listed in
// `superseded` when it is not null.
[[nodiscard]] std::string compose_published_config(std::string_view file_text, std::string_view path,
                                                   const std::vector<RuntimeCertificate>& certs,
                                                   std::vector<std::string>* superseded = nullptr);

struct PublishedConfig {
  std::string file_text;  // the whole text when it has no trailer
  std::string path;       // empty: no trailer
  std::string tables;     // the trailer's TOML after its path line ([[certificate]] tables)
};
[[nodiscard]] PublishedConfig split_published_config(std::string_view text);

// [[certificate]] and [[certificate_dir]] names the text defines (empty when
// it is not TOML: the loader reports that).
[[nodiscard]] std::set<std::string> defined_certificate_names(std::string_view text);

// A name `lodectl certs add` accepts: 1 to 64 of [A-Za-z0-9._-], starting
// with a letter or digit (it names files in the store).
[[nodiscard]] bool valid_runtime_certificate_name(std::string_view name) noexcept;

// A TOML basic string ("..." with \\, \" and control characters escaped).
[[nodiscard]] std::string toml_quote(std::string_view s);

}  // namespace lode::cp
