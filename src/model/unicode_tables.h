// Unicode property tables, generated at build time from the Unicode Character Database by
// src/model/gen_unicode_tables.py (cmake/UnicodeTables.cmake); the definitions live in
// ${KV_GENERATED_DIR}/unicode_tables.cpp. Use the lookups in model/unicode.h rather than these.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kv::model::unicode {

// Unicode General_Category. Cn (unassigned) is 0 so that a zero-initialised value means
// "no information".
enum class GeneralCategory : uint8_t {
    Cn = 0,
    Lu, Ll, Lt, Lm, Lo,      // letters
    Mn, Mc, Me,              // marks
    Nd, Nl, No,              // numbers
    Pc, Pd, Ps, Pe, Pi, Pf, Po,  // punctuation
    Sm, Sc, Sk, So,          // symbols
    Zs, Zl, Zp,              // separators
    Cc, Cf, Cs, Co,          // other
};

namespace tables {

struct CategoryRange {
    uint32_t first;  // inclusive
    uint32_t last;   // inclusive
    GeneralCategory category;
};

struct CodepointRange {
    uint32_t first;  // inclusive
    uint32_t last;   // inclusive
};

// Sorted by `first`, non-overlapping; codepoints in no range are Cn.
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;
// General_Category of U+0000..U+00FF.
extern const GeneralCategory kLatin1Category[256];
// The White_Space property, sorted, non-overlapping.
extern const CodepointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRangeCount;

}  // namespace tables
}  // namespace kv::model::unicode
