// lode::parse_json (include/lodestone/json_reader.h): both ends of the admin API.
// Answers as lodectl sees them, requests as the control plane sees them, and what both refuse.
#include "lodestone/json_reader.h"

#include <gtest/gtest.h>

#include <string>

namespace lode {
namespace {

using K = JsonValue::Kind;

JsonValue parse_ok(std::string_view text) {
  auto v = parse_json(text);
  EXPECT_TRUE(v.has_value()) << "refused: " << text << " -> " << (v ? "" : v.error());
  return v ? *v : JsonValue{};
}

std::string parse_error(std::string_view text) {
  auto v = parse_json(text);
  EXPECT_FALSE(v.has_value()) << "accepted: " << text;
  return v ? "" : v.error();
}

std::string nested(int depth, std::string_view inner) {
  return std::string(static_cast<size_t>(depth), '[') + std::string(inner) +
         std::string(static_cast<size_t>(depth), ']');
}

TEST(JsonValue, ParsesANestedAnswer) {
  // A certs.list answer, as control_plane_admin.cc writes it.
  const JsonValue v = parse_ok(
      R"({"v":1,"ok":true,"certificates":[{"key":"name:a","subject":"CN=a.test","names":["a.test","*.a.test"],)"
      R"("not_after":1830000000,"expires_in_days":364,"state":"serve","stapled":false,"failures":0},)"
      R"({"key":"name:b","names":[],"stapled":true,"staple_age_s":12}]})");
  ASSERT_EQ(v.kind, K::kObject);
  EXPECT_EQ(v.str("ok"), "true");
  EXPECT_EQ(v.str("v"), "1");
  const JsonValue* certs = v.find("certificates");
  ASSERT_NE(certs, nullptr);
  ASSERT_EQ(certs->kind, K::kArray);
  ASSERT_EQ(certs->items.size(), 2u);
  const JsonValue& a = certs->items[0];
  ASSERT_EQ(a.kind, K::kObject);
  EXPECT_EQ(a.str("key"), "name:a");
  EXPECT_EQ(a.str("subject"), "CN=a.test");
  EXPECT_EQ(a.str("expires_in_days"), "364");
  EXPECT_EQ(a.find("expires_in_days")->kind, K::kNumber);
  EXPECT_EQ(a.str("stapled"), "false");
  EXPECT_EQ(a.find("stapled")->kind, K::kBool);
  const JsonValue* names = a.find("names");
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(names->items.size(), 2u);
  EXPECT_EQ(names->items[0].text, "a.test");
  EXPECT_EQ(names->items[1].text, "*.a.test");
  EXPECT_EQ(names->items[1].kind, K::kString);
  const JsonValue& b = certs->items[1];
  EXPECT_EQ(b.find("names")->kind, K::kArray);
  EXPECT_TRUE(b.find("names")->items.empty());
  EXPECT_EQ(b.str("staple_age_s"), "12");
}

TEST(JsonValue, KeepsKeyOrderAndFindsTheFirstOfDuplicates) {
  const JsonValue v = parse_ok(R"({"z":1,"a":2,"m":3,"a":4})");
  ASSERT_EQ(v.fields.size(), 4u);
  EXPECT_EQ(v.fields[0].key, "z");
  EXPECT_EQ(v.fields[1].key, "a");
  EXPECT_EQ(v.fields[2].key, "m");
  EXPECT_EQ(v.str("a"), "2");
}

TEST(JsonValue, ArraysOfObjectsAndArrays) {
  const JsonValue v = parse_ok(R"([{"a":[1,[2,[3]]]},{},[],{"b":{"c":{"d":"deep"}}}])");
  ASSERT_EQ(v.kind, K::kArray);
  ASSERT_EQ(v.items.size(), 4u);
  const JsonValue* a = v.items[0].find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 2u);
  EXPECT_EQ(a->items[1].items[1].items[0].text, "3");
  EXPECT_EQ(v.items[1].kind, K::kObject);
  EXPECT_TRUE(v.items[1].fields.empty());
  EXPECT_EQ(v.items[2].kind, K::kArray);
  EXPECT_EQ(v.items[3].find("b")->find("c")->str("d"), "deep");
}

TEST(JsonValue, StringEscapes) {
  const JsonValue v =
      parse_ok(R"({"s":"a\"b\\c\/d\ne\tf\rg\bh\fi\u0041\u00e9\u263A","k\"ey":"x"})");
  // \u00XX is the byte JsonWriter escaped; other code points are shown as '?'.
  EXPECT_EQ(v.str("s"), "a\"b\\c/d\ne\tf\rg\bh\fiA\xe9?");
  EXPECT_EQ(v.str("k\"ey"), "x");
  EXPECT_EQ(parse_ok(R"("")").text, "");
  EXPECT_EQ(parse_ok(R"("\\")").text, "\\");
}

