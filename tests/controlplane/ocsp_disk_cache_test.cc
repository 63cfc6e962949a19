// controlplane/ocsp_disk_cache.cc: verified responses on disk, written
// atomically, loaded back within limits, and good for a restart.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>

#include "controlplane/ocsp.h"
#include "tests/support/ocsp_responder.h"
#include "tests/support/test_pki.h"

namespace lode::cp {
namespace {

using namespace std::chrono_literals;
using test::ocsp_certs;

sys_seconds now_s() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(OcspDiskCache, RoundTripCreatesTheDirectory) {
  test::TempDir tmp;
  const std::string dir = tmp.path() + "/a/b/ocsp";
  OcspDiskCache cache(dir);
  const std::string key =
      OcspDiskCache::key_for(ocsp_certs().good.get(), ocsp_certs().intermediate.get());
  ASSERT_TRUE(cache.store(key, "response-bytes"));
  EXPECT_EQ(cache.load(key), "response-bytes");
  EXPECT_EQ(mode_of(dir), 0755u);
  EXPECT_EQ(mode_of(dir + "/" + key + ".der"), 0644u);
}

TEST(OcspDiskCache, OverwriteLeavesNoTemporaryFiles) {
  test::TempDir tmp;
  OcspDiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store("ab12", "one"));
  ASSERT_TRUE(cache.store("ab12", "two, longer"));
  ASSERT_TRUE(cache.store("ab12", "3"));
  EXPECT_EQ(cache.load("ab12"), "3");
  EXPECT_EQ(files_in(tmp.path()), 1u);
}

TEST(OcspDiskCache, MissingIsNullopt) {
  test::TempDir tmp;
  EXPECT_EQ(OcspDiskCache(tmp.path()).load("abcdef"), std::nullopt);
  EXPECT_EQ(OcspDiskCache(tmp.path() + "/not-there").load("abcdef"), std::nullopt);
}

TEST(OcspDiskCache, KeysThatCouldEscapeTheDirectoryRefused) {
  test::TempDir tmp;
  OcspDiskCache cache(tmp.path() + "/cache");
  tmp.write("secret.der", "do not read");
  for (const char* key : {"", "../secret", "..", "a/b", "ABCD", "abc.der", "abc\n"}) {
    auto stored = cache.store(key, "x");
    ASSERT_FALSE(stored) << key;
    EXPECT_NE(stored.error().find("invalid key"), std::string::npos) << stored.error();
    EXPECT_EQ(cache.load(key), std::nullopt) << key;
    EXPECT_FALSE(cache.remove(key)) << key;
  }
  EXPECT_FALSE(cache.store(std::string(129, 'a'), "x"));
}

TEST(OcspDiskCache, SizeLimitsOnStoreAndLoad) {
  test::TempDir tmp;
  OcspDiskCache cache(tmp.path());
  EXPECT_FALSE(cache.store("aa", ""));
  EXPECT_FALSE(cache.store("aa", std::string(kMaxOcspResponseBytes + 1, 'x')));
  EXPECT_TRUE(cache.store("aa", std::string(kMaxOcspResponseBytes, 'x')));
  tmp.write("bb.der", std::string(kMaxOcspResponseBytes + 1, 'x'));  // put there by someone else
  EXPECT_EQ(cache.load("bb"), std::nullopt);
  tmp.write("cc.der", "");
  EXPECT_EQ(cache.load("cc"), std::nullopt);
}

TEST(OcspDiskCache, SymlinksAndDirectoriesNotLoaded) {
  test::TempDir tmp;
  OcspDiskCache cache(tmp.path());
  const std::string target = tmp.write("target", "bytes");
  ASSERT_EQ(::symlink(target.c_str(), (tmp.path() + "/dd.der").c_str()), 0);
  EXPECT_EQ(cache.load("dd"), std::nullopt);
  tmp.mkdir("ee.der");
  EXPECT_EQ(cache.load("ee"), std::nullopt);
}

TEST(OcspDiskCache, UnwritableDirectoryFailsWithItsName) {
  test::TempDir tmp;
  const std::string file = tmp.write("plain-file", "x");
  OcspDiskCache cache(file + "/ocsp");
  auto stored = cache.store("aa", "x");
  ASSERT_FALSE(stored);
  EXPECT_NE(stored.error().find(file), std::string::npos) << stored.error();
}

TEST(OcspDiskCache, RemoveIsIdempotent) {
  test::TempDir tmp;
  OcspDiskCache cache(tmp.path());
  ASSERT_TRUE(cache.store("aa", "x"));
  EXPECT_TRUE(cache.remove("aa"));
  EXPECT_EQ(cache.load("aa"), std::nullopt);
  EXPECT_TRUE(cache.remove("aa"));
}

TEST(OcspDiskCache, KeyIsPerCertificateAndIssuer) {
  const auto& c = ocsp_certs();
  const std::string good = OcspDiskCache::key_for(c.good.get(), c.intermediate.get());
  EXPECT_EQ(good.size(), 64u);
  EXPECT_EQ(good.find_first_not_of("0123456789abcdef"), std::string::npos) << good;
  EXPECT_EQ(good, OcspDiskCache::key_for(c.good.get(), c.intermediate.get()));
  EXPECT_NE(good, OcspDiskCache::key_for(c.revoked.get(), c.intermediate.get()));
  EXPECT_NE(good, OcspDiskCache::key_for(c.good.get(), c.root.get()));
  EXPECT_EQ(OcspDiskCache::key_for(nullptr, c.intermediate.get()), "");
}

TEST(OcspDiskCache, RestartStaplesWithoutAskingTheResponder) {
  const auto& c = ocsp_certs();
  test::TempDir tmp;
  test::OcspResponder responder(test::intermediate_responder_spec());
  ASSERT_TRUE(responder.ok()) << responder.error();
  const std::string key = OcspDiskCache::key_for(c.good.get(), c.intermediate.get());
  {
    auto req = make_ocsp_request(c.good.get(), c.intermediate.get());
    ASSERT_TRUE(req) << req.error();
    auto der = fetch_ocsp(responder.url(), *req, OcspMethod::kPost, 5s);
    ASSERT_TRUE(der) << der.error();
    auto st = verify_ocsp_response(*der, c.good.get(), c.intermediate.get(), now_s());
    ASSERT_TRUE(st) << st.error();
    ASSERT_TRUE(OcspDiskCache(tmp.path()).store(key, st->der));
  }
  ASSERT_EQ(responder.requests(), 1);
  // "Restart": a new cache object reads it back; it is verified again.
  auto loaded = OcspDiskCache(tmp.path()).load(key);
  ASSERT_TRUE(loaded.has_value());
  auto st = verify_ocsp_response(*loaded, c.good.get(), c.intermediate.get(), now_s());
  ASSERT_TRUE(st) << st.error();
  EXPECT_TRUE(stapleable(*st, now_s()));
  EXPECT_EQ(responder.requests(), 1);
  // The same bytes, once expired, are refused on load.
  EXPECT_FALSE(verify_ocsp_response(*loaded, c.good.get(), c.intermediate.get(), now_s() + 48h));
}

}  // namespace
}  // namespace lode::cp
