// JSON rendering of a ClientHello parse: what `lodectl explain` prints, what
// the tests compare, what the fuzz target cross-checks. One canonical form.
#pragma once

#include <string>

#include "lodestone/client_hello_info.h"
#include "lodestone/json_writer.h"

namespace lode::tls {

class ClientHelloParser;

// The members of a parse result (no enclosing braces): "status", then the
// hello's fields or the error's.
void write_hello_fields(JsonWriter& w, const ClientHelloParser& parser);

// The same as one JSON object.
std::string hello_to_json(const ClientHelloParser& parser);

}  // namespace lode::tls
