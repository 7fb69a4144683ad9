// Vocab-only models (KV_MODEL_VOCAB_ONLY, src/engine/model.cpp and src/capi/model_api.cpp): every
// vocab-only GGUF in models/vocab loads through the C API, with and without a runtime, whatever
// its architecture, and tokenizes llama.cpp's cases to llama.cpp's ids; kv_model_get_info fills
// what the header lists and zeroes the rest; sessions fail with KV_ERR_BAD_STATE; files without a
// vocabulary, malformed or missing files and unknown flags fail with a message that says why.
#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "common/vocab_cases.h"
#include "common/runtime_fixture.h"
#include "model/gguf.h"

namespace {

// Every models/vocab/*.gguf, sorted.
std::vector<std::string> vocab_files() {
    const std::string dir = kvtest::shared_dir() + "/models/vocab";
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (const dirent* e = readdir(d)) {
            const std::string n = e->d_name;
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".gguf") == 0)
                out.push_back(dir + "/" + n);
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string base_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

kv_status load(kv_runtime* rt, const std::string& path, uint32_t flags, kv_model** out) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.path = path.c_str();
    d.flags = flags;
    return kv_model_load(rt, &d, out);
}

kv_status load_bytes(const std::vector<uint8_t>& bytes, uint32_t flags, kv_model** out) {
    kv_model_desc d = KV_MODEL_DESC_INIT;
    d.data = bytes.data();
    d.size = bytes.size();
    d.copy_data = 1;
    d.flags = flags;
    return kv_model_load(nullptr, &d, out);
}

std::vector<kv_token> tokenize(const kv_model* m, const std::string& text, uint32_t flags = 0) {
    uint32_t n = 0;
    kv_status s = kv_tokenize(m, text.data(), text.size(), flags, nullptr, &n);
    REQUIRE_MESSAGE((s == KV_OK || s == KV_INCOMPLETE),
                    std::string(kv_status_string(s))
                        << ": " << std::string(kv_last_error_message()));
    std::vector<kv_token> ids(n);
    s = kv_tokenize(m, text.data(), text.size(), flags, ids.data(), &n);
    REQUIRE_MESSAGE(s == KV_OK, std::string(kv_status_string(s))
                                    << ": " << std::string(kv_last_error_message()));
    return ids;
}

std::string detokenize(const kv_model* m, const std::vector<kv_token>& ids) {
    size_t len = 0;
    kv_status s = kv_detokenize(m, ids.data(), uint32_t(ids.size()), nullptr, &len);
    REQUIRE((s == KV_OK || s == KV_INCOMPLETE));
    std::string out(len, '\0');
    s = kv_detokenize(m, ids.data(), uint32_t(ids.size()), out.data(), &len);
    REQUIRE_MESSAGE(s == KV_OK, std::string(kv_status_string(s))
                                    << ": " << std::string(kv_last_error_message()));
    return out;
}

std::string show(const std::vector<kv_token>& v) {
    std::string s;
    for (kv_token x : v) s += " " + std::to_string(x);
    return s;
}