TEST(JsonValue, BoolsNumbersAndNull) {
  const JsonValue v =
      parse_ok(R"({"t":true,"f":false,"n":null,"i":-42,"d":3.25,"e":1e-3,"E":2E+10,"z":0})");
  EXPECT_EQ(v.find("t")->kind, K::kBool);
  EXPECT_EQ(v.str("t"), "true");
  EXPECT_EQ(v.find("f")->kind, K::kBool);
  EXPECT_EQ(v.str("f"), "false");
  EXPECT_EQ(v.find("n")->kind, K::kNull);
  EXPECT_EQ(v.find("i")->kind, K::kNumber);
  EXPECT_EQ(v.str("i"), "-42");
  EXPECT_EQ(v.str("d"), "3.25");
  EXPECT_EQ(v.str("e"), "1e-3");
  EXPECT_EQ(v.str("E"), "2E+10");
  EXPECT_EQ(v.str("z"), "0");
  EXPECT_EQ(parse_ok("true").kind, K::kBool);
  EXPECT_EQ(parse_ok(" null ").kind, K::kNull);
  EXPECT_EQ(parse_ok("17").text, "17");
}

TEST(JsonValue, WhitespaceAndEmptyContainers) {
  const JsonValue v = parse_ok(" \r\n\t{ \"a\" : [ ] , \"b\" : { } }\n");
  EXPECT_EQ(v.find("a")->kind, K::kArray);
  EXPECT_EQ(v.find("b")->kind, K::kObject);
}

TEST(JsonValue, MissingKeysAndNonObjects) {
  const JsonValue v = parse_ok(R"({"a":1})");
  EXPECT_EQ(v.find("b"), nullptr);
  EXPECT_EQ(v.str("b"), "");
  EXPECT_EQ(v.str("b", "fallback"), "fallback");
  const JsonValue arr = parse_ok(R"([{"a":1}])");
  EXPECT_EQ(arr.find("a"), nullptr) << "an array has no fields";
}

TEST(JsonValue, NestingUpTo32IsAccepted) {
  const JsonValue v = parse_ok(nested(32, "1"));  // the 1 is at depth 32
  const JsonValue* p = &v;
  for (int d = 0; d < 32; ++d) {
    ASSERT_EQ(p->kind, K::kArray) << "depth " << d;
    ASSERT_EQ(p->items.size(), 1u);
    p = &p->items[0];
  }
  EXPECT_EQ(p->text, "1");
}

TEST(JsonValue, RefusesNestingDeeperThan32) {
  EXPECT_EQ(parse_error(nested(33, "1")), "nested too deep");
  EXPECT_EQ(parse_error(nested(34, "")), "nested too deep");
  std::string objs;
  for (int d = 0; d < 40; ++d) objs += R"({"a":)";
  objs += "1" + std::string(40, '}');
  EXPECT_EQ(parse_error(objs), "\"a\": nested too deep");
  // far deeper: refused without exhausting the stack
  EXPECT_EQ(parse_error(nested(200000, "1")), "nested too deep");
  EXPECT_EQ(parse_error(std::string(200000, '[')), "nested too deep");
}

TEST(JsonValue, RefusesTruncated) {
  for (std::string_view s :
       {"", " ", "{", "[", R"({")", R"({"a)", R"({"a")", R"({"a":)", R"({"a":1)", R"({"a":1,)",
        R"({"a":"x)", R"({"a":"x\)", R"({"a":[1,2)", "[1,", R"(["a")", R"("abc)", R"("\u00)",
        R"({"ok":true,"certificates":[{"key":"name:a","names":["a.te)"}) {
    EXPECT_FALSE(parse_json(s).has_value()) << "accepted: " << s;
  }
  EXPECT_EQ(parse_error(R"({"a":"x)"), "\"a\": unterminated string");
  EXPECT_EQ(parse_error(R"({"a":)"), "\"a\": truncated");
  EXPECT_EQ(parse_error(R"("\u00)"), "truncated \\u escape");
}

TEST(JsonValue, RefusesTruncatedLiterals) {
  for (std::string_view s :
       {"tru", "fals", "nul", "t", R"({"ok":tru})", R"([nul])", R"({"a":yes})"}) {
    EXPECT_FALSE(parse_json(s).has_value()) << "accepted: " << s;
  }
}

TEST(JsonValue, RefusesTrailingGarbage) {
  for (std::string_view s : {R"({"a":1} x)", "{}{}", "{} {}", "[1]]", "[1] ]", "1 2", R"("a" "b")",
                             "{},", "true false", "{}\x01"}) {
    EXPECT_EQ(parse_error(s), "trailing bytes after the value") << s;
  }
  // a NUL after the value is a byte like any other
  EXPECT_EQ(parse_error(std::string_view("{}\0", 3)), "trailing bytes after the value");
}

TEST(JsonValue, RefusesMissingPunctuation) {
  EXPECT_EQ(parse_error(R"({"a" 1})"), "expected ':' after \"a\"");
  EXPECT_EQ(parse_error(R"({"a":1 "b":2})"), "expected ',' or '}'");
  EXPECT_EQ(parse_error("[1 2]"), "expected ',' or ']'");
  EXPECT_EQ(parse_error(R"({"a":1])"), "expected ',' or '}'");
  EXPECT_EQ(parse_error(R"([1})"), "expected ',' or ']'");
  EXPECT_EQ(parse_error(R"({a:1})"), "expected a key string");
  EXPECT_EQ(parse_error(R"({"a":1,})"), "expected a key string");
  EXPECT_EQ(parse_error(R"({1:2})"), "expected a key string");
  EXPECT_FALSE(parse_json("[1,]").has_value());
  EXPECT_FALSE(parse_json("[,1]").has_value());
  EXPECT_FALSE(parse_json(R"({"a":})").has_value());
  EXPECT_FALSE(parse_json("}").has_value());
  EXPECT_FALSE(parse_json("]").has_value());
}

}  // namespace
}  // namespace lode
