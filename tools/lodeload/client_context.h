// The client SSL_CTX of a run, built from the options: versions, ciphers,
// ALPN, verification (a CA file, the system's store, or none), client-side
// session caching left to the caller's new-session callback.
#pragma once

#include <string>

#include "dataplane/tls/tls_context.h"
#include "lodestone/result.h"
#include "tools/lodeload/options.h"

namespace lode::load {

// The message names the option (--ca, --cipher, ...) that could not be used.
[[nodiscard]] Result<tls::SslCtxPtr, std::string> make_client_ctx(const Options& options);

}  // namespace lode::load
