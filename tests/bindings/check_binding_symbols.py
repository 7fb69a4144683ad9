#!/usr/bin/env python3
"""Fails unless a binding declares exactly the C functions libkvulkan exports.

A binding is a second copy of the ABI: a new kv_* function without a binding, or a binding of a
function the library no longer exports, fails CI. Each binding says how its declarations look:

  check_binding_symbols.py --library build/libkvulkan.so --name python \
      --regex '^\\s*"(kv_\\w+)":' bindings/python/kvulkan/_native.py

--regex is applied per line with re.search; group 1 is the declared C name. Declarations found
more than once count once. --self-test checks the checker on made-up inputs.
"""
import argparse
import re
import subprocess
import sys


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWw" and parts[2].startswith("kv_"):
            names.add(parts[2])
    return names


def declared(regex, files):
    pattern = re.compile(regex)
    names = set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = pattern.search(line)
                if m:
                    names.add(m.group(1))
    return names


def compare(name, exports, decls):
    missing = sorted(exports - decls)
    extra = sorted(decls - exports)
    for s in missing:
        print(f"{name}: kv function exported by the library but not bound: {s}")
    for s in extra:
        print(f"{name}: bound but not exported by the library: {s}")
    return not missing and not extra


def self_test():
    ok = compare("t", {"kv_a", "kv_b"}, {"kv_a", "kv_b"})
    ok = ok and not compare("t", {"kv_a", "kv_b"}, {"kv_a"})
    ok = ok and not compare("t", {"kv_a"}, {"kv_a", "kv_c"})
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write('    "kv_a": (x, []),\n# "kv_b" in a comment\n    "kv_a": again\n')
    ok = ok and declared(r'^\s*"(kv_\w+)":', [f.name]) == {"kv_a"}
    print("self-test", "passed" if ok else "FAILED")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--library")
    ap.add_argument("--name")
    ap.add_argument("--regex")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.self_test:
        return 0 if self_test() else 1
    if not (a.library and a.name and a.regex and a.files):
        ap.error("--library, --name, --regex and at least one file are required")
    exports = exported(a.library)
    if len(exports) < 5:
        print(f"{a.library} exports only {len(exports)} kv_* functions: not a kvulkan library?")
        return 1
    decls = declared(a.regex, a.files)
    if not compare(a.name, exports, decls):
        return 1
    print(f"{a.name}: all {len(exports)} exported kv_* functions are bound, and nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
