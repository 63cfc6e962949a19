// Verified OCSP responses on disk, so a restarted control plane staples on its
// first handshake without asking the responder.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include <cstdlib>
#include <cstring>

#include "controlplane/ocsp.h"
#include "controlplane/ocsp_internal.h"

namespace lode::cp {

namespace {

constexpr size_t kMaxKeyLength = 128;

// Keys are lowercase hex (key_for's form): never a path separator or "..".
bool valid_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  for (char c : key) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

// mkdir -p with mode 0755 for what it creates.
Result<void, std::string> ensure_dir(const std::string& dir) {
  if (dir.empty()) return unexpected(std::string("no directory configured"));
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) == 0) {
      ::chmod(prefix.c_str(), 0755);  // whatever the umask
    } else if (errno != EEXIST) {
      return unexpected("cannot create " + prefix + ": " + errno_text(errno));
    }
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return unexpected(dir + " is not a directory");
  }
  return {};
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

OcspDiskCache::OcspDiskCache(std::string dir) : dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

std::string OcspDiskCache::path_for(std::string_view key) const {
  return dir_ + "/" + std::string(key) + ".der";
}

Result<void, std::string> OcspDiskCache::store(std::string_view key, std::string_view der) {
  const std::string what = "OCSP disk cache " + dir_ + ": ";
  if (!valid_key(key)) return unexpected(what + "invalid key '" + std::string(key) + "'");
  if (der.empty() || der.size() > kMaxOcspResponseBytes) {
    return unexpected(what + "refusing a " + std::to_string(der.size()) + "-byte response (1 to " +
                      std::to_string(kMaxOcspResponseBytes) + ")");
  }
  if (auto made = ensure_dir(dir_); !made) return unexpected(what + made.error());

  const std::string path = path_for(key);
  std::string tmp = dir_ + "/." + std::string(key) + ".der.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) return unexpected(what + "cannot create a file in it: " + errno_text(errno));
  const bool written = ::fchmod(fd, 0644) == 0 && write_all(fd, der) && ::fsync(fd) == 0;
  const int err = errno;
  if (::close(fd) != 0 || !written) {
    ::unlink(tmp.c_str());
    return unexpected(what + "cannot write " + tmp + ": " + errno_text(written ? errno : err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int rename_err = errno;
    ::unlink(tmp.c_str());
    return unexpected(what + "cannot rename " + tmp + " to " + path + ": " +
                      errno_text(rename_err));
  }
  // The rename itself survives a crash only once the directory is synced.
  if (const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

std::optional<std::string> OcspDiskCache::load(std::string_view key) const {
  if (!valid_key(key)) return std::nullopt;
  const std::string path = path_for(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<std::string> out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      static_cast<size_t>(st.st_size) <= kMaxOcspResponseBytes) {
    std::string buf(static_cast<size_t>(st.st_size) + 1, '\0');  // +1: notice growth
    size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == static_cast<size_t>(st.st_size)) {
      buf.resize(got);
      out = std::move(buf);
    }
  }
  ::close(fd);
  return out;
}

Result<void, std::string> OcspDiskCache::remove(std::string_view key) {
  if (!valid_key(key)) {
    return unexpected("OCSP disk cache " + dir_ + ": invalid key '" + std::string(key) + "'");
  }
  const std::string path = path_for(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return unexpected("OCSP disk cache: cannot remove " + path + ": " + errno_text(errno));
  }
  return {};
}

std::string OcspDiskCache::key_for(X509* cert, X509* issuer) {
  if (cert == nullptr || issuer == nullptr) return {};
  detail::OcspCertIdPtr id(OCSP_cert_to_id(EVP_sha1(), cert, issuer));
  if (id == nullptr) return {};
  unsigned char* der = nullptr;
  const int len = i2d_OCSP_CERTID(id.get(), &der);
  if (len <= 0) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  const int ok = EVP_Digest(der, static_cast<size_t>(len), md, &md_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(md_len * 2);
  for (unsigned int i = 0; i < md_len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

}  // namespace lode::cp
