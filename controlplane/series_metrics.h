// What the dataplane counts per route, per backend, per hello error reason
// and per alert (include/lodestone/stats_layout.h, v3), as Prometheus text,
// as JSON for `lodectl top`, and the recent refused names for the status
// page. Readers of the shared stats segment; nothing here writes to it.
#pragma once

#include <string>
#include <string_view>

#include "lodestone/json_writer.h"
#include "lodestone/stats_layout.h"

namespace lode::cp {

// A Prometheus label value: backslash, double quote and newline escaped.
std::string prometheus_label(std::string_view v);

// The TLS alert's name (RFC 8446 section 6), "alert_N" for others.
std::string alert_name(uint8_t code);

// Appends the per-route, per-backend, hello-error and alert families, and
// the dpdk front's (append_front_metrics).
// Retired series (names no longer in the configuration) are left out.
void append_series_metrics(const stats::StatsView& v, std::string& out);

// The dpdk front's per-lcore counters as lodestone_front_<counter>_total
// {lcore}; nothing with the kernel front (no lcore has started).
void append_front_metrics(const stats::StatsView& v, std::string& out);

// "routes": [...], "backends": [...], "workers": [...] with totals summed
// over workers: what `lodectl top` turns into rates.
void write_series_json(const stats::StatsView& v, JsonWriter& w);

// Milliseconds since the epoch (wall clock): the refused ring's time base.
uint64_t unix_ms_now();

// "recent_refused": [...] newest first over all workers, at most `limit`.
void write_recent_refused(const stats::StatsView& v, JsonWriter& w, size_t limit, uint64_t now_unix_ms);

}  // namespace lode::cp
