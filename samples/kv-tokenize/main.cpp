// kv-tokenize: reads UTF-8 text on stdin and prints its token ids, space-separated; with --decode,
// reads ids (separated by spaces, commas or newlines) and prints the text. No GPU is used, and
// only the vocabulary is loaded (KV_MODEL_VOCAB_ONLY): it works on vocab-only GGUFs and on models
// of any architecture whose tokenizer kvulkan supports.
//
//   kv-tokenize -m model.gguf [--bos] [--special] [--decode]
#include <kvulkan/kvulkan.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    std::string path;
    bool bos = false, special = false, decode = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "-m" || a == "--model") && i + 1 < argc) path = argv[++i];
        else if (a == "--bos") bos = true;
        else if (a == "--special") special = true;
        else if (a == "--decode") decode = true;
        else {
            std::fprintf(stderr, "kv-tokenize: unknown argument '%s'\nusage: kv-tokenize -m model.gguf [--bos] [--special] [--decode]\n", a.c_str());
            return 2;
        }
    }
    if (path.empty()) {
        std::fprintf(stderr, "usage: kv-tokenize -m model.gguf [--bos] [--special] [--decode]\n");
        return 2;
    }
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path.c_str();
    d.flags = KV_MODEL_VOCAB_ONLY;
    kv_model* m = nullptr;
    kv_status s = kv_model_load(nullptr, &d, &m);
    if (s != KV_OK) {
        std::fprintf(stderr, "kv-tokenize: %s: %s: %s\n", path.c_str(), kv_status_string(s), kv_last_error_message());
        return 1;
    }
    std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    int rc = 0;
    if (decode) {
        std::vector<kv_token> ids;
        for (size_t i = 0; i < in.size();) {
            if (in[i] == ' ' || in[i] == ',' || in[i] == '\n' || in[i] == '\t' || in[i] == '\r') {
                ++i;
                continue;
            }
            char* end = nullptr;
            long v = std::strtol(in.c_str() + i, &end, 10);
            if (end == in.c_str() + i) {
                std::fprintf(stderr, "kv-tokenize: '%c' is not part of a token id\n", in[i]);
                kv_model_destroy(m);
                return 1;
            }
            ids.push_back(static_cast<kv_token>(v));
            i = static_cast<size_t>(end - in.c_str());
        }
        size_t len = 0;
        s = kv_detokenize(m, ids.data(), uint32_t(ids.size()), nullptr, &len);
        std::string out(len, '\0');
        if (s == KV_INCOMPLETE || s == KV_OK) s = kv_detokenize(m, ids.data(), uint32_t(ids.size()), out.data(), &len);
        if (s != KV_OK) {
            std::fprintf(stderr, "kv-tokenize: %s: %s\n", kv_status_string(s), kv_last_error_message());
            rc = 1;
        } else {
            std::fwrite(out.data(), 1, len, stdout);
        }
    } else {
        uint32_t flags = (bos ? KV_TOKENIZE_ADD_SPECIAL : 0) | (special ? KV_TOKENIZE_PARSE_SPECIAL : 0);
        uint32_t n = 0;
        kv_tokenize(m, in.data(), in.size(), flags, nullptr, &n);
        std::vector<kv_token> ids(n);
        s = kv_tokenize(m, in.data(), in.size(), flags, ids.data(), &n);
        if (s != KV_OK) {
            std::fprintf(stderr, "kv-tokenize: %s: %s\n", kv_status_string(s), kv_last_error_message());
            rc = 1;
        } else {
            for (uint32_t i = 0; i < n; ++i) std::printf("%s%d", i ? " " : "", ids[i]);
            std::printf("\n");
        }
    }
    kv_model_destroy(m);
    return rc;
}
