// The streaming text filter behind kv_generate (src/model/text_stream.h): UTF-8 characters split
// across pieces, stop strings spanning pieces, and a randomized comparison with a plain oracle
// over random texts, stop strings and random splits into pieces.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "common/helpers.h"
#include "model/text_stream.h"

using kv::model::TextStream;

namespace {

// Feeds `pieces`; returns what was released (concatenated) and the stop index (-1: none, then the
// flush is included).
struct Fed {
    std::string text;
    int stop = -1;
    std::vector<std::string> releases;  // each non-empty release, in order
};

Fed feed(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
    TextStream ts(stops);
    Fed f;
    std::string ready;
    for (const auto& p : pieces) {
        f.stop = ts.push(p, ready);
        if (!ready.empty()) f.releases.push_back(ready);
        f.text += ready;
        if (f.stop >= 0) return f;
    }
    std::string rest = ts.flush();
    if (!rest.empty()) f.releases.push_back(rest);
    f.text += rest;
    return f;
}

// The text a reader scanning byte by byte would keep: everything before the first stop-string
// occurrence to end (the longest of those ending at the same byte), or all of it.
Fed oracle(const std::vector<std::string>& stops, const std::string& text) {
    for (size_t end = 1; end <= text.size(); ++end) {
        int best = -1;
        for (size_t i = 0; i < stops.size(); ++i) {
            const std::string& s = stops[i];
            if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 &&
                (best < 0 || s.size() > stops[size_t(best)].size()))
                best = int(i);
        }
        if (best >= 0) return {text.substr(0, end - stops[size_t(best)].size()), best, {}};
    }
    return {text, -1, {}};
}

// True when s ends inside a UTF-8 sequence that is valid so far.
bool ends_mid_character(const std::string& s) {
    for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
        auto b = static_cast<unsigned char>(s[s.size() - back]);
        if ((b & 0xC0) == 0x80) continue;
        size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        return need > back;
    }
    return false;
}

}  // namespace

TEST_CASE("text stream: ASCII without stop strings is released at once") {
    TextStream ts({});
    std::string r;
    CHECK(ts.push("Hello", r) == -1);
    CHECK(r == "Hello");
    CHECK(ts.push(" world", r) == -1);
    CHECK(r == " world");
    CHECK(ts.held() == 0);
    CHECK(ts.flush().empty());
}

TEST_CASE("text stream: a character split across pieces comes out whole") {
    // U+00E9 (2 bytes), U+20AC (3 bytes), U+1F600 (4 bytes), each split byte by byte.
    for (std::string ch : {std::string("\xC3\xA9"), std::string("\xE2\x82\xAC"), std::string("\xF0\x9F\x98\x80")}) {
        CAPTURE(ch.size());
        TextStream ts({});
        std::string r;
        CHECK(ts.push("a" + ch.substr(0, 1), r) == -1);
        CHECK(r == "a");
        for (size_t i = 1; i + 1 < ch.size(); ++i) {
            CHECK(ts.push(ch.substr(i, 1), r) == -1);
            CHECK(r.empty());
        }
        CHECK(ts.push(ch.substr(ch.size() - 1) + "b", r) == -1);
        CHECK(r == ch + "b");
    }
}

TEST_CASE("text stream: bytes that cannot become a character are not held") {
    TextStream ts({});
    std::string r;
    CHECK(ts.push("\xFF", r) == -1);  // never valid UTF-8
    CHECK(r == "\xFF");
    CHECK(ts.push("\x80", r) == -1);  // a stray continuation byte
    CHECK(r == "\x80");
    CHECK(ts.push("\xC3", r) == -1);  // a lead byte: wait ...
    CHECK(r.empty());
    CHECK(ts.push("A", r) == -1);  // ... for a continuation that does not come
    CHECK(r == "\xC3" "A");
    CHECK(ts.push("\xE2\x82", r) == -1);  // incomplete at the end of generation: flushed as is
    CHECK(r.empty());
    CHECK(ts.flush() == "\xE2\x82");
}

