// Backend state from the operator and the health checks to the workers:
// the control plane's table (controlplane/backend_state.h: validation,
// reloads, only changed pools published), the dataplane's snapshot
// (apply_segment carries the records) and the runtime built from them
// (tools/lodestone/runtime_builder.h: pools rebuilt, the rest shared).
#include "controlplane/backend_state.h"

#include <gtest/gtest.h>

#include "dataplane/control/snapshot_state.h"
#include "tools/lodestone/runtime_builder.h"

namespace lode::cp {
namespace {

using snapshot::BackendAdmin;
using snapshot::BackendCheck;

config::Config load(const std::string& text) {
  auto c = config::load_config_string(text, "/tmp/test.toml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().front().to_string());
  return c ? std::move(*c) : config::Config{};
}

const char* kTwoPools = R"(
[[listener]]
listen = ["127.0.0.1:8443"]
[[pool]]
name = "app"
backends = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }]
[[pool]]
name = "api"
backends = ["127.0.0.1:9101"]
when_all_down = "reject"
[[route]]
name = "r"
names = ["a.example"]
action = "passthrough"
pool = "app"
[[route]]
name = "r2"
names = ["b.example"]
action = "passthrough"
pool = "api"
)";

TEST(BackendWeight, ParsesOnly1To65535) {
  EXPECT_EQ(parse_backend_weight("1").value_or(0), 1u);
  EXPECT_EQ(parse_backend_weight("65535").value_or(0), 65535u);
  for (const char* bad : {"0", "00", "65536", "99999", "", "-1", "+3", "3x", " 3", "1e3", "123456"}) {
    EXPECT_FALSE(parse_backend_weight(bad).has_value()) << bad;
  }
  EXPECT_NE(parse_backend_weight("0").error().find("drain"), std::string::npos);
}

TEST(BackendStateTable, MutationsNameWhatIsUnknown) {
  const config::Config cfg = load(kTwoPools);
  BackendStateTable t;
  auto a = t.set_drained(cfg, "nope", "127.0.0.1:9001", true);
  ASSERT_FALSE(a.has_value());
  EXPECT_NE(a.error().find("no pool named 'nope'"), std::string::npos);
  auto b = t.set_drained(cfg, "app", "127.0.0.1:9999", true);
  ASSERT_FALSE(b.has_value());
  EXPECT_NE(b.error().find("no backend '127.0.0.1:9999'"), std::string::npos);
  EXPECT_FALSE(t.set_weight(cfg, "app", "127.0.0.1:9001", 0).has_value());
  EXPECT_FALSE(t.set_weight(cfg, "api", "127.0.0.1:9001", 5).has_value());  // another pool's backend
  EXPECT_FALSE(t.operator_state("app", "127.0.0.1:9001").drained);
}

TEST(BackendStateTable, DrainEnableWeightAndWhatChanged) {
  const config::Config cfg = load(kTwoPools);
  BackendStateTable t;
  HealthChecker none;
  EXPECT_TRUE(*t.set_drained(cfg, "app", "127.0.0.1:9001", true));
  EXPECT_FALSE(*t.set_drained(cfg, "app", "127.0.0.1:9001", true));  // already
  EXPECT_TRUE(*t.set_weight(cfg, "app", "127.0.0.1:9002", 7));
  EXPECT_FALSE(*t.set_weight(cfg, "app", "127.0.0.1:9002", 7));
  const auto rows = t.rows(*cfg.find_pool("app"), none);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, "127.0.0.1:9001");
  EXPECT_EQ(rows[0].admin, BackendAdmin::kDrained);
  EXPECT_EQ(rows[0].weight, 1u);
  EXPECT_EQ(rows[0].check, BackendCheck::kUnchecked);
  EXPECT_EQ(rows[1].weight, 7u);
  EXPECT_EQ(rows[1].admin, BackendAdmin::kActive);
  EXPECT_TRUE(*t.set_drained(cfg, "app", "127.0.0.1:9001", false));
  EXPECT_TRUE(*t.set_weight(cfg, "app", "127.0.0.1:9002", 2));  // back to the configured weight
  EXPECT_EQ(t.operator_state("app", "127.0.0.1:9002").weight, 0u);
}

