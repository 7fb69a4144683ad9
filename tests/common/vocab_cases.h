// The tokenizer cases beside each ../shared/models/vocab/X.gguf (llama.cpp's test vectors), read by
// the tokenizer's unit tests and the vocab-only C-API tests alike.
//   X.gguf.inp: each input string followed by "\n__ggml_vocab_test__\n" (never trimmed)
//   X.gguf.out: one line of " id id ..." per string (no BOS, special tokens not parsed)
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "common/helpers.h"

namespace kvtest {

struct VocabCase {
    std::string text;
    std::vector<int32_t> ids;
};

inline std::string read_text(const std::string& path) {
    const auto bytes = read_file(path);
    return std::string(bytes.begin(), bytes.end());
}

inline std::vector<VocabCase> load_vocab_cases(const std::string& gguf) {
    const std::string inp = read_text(gguf + ".inp"), out = read_text(gguf + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<VocabCase> cases;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t hit = inp.find(sep, pos);
        REQUIRE_MESSAGE(hit != std::string::npos, "unterminated test string in " << gguf << ".inp");
        cases.push_back({inp.substr(pos, hit - pos), {}});
        pos = hit + sep.size();
    }
    std::istringstream lines(out);
    std::string line;
    size_t i = 0;
    for (; std::getline(lines, line); ++i) {
        REQUIRE(i < cases.size());
        std::istringstream ids(line);
        for (int32_t id; ids >> id;) cases[i].ids.push_back(id);
    }
    REQUIRE_MESSAGE(i == cases.size(), gguf << ": " << cases.size() << " inputs but " << i << " output lines");
    return cases;
}

}  // namespace kvtest