// What each file's metadata says (general.architecture, general.name) and its vocabulary size.
struct Expected {
    const char* file;
    const char* arch;
    const char* name;
    uint32_t n_vocab;
};
const Expected kExpected[] = {
    {"ggml-vocab-deepseek-coder.gguf", "llama", "deepseek-coder", 32256},
    {"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257},
    {"ggml-vocab-llama-spm.gguf", "llama", "llama-spm", 32000},
    {"ggml-vocab-phi-3.gguf", "phi3", "Phi3", 32064},
    {"ggml-vocab-refact.gguf", "refact", "Refact", 49216},
};

// Session creation and loading refuse a vocab-only model.
void check_no_sessions(kv_model* m) {
    kv_session* s = nullptr;
    CHECK(kv_session_create(m, nullptr, &s) == KV_ERR_BAD_STATE);
    CHECK(s == nullptr);
    CHECK(std::strlen(kv_last_error_message()) > 0);
    MESSAGE("kv_session_create: " << std::string(kv_last_error_message()));
}

void check_info(kv_model* m, const std::string& path) {
    const std::string file = base_name(path);
    const Expected* e = nullptr;
    for (const Expected& x : kExpected)
        if (file == x.file) e = &x;
    kv_model_info info;
    std::memset(&info, 0xAB, sizeof info);  // every field the library leaves alone would show
    info.struct_size = sizeof info;
    REQUIRE(kv_model_get_info(m, &info) == KV_OK);
    CHECK(info.struct_size == sizeof info);
    if (e) {
        CHECK(std::string(info.architecture) == e->arch);
        CHECK(std::string(info.name) == e->name);
        CHECK(info.n_vocab == e->n_vocab);
    } else {
        MESSAGE(file << ": not in this test's table; only the zero fields are checked");
        CHECK(info.n_vocab > 0);
    }
    CHECK(info.file_size == kvtest::read_file(path).size());
    // The rest is 0.
    CHECK(info.on_device == 0);
    CHECK(info.weight_types[0] == 0);
    CHECK(info.n_params == 0);
    CHECK(info.weight_bytes == 0);
    CHECK(info.device_bytes == 0);
    CHECK(info.n_embd == 0);
    CHECK(info.n_layer == 0);
    CHECK(info.n_head == 0);
    CHECK(info.n_head_kv == 0);
    CHECK(info.head_dim == 0);
    CHECK(info.n_ff == 0);
    CHECK(info.n_ctx_train == 0);
    CHECK(info.rope_neox == 0);
    CHECK(info.rope_freq_base == 0.0f);
    CHECK(info.tied_output == 0);
}

// Loads `path` vocab-only on `rt` (may be null) and checks it; returns the cases that match.
size_t check_vocab_file(kv_runtime* rt, const std::string& path) {
    kv_model* m = nullptr;
    const kv_status s = load(rt, path, KV_MODEL_VOCAB_ONLY, &m);
    REQUIRE_MESSAGE(s == KV_OK, std::string(kv_status_string(s))
                                    << ": " << std::string(kv_last_error_message()));
    check_info(m, path);
    const auto cases = kvtest::load_vocab_cases(path);
    CHECK(cases.size() == 46);
    size_t passed = 0;
    for (const kvtest::VocabCase& c : cases) {
        const auto ids = tokenize(m, c.text);
        CHECK_MESSAGE(ids == c.ids,
                      "\"" << c.text << "\": got" << show(ids) << " want" << show(c.ids));
        passed += ids == c.ids;
        CHECK(detokenize(m, ids) == c.text);
    }
    // The special tokens come from the tokenizer alone.
    const kv_token eos = kv_model_token_eos(m);
    if (eos >= 0) CHECK(kv_token_is_eog(m, eos) == 1);
    const kv_token bos = kv_model_token_bos(m);
    if (bos >= 0) {
        const auto with = tokenize(m, "Hello", KV_TOKENIZE_ADD_SPECIAL);
        REQUIRE(!with.empty());
        // Every one of these vocabularies asks for BOS except gpt-2 and refact.
        const std::string f = base_name(path);
        if (f != "ggml-vocab-gpt-2.gguf" && f != "ggml-vocab-refact.gguf")
            CHECK(with.front() == bos);
    }
    check_no_sessions(m);
    kv_model_destroy(m);
    MESSAGE(base_name(path) << std::string(rt ? " (runtime given)" : " (no runtime)") << ": "
                            << passed << "/" << cases.size() << " cases match llama.cpp");
    return passed;
}

}  // namespace

TEST_CASE(
    "vocab-only: every models/vocab GGUF loads without a runtime and tokenizes as llama.cpp") {
    if (!kvtest::require_shared()) return;
    const auto files = vocab_files();
    REQUIRE_MESSAGE(files.size() >= 5, "expected the five vocab GGUFs in ../shared/models/vocab");
    for (const std::string& path : files) {
        INFO(path);
        CHECK(check_vocab_file(nullptr, path) == 46);
    }
}

TEST_CASE("vocab-only: with a runtime given, the same (the runtime is not used)") {
    if (!kvtest::require_shared()) return;
    kvtest::Runtime rt;
    for (const std::string& path : vocab_files()) {
        INFO(path);
        CHECK(check_vocab_file(rt, path) == 46);
    }
}

TEST_CASE("vocab-only: without the flag a vocab-only file is refused, with a hint") {
    if (!kvtest::require_shared()) return;
    for (const std::string& path : vocab_files()) {
        INFO(path);
        kv_model* m = nullptr;
        CHECK(load(nullptr, path, 0, &m) == KV_ERR_BAD_MODEL);
        CHECK(m == nullptr);
        CHECK(std::string(kv_last_error_message()).find("KV_MODEL_VOCAB_ONLY") !=
              std::string::npos);
    }
}