TEST(BackendStateTable, ReloadKeepsStateOfBackendsThatStillExist) {
  BackendStateTable t;
  const config::Config before = load(kTwoPools);
  ASSERT_TRUE(t.set_drained(before, "app", "127.0.0.1:9001", true));
  ASSERT_TRUE(t.set_drained(before, "app", "127.0.0.1:9002", true));
  ASSERT_TRUE(t.set_weight(before, "api", "127.0.0.1:9101", 9));
  std::string text = kTwoPools;
  text.replace(text.find("127.0.0.1:9002"), 14, "127.0.0.1:9003");  // 9002 leaves, 9003 arrives
  const config::Config after = load(text);
  t.retain(after);
  EXPECT_TRUE(t.operator_state("app", "127.0.0.1:9001").drained);
  EXPECT_FALSE(t.operator_state("app", "127.0.0.1:9002").drained);
  EXPECT_FALSE(t.operator_state("app", "127.0.0.1:9003").drained);
  EXPECT_EQ(t.operator_state("api", "127.0.0.1:9101").weight, 9u);
  // A pool gone takes its state with it, even if it comes back later.
  std::string no_api = kTwoPools;
  no_api = no_api.substr(0, no_api.find("[[pool]]\nname = \"api\"")) + "[[route]]\nname = \"r\"\nnames = [\"a.example\"]\n"
           "action = \"passthrough\"\npool = \"app\"\n";
  t.retain(load(no_api));
  t.retain(before);
  EXPECT_EQ(t.operator_state("api", "127.0.0.1:9101").weight, 0u);
}

// The records of one publish_into, applied to `current` as the dataplane does.
std::shared_ptr<const control::Snapshot> apply(BackendStateTable& t, const config::Config& cfg,
                                               const HealthChecker& h, bool full,
                                               std::shared_ptr<const control::Snapshot> current, size_t* records,
                                               bool* changed = nullptr) {
  SegmentBuilder b;
  if (full) {
    b.add_config("cfg", 1);
    const std::vector<std::byte> key(snapshot::kTicketKeySize, std::byte{1});
    b.add_ticket_keys(key, 1);
  }
  *records = t.publish_into(b, cfg, h, full, 1);
  const uint64_t gen = current ? current->generation + 1 : 1;
  t.sent(gen);
  auto seg = control::MappedSegment::from_bytes(b.bytes(gen, full ? 0 : gen - 1));
  EXPECT_TRUE(seg.has_value());
  auto r = control::apply_segment(current, *seg);
  EXPECT_TRUE(r.has_value());
  t.acknowledged(gen);
  if (changed != nullptr) *changed = r->backend_states_changed;
  return r->snapshot;
}

TEST(BackendStateTable, PublishesOnlyWhatChangedAndTheDataplaneKeepsTheRest) {
  config::Config cfg = load(kTwoPools);
  BackendStateTable t;
  HealthChecker h;
  size_t records = 0;
  bool changed = false;
  auto snap = apply(t, cfg, h, true, nullptr, &records, &changed);
  EXPECT_EQ(records, 2u);  // a full segment: every pool
  EXPECT_FALSE(t.changed(cfg, h));
  ASSERT_TRUE(snap->backend_states);
  EXPECT_EQ(snap->backend_states->size(), 2u);

  ASSERT_TRUE(t.set_drained(cfg, "app", "127.0.0.1:9002", true));
  EXPECT_TRUE(t.changed(cfg, h));
  snap = apply(t, cfg, h, false, snap, &records, &changed);
  EXPECT_EQ(records, 1u);  // app only
  EXPECT_TRUE(changed);
  const auto& app = snap->backend_states->at("app");
  ASSERT_EQ(app.size(), 2u);
  EXPECT_EQ(app[1].id, "127.0.0.1:9002");
  EXPECT_EQ(app[1].admin, BackendAdmin::kDrained);
  EXPECT_EQ(app[1].weight, 2u);
  EXPECT_EQ(snap->backend_states->at("api").size(), 1u);  // untouched, still there

  // Nothing changed: nothing to send.
  EXPECT_FALSE(t.changed(cfg, h));
  snap = apply(t, cfg, h, false, snap, &records, &changed);
  EXPECT_EQ(records, 0u);
  EXPECT_FALSE(changed);

  // A reload without the api pool: its record is removed.
  std::string no_api = kTwoPools;
  no_api = no_api.substr(0, no_api.find("[[pool]]\nname = \"api\"")) + "[[route]]\nname = \"r\"\nnames = [\"a.example\"]\n"
           "action = \"passthrough\"\npool = \"app\"\n";
  cfg = load(no_api);
  t.retain(cfg);
  EXPECT_TRUE(t.changed(cfg, h));
  snap = apply(t, cfg, h, false, snap, &records, &changed);
  EXPECT_EQ(records, 1u);
  EXPECT_EQ(snap->backend_states->count("api"), 0u);
  EXPECT_TRUE(snap->backend_states->at("app")[1].admin == BackendAdmin::kDrained);
}

