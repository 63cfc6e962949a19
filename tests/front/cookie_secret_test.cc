// [dpdk] cookie_secret_file: the file's format and checks
// (dataplane/front/cookie_secret.h) and the configuration key.
#include "dataplane/front/cookie_secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "controlplane/config.h"
#include "support/test_pki.h"

namespace lode::front {
namespace {

const std::string kHex32 = "00112233445566778899aabbccddeeff";  // 16 bytes

TEST(CookieSecretTest, HexOf16To64BytesWhitespaceAroundIgnored) {
  auto a = parse_cookie_secret(kHex32);
  ASSERT_TRUE(a.has_value()) << a.error();
  auto b = parse_cookie_secret("  " + kHex32 + "\n");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*a, *b);
  auto upper = parse_cookie_secret("00112233445566778899AABBCCDDEEFF");
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(*a, *upper) << "hex digits in either case";
  // The key is derived (SHA-256): not the bytes themselves, and another
  // secret gives another key.
  EXPECT_NE(std::string(a->begin(), a->end()),
            std::string("\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 16));
  auto other = parse_cookie_secret("10112233445566778899aabbccddeeff");
  ASSERT_TRUE(other.has_value());
  EXPECT_NE(*a, *other);
  EXPECT_TRUE(parse_cookie_secret(std::string(128, 'a')).has_value());
}

TEST(CookieSecretTest, WrongLengthsAndCharactersAreRefusedWithoutTheSecret) {
  for (const std::string bad :
       {std::string(), std::string(30, 'a'), std::string(130, 'a'), std::string(33, 'a'),
        kHex32 + " " + kHex32, "zz" + kHex32.substr(2), kHex32.substr(0, 31) + "g"}) {
    auto r = parse_cookie_secret(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_NE(r.error().find("expected 32 to 128 hex digits"), std::string::npos) << r.error();
    EXPECT_EQ(r.error().find("0011223344"), std::string::npos)
        << "no secret in the message: " << r.error();
  }
}

TEST(CookieSecretTest, FileMustBePrivateAndRegular) {
  test::TempDir dir;
  const std::string path = dir.write("cookie.secret", kHex32 + "\n");  // 0600
  auto ok = load_cookie_secret(path);
  ASSERT_TRUE(ok.has_value()) << ok.error();
  EXPECT_EQ(*ok, *parse_cookie_secret(kHex32));
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  EXPECT_TRUE(load_cookie_secret(path).has_value()) << "group-readable is fine";
  for (const mode_t mode : {0644, 0604, 0660, 0602}) {
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    auto r = load_cookie_secret(path);
    ASSERT_FALSE(r.has_value()) << mode;
    EXPECT_NE(r.error().find(path), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("chmod 600"), std::string::npos) << r.error();
  }
  auto missing = load_cookie_secret(dir.path() + "/none");
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().find(dir.path() + "/none: cannot open"), std::string::npos)
      << missing.error();
  auto directory = load_cookie_secret(dir.mkdir("d"));
  ASSERT_FALSE(directory.has_value());
  EXPECT_NE(directory.error().find("not a regular file"), std::string::npos);
  const std::string short_path = dir.write("short.secret", "abcd\n");
  auto bad = load_cookie_secret(short_path);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().find(short_path + ": expected 32 to 128 hex digits"), std::string::npos)
      << bad.error();
  const std::string big = dir.write("big.secret", std::string(5000, 'a'));
  auto large = load_cookie_secret(big);
  ASSERT_FALSE(large.has_value());
  EXPECT_NE(large.error().find("larger than 4096"), std::string::npos) << large.error();
}

constexpr std::string_view kDpdkConfig =
    "front = \"dpdk\"\n"
    "[dpdk]\neal = [\"-l\", \"0-1\"]\n";
constexpr std::string_view kListener =
    "[[listener]]\nname = \"vip\"\nlisten = [\"10.0.0.1:443\"]\n"
    "[[route]]\nname = \"r\"\nnames = [\"r.test\"]\naction = \"reject\"\n";

TEST(CookieSecretTest, ConfigKeyIsAPathResolvedFromTheConfigsDirectoryAndChecked) {
  test::TempDir dir;
  const std::string secret = dir.write("keys/cookie.secret", kHex32 + "\n");
  const std::string path = dir.path() + "/lodestone.toml";
  auto cfg = config::load_config_string(std::string(kDpdkConfig) +
                                            "cookie_secret_file = \"keys/cookie.secret\"\n" +
                                            std::string(kListener),
                                        path);
  ASSERT_TRUE(cfg.has_value()) << cfg.error()[0].to_string();
  EXPECT_EQ(cfg->dpdk.cookie_secret_file, secret);
  auto none = config::load_config_string(std::string(kDpdkConfig) + std::string(kListener), path);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->dpdk.cookie_secret_file.empty());
  // Not a string, empty, a file the dataplane would refuse: errors that name
  // the key (and the file), never the secret.
  ASSERT_EQ(chmod(secret.c_str(), 0644), 0);
  for (const std::string bad :
       {"cookie_secret_file = 1\n", "cookie_secret_file = \"\"\n",
        "cookie_secret_file = \"keys/none\"\n", "cookie_secret_file = \"keys/cookie.secret\"\n"}) {
    auto r =
        config::load_config_string(std::string(kDpdkConfig) + bad + std::string(kListener), path);
    ASSERT_FALSE(r.has_value()) << bad;
    const std::string e = r.error()[0].to_string();
    EXPECT_NE(e.find("dpdk.cookie_secret_file"), std::string::npos) << e;
    EXPECT_EQ(e.find("0011223344"), std::string::npos) << e;
  }
  auto r = config::load_config_string(std::string(kDpdkConfig) +
                                          "cookie_secret_file = \"keys/cookie.secret\"\n" +
                                          std::string(kListener),
                                      path);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error()[0].to_string().find(secret + ": mode 0644"), std::string::npos)
      << r.error()[0].to_string();
  // The kernel front does not use it: not read.
  auto kernel = config::load_config_string(
      "[dpdk]\neal = [\"-l\", \"0-1\"]\ncookie_secret_file = \"keys/none\"\n" +
          std::string(kListener),
      path);
  ASSERT_TRUE(kernel.has_value()) << kernel.error()[0].to_string();
}

}  // namespace
}  // namespace lode::front
