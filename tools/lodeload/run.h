// One lodeload run: the load the options describe, driven from the calling
// thread on one io_uring (connect, send and receive with provided buffers),
// OpenSSL fed through memory BIOs. Returns when the run is over: by count,
// duration, hold, bytes, or every connection's timeout; a stop request
// (Options::stop) ends it early with the report so far.
#pragma once

#include <string>

#include "lodestone/result.h"
#include "tools/lodeload/options.h"
#include "tools/lodeload/report.h"

namespace lode::load {

// The error is a setup failure (CA file, io_uring, descriptor limit); what
// goes wrong with connections is counted in the report.
[[nodiscard]] Result<Report, std::string> run(const Options& options);

// The process exit status for a report: 0 no errors, 1 errors counted (bulk:
// or a stream incomplete or different).
int exit_status(const Report& report) noexcept;

}  // namespace lode::load