TEST(BackendStateTable, RowsOfARefusedSegmentAreSentAgain) {
  const config::Config cfg = load(kTwoPools);
  BackendStateTable t;
  HealthChecker h;
  size_t records = 0;
  auto snap = apply(t, cfg, h, true, nullptr, &records);
  ASSERT_TRUE(t.set_drained(cfg, "app", "127.0.0.1:9001", true));

  // Sent as generation 2, the dataplane refuses it: it keeps what it had.
  SegmentBuilder refused;
  EXPECT_EQ(t.publish_into(refused, cfg, h, false, 2), 1u);
  t.sent(2);
  t.acknowledged(1);  // a late answer to an older segment commits nothing
  EXPECT_TRUE(t.refused(2));
  EXPECT_FALSE(t.refused(2));  // answered already
  EXPECT_TRUE(t.changed(cfg, h));

  // The next segment carries the drained backend again.
  bool changed = false;
  snap = apply(t, cfg, h, false, snap, &records, &changed);
  EXPECT_EQ(records, 1u);
  EXPECT_TRUE(changed);
  EXPECT_EQ(snap->backend_states->at("app")[0].admin, BackendAdmin::kDrained);
  EXPECT_FALSE(t.changed(cfg, h));

  // Sent, not yet answered: still due; acknowledged: what the dataplane has.
  ASSERT_TRUE(t.set_drained(cfg, "app", "127.0.0.1:9001", false));
  SegmentBuilder in_flight;
  EXPECT_EQ(t.publish_into(in_flight, cfg, h, false, 3), 1u);
  t.sent(snap->generation + 1);
  EXPECT_TRUE(t.changed(cfg, h));
  t.acknowledged(snap->generation + 1);
  EXPECT_FALSE(t.changed(cfg, h));
  EXPECT_FALSE(t.refused(snap->generation + 1));

  // A dataplane that (re)attaches has none of them.
  t.forget();
  EXPECT_TRUE(t.changed(cfg, h));
}

TEST(BackendStateTable, HealthResultsBecomeRows) {
  std::string text = kTwoPools;
  text.replace(text.find("when_all_down"), 0, "health = { type = \"tcp\", interval_ms = 100, timeout_ms = 50, fall = 1 }\n");
  const config::Config cfg = load(text);
  HealthChecker h;
  h.set_targets({{"api", "127.0.0.1:9101", cfg.find_pool("api")->backends[0].address, cfg.find_pool("api")->health}},
                HealthClock::now());
  BackendStateTable t;
  EXPECT_EQ(t.rows(*cfg.find_pool("api"), h)[0].check, BackendCheck::kUp);  // up until it fails
  EXPECT_EQ(t.rows(*cfg.find_pool("app"), h)[0].check, BackendCheck::kUnchecked);
}

// --- the runtime the workers get ----------------------------------------------

// [limits] connect_retries is what the pools allow: the first try and that
// many more, each on another backend (it stayed at the pools' default of 3
// tries whatever the configuration said), also after a backend-state
// rebuild.
TEST(RuntimeWithBackendStates, ConnectRetriesAreThePoolsAttempts) {
  std::string text = kTwoPools;
  text += "[limits]\nconnect_retries = 5\n[[pool]]\nname = \"six\"\nalgorithm = \"round_robin\"\nbackends = [";
  for (int i = 0; i < 6; ++i) text += std::string(i ? ", " : "") + "\"127.0.0.1:" + std::to_string(9201 + i) + "\"";
  text += "]\n";
  const config::Config cfg = load(text);
  auto built = app::build_runtime(cfg, nullptr, 1);
  ASSERT_TRUE(built.has_value()) << built.error().front();
  control::BackendStates states;
  auto next = app::with_backend_states(*built->runtime, &states, 2);
  ASSERT_TRUE(next.has_value());
  for (const worker::Runtime* rt : {built->runtime.get(), next->get()}) {
    ASSERT_EQ(rt->pools.size(), 3u);
    const route::BackendPool& six = *rt->pools[2].pool;
    EXPECT_EQ(six.spec().max_connect_attempts, 6u);
    route::PoolState st(six);
    route::TriedSet tried;
    for (int i = 0; i < 6; ++i) {
      auto r = six.pick(st, {}, tried);
      ASSERT_TRUE(r.has_value()) << "try " << i + 1;
      six.on_connect_fail(st, *r, 0);
    }
    EXPECT_FALSE(six.pick(st, {}, tried).has_value()) << "every backend tried";
  }
}

