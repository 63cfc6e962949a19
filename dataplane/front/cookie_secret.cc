#include "dataplane/front/cookie_secret.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace lode::front {
namespace {

constexpr size_t kMinBytes = 16, kMaxBytes = 64;
constexpr size_t kMaxFileBytes = 4096;
constexpr std::string_view kLabel = "lodestone syn cookie secret";

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

}  // namespace

Result<CookieSecret, std::string> parse_cookie_secret(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  const std::string expected =
      "expected 32 to 128 hex digits (16 to 64 bytes, e.g. `openssl rand -hex 32`)";
  if (text.size() % 2 != 0 || text.size() < 2 * kMinBytes || text.size() > 2 * kMaxBytes) {
    return unexpected(expected + ", got " + std::to_string(text.size()) + " characters");
  }
  uint8_t buf[kLabel.size() + kMaxBytes];
  std::memcpy(buf, kLabel.data(), kLabel.size());
  const size_t n = text.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    const int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(buf, sizeof buf);
      // The position only: the secret's characters stay out of the logs.
      return unexpected(expected + ", got a character that is not a hex digit at offset " +
                        std::to_string(hi < 0 ? 2 * i : 2 * i + 1));
    }
    buf[kLabel.size() + i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  const bool ok =
      EVP_Digest(buf, kLabel.size() + n, digest, &len, EVP_sha256(), nullptr) == 1 && len >= 16;
  OPENSSL_cleanse(buf, sizeof buf);
  if (!ok) return unexpected(std::string("SHA-256 failed"));
  CookieSecret key;
  std::memcpy(key.data(), digest, key.size());
  OPENSSL_cleanse(digest, sizeof digest);
  return key;
}

Result<CookieSecret, std::string> load_cookie_secret(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return unexpected(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return unexpected(path + ": not a regular file");
  }
  if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return unexpected(
        path + ": mode " + mode +
        ": other users may read or write it, or its group write it (chmod 600, or 640)");
  }
  std::vector<char> text(kMaxFileBytes + 1);
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t r = ::read(fd, text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int e = errno;
      ::close(fd);
      OPENSSL_cleanse(text.data(), text.size());
      return unexpected(path + ": read: " + std::strerror(e));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  if (got > kMaxFileBytes) {
    OPENSSL_cleanse(text.data(), text.size());
    return unexpected(path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes");
  }
  auto key = parse_cookie_secret(std::string_view(text.data(), got));
  OPENSSL_cleanse(text.data(), text.size());
  if (!key) return unexpected(path + ": " + key.error());
  return key;
}

}  // namespace lode::front
