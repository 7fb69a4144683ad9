# Unicode property tables for the tokenizers (src/model/unicode*.cpp): generated at build time
# from the Unicode Character Database by src/model/gen_unicode_tables.py into
# ${KV_GENERATED_DIR}/unicode_tables.cpp, which the top-level CMakeLists.txt adds to kv_model_obj
# through KV_UNICODE_TABLES_SOURCES. Debian/Ubuntu: the `unicode-data` package (scripts/deps.sh).
# Needs KV_GENERATED_DIR (set by cmake/Shaders.cmake).

find_package(Python3 REQUIRED COMPONENTS Interpreter)

set(KV_UNICODE_DATA_DIR /usr/share/unicode CACHE PATH
    "Directory holding the Unicode Character Database (UnicodeData.txt, PropList.txt)")
set(_kv_ucd ${KV_UNICODE_DATA_DIR}/UnicodeData.txt)
set(_kv_proplist ${KV_UNICODE_DATA_DIR}/PropList.txt)
if(NOT EXISTS ${_kv_ucd})
  message(FATAL_ERROR "${_kv_ucd} not found: install the unicode-data package (scripts/deps.sh) "
                      "or set KV_UNICODE_DATA_DIR")
endif()

set(_kv_gen_script ${CMAKE_CURRENT_LIST_DIR}/../src/model/gen_unicode_tables.py)
get_filename_component(_kv_gen_script ${_kv_gen_script} ABSOLUTE)
set(_kv_gen_args --unicode-data ${_kv_ucd})
set(_kv_gen_deps ${_kv_gen_script} ${_kv_ucd})
if(EXISTS ${_kv_proplist})
  list(APPEND _kv_gen_args --prop-list ${_kv_proplist})
  list(APPEND _kv_gen_deps ${_kv_proplist})
endif()

set(KV_UNICODE_TABLES_SOURCES ${KV_GENERATED_DIR}/unicode_tables.cpp)
add_custom_command(
  OUTPUT ${KV_UNICODE_TABLES_SOURCES}
  COMMAND Python3::Interpreter ${_kv_gen_script} ${_kv_gen_args} -o ${KV_UNICODE_TABLES_SOURCES}
  DEPENDS ${_kv_gen_deps}
  COMMENT "Generating unicode_tables.cpp from ${KV_UNICODE_DATA_DIR}"
  VERBATIM)
