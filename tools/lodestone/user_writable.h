// What the dataplane opens, hands over or removes in places the [process]
// user may write: run_dir (handed to the user at start, and still theirs
// from the previous run), and the access log's file (handed to the user so
// that SIGUSR1 can reopen it after the drop; a package may make its
// directory the user's too). The dataplane is root while it does most of
// this, so none of it follows a symbolic link the user put there, acts on a
// hard link to someone else's file, or blocks on a FIFO: each checks the
// inode it opened and acts on that inode (or relative to that directory),
// never on the path again.
#pragma once

#include <sys/types.h>

#include <span>
#include <string>
#include <vector>

#include "lodestone/result.h"

namespace lode::app {

// The access log's file, opened to append (created 0640 if absent): a
// regular file with one link, named itself (not through a symbolic link),
// or a stream (a FIFO with a reader, a terminal, a socket: /dev/stdout), a
// link to which is followed; never blocking on the open (a FIFO with no
// reader is refused, not waited on). Only a regular file is ever handed to
// the [process] user. The descriptor is blocking and close-on-exec; the
// error names the path and what it is.
[[nodiscard]] Result<int, std::string> open_log_file(const std::string& path);

// The control socket at `path`, just bound by this process, given to
// uid:gid: the socket inode itself (opened with O_PATH, not through a
// symbolic link, owned by our effective uid, one link), so a link swapped in
// after bind() is refused, never followed.
[[nodiscard]] Result<void, std::string> give_socket(const std::string& path, uid_t uid, gid_t gid);

// run_dir or state_dir, given to uid:gid at start ([process] user): the
// directory itself, opened without following a symbolic link at its name
// (a link there, which whoever may write its parent could have put, is
// refused with the path: name the directory itself), then fchown'd.
// `may_be_missing`: absent is not an error (nothing is given).
[[nodiscard]] Result<void, std::string> give_directory(const std::string& path, uid_t uid, gid_t gid,
                                                       bool may_be_missing);

// A certificate store (`lodectl certs add`: RUN_DIR/lodestone-PID.sock.certs)
// removed: the directory opened without following a symbolic link, owned by
// one of `owners` with no group or other access (the control plane makes it
// 0700), its files removed relative to it, then it. Absent: nothing to do.
// Anything else (a symlink, a file, another owner, a looser mode) is left
// alone and named in the error.
[[nodiscard]] Result<void, std::string> remove_cert_store(const std::string& path,
                                                          std::span<const uid_t> owners);

// Every store in `run_dir` of a Lodestone that is gone (killed before its
// exit path: lodestone-PID.sock.certs of a PID that no longer exists; they
// hold private keys), removed as remove_cert_store does. Returns the stores
// it left alone and why.
std::vector<std::string> remove_dead_cert_stores(const std::string& run_dir,
                                                 std::span<const uid_t> owners);

}  // namespace lode::app
