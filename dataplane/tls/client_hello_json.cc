#include "dataplane/tls/client_hello_json.h"

#include "dataplane/tls/client_hello_parser.h"

namespace lode::tls {
namespace {

uint16_t u16_at(std::span<const uint8_t> s, size_t i) { return static_cast<uint16_t>(s[i] << 8 | s[i + 1]); }

void u16_list(JsonWriter& w, std::string_view key, std::span<const uint8_t> list, bool skip_grease) {
  w.key(key).begin_array();
  for (size_t i = 0; i + 1 < list.size(); i += 2) {
    const uint16_t v = u16_at(list, i);
    if (skip_grease && is_grease(v)) continue;
    w.hex16(v);
  }
  w.end_array();
}

void write_info(JsonWriter& w, const ClientHelloInfo& h) {
  if (h.has_sni) {
    w.field("sni", h.sni());
  } else {
    w.key("sni").null();
  }
  w.field("sni_ip_literal", h.sni_ip_literal);
  w.key("alpn").begin_array();
  for (size_t i = 0; i < h.alpn_count; ++i) w.value(h.alpn[i]);
  w.end_array();
  w.key("record_version").hex16(h.record_version);
  w.key("legacy_version").hex16(h.legacy_version);
  w.key("max_version").hex16(h.max_version);
  w.field("tls13", h.offers_tls13);
  u16_list(w, "supported_versions", h.supported_versions, true);
  u16_list(w, "supported_groups", h.supported_groups, true);
  w.key("key_share_groups").begin_array();
  for (size_t i = 0; i < h.key_share_count; ++i) w.hex16(h.key_share_groups[i]);
  w.end_array();
  w.field("cipher_suites", static_cast<uint64_t>(h.cipher_suites.size() / 2));
  w.field("post_quantum", h.pq_key_share || h.pq_group_offered);
  w.field("pq_key_share", h.pq_key_share);
  w.field("ech", h.ech);
  w.field("status_request", h.status_request);
  w.field("session_ticket", h.session_ticket);
  w.field("psk", h.psk);
  w.field("early_data", h.early_data);
  w.field("extensions", static_cast<uint64_t>(h.extension_count));
  w.field("hello_len", h.hello_len);
  w.field("records", h.records);
  w.field("end_offset", h.end_offset);
}

}  // namespace

void write_hello_fields(JsonWriter& w, const ClientHelloParser& parser) {
  w.field("status", to_string(parser.status()));
  if (parser.status() == ParseStatus::kDone) {
    write_info(w, parser.info());
  } else if (parser.status() == ParseStatus::kError) {
    const HelloParseError& e = parser.error();
    w.field("error", to_string(e.code));
    w.field("not_tls", is_not_tls(e.code));
    w.field("alert", to_string(e.alert));
    w.field("alert_code", static_cast<uint32_t>(e.alert));
    w.field(e.in_message ? "message_offset" : "stream_offset", e.offset);
    if (e.code == HelloError::kBadHostName) w.field("host_name_error", to_string(e.hostname_error));
  }
}

std::string hello_to_json(const ClientHelloParser& parser) {
  JsonWriter w;
  w.begin_object();
  write_hello_fields(w, parser);
  w.end_object();
  return w.take();
}

}  // namespace lode::tls
