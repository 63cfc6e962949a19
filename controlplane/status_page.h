// The status page served at GET /status on the admin HTTP address (beside
// /metrics): one self-contained HTML document, inline style and script,
// nothing from another origin. Its script fetches /metrics (and parses the
// Prometheus text itself, so every number it shows is one of /metrics) and
// /status.json (the admin `status` reply, listeners, routes and pools) every
// few seconds and rebuilds its tables in place. Read-only: it has no form and
// sends nothing but those two GETs.
#pragma once

#include <string>
#include <string_view>

namespace lode::cp {

std::string_view status_page_html();

// The Content-Security-Policy the page is served with: its own inline script
// and style only (by SHA-256), fetches to its own origin, no frames, forms,
// plugins or other images. Names on the page are attacker-chosen (SNIs); the
// page inserts them as text, and should one ever slip through as markup, the
// browser still runs no script but the page's own.
const std::string& status_page_csp();

}  // namespace lode::cp
