#include "dataplane/worker/pid_cache.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {

// 0: not read yet (a getpid() from another static constructor than ours,
// or the first one after a fork whose handler has not run).
std::atomic<pid_t> g_pid{0};

pid_t read_pid() noexcept {
  const auto pid = static_cast<pid_t>(::syscall(SYS_getpid));
  g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

void after_fork_in_child() noexcept { read_pid(); }

struct Install {
  Install() noexcept {
    read_pid();
    pthread_atfork(nullptr, nullptr, after_fork_in_child);
  }
};
const Install g_install;

}  // namespace

extern "C" pid_t getpid() noexcept {
  const pid_t pid = g_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : read_pid();
}

namespace lode::worker {

bool getpid_cached() noexcept {
  return ::dlsym(RTLD_DEFAULT, "getpid") == reinterpret_cast<void*>(&::getpid);
}

}  // namespace lode::worker
