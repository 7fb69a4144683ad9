# cmake -DNAME=<n> -DIN=<file.spv> -DOUT=<file.cpp> -P EmbedSpirv.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE ${OUT} "// Generated from ${IN}. Do not edit.\n#include <cstddef>\nnamespace kv::vk {\nextern const unsigned char kv_spv_${NAME}[];\nextern const size_t kv_spv_${NAME}_size;\nalignas(4) const unsigned char kv_spv_${NAME}[] = {\n${body}\n};\nconst size_t kv_spv_${NAME}_size = ${bytes};\n}  // namespace kv::vk\n")
