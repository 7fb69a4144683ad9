// kv-make-model --import DIR: writes a GGUF from weights trained elsewhere (tools/kv-train-kjv),
// through the same GgufWriter, so F16/Q8_0/Q4_0 conversion is kvulkan's own. DIR holds:
//
//   meta.tsv     one key a line: KIND<TAB>KEY<TAB>VALUE, KIND one of str u32 f32 bool
//   vocab.tsv    one token a line, in id order: TYPE<TAB>SCORE<TAB>HEX(UTF-8 text)
//                (written as tokenizer.ggml.tokens / scores / token_type)
//   tensors.tsv  one tensor a line: NAME<TAB>STORE<TAB>NE0,NE1,...<TAB>FILE, STORE "f32" (kept F32,
//                for norms) or "model" (converted to --type); FILE is raw little-endian F32 in DIR,
//                ne0 varying fastest (a torch [out][in] weight is ne = in,out).
//
// Any malformed line, a missing file or a size mismatch is an error naming the file and line.
#include "import.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"

namespace kv::tools {

namespace {

using model::GgmlType;

[[noreturn]] void bad(const std::string& file, size_t line, const std::string& what) {
    throw Error(KV_ERR_BAD_MODEL, file + ":" + std::to_string(line) + ": " + what);
}

// The lines of DIR/NAME split at tabs (empty lines skipped), each with its line number.
struct Row {
    size_t line;
    std::vector<std::string> f;
};

std::vector<Row> read_rows(const std::string& dir, const std::string& name, size_t fields) {
    const std::string path = dir + "/" + name;
    std::ifstream in(path);
    if (!in) throw Error(KV_ERR_IO, "cannot open " + path);
    std::vector<Row> rows;
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
        if (line.empty()) continue;
        Row r{n, {}};
        std::stringstream ss(line);
        std::string f;
        while (std::getline(ss, f, '\t')) r.f.push_back(f);
        if (r.f.size() != fields)
            bad(path, n, "expected " + std::to_string(fields) + " tab-separated fields");
        rows.push_back(std::move(r));
    }
    return rows;
}

uint64_t parse_u64(const std::string& s, const std::string& file, size_t line) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || *end || s[0] == '-') bad(file, line, "not an unsigned integer: '" + s + "'");
    return v;
}

float parse_f32(const std::string& s, const std::string& file, size_t line) {
    char* end = nullptr;
    const float v = std::strtof(s.c_str(), &end);
    if (s.empty() || *end) bad(file, line, "not a number: '" + s + "'");
    return v;
}

std::string unhex(const std::string& s, const std::string& file, size_t line) {
    if (s.size() % 2) bad(file, line, "odd-length hex text");
    std::string out;
    for (size_t i = 0; i < s.size(); i += 2) {
        char* end = nullptr;
        const std::string byte = s.substr(i, 2);
        const long v = std::strtol(byte.c_str(), &end, 16);
        if (*end) bad(file, line, "not hex: '" + byte + "'");
        out.push_back(static_cast<char>(v));
    }
    return out;
}

}  // namespace

void import_model(const std::string& dir, GgmlType type, model::GgufWriter& w) {
    for (const Row& r : read_rows(dir, "meta.tsv", 3)) {
        const std::string &kind = r.f[0], &key = r.f[1], &val = r.f[2];
        const std::string file = dir + "/meta.tsv";
        if (kind == "str")
            w.set_string(key, val);
        else if (kind == "u32") {
            const uint64_t v = parse_u64(val, file, r.line);
            if (v > UINT32_MAX) bad(file, r.line, "u32 out of range");
            w.set_u32(key, static_cast<uint32_t>(v));
        } else if (kind == "f32")
            w.set_f32(key, parse_f32(val, file, r.line));
        else if (kind == "bool") {
            if (val != "true" && val != "false") bad(file, r.line, "bool must be true or false");
            w.set_bool(key, val == "true");
        } else
            bad(file, r.line, "unknown kind '" + kind + "' (str u32 f32 bool)");
    }

    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (const Row& r : read_rows(dir, "vocab.tsv", 3)) {
        const std::string file = dir + "/vocab.tsv";
        const uint64_t t = parse_u64(r.f[0], file, r.line);
        if (t > 6) bad(file, r.line, "token type outside 0..6");
        types.push_back(static_cast<int32_t>(t));
        scores.push_back(parse_f32(r.f[1], file, r.line));
        tokens.push_back(unhex(r.f[2], file, r.line));
    }
    if (tokens.empty()) throw Error(KV_ERR_BAD_MODEL, dir + "/vocab.tsv has no tokens");
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_f32("tokenizer.ggml.scores", scores);
    w.set_array_i32("tokenizer.ggml.token_type", types);

    for (const Row& r : read_rows(dir, "tensors.tsv", 4)) {
        const std::string file = dir + "/tensors.tsv";
        const std::string& name = r.f[0];
        GgmlType t;
        if (r.f[1] == "f32")
            t = GgmlType::F32;
        else if (r.f[1] == "model")
            t = type;
        else
            bad(file, r.line, "store must be f32 or model, not '" + r.f[1] + "'");
        std::vector<uint64_t> ne;
        std::stringstream ss(r.f[2]);
        std::string d;
        uint64_t count = 1;
        while (std::getline(ss, d, ',')) {
            ne.push_back(parse_u64(d, file, r.line));
            count *= ne.back();
        }
        if (ne.empty() || ne.size() > 4 || count == 0)
            bad(file, r.line, "bad shape '" + r.f[2] + "'");
        const std::string data_path = dir + "/" + r.f[3];
        std::ifstream in(data_path, std::ios::binary | std::ios::ate);
        if (!in) throw Error(KV_ERR_IO, "cannot open " + data_path);
        const auto bytes = static_cast<uint64_t>(in.tellg());
        if (bytes != count * sizeof(float))
            bad(file, r.line,
                data_path + " has " + std::to_string(bytes) + " bytes, the shape needs " +
                    std::to_string(count * sizeof(float)));
        std::vector<float> v(count);
        in.seekg(0);
        in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(bytes));
        if (!in) throw Error(KV_ERR_IO, "cannot read " + data_path);
        w.add_tensor_f32(name, t, ne, v.data());
    }
}

}  // namespace kv::tools
