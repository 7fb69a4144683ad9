// JSON Schema -> GBNF (kv_json_schema_to_grammar): a subset of JSON Schema written as a grammar
// whose matches are JSON texts the schema accepts. See the header for the keywords supported.
#pragma once

#include <string>
#include <string_view>

namespace kv::engine {

// Throws kv::Error: KV_ERR_INVALID_ARGUMENT (malformed JSON: byte offset; a malformed schema:
// its JSON pointer), KV_ERR_UNSUPPORTED (a keyword outside the subset, and where).
std::string json_schema_to_gbnf(std::string_view schema_json);

}  // namespace kv::engine
