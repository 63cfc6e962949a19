// getpid() answered from memory.
//
// OpenSSL 3.0 checks for a fork before every use of its random generators
// by comparing getpid() with the value it saw last: 9 getpid system calls
// per full TLS 1.3 handshake, 2 per resumed one (strace -c on the worker;
// nginx and HAProxy make the same ones), about 1 µs each on a VM with
// page-table isolation. glibc stopped caching the PID in 2.25, so this file
// defines getpid() itself: the executable's definition comes first in the
// dynamic linker's search, so libcrypto's calls land here. The value is
// read once per process and again in the child of every fork()
// (pthread_atfork), which is the only way this program makes processes that
// run code (posix_spawn's child only execs). The definition is linked into
// every binary that calls getpid_cached() (the lodestone binary's start
// event, the tests).
#pragma once

namespace lode::worker {

// Whether getpid() in this process (and in libcrypto) is the cached one:
// the definition resolved by the dynamic linker is this file's.
bool getpid_cached() noexcept;

}  // namespace lode::worker
