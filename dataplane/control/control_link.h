// The dataplane's end of the control channel (include/lodestone/control_channel.h):
// a thread that listens on RUN_DIR/control.sock, accepts the control plane
// (uid checked with SO_PEERCRED: the dataplane's own uid or root), receives
// sealed segments, validates and applies them, hands each new snapshot to the
// owner to put in service, and acks or nacks.
//
// If the control plane dies, nothing changes for traffic: the snapshot in
// service stays. When it (or its restarted successor) connects again, the
// link says hello with the generation in service and the control plane
// re-attaches with a full segment above it; entries whose version did not
// change keep their workers' SSL_CTXs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dataplane/control/snapshot_state.h"
#include "lodestone/result.h"

namespace lode::control {

struct LinkStats {
  std::atomic<uint64_t> attaches{0};
  std::atomic<uint64_t> segments_applied{0};
  std::atomic<uint64_t> segments_refused{0};
  std::atomic<uint64_t> peers_refused{0};
  std::atomic<uint64_t> reloads_refused{0};  // kReloadRefused received: the control plane refused a reload
  // The highest SIGHUP reload (StatsSegment::ask_reload's number) answered:
  // refused by the control plane (kReloadRefused), or its configuration's
  // segment applied or refused here (a delta on the wrong base is not an
  // answer: the control plane sends everything again).
  std::atomic<uint64_t> reload_answered{0};
  std::atomic<uint64_t> last_apply_us{0};  // receipt to in service, last segment
};

class ControlLink {
 public:
  // Puts a new snapshot in service (builds what a changed config needs,
  // installs ticket keys, publishes, waits for the workers); an error refuses
  // the segment and the old generation stays.
  using Publish = std::function<Result<void, std::string>(const ApplyResult&)>;
  // Events for the log: one JSON object per line.
  using Event = std::function<void(const std::string& json)>;

  // Binds and listens (the path is replaced if a stale socket is there; the
  // socket is made 0600).
  static Result<std::unique_ptr<ControlLink>, std::string> listen(std::string socket_path, Publish publish,
                                                                  Event event);
  ~ControlLink();
  ControlLink(const ControlLink&) = delete;
  ControlLink& operator=(const ControlLink&) = delete;

  // The counters' memfd, sent to every control plane after its hello (set
  // before start()).
  void set_stats_fd(int fd) noexcept { stats_fd_ = fd; }

  void start();
  void stop();

  // Blocks until a snapshot is in service or the timeout passes.
  bool wait_for_snapshot(std::chrono::milliseconds timeout);
  std::shared_ptr<const Snapshot> current() const;
  uint64_t generation() const;
  const LinkStats& stats() const noexcept { return stats_; }
  const std::string& socket_path() const noexcept { return path_; }

 private:
  ControlLink() = default;
  void run();
  void on_accept();
  void on_message();
  void refuse(uint64_t generation, uint64_t code, const std::string& why);
  void answered(uint64_t reload) noexcept;

  std::string path_;
  Publish publish_;
  Event event_;
  int listen_fd_ = -1;
  int conn_fd_ = -1;
  int stop_fd_ = -1;
  int stats_fd_ = -1;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Snapshot> current_;
  LinkStats stats_;
};

}  // namespace lode::control
