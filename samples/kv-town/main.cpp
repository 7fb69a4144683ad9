// kv-town: N independent conversations (a town's NPCs) advanced together, one forward pass per
// step for all of them (kv_batch_eval): the weights are read once per step, whatever N is. Each NPC
// samples with its own sampler (seed and temperature); halfway, a newcomer arrives and its prompt
// joins the running batch as chunks instead of stalling the others for its whole prompt.
//
//   kv-town -m model.gguf [--npcs 8] [-n 48] [--temp 0.8] [--kv-type f16|f32|q8_0] [--device NAME]
//
// Prints every NPC's text, then the aggregate tok/s and forward passes against what decoding
// them one after another would have taken.
#include <kvulkan/kvulkan.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const char* what, kv_status s) {
    std::fprintf(stderr, "kv-town: %s: %s: %s\n", what, kv_status_string(s), kv_last_error_message());
    std::exit(1);
}

const char* const kOpenings[] = {
    "Once upon a time, the baker", "The blacksmith said", "In the morning the guard", "The old fisherman",
    "Lily the farmer's girl", "The innkeeper laughed and", "A little cat in the square", "The mayor told everyone",
};

struct Npc {
    kv_session* session = nullptr;
    std::string name;
    std::vector<kv_token> prompt;
    uint32_t fed = 0;   // prompt tokens in the cache so far
    bool done = false;  // end of generation or its token budget
    std::vector<kv_token> said;
};

std::vector<kv_token> tokenize(kv_model* model, const std::string& text) {
    uint32_t n = 0;
    kv_tokenize(model, text.data(), text.size(), KV_TOKENIZE_ADD_SPECIAL, nullptr, &n);
    std::vector<kv_token> ids(n);
    kv_status s = kv_tokenize(model, text.data(), text.size(), KV_TOKENIZE_ADD_SPECIAL, ids.data(), &n);
    if (s != KV_OK) die("tokenize", s);
    ids.resize(n);
    return ids;
}

