#include "model/unicode.h"

#include <algorithm>

namespace kv::model::unicode {

// ---- UTF-8 -------------------------------------------------------------------------------------

Decoded decode_utf8(const char* s, size_t n) {
    const auto* u = reinterpret_cast<const uint8_t*>(s);
    const Decoded bad{kReplacement, 1, false};
    if (n == 0) return bad;
    const uint8_t b0 = u[0];
    if (b0 < 0x80) return {b0, 1, true};
    size_t len;
    uint32_t cp, min;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        return bad;  // continuation byte or 0xF8..0xFF
    }
    if (n < len) return bad;
    for (size_t i = 1; i < len; ++i) {
        if ((u[i] & 0xC0) != 0x80) return bad;
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad;
    return {cp, static_cast<uint8_t>(len), true};
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacement;
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string to_utf8(uint32_t cp) {
    std::string s;
    append_utf8(s, cp);
    return s;
}

size_t utf8_complete_prefix(std::string_view s) {
    // Look back at most 3 bytes for the start of a sequence that runs past the end.
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto b = static_cast<uint8_t>(s[n - back]);
        if ((b & 0xC0) == 0x80) continue;  // continuation: keep looking for the lead byte
        size_t need = 0;
        if ((b & 0xE0) == 0xC0) need = 2;
        else if ((b & 0xF0) == 0xE0) need = 3;
        else if ((b & 0xF8) == 0xF0) need = 4;
        // An incomplete sequence (structurally) runs to the end: hold it back.
        return need > back ? n - back : n;
    }
    return n;
}

// ---- properties --------------------------------------------------------------------------------

GeneralCategory category(uint32_t cp) {
    if (cp < 256) return tables::kLatin1Category[cp];
    const tables::CategoryRange* begin = tables::kCategoryRanges;
    const tables::CategoryRange* end = begin + tables::kCategoryRangeCount;
    // First range whose `last` >= cp.
    const auto* it = std::lower_bound(begin, end, cp, [](const tables::CategoryRange& r, uint32_t c) {
        return r.last < c;
    });
    if (it != end && it->first <= cp) return it->category;
    return GeneralCategory::Cn;
}

bool is_whitespace(uint32_t cp) {
    const tables::CodepointRange* begin = tables::kWhitespaceRanges;
    const tables::CodepointRange* end = begin + tables::kWhitespaceRangeCount;
    const auto* it = std::lower_bound(begin, end, cp, [](const tables::CodepointRange& r, uint32_t c) {
        return r.last < c;
    });
    return it != end && it->first <= cp;
}

uint16_t flags(uint32_t cp) {
    using GC = GeneralCategory;
    uint16_t f = 0;
    switch (category(cp)) {
        case GC::Lu: case GC::Ll: case GC::Lt: case GC::Lm: case GC::Lo: f = kLetter; break;
        case GC::Mn: case GC::Mc: case GC::Me: f = kMark; break;
        case GC::Nd: case GC::Nl: case GC::No: f = kNumber; break;
        case GC::Pc: case GC::Pd: case GC::Ps: case GC::Pe: case GC::Pi: case GC::Pf: case GC::Po:
            f = kPunctuation;
            break;
        case GC::Sm: case GC::Sc: case GC::Sk: case GC::So: f = kSymbol; break;
        case GC::Zs: case GC::Zl: case GC::Zp: f = kSeparator; break;
        case GC::Cn: case GC::Cc: case GC::Cf: case GC::Cs: case GC::Co: f = kOther; break;
    }
    if (is_whitespace(cp)) f |= kWhitespace;
    return f;
}

// ---- GPT-2 byte-level mapping ------------------------------------------------------------------

namespace {

// Bytes that stand for themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF.
bool byte_is_printable(uint32_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteMap {
    uint32_t to_cp[256];
    int16_t from_cp[0x144];  // every mapped codepoint is below U+0144 (0x100 + 68)
    ByteMap() {
        std::fill(std::begin(from_cp), std::end(from_cp), int16_t(-1));
        uint32_t next = 0x100;
        for (uint32_t b = 0; b < 256; ++b) {
            to_cp[b] = byte_is_printable(b) ? b : next++;
            from_cp[to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace

uint32_t byte_to_cp(uint8_t b) { return byte_map().to_cp[b]; }

int cp_to_byte(uint32_t cp) {
    return cp < 0x144 ? byte_map().from_cp[cp] : -1;
}

void append_byte_level(std::string& out, const char* s, size_t n) {
    const ByteMap& m = byte_map();
    for (size_t i = 0; i < n; ++i) append_utf8(out, m.to_cp[static_cast<uint8_t>(s[i])]);
}

}  // namespace kv::model::unicode
