// Least privilege ([process] user/group). The dataplane becomes user:group
// early, before it starts the control plane, keeping in its main thread only
// the capabilities that binding still needs (CAP_NET_BIND_SERVICE; the dpdk
// front's for its start); threads that exist then lose all, threads started
// later by the main thread inherit what it has then (the workers start after
// the drop: none; the dpdk front's lcores start before it and keep the dpdk
// set). Once the listeners are bound and the front runs it drops those too. The control plane, its child, is user:group from the
// start with no capability (exec as a non-root user clears them), so it
// reads the key files, the OCSP cache and its sockets as that user, and the
// control link's peer check (same uid) holds.
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <string>

#include "lodestone/result.h"

namespace lode::app {

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;  // "user:group", for messages
};

// The user and group by name (group empty: the user's primary group); root
// is refused.
Result<Identity, std::string> lookup_identity(const std::string& user, const std::string& group);

// Becomes `id`: supplementary groups dropped, real, effective and saved ids
// set, no_new_privs, not dumpable; the calling thread keeps `keep` (capability
// numbers) effective and permitted, every other thread of the process and
// every later exec keeps none. Already `id`: only the capabilities change.
Result<void, std::string> become(const Identity& id, std::initializer_list<int> keep);

// The capabilities kept by become() gone too; checked (none effective or
// permitted, root not regainable).
Result<void, std::string> drop_capabilities();

}  // namespace lode::app