std::string detokenize(kv_model* model, const std::vector<kv_token>& ids) {
    std::string out(ids.size() * 16 + 16, '\0');
    size_t len = out.size();
    if (kv_detokenize(model, ids.data(), uint32_t(ids.size()), out.data(), &len) != KV_OK) return "?";
    out.resize(len);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::string path;
    uint32_t n_npcs = 8, n_gen = 48;
    float temp = 0.8f;
    kv_cache_type kvt = KV_CACHE_F16;
    kv_runtime_desc rd = KV_RUNTIME_DESC_INIT;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "usage: kv-town -m model.gguf [--npcs N] [-n N] [--temp T] [--kv-type f16|f32|q8_0] "
                                 "[--device NAME]\n");
            return 2;
        }
        const char* v = argv[++i];
        if (a == "-m") path = v;
        else if (a == "--npcs") n_npcs = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "-n") n_gen = uint32_t(std::max(1, std::atoi(v)));
        else if (a == "--temp") temp = float(std::atof(v));
        else if (a == "--kv-type") kvt = std::string(v) == "f32" ? KV_CACHE_F32 : std::string(v) == "q8_0" ? KV_CACHE_Q8_0 : KV_CACHE_F16;
        else if (a == "--device") rd.device_name = v;
        else {
            std::fprintf(stderr, "kv-town: unknown argument '%s'\n", a.c_str());
            return 2;
        }
    }
    if (path.empty()) {
        std::fprintf(stderr, "kv-town: -m model.gguf is required\n");
        return 2;
    }
    kv_runtime* rt;
    kv_status s = kv_runtime_create(&rd, &rt);
    if (s) die("runtime", s);
    kv_model_desc md = KV_MODEL_DESC_INIT;
    md.path = path.c_str();
    kv_model* model;
    if ((s = kv_model_load(rt, &md, &model))) die(path.c_str(), s);

    // The town: n_npcs at the start, one newcomer halfway (n_npcs + 1 sessions in all).
    std::vector<Npc> npcs(n_npcs + 1);
    for (uint32_t i = 0; i < npcs.size(); ++i) {
        Npc& c = npcs[i];
        c.name = i < n_npcs ? "npc " + std::to_string(i) : "newcomer";
        std::string opening = i < n_npcs ? kOpenings[i % 8] : "A traveller came to town and asked";
        c.prompt = tokenize(model, opening);
        kv_sampler_desc sampler = KV_SAMPLER_DESC_INIT;
        sampler.temperature = temp;
        sampler.top_k = 40;
        sampler.seed = 1000 + i;  // every NPC its own random stream
        kv_session_desc sd = KV_SESSION_DESC_INIT;
        sd.cache_type = kvt;
        sd.n_ctx = uint32_t(c.prompt.size()) + n_gen + 16;
        sd.n_batch = 8;  // prompt chunks per step: a newcomer never holds the others up for long
        sd.sampler = &sampler;
        if ((s = kv_session_create(model, &sd, &c.session))) die("session", s);
    }

    // Each step is ONE kv_batch_eval: an item per active NPC - a prompt chunk while its prompt is
    // still going in, else a decode step with its own sampler.
    uint32_t steps = 0, tokens = 0, newcomer_joined_at = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
        const bool newcomer_here = steps >= n_gen / 2;
        if (newcomer_here && !newcomer_joined_at) newcomer_joined_at = steps;
        std::vector<kv_batch_item> items;
        std::vector<Npc*> who;
        for (uint32_t i = 0; i < npcs.size(); ++i) {
            Npc& c = npcs[i];
            if (c.done || (i == n_npcs && !newcomer_here)) continue;
            kv_batch_item it = KV_BATCH_ITEM_INIT;
            it.session = c.session;
            if (c.fed < c.prompt.size()) {
                it.tokens = c.prompt.data() + c.fed;
                it.n_tokens = uint32_t(c.prompt.size()) - c.fed;
            }
            items.push_back(it);
            who.push_back(&c);
        }
        if (items.empty()) break;
        if ((s = kv_batch_eval(items.data(), uint32_t(items.size())))) die("batch", s);
        ++steps;
        for (size_t j = 0; j < items.size(); ++j) {
            Npc& c = *who[j];
            const kv_batch_item& it = items[j];
            if (it.status < 0) die(c.name.c_str(), it.status);
            if (it.tokens) {
                c.fed += it.n_done;
                continue;
            }
            if (it.status == KV_END_OF_GENERATION) {
                c.done = true;
                continue;
            }
            c.said.push_back(it.token);
            ++tokens;
            if (c.said.size() >= n_gen) c.done = true;
        }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    kv_device_info dev{};
    dev.struct_size = sizeof dev;
    kv_runtime_get_info(rt, &dev);
    uint64_t alone = 0;  // passes one-after-another decoding would take: one per token or chunk
    for (Npc& c : npcs) {
        std::vector<kv_token> all = c.prompt;
        all.insert(all.end(), c.said.begin(), c.said.end());
        std::printf("[%s] %s\n", c.name.c_str(), detokenize(model, all).c_str());
        kv_session_stats st{};
        st.struct_size = sizeof st;
        kv_session_get_stats(c.session, &st);
        alone += st.forward_passes;
    }
    std::printf("\ndevice: %s\n", dev.device_name);
    std::printf("town: %u NPCs + a newcomer who joined at step %u; %u tokens in %u batched steps (one kv_batch_eval each) "
                "= %.1f tok/s in all; decoding them one after another would take %llu passes\n",
                n_npcs, newcomer_joined_at, tokens, steps, tokens / secs, static_cast<unsigned long long>(alone));
    for (Npc& c : npcs) kv_session_destroy(c.session);
    kv_model_destroy(model);
    kv_runtime_destroy(rt);
    return 0;
}