TEST_CASE("text stream: a stop string spanning pieces is never released") {
    TextStream ts({"<end>"});
    std::string r;
    CHECK(ts.push("Hello <e", r) == -1);
    CHECK(r == "Hello ");  // "<e" could start "<end>": held
    CHECK(ts.held() == 2);
    CHECK(ts.push("n", r) == -1);
    CHECK(r.empty());
    CHECK(ts.push("d> and more", r) == 0);
    CHECK(r.empty());
    CHECK(ts.stopped());
    CHECK(ts.held() == 0);
}

TEST_CASE("text stream: a partial stop string that fails is released") {
    TextStream ts({"abc"});
    std::string r;
    CHECK(ts.push("xab", r) == -1);
    CHECK(r == "x");
    CHECK(ts.push("d", r) == -1);
    CHECK(r == "abd");
    // Overlap: "aab" inside "aaab" (KMP must fall back, not restart).
    TextStream t2({"aab"});
    std::string all;
    int hit = -1;
    for (char c : std::string("aaab")) {
        hit = t2.push(std::string(1, c), r);
        all += r;
        if (hit >= 0) break;
    }
    CHECK(hit == 0);
    CHECK(all == "a");
}

TEST_CASE("text stream: the first occurrence to end wins, the longest among equal ends") {
    CHECK(feed({"bc", "abcd"}, {"abcd"}).stop == 0);
    CHECK(feed({"bc", "abcd"}, {"abcd"}).text == "a");
    CHECK(feed({"b", "ab"}, {"xa", "b"}).stop == 1);
    CHECK(feed({"b", "ab"}, {"xa", "b"}).text == "x");
    // A stop string right at the start, and one split before a multi-byte character.
    CHECK(feed({"Once"}, {"On", "ce upon"}).text.empty());
    CHECK(feed({"\xC3\xA9t\xC3\xA9"}, {"l'\xC3", "\xA9t", "\xC3", "\xA9 x"}).text == "l'");
}

TEST_CASE("text stream: random texts, stop strings and splits agree with the oracle") {
    const uint32_t seed = kvtest::fresh_seed();
    CAPTURE(seed);
    std::mt19937 rng(seed);
    // An alphabet that makes partial matches and multi-byte characters frequent.
    const std::vector<std::string> atoms = {"a", "b", "a", "b", "c", " ", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xFF"};
    auto random_string = [&](size_t lo, size_t hi) {
        std::string s;
        size_t n = lo + rng() % (hi - lo + 1);
        for (size_t i = 0; i < n; ++i) s += atoms[rng() % atoms.size()];
        return s;
    };
    size_t stopped = 0, runs = 3000;
    for (size_t run = 0; run < runs; ++run) {
        std::string text = random_string(0, 40);
        std::vector<std::string> stops;
        size_t n_stops = rng() % 4;
        for (size_t i = 0; i < n_stops; ++i) {
            // Half of them taken from the text itself (so they do occur), half random.
            if (!text.empty() && rng() % 2) {
                size_t a = rng() % text.size(), len = 1 + rng() % std::min<size_t>(6, text.size() - a);
                stops.push_back(text.substr(a, len));
            } else {
                stops.push_back(random_string(1, 4));
            }
        }
        // A random split into pieces (some empty), byte-wise: characters are cut anywhere.
        std::vector<std::string> pieces;
        for (size_t at = 0; at < text.size();) {
            size_t len = std::min<size_t>(rng() % 5, text.size() - at);
            pieces.push_back(text.substr(at, len));
            at += len;
        }
        Fed want = oracle(stops, text);
        Fed got = feed(stops, pieces);
        CAPTURE(text);
        REQUIRE(got.stop == want.stop);
        REQUIRE(got.text == want.text);
        stopped += got.stop >= 0;
        // No release but the last (a flush) ends inside a character of valid text.
        for (size_t i = 0; i + 1 < got.releases.size(); ++i) CHECK_FALSE(ends_mid_character(got.releases[i]));
    }
    // Coverage: both outcomes happen often.
    CHECK(stopped > runs / 5);
    CHECK(stopped < runs * 4 / 5);
}
