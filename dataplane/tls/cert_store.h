// The certificates one TLS worker serves: named certificates (the config's
// name → an SSL_CTX) and certificate directories in stone's pattern mode
// (`-z certpat=%n-cert.pem -z keypat=%n-key.pem`): drop NAME.pem + NAME.key
// into a directory and NAME is served, with no configuration line per name.
//
// A CertStore is immutable once built; each worker holds its own and a reload
// builds a new one that replaces it (connections keep their SSL_CTX alive by
// OpenSSL's reference counting). Lookups are hash-map finds, O(1) in the
// number of certificates.
//
// Directory mode:
//  - `cert_pattern` holds "%n" exactly once, in one path component, e.g.
//    "%n.pem", "%n-cert.pem" or "%n/fullchain.pem"; `key_pattern` may hold it
//    any number of times. The directory is scanned when the store is built.
//  - The text that "%n" stands for must be a valid host name
//    (lode::normalize_hostname); it is served under its normalized form.
//    Files whose name is not a host name are skipped with a warning.
//  - A certificate without its key, with a key that does not load or match, or
//    whose names (CN / DNS SANs) do not cover the host name of its file, is
//    skipped with a warning: the store never serves a certificate that does
//    not name the host.
//  - Wildcards: "%n" = "_wildcard.example.com" (so the file is
//    "_wildcard.example.com.pem" with the default pattern) serves the names
//    one label below example.com (a.example.com, not example.com, not
//    a.b.example.com) for which no exact file exists. The certificate must
//    name "*.example.com". ("*" is not used in file names: it is not a host
//    name character and shells expand it.)
//  - An expired (or not yet valid) certificate is loaded and served, with a
//    warning, so the caller can alert on it.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "dataplane/tls/tls_context.h"
#include "lodestone/result.h"

namespace lode::tls {

inline constexpr std::string_view kWildcardFilePrefix = "_wildcard.";

struct NamedCert {
  std::string name;  // the configuration's name for it (what routes refer to)
  CertFiles files;
};

struct CertDirectory {
  std::string name;  // the id routes use with find_for_host()
  std::string path;
  std::string cert_pattern = "%n.pem";
  std::string key_pattern = "%n.key";
};

struct CertStoreConfig {
  std::vector<NamedCert> named;
  std::vector<CertDirectory> directories;

  void add_named(std::string name, CertFiles files);
  void add_directory(std::string name, std::string path, std::string cert_pattern = "%n.pem",
                     std::string key_pattern = "%n.key");
};

struct CertStoreBuild;

class CertStore {
 public:
  // Loads everything. A named certificate that fails to load, a directory that
  // cannot be read, a bad pattern or a name defined twice fails the build (the
  // message names the file or setting); per-file problems inside a directory
  // become warnings and the file is skipped. The wall clock decides what is
  // "expired".
  [[nodiscard]] static Result<CertStoreBuild, std::string> build(
      const CertStoreConfig& config, const TlsSettings& settings,
      std::shared_ptr<TicketKeys> ticket_keys);

  CertStore(CertStore&&) noexcept = default;
  CertStore& operator=(CertStore&&) noexcept = default;
  CertStore(const CertStore&) = delete;
  CertStore& operator=(const CertStore&) = delete;

  // The SSL_CTX of a named certificate, nullptr if there is none.
  [[nodiscard]] SSL_CTX* find_by_name(std::string_view cert_name) const noexcept;
  // The SSL_CTX for a normalized host name in the directory named `dir_name`
  // (exact file first, then the wildcard file of its parent domain), or
  // nullptr.
  [[nodiscard]] SSL_CTX* find_for_host(std::string_view dir_name,
                                       std::string_view normalized_host) const noexcept;

  size_t named_count() const noexcept { return named_.size(); }
  size_t directory_count() const noexcept { return dirs_.size(); }
  // Certificates loaded from a directory (exact + wildcard files); 0 if unknown.
  size_t directory_cert_count(std::string_view dir_name) const noexcept;

 private:
  CertStore() = default;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using Map = std::unordered_map<std::string, SslCtxPtr, Hash, std::equal_to<>>;
  struct Dir {
    Map exact;     // "c.test" → SSL_CTX
    Map wildcard;  // "example.com" (parent of the served names) → SSL_CTX
  };

  static Result<void, std::string> scan_directory(const CertDirectory& dir,
                                                  const TlsSettings& settings,
                                                  const std::shared_ptr<TicketKeys>& ticket_keys,
                                                  Dir& out, std::vector<std::string>& warnings);

  Map named_;
  std::unordered_map<std::string, Dir, Hash, std::equal_to<>> dirs_;
};

struct CertStoreBuild {
  CertStore store;
  std::vector<std::string> warnings;  // one line each, ready to log
};

}  // namespace lode::tls
