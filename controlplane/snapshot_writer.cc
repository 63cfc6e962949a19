#include "controlplane/snapshot_writer.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace lode::cp {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

namespace {

template <class T>
std::string raw(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

size_t align8(size_t n) { return (n + 7) & ~size_t{7}; }

}  // namespace

SegmentBuilder::~SegmentBuilder() {
  for (auto& r : records_) OPENSSL_cleanse(r.data.data(), r.data.size());
}

void SegmentBuilder::add_config(std::string_view text, uint64_t version) {
  records_.push_back({snapshot::RecordKind::kConfig, 0, "config", version, std::string(text)});
}

void SegmentBuilder::add_certificate(std::string_view key, uint64_t version, snapshot::CertState state,
                                     int64_t not_after_unix, std::string_view chain_pem,
                                     std::string_view key_pem) {
  snapshot::CertificateData h{};
  h.chain_len = static_cast<uint32_t>(chain_pem.size());
  h.key_len = static_cast<uint32_t>(key_pem.size());
  h.state = static_cast<uint16_t>(state);
  h.not_after_unix = not_after_unix;
  std::string data = raw(h);
  data.reserve(data.size() + chain_pem.size() + key_pem.size());
  data.append(chain_pem);
  data.append(key_pem);
  records_.push_back({snapshot::RecordKind::kCertificate, 0, std::string(key), version, std::move(data)});
}

void SegmentBuilder::add_staple(std::string_view key, uint64_t version, snapshot::StapleStatus status,
                                int64_t this_update_unix, int64_t next_update_unix, std::string_view der) {
  snapshot::StapleData h{};
  h.der_len = static_cast<uint32_t>(der.size());
  h.status = static_cast<uint16_t>(status);
  h.this_update_unix = this_update_unix;
  h.next_update_unix = next_update_unix;
  std::string data = raw(h);
  data.append(der);
  records_.push_back({snapshot::RecordKind::kStaple, 0, std::string(key), version, std::move(data)});
}

void SegmentBuilder::add_ticket_keys(std::span<const std::byte> keys, uint64_t version) {
  records_.push_back({snapshot::RecordKind::kTicketKeys, 0, "tickets", version,
                      std::string(reinterpret_cast<const char*>(keys.data()), keys.size())});
}

void SegmentBuilder::add_backend_state(std::string_view pool,
                                       std::span<const snapshot::BackendStateView> backends, uint64_t version) {
  snapshot::BackendStateHeader h{};
  h.count = static_cast<uint32_t>(backends.size());
  std::string data = raw(h);
  for (const auto& b : backends) {
    snapshot::BackendStateEntry e{};
    e.weight = b.weight;
    e.id_len = static_cast<uint16_t>(b.id.size());
    e.check = static_cast<uint8_t>(b.check);
    e.admin = static_cast<uint8_t>(b.admin);
    data += raw(e);
    data.append(b.id);
  }
  std::string key(snapshot::kPoolKeyPrefix);
  key.append(pool);
  records_.push_back({snapshot::RecordKind::kBackendState, 0, std::move(key), version, std::move(data)});
}

void SegmentBuilder::remove(snapshot::RecordKind kind, std::string_view key) {
  records_.push_back({kind, snapshot::kRecordRemove, std::string(key), 0, {}});
}

size_t SegmentBuilder::layout_size() const noexcept {
  size_t n = sizeof(snapshot::SegmentHeader) + records_.size() * sizeof(snapshot::RecordEntry);
  for (const auto& r : records_) n += align8(r.key.size()) + align8(r.data.size());
  return n;
}

void SegmentBuilder::write_to(std::span<std::byte> out, uint64_t generation, uint64_t base_generation) const {
  std::memset(out.data(), 0, out.size());
  snapshot::SegmentHeader h{};
  h.magic = snapshot::kMagic;
  h.layout_version = snapshot::kLayoutVersion;
  h.header_size = sizeof h;
  h.generation = generation;
  h.base_generation = base_generation;
  h.total_size = out.size();
  h.record_count = static_cast<uint32_t>(records_.size());
  h.created_unix_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  size_t pos = sizeof h + records_.size() * sizeof(snapshot::RecordEntry);
  for (size_t i = 0; i < records_.size(); ++i) {
    const Pending& r = records_[i];
    snapshot::RecordEntry e{};
    e.kind = static_cast<uint16_t>(r.kind);
    e.flags = r.flags;
    e.key_len = static_cast<uint32_t>(r.key.size());
    e.key_offset = pos;
    std::memcpy(out.data() + pos, r.key.data(), r.key.size());
    pos += align8(r.key.size());
    e.version = r.version;
    e.data_offset = pos;
    e.data_len = r.data.size();
    std::memcpy(out.data() + pos, r.data.data(), r.data.size());
    pos += align8(r.data.size());
    std::memcpy(out.data() + sizeof h + i * sizeof e, &e, sizeof e);
  }
  h.checksum = snapshot::checksum(out.subspan(sizeof h));
  std::memcpy(out.data(), &h, sizeof h);
}

std::vector<std::byte> SegmentBuilder::bytes(uint64_t generation, uint64_t base_generation) const {
  std::vector<std::byte> out(layout_size());
  write_to(out, generation, base_generation);
  return out;
}

Result<UniqueFd, std::string> SegmentBuilder::seal(uint64_t generation, uint64_t base_generation) const {
  UniqueFd fd(memfd_create("lodestone-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return unexpected(std::string("memfd_create: ") + std::strerror(errno));
  if (fchmod(fd.get(), 0600) != 0) return unexpected(std::string("fchmod 0600: ") + std::strerror(errno));
  const size_t size = layout_size();
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return unexpected("ftruncate " + std::to_string(size) + ": " + std::strerror(errno));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return unexpected(std::string("mmap: ") + std::strerror(errno));
  madvise(p, size, MADV_DONTDUMP);
  write_to({static_cast<std::byte*>(p), size}, generation, base_generation);
  munmap(p, size);
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    return unexpected(std::string("sealing the segment: ") + std::strerror(errno));
  }
  return fd;
}

}  // namespace lode::cp
