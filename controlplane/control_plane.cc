#include "controlplane/control_plane_impl.h"

#include <sys/signalfd.h>
#include <sys/stat.h>

namespace lode::cp {

ControlPlane::ControlPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlPlane::~ControlPlane() = default;

Result<std::unique_ptr<ControlPlane>, std::vector<std::string>> ControlPlane::load(ControlPlaneOptions opt) {
  auto impl = std::make_unique<Impl>(std::move(opt));
  // A restart re-attaches with the configuration in service.
  bool reattach = false;
  // The saved text is the configuration file's (at most kMaxReadFile) and
  // the run-time certificates' paths: room for both.
  auto text = read_file(impl->saved_config_path(), 4 * kMaxReadFile);
  if (text) {
    reattach = true;
    impl->event(JsonWriter().begin_object().field("event", "controlplane_reattaching")
                    .field("config", impl->saved_config_path()).end_object().take());
  } else {
    struct stat st {};
    if (::lstat(impl->saved_config_path().c_str(), &st) == 0 || errno != ENOENT) {
      // There is one, and it cannot be used: what starts now is the file's
      // configuration, which may not be the one in service. Said loudly.
      impl->event(JsonWriter().begin_object().field("event", "controlplane_saved_config_unreadable")
                      .field("level", "error").field("error", text.error())
                      .field("config", impl->opt.config_path).end_object().take());
    }
    text = read_file(impl->opt.config_path);
    if (!text) return unexpected(std::vector<std::string>{text.error()});
  }
  // The saved text carries the file in service (`routes reload CONFIG` may
  // have switched it) and the run-time certificates (published_config.h).
  std::string published = *text;
  if (reattach) {
    PublishedConfig saved = split_published_config(*text);
    if (!saved.path.empty()) impl->opt.config_path = saved.path;
    *text = std::move(saved.file_text);
  } else {
    published = impl->published_text(*text, impl->opt.config_path);
  }
  auto cfg = config::load_config_string(published, impl->opt.config_path);
  if (!cfg) {
    std::vector<std::string> errs;
    for (const auto& e : cfg.error()) errs.push_back(e.to_string());
    return unexpected(std::move(errs));
  }
  impl->cfg = std::move(*cfg);
  impl->config_text = std::move(*text);
  impl->adopt_runtime_certs();
  auto trust = CertTrust::load(validation_for(impl->cfg));
  if (!trust) return unexpected(std::vector<std::string>{impl->opt.config_path + ": [control]: " + trust.error()});
  impl->trust = std::move(*trust);
  impl->configure_health();
  std::vector<std::string> warnings;
  auto items = impl->load_items(impl->cfg, warnings, reattach);
  if (!items) return unexpected(std::move(items.error()));
  impl->items = std::move(*items);
  for (const auto& w : warnings) impl->warn(w);
  if (auto ok = impl->load_tickets(impl->cfg); !ok) return unexpected(std::move(ok.error()));
  if (impl->cfg.ocsp.enabled) impl->disk.emplace(impl->cfg.control.state_dir + "/ocsp");
  if (auto w = FileWatch::create(); w) {
    impl->watch.emplace(std::move(*w));
  } else {
    impl->warn("certificate files are not watched: " + w.error());
  }
  impl->watch_paths();
  impl->initial_ocsp();
  return std::unique_ptr<ControlPlane>(new ControlPlane(std::move(impl)));
}

int ControlPlane::run() {
  Impl& s = *impl_;
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  s.sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  s.start_admin();
  if (auto ok = s.connect_dataplane(); !ok) {
    s.event(JsonWriter().begin_object().field("event", "controlplane_error").field("error", ok.error()).end_object().take());
    return 1;
  }
  return s.loop();
}

}  // namespace lode::cp