TEST_CASE("vocab-only: a model with weights loads its tokenizer alone, on a runtime or not") {
    if (!kvtest::require_shared()) return;
    const std::string path = kvtest::shared_dir() + "/models/stories260K/stories260K.gguf";
    kv_model* full = nullptr;
    REQUIRE(load(nullptr, path, 0, &full) == KV_OK);
    kvtest::Runtime rt;
    for (kv_runtime* r : {static_cast<kv_runtime*>(nullptr), rt.get()}) {
        INFO(std::string(r ? "runtime given" : "no runtime"));
        kv_model* m = nullptr;
        REQUIRE(load(r, path, KV_MODEL_VOCAB_ONLY, &m) == KV_OK);
        const std::string text = "Once upon a time, \xD0\xB6 there was a cat.";
        for (uint32_t flags :
             {0u, uint32_t(KV_TOKENIZE_ADD_SPECIAL), uint32_t(KV_TOKENIZE_PARSE_SPECIAL)})
            CHECK(tokenize(m, text, flags) == tokenize(full, text, flags));
        CHECK(tokenize(m, "Once upon a time", KV_TOKENIZE_ADD_SPECIAL) ==
              std::vector<kv_token>{1, 403, 407, 261, 378});
        CHECK(kv_model_token_bos(m) == kv_model_token_bos(full));
        CHECK(kv_model_token_eos(m) == kv_model_token_eos(full));
        kv_model_info info{};
        info.struct_size = sizeof info;
        REQUIRE(kv_model_get_info(m, &info) == KV_OK);
        CHECK(std::string(info.architecture) == "llama");
        CHECK(info.n_vocab == 512);
        CHECK(info.on_device == 0);
        CHECK(info.device_bytes == 0);
        CHECK(info.n_layer == 0);
        CHECK(info.n_params == 0);
        check_no_sessions(m);
        kv_cache_stats cs{};
        cs.struct_size = sizeof cs;
        CHECK(kv_model_get_cache_stats(m, KV_CACHE_F16, &cs) == KV_OK);
        CHECK(cs.pages_total == 0);
        kv_model_destroy(m);
    }
    kv_model_destroy(full);
}

TEST_CASE("vocab-only: no vocabulary, a malformed or missing file, unknown flags: clear errors") {
    kv_model* m = nullptr;
    SUBCASE("a GGUF without tokenizer metadata") {
        kv::model::GgufWriter w;
        w.set_string("general.architecture", "phi3");
        CHECK(load_bytes(w.to_bytes(), KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_BAD_MODEL);
        CHECK(std::string(kv_last_error_message()).find("tokenizer.ggml.model") !=
              std::string::npos);
    }
    SUBCASE("a tokenizer model kvulkan does not support") {
        kv::model::GgufWriter w;
        w.set_string("tokenizer.ggml.model", "bert");
        w.set_array_string("tokenizer.ggml.tokens", {"[PAD]", "a"});
        CHECK(load_bytes(w.to_bytes(), KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_UNSUPPORTED);
        CHECK(std::string(kv_last_error_message()).find("bert") != std::string::npos);
    }
    SUBCASE("tokens missing") {
        kv::model::GgufWriter w;
        w.set_string("tokenizer.ggml.model", "llama");
        CHECK(load_bytes(w.to_bytes(), KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_BAD_MODEL);
        CHECK(std::string(kv_last_error_message()).find("tokenizer.ggml.tokens") !=
              std::string::npos);
    }
    SUBCASE("not a GGUF file / a truncated one") {
        const std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'g', 'g', 'u', 'f', 0, 0, 0, 0};
        CHECK(load_bytes(junk, KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_BAD_MODEL);
        CHECK(std::strlen(kv_last_error_message()) > 0);
        if (!kvtest::shared_dir().empty()) {
            auto bytes =
                kvtest::read_file(kvtest::shared_dir() + "/models/vocab/ggml-vocab-llama-spm.gguf");
            bytes.resize(bytes.size() / 2);
            CHECK(load_bytes(bytes, KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_BAD_MODEL);
            MESSAGE("truncated: " << std::string(kv_last_error_message()));
        }
    }
    SUBCASE("a missing file") {
        CHECK(load(nullptr, "/nonexistent/vocab.gguf", KV_MODEL_VOCAB_ONLY, &m) == KV_ERR_IO);
        CHECK(std::string(kv_last_error_message()).find("/nonexistent/vocab.gguf") !=
              std::string::npos);
    }
    SUBCASE("unknown flag bits") {
        CHECK(load(nullptr, "/nonexistent/vocab.gguf", KV_MODEL_VOCAB_ONLY | (1u << 7), &m) ==
              KV_ERR_INVALID_ARGUMENT);
        const std::string msg = kv_last_error_message();
        CHECK(msg.find("desc->flags") != std::string::npos);
        CHECK(msg.find("0x80") != std::string::npos);
    }
    CHECK(m == nullptr);
}
