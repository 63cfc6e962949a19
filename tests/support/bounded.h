// A call that could block or run away (a FIFO opened, /dev/zero read) run in
// a child process, so a regression fails the test instead of hanging the
// suite or filling the machine's memory.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "tests/support/sanitizer.h"

namespace lode::test {

// `fn` in a child killed after 5 s (and, with `cap_memory`, at 1 GiB of
// address space, where no sanitizer's allocator needs more): its exit
// status (99: it threw, as bad_alloc does), or 128 + the signal.
inline int bounded(const std::function<int()>& fn, bool cap_memory = false) {
  const pid_t pid = fork();
  if (pid == 0) {
#ifndef LODE_TEST_OWN_ALLOCATOR  // a sanitizer's allocator maps what it needs as it goes: the alarm only
    if (cap_memory) {
      const rlimit as{1u << 30, 1u << 30};
      setrlimit(RLIMIT_AS, &as);
    }
#endif
    alarm(5);
    try {
      _exit(fn());
    } catch (...) {
      _exit(99);  // never back into the test runner: this is a copy of it
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace lode::test
