// Certificate directories in stone's pattern mode, loaded by the control plane:
// drop NAME.pem + NAME.key into a directory and NAME is served, with no
// configuration line per name. Each certificate is validated like any other
// (controlplane/cert_bundle.h) before it is published.
//
// Rules:
//  - `cert_pattern` holds "%n" exactly once, in one path component, e.g.
//    "%n.pem", "%n-cert.pem" or "%n/fullchain.pem"; `key_pattern` may hold it
//    any number of times ("keys/%n.key", "%n/privkey.pem"). Neither is
//    absolute or contains "..".
//  - The text "%n" stands for must be a host name (lode::normalize_hostname,
//    not an IP literal); it is served under its normalized form. Other files
//    are skipped with a warning.
//  - A certificate without its key, that fails validation, or whose names do
//    not cover the host of its file is skipped with a warning; so is a second
//    file for a host already served (files are read in byte order).
//  - Wildcards: "%n" = "_wildcard.example.com" serves the names one label
//    below example.com; the certificate must name "*.example.com".
//  - An expired or not yet valid certificate is refused when its file is
//    loaded (skipped with a warning). One that expires while it is served
//    stays served until its file is loaded again (a client then says
//    "expired", clearer than an unknown name; nginx and HAProxy do not check
//    at all); `[control] expiry_warning_days`, `lodectl certs list` and
//    /metrics say it is coming.
//
// Watching: a watcher maps each changed path to the entries it concerns
// (names_for_changed_path) and reloads just those (load_directory_file), at a
// cost proportional to the files changed, not to the directory.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controlplane/cert_bundle.h"
#include "lodestone/result.h"

namespace lode::cp {

inline constexpr std::string_view kWildcardFilePrefix = "_wildcard.";

struct DirectorySpec {
  std::string name;  // the id routes use
  std::string path;
  std::string cert_pattern = "%n.pem";
  std::string key_pattern = "%n.key";
};

// What one entry of the directory stands for.
struct DirectoryName {
  // The name in the directory (where the cert pattern's "%n" component lives)
  // that the entry is: "a.test.pem", or "a.test" for "%n/fullchain.pem".
  std::string entry;
  std::string raw;        // the text "%n" stood for: "A.Test", "_wildcard.example.com"
  std::string host;       // normalized; for a wildcard the parent domain ("example.com")
  bool wildcard = false;  // serves the names one label below `host`
};

// Whether a certificate covers a directory entry's name: the host (exactly,
// or by a one-label wildcard of its own), or for a wildcard file "*.host".
bool covers(const CertBundle& b, const DirectoryName& name);
// The name of the directory entry whose record key is `key`
// ("dir:<dir>/<host>" or "dir:<dir>/*.<host>"); none for another key.
std::optional<DirectoryName> entry_name_of(std::string_view key);

struct DirectoryEntry {
  std::string host;  // normalized; for a wildcard the parent domain
  bool wildcard = false;
  std::string entry;  // its name in the directory (DirectoryName::entry)
  std::string cert_path;
  std::string key_path;
  CertBundle bundle;
};

// Checks the patterns (the message names the directory and the setting).
[[nodiscard]] Result<void, std::string> check_directory_spec(const DirectorySpec& spec);

// Loads every certificate of the directory, sorted by entry name. An
// unreadable directory or a bad pattern fails; per-file problems become
// warnings. Without a trust anchor, one warning for the whole directory.
[[nodiscard]] Result<std::vector<DirectoryEntry>, std::string> scan_cert_directory(
    const DirectorySpec& spec, const CertValidation& v, std::chrono::sys_seconds now,
    std::vector<std::string>& warnings);
[[nodiscard]] Result<std::vector<DirectoryEntry>, std::string> scan_cert_directory(
    const DirectorySpec& spec, const CertTrust& trust, std::chrono::sys_seconds now,
    std::vector<std::string>& warnings);

// Reloads one entry (`file_name` as in DirectoryName::entry) and nothing else:
//  - the entry: load and publish it;
//  - nullopt: its certificate file is gone; stop serving the host;
//  - an error (naming the file): the name is not an entry of this pattern, or
//    the files are there but refused (key missing, invalid, expired, names
//    not covered); keep serving what was served before.
// Validation warnings go to `warnings`.
[[nodiscard]] Result<std::optional<DirectoryEntry>, std::string> load_directory_file(
    const DirectorySpec& spec, std::string_view file_name, const CertValidation& v,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings);
[[nodiscard]] Result<std::optional<DirectoryEntry>, std::string> load_directory_file(
    const DirectorySpec& spec, std::string_view file_name, const CertTrust& trust,
    std::chrono::sys_seconds now, std::vector<std::string>& warnings);

// The entries a changed path concerns: the certificate file, the key file, or
// (for patterns like "%n/fullchain.pem") the entry's subdirectory itself.
// `path` is relative to spec.path, or spec.path + "/" + that. Usually one
// entry; two when the name fits both patterns as different hosts (cert
// "%n.pem", key "%n-key.pem": "a-key.pem"). Names that are not host names and
// unrelated files give nothing; so does a key_pattern without "%n" (one key
// for every name: rescan the directory when it changes).
// The entry a scan would serve `name`'s host (or wildcard) by, other than
// the file `skip`: the first in byte order of the directory's files for it
// that loads; none when no other loads. For a watcher that saw the file
// serving it go (a directory listing: only then).
[[nodiscard]] std::optional<DirectoryEntry> next_entry_for(const DirectorySpec& spec, const DirectoryName& name,
                                                           std::string_view skip, const CertTrust& trust,
                                                           std::chrono::sys_seconds now,
                                                           std::vector<std::string>& warnings);

[[nodiscard]] std::vector<DirectoryName> names_for_changed_path(const DirectorySpec& spec,
                                                                std::string_view path);

// The entry `file_name` stands for; nullopt when it does not fit the cert
// pattern, an error when it does but "%n" is not a host name.
[[nodiscard]] Result<std::optional<DirectoryName>, std::string> parse_directory_entry(
    const DirectorySpec& spec, std::string_view file_name);

// The directories a watcher needs for a directory and what it loaded: the
// cert pattern's base, the key pattern's directory when it holds no "%n", and
// the parent directory of each entry's files. Sorted, without duplicates.
[[nodiscard]] std::vector<std::string> directories_to_watch(
    const DirectorySpec& spec, const std::vector<DirectoryEntry>& entries);

}  // namespace lode::cp
