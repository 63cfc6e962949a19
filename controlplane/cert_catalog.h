// Every certificate a configuration names, loaded and validated, under the
// record keys the dataplane looks them up by (dataplane/control/
// snapshot_state.h): [[certificate]] NAME → "name:NAME"; each file of a
// [[certificate_dir]] DIR → "dir:DIR/HOST" or "dir:DIR/*.PARENT".
//
// The control plane publishes these; `lodestone check` reports their errors
// and warnings with the same messages as a start.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "controlplane/cert_bundle.h"
#include "controlplane/config.h"
#include "lodestone/result.h"

namespace lode::cp {

struct CatalogEntry {
  std::string key;  // the record key
  std::string dir;  // the certificate_dir's name; empty for a [[certificate]]
  std::string dir_entry;  // the directory's file (DirectoryEntry::entry) serving it
  std::string cert_path, key_path;
  CertBundle bundle;
  config::OcspPolicy policy = config::OcspPolicy::kInherit;  // as configured
  bool strict = false;   // OCSP: no serving without a valid staple (policy or must-staple)
  std::string ocsp_url;  // the configured override, else the certificate's AIA; empty: none
};

CertValidation validation_for(const config::Config& cfg);

// Loads everything; an error per certificate that fails (file, reason).
// `lenient`: the errors are returned in `refused` and the rest still loads
// (a control plane re-attaching serves what it can).
// Warnings: expiring soon, no trust anchor, route names a certificate does
// not cover.
[[nodiscard]] Result<std::vector<CatalogEntry>, std::vector<std::string>> load_certificates(
    const config::Config& cfg, const CertTrust& trust, std::chrono::sys_seconds now,
    std::vector<std::string>& warnings, std::vector<std::string>* refused = nullptr);

// The OCSP settings of an entry (again after its bundle changed): its URL
// (the configured override, else AIA) and strictness (policy or must-staple).
void resolve_ocsp(const config::Config& cfg, CatalogEntry& e);
// The same with the entry's [[certificate]] given (none for a directory's):
// no search of the configuration for it.
void resolve_ocsp(const config::Config& cfg, const config::CertificateConfig* named, CatalogEntry& e);

}  // namespace lode::cp
