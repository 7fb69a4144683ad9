#include "model/text_stream.h"

#include <algorithm>
#include <utility>

#include "model/unicode.h"

namespace kv::model {

TextStream::TextStream(std::vector<std::string> stop_strings) {
    for (auto& s : stop_strings) {
        Stop st;
        st.text = std::move(s);
        st.fail.assign(st.text.size(), 0);
        // Standard KMP prefix function over bytes.
        for (size_t i = 1, k = 0; i < st.text.size(); ++i) {
            while (k > 0 && st.text[i] != st.text[k]) k = st.fail[k - 1];
            if (st.text[i] == st.text[k]) ++k;
            st.fail[i] = uint32_t(k);
        }
        stops_.push_back(std::move(st));
    }
}

int TextStream::push(std::string_view bytes, std::string& ready) {
    ready.clear();
    if (stopped_) return -1;
    for (char c : bytes) {
        pending_.push_back(c);
        int hit = -1;
        for (size_t i = 0; i < stops_.size(); ++i) {
            Stop& st = stops_[i];
            if (st.text.empty()) continue;
            uint32_t m = st.matched;
            while (m > 0 && st.text[m] != c) m = st.fail[m - 1];
            if (st.text[m] == c) ++m;
            st.matched = m;
            if (m == st.text.size() && (hit < 0 || st.text.size() > stops_[size_t(hit)].text.size()))
                hit = int(i);
        }
        if (hit >= 0) {
            ready.assign(pending_, 0, pending_.size() - stops_[size_t(hit)].text.size());
            pending_.clear();
            stopped_ = true;
            return hit;
        }
    }
    uint32_t hold = 0;
    for (const Stop& st : stops_) hold = std::max(hold, st.matched);
    size_t end = pending_.size() - std::min<size_t>(hold, pending_.size());
    end = unicode::utf8_complete_prefix(std::string_view(pending_).substr(0, end));
    ready.assign(pending_, 0, end);
    pending_.erase(0, end);
    return -1;
}

std::string TextStream::flush() {
    std::string out;
    out.swap(pending_);
    for (Stop& st : stops_) st.matched = 0;
    return out;
}

}  // namespace kv::model
