#include "dataplane/worker/pid_cache.h"

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <openssl/rand.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include "dataplane/tls/tls_context.h"
#include "tests/support/mem_handshake.h"
#include "tests/support/test_pki.h"

namespace lode::worker {
namespace {

pid_t kernel_pid() { return static_cast<pid_t>(::syscall(SYS_getpid)); }

// Runs f in a forked child; the child's exit status (or 128 + the signal
// that ended it).
template <class F>
int in_child(F&& f) {
  const pid_t pid = fork();
  if (pid == 0) _exit(f());
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// From here on a getpid system call kills this process with SIGSYS.
bool forbid_getpid_syscall() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST(PidCacheTest, GetpidIsTheCachedOneAndAnswersThePid) {
  EXPECT_TRUE(getpid_cached());
  EXPECT_EQ(getpid(), kernel_pid());
}

TEST(PidCacheTest, AForkedChildSeesItsOwnPid) {
  const pid_t parent = getpid();
  EXPECT_EQ(in_child([parent] { return getpid() == kernel_pid() && getpid() != parent ? 0 : 1; }), 0);
  EXPECT_EQ(getpid(), parent);
  // And a child of the child.
  EXPECT_EQ(in_child([] { return in_child([] { return getpid() == kernel_pid() ? 0 : 1; }); }), 0);
}

// The point of the cache: OpenSSL's fork checks (one getpid per use of its
// random generators, 9 per full handshake) make no system call. Without
// the cache the child below dies of SIGSYS at the handshake's first.
TEST(PidCacheTest, AFullTls13HandshakeMakesNoGetpidSystemCall) {
  const test::TestPki& pki = test::shared_test_pki();
  test::TempDir dir;
  const auto leaf = pki.leaf("pid.test");
  auto cert = tls::load_server_cert(
      tls::CertFiles{dir.write("pid.pem", pki.server_chain_pem(leaf)), dir.write("pid.key", leaf.key_pem())}, {},
      nullptr);
  ASSERT_TRUE(cert) << cert.error();
  test::TestClientOptions o;
  o.ca_pem = pki.root.cert_pem();
  o.min_version = TLS1_3_VERSION;
  auto cctx = test::make_test_client_ctx(o);
  const int rc = in_child([&] {
    if (!forbid_getpid_syscall()) return 2;
    for (int i = 0; i < 3; ++i) {
      test::MemHandshake hs(test::new_test_client(cctx.get(), "pid.test"),
                            tls::new_server_ssl(cert->ctx.get(), "pid.test"));
      if (!hs.run().ok() || hs.client_to_server("ping") != "ping") return 3;
    }
    unsigned char b[32];
    return RAND_bytes(b, sizeof b) == 1 ? 0 : 4;
  });
  EXPECT_EQ(rc, 0) << (rc == 128 + SIGSYS ? "a getpid system call was made" : "the child failed");
}

}  // namespace
}  // namespace lode::worker
