// kv_session_set_grammar: a grammar (engine/grammar.h) attached to a session's sampler, over the
// model's token trie (built once per model, on first use).
#include <cstring>

#include "engine/grammar.h"
#include "engine/session.h"

namespace kv::engine {

namespace {

std::shared_ptr<const TokenTrie> token_trie(kv_model& m) {
    std::lock_guard<std::mutex> lock(m.grammar_mutex);
    if (!m.token_trie) m.token_trie = std::make_shared<const TokenTrie>(*m.tokenizer);
    return m.token_trie;
}

}  // namespace

void set_grammar(kv_session& s, const char* gbnf, const char* root) {
    if (!gbnf) {
        s.sampler->set_grammar(std::nullopt);
        return;
    }
    auto grammar = Grammar::parse(gbnf, root ? root : "root");
    GrammarMatcher matcher(std::move(grammar), token_trie(*s.model));
    s.sampler->set_grammar(std::move(matcher));
    // The GPU argmax of the current logits is no longer the choice: sampling goes to the host.
    s.next_token_valid = false;
}

}  // namespace kv::engine
