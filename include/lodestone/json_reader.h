// A small strict JSON reader, shared by both ends of the admin API: the
// control plane parses requests with it, lodectl parses answers. Numbers
// stay text; objects keep their key order. Depth (32), escapes and control
// characters are checked; anything else is an error.
#pragma once

#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lodestone/result.h"

namespace lode {

struct JsonField;

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  std::string text;               // number or string; "true"/"false" for bools
  std::vector<JsonValue> items;   // array
  std::vector<JsonField> fields;  // object, in order

  const JsonValue* find(std::string_view key) const;
  // A field as text (its string, number or bool), or `fallback`.
  std::string str(std::string_view key, std::string_view fallback = "") const;
};

struct JsonField {
  std::string key;
  JsonValue value;
};

inline const JsonValue* JsonValue::find(std::string_view key) const {
  for (const auto& f : fields) {
    if (f.key == key) return &f.value;
  }
  return nullptr;
}

inline std::string JsonValue::str(std::string_view key, std::string_view fallback) const {
  const JsonValue* v = find(key);
  return v == nullptr ? std::string(fallback) : v->text;
}

namespace detail {

struct JsonReader {
  static constexpr int kMaxDepth = 32;
  std::string_view s;
  size_t i = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  static int hex(char h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
  }
  Result<std::string, std::string> string() {
    std::string out;
    ++i;
    while (i < s.size()) {
      const char c = s[i++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return unexpected(std::string("control character in a string"));
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) break;
      const char e = s[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (i + 4 > s.size()) return unexpected(std::string("truncated \\u escape"));
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            const int d = hex(s[i++]);
            if (d < 0) return unexpected(std::string("bad \\u escape"));
            v = v * 16 + static_cast<unsigned>(d);
          }
          // JsonWriter escapes each byte outside printable ASCII as \u00XX:
          // such a byte comes back as itself; other code points (not written
          // by Lodestone) are shown as '?'. NUL is refused.
          if (v == 0) return unexpected(std::string("\\u0000 in a string"));
          out += v <= 0xff ? static_cast<char>(v) : '?';
          break;
        }
        default: return unexpected(std::string("bad escape in a string"));
      }
    }
    return unexpected(std::string("unterminated string"));
  }
  Result<JsonValue, std::string> value(int depth) {
    if (depth > kMaxDepth) return unexpected(std::string("nested too deep"));
    ws();
    if (i >= s.size()) return unexpected(std::string("truncated"));
    JsonValue v;
    const char c = s[i];
    if (c == '"') {
      auto str = string();
      if (!str) return unexpected(str.error());
      v.kind = JsonValue::Kind::kString;
      v.text = std::move(*str);
      return v;
    }
    if (c == '{' || c == '[') {
      const bool obj = c == '{';
      v.kind = obj ? JsonValue::Kind::kObject : JsonValue::Kind::kArray;
      ++i;
      ws();
      if (i < s.size() && s[i] == (obj ? '}' : ']')) {
        ++i;
        return v;
      }
      while (true) {
        ws();
        std::string key;
        if (obj) {
          if (i >= s.size() || s[i] != '"') return unexpected(std::string("expected a key string"));
          auto k = string();
          if (!k) return unexpected(k.error());
          key = std::move(*k);
          ws();
          if (i >= s.size() || s[i] != ':') return unexpected("expected ':' after \"" + key + "\"");
          ++i;
        }
        auto item = value(depth + 1);
        if (!item) {
          // The innermost key names where it went wrong.
          if (!obj || item.error().starts_with('"')) return unexpected(item.error());
          return unexpected("\"" + key + "\": " + item.error());
        }
        if (obj) {
          v.fields.push_back(JsonField{std::move(key), std::move(*item)});
        } else {
          v.items.push_back(std::move(*item));
        }
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < s.size() && s[i] == (obj ? '}' : ']')) {
          ++i;
          return v;
        }
        return unexpected(std::string(obj ? "expected ',' or '}'" : "expected ',' or ']'"));
      }
    }
    const size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '-' || s[i] == '.' ||
                            s[i] == '+')) {
      ++i;
    }
    v.text = std::string(s.substr(start, i - start));
    if (v.text == "true" || v.text == "false") {
      v.kind = JsonValue::Kind::kBool;
    } else if (v.text == "null") {
      v.kind = JsonValue::Kind::kNull;
    } else if (!v.text.empty() && (std::isdigit(static_cast<unsigned char>(v.text[0])) || v.text[0] == '-')) {
      v.kind = JsonValue::Kind::kNumber;
    } else {
      return unexpected(v.text.empty() ? std::string("unexpected character") : "unknown literal '" + v.text + "'");
    }
    return v;
  }
};

}  // namespace detail

[[nodiscard]] inline Result<JsonValue, std::string> parse_json(std::string_view text) {
  detail::JsonReader r{text};
  auto v = r.value(0);
  if (!v) return v;
  r.ws();
  if (r.i != text.size()) return unexpected(std::string("trailing bytes after the value"));
  return v;
}

}  // namespace lode
