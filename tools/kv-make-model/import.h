// kv-make-model --import: a GGUF from weights trained elsewhere (see import.cpp for the folder).
#pragma once

#include <string>

#include "model/gguf.h"

namespace kv::tools {

// Adds DIR's metadata, vocabulary and tensors to `w`; 2-D weights marked "model" become `type`.
// Throws kv::Error (KV_ERR_IO, KV_ERR_BAD_MODEL naming the file and line).
void import_model(const std::string& dir, model::GgmlType type, model::GgufWriter& w);

}  // namespace kv::tools
