// Several polling lcores: which lcore holds a flow, and the hand-over of a
// frame that reached another one.
//
// Each lcore has its own engine and flow table, with no lock between them.
// A client's segments stay on one lcore: RSS (or the tap's queue choice)
// hashes the client's 4-tuple, the same for every segment of a flow, and the
// SYN cookie is stateless under one key for every lcore, so whichever lcore
// gets the cookie ACK creates the flow and keeps it. The backend's side (and
// a worker's, on the exception port) is another 4-tuple, which the NIC or
// the kernel may put on any queue. So the local port an engine takes for
// that side names it: port % lcores == lcore (next_local_port). An engine
// that holds no flow for a backend-side segment hands it to the port's owner
// (FrameSink::redirect: in the DPDK glue the mbuf moves through a bounded
// single-producer/single-consumer ring per (from, to) pair; a full ring
// drops and counts). The owner handles it like its own frame and never sends
// it on again, so a frame crosses at most once; a frame the owner does not
// know either gets what one lcore answers such a frame (a RST).
//
// Why the port and not a shared table or a lookup on every lcore: the port
// is in every segment, costs a division on a lookup miss only, and needs no
// state shared between lcores. A NIC with Toeplitz RSS could go further and
// pick ports whose return tuple hashes to the owner's queue, so that
// redirection becomes rare; the tap used in tests picks queues by the
// kernel's own hash, so the redirect path is needed either way.
//
// ARP replies and neighbour advertisements carry no port and answer a
// request any lcore may have sent: every lcore gets a copy (each takes only
// what it asked for).
#include "dataplane/front/flow_engine_flow.h"

namespace lode::front {

uint32_t FlowEngine::owner_of_local_port(uint16_t port) const noexcept {
  if (cfg_.lcores <= 1 || port < kFirstLocalPort || port > kLastLocalPort) return cfg_.lcore;
  return port % cfg_.lcores;
}

bool FlowEngine::redirect_to_owner(uint16_t local_port, std::span<const uint8_t> frame,
                                   FrameSink& out) noexcept {
  if (redirected_) return false;  // sent here by its owner's rule: this lcore answers
  const uint32_t owner = owner_of_local_port(local_port);
  if (owner == cfg_.lcore) return false;
  if (out.redirect(owner, frame)) {
    ++stats_.redirected_out;
  } else {
    ++stats_.redirect_drops;
  }
  return true;
}

void FlowEngine::share_with_lcores(std::span<const uint8_t> frame, FrameSink& out) noexcept {
  if (cfg_.lcores <= 1 || redirected_) return;
  if (out.redirect(FrameSink::kEveryLcore, frame)) {
    stats_.redirected_out += cfg_.lcores - 1;
  } else {
    ++stats_.redirect_drops;
  }
}

void FlowEngine::on_redirected_frame_in_place(std::span<uint8_t> frame, uint64_t now_ms,
                                              FrameSink& out, bool from_exception,
                                              bool l4_verified) noexcept {
  ++stats_.redirected_in;
  // Received (and counted) by the lcore that sent it here.
  const uint64_t rx = stats_.rx_frames, exception_rx = stats_.exception_rx;
  redirected_ = true;
  if (from_exception) {
    on_exception_frame_in_place(frame, now_ms, out, l4_verified);
  } else {
    on_frame_in_place(frame, now_ms, out, l4_verified);
  }
  redirected_ = false;
  stats_.rx_frames = rx;
  stats_.exception_rx = exception_rx;
}

}  // namespace lode::front