TEST(RuntimeWithBackendStates, PoolsRebuiltTablesShared) {
  const config::Config cfg = load(kTwoPools);
  auto built = app::build_runtime(cfg, nullptr, 1);
  ASSERT_TRUE(built.has_value()) << built.error().front();
  const worker::Runtime& rt = *built->runtime;
  ASSERT_EQ(rt.pools.size(), 2u);
  EXPECT_EQ(rt.pools[0].pool->backend(0).id, "127.0.0.1:9001");
  EXPECT_EQ(rt.pools[1].pool->spec().when_all_down, route::AllDownPolicy::kReject);

  control::BackendStates states;
  states["app"] = {{"127.0.0.1:9001", 5, BackendCheck::kDown, BackendAdmin::kActive},
                   {"127.0.0.1:9002", 2, BackendCheck::kUp, BackendAdmin::kDrained},
                   {"127.0.0.1:7777", 9, BackendCheck::kUp, BackendAdmin::kDrained}};  // unknown id: ignored
  auto next = app::with_backend_states(rt, &states, 2);
  ASSERT_TRUE(next.has_value());
  const worker::Runtime& n = **next;
  EXPECT_EQ(n.generation, 2u);
  EXPECT_EQ(n.listeners[0].table_bytes, rt.listeners[0].table_bytes);  // the same bytes, not a copy
  EXPECT_EQ(n.listeners[0].table.route_count(), rt.listeners[0].table.route_count());
  const route::BackendPool& app = *n.pools[0].pool;
  EXPECT_EQ(app.backend(0).weight, 5u);
  EXPECT_TRUE(app.backend(0).down);
  EXPECT_TRUE(app.backend(1).drained);
  EXPECT_FALSE(app.available(0));
  EXPECT_FALSE(app.available(1));
  EXPECT_TRUE(n.pools[1].pool->available(0));  // no record: as configured
  // Back to no states: as configured again.
  auto plain = app::with_backend_states(n, nullptr, 3);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ((*plain)->pools[0].pool->backend(0).weight, 1u);
  EXPECT_TRUE((*plain)->pools[0].pool->available(0));
  // Only the pools whose states changed are rebuilt: the others stay the
  // same object, so the workers keep their state for them.
  control::BackendStates api_drained = states;
  api_drained["api"] = {{"127.0.0.1:9101", 1, BackendCheck::kUnchecked, BackendAdmin::kDrained}};
  auto one = app::with_backend_states(n, &api_drained, 5);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ((*one)->pools[0].pool, n.pools[0].pool);  // app: unchanged
  EXPECT_NE((*one)->pools[1].pool, n.pools[1].pool);
  EXPECT_TRUE((*one)->pools[1].pool->backend(0).drained);
  // The same states again: nothing rebuilt.
  auto same = app::with_backend_states(**one, &api_drained, 6);
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ((*same)->pools[0].pool, (*one)->pools[0].pool);
  EXPECT_EQ((*same)->pools[1].pool, (*one)->pools[1].pool);
  EXPECT_EQ((*same)->generation, 6u);
  // A record equal to the configuration is no change either.
  control::BackendStates as_configured;
  as_configured["api"] = {{"127.0.0.1:9101", 1, BackendCheck::kUp, BackendAdmin::kActive}};
  auto plain2 = app::with_backend_states(**plain, &as_configured, 7);
  ASSERT_TRUE(plain2.has_value());
  EXPECT_EQ((*plain2)->pools[1].pool, (*plain)->pools[1].pool);
  // A full build applies the states too.
  auto rebuilt = app::build_runtime(cfg, nullptr, 4, &states);
  ASSERT_TRUE(rebuilt.has_value());
  EXPECT_TRUE(rebuilt->runtime->pools[0].pool->backend(1).drained);
}

}  // namespace
}  // namespace lode::cp
