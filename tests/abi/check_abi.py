#!/usr/bin/env python3
"""ABI guard: compares a built libkvulkan.so with the committed baseline of the 0.1.0 library.

  check_abi.py LIB REPO_ROOT             exit 0: compatible with 0.1.0 callers; 1: not (report printed)
  check_abi.py --self-test REPO_ROOT     shows that the check fails on incompatible changes

The baseline (tests/abi/kvulkan-0.1.abi) was written by libabigail's abidw from the 0.1.0 library,
with the options in ABIDW_ARGS. abidiff lists every change of the exported interface; this script
then applies the policy of the header's preamble to that list:
  allowed   new kv_* functions; new enumerators; a size-versioned struct (one that begins with
            struct_size) growing by fields inserted at or past its old end;
  rejected  everything else: a removed or changed function, a field moved, resized, retyped or
            removed, a struct shrunk, an enumerator's value changed, a struct without struct_size
            (kv_memory_heap_info) growing.
Exit 77 (ctest: skipped) when abidw/abidiff are not installed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = os.path.join(HERE, "kvulkan-0.1.abi")
OPAQUE = os.path.join(HERE, "opaque.suppr")
SIZE_VERSIONED = {
    "kv_runtime_desc", "kv_device_info", "kv_bandwidth_result", "kv_model_desc", "kv_model_info",
    "kv_sampler_desc", "kv_session_desc", "kv_session_stats", "kv_cache_stats",
}
# The exported functions and every type they reach, the opaque handles dropped (opaque.suppr).
# No --headers-dir/--drop-private-types: those match the header by the path the compiler
# recorded, and a mismatch silently keeps the structs as declarations only, without members.
ABIDW_ARGS = ["--exported-interfaces-only", "--no-corpus-path", "--no-comp-dir-path", "--short-locs",
              "--type-id-style", "hash"]


def abidw(lib, out):
    subprocess.run(["abidw", "--suppressions", OPAQUE, *ABIDW_ARGS, "--out-file", out, lib], check=True)
    corpus = open(out).read()
    # A baseline or corpus without the public structs' members would compare nothing: refuse it.
    for name in ("kv_session_desc", "kv_device_info"):
        m = re.search(r"<class-decl name='%s'[^>]*>" % name, corpus)
        if not m or "is-declaration-only='yes'" in m.group(0):
            raise RuntimeError("%s: struct %s has no definition in the ABI corpus (no debug info?)" % (lib, name))


def abidiff(old, new):
    r = subprocess.run(["abidiff", "--leaf-changes-only", "--suppressions", OPAQUE, old, new],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode & 3:  # 1: abidiff error, 2: usage error
        raise RuntimeError("abidiff failed (exit %d):\n%s" % (r.returncode, r.stdout))
    return r.stdout


def judge(report):
    """The policy violations in an `abidiff --leaf-changes-only` report ([] = compatible)."""
    problems = []
    if not report.strip():
        return problems  # abidiff prints nothing when nothing changed
    m = re.search(r"functions summary: (\d+) Removed, (\d+) Changed", report)
    if not m:
        return ["cannot read abidiff's function summary:\n" + report]
    if int(m.group(1)):
        problems.append("%s function(s) removed" % m.group(1))
    if int(m.group(2)):
        problems.append("%s function(s) changed" % m.group(2))
    m = re.search(r"variables summary: (\d+) Removed, (\d+) Changed", report)
    if m and (int(m.group(1)) or int(m.group(2))):
        problems.append("exported variables removed or changed")
    # Changed types: a header line "'struct NAME at FILE:L:C' changed:" and its indented body.
    for block in re.finditer(r"^'(struct|enum|union|typedef|class) (\w+)[^']*' changed:\n((?:  .*\n?)*)",
                             report, re.M):
        kind, name, body = block.group(1), block.group(2), block.group(3)
        lines = [l.strip() for l in body.splitlines() if l.strip()]
        if kind == "enum":
            bad = [l for l in lines if not (l.startswith("type size hasn't changed") or
                                            re.match(r"\d+ enumerator insertions?:", l) or
                                            re.match(r"'\w+::\w+' value '", l))]
            if bad:
                problems.append("enum %s: %s" % (name, "; ".join(bad)))
            continue
        if kind != "struct" or name not in SIZE_VERSIONED:
            problems.append("%s %s changed (it may never change): %s" % (kind, name, "; ".join(lines)))
            continue
        size = re.match(r"type size changed from (\d+) to (\d+)", lines[0]) if lines else None
        if not size or int(size.group(2)) < int(size.group(1)):
            problems.append("struct %s: %s" % (name, "; ".join(lines)))
            continue
        old_end = int(size.group(1))
        for l in lines[1:]:
            if re.match(r"\d+ data member insertions?:", l):
                continue
            ins = re.match(r"'[^']*', at offset (\d+) \(in bits\)", l)
            if ins and int(ins.group(1)) >= old_end:
                continue
            problems.append("struct %s: %s" % (name, l))
    return problems


def check(lib, root):
    with tempfile.TemporaryDirectory() as tmp:
        cur = os.path.join(tmp, "current.abi")
        abidw(lib, cur)
        report = abidiff(BASELINE, cur)
    problems = judge(report)
    print(report.strip() or "abidiff: no change")
    if problems:
        print("\nINCOMPATIBLE with the 0.1.0 ABI:")
        for p in problems:
            print("  - " + p)
        return 1
    print("\ncompatible with the 0.1.0 ABI (baseline %s)" % os.path.relpath(BASELINE, root))
    return 0


# ---- self-test: small libraries built from mutated copies of the frozen 0.1 header ----------------
SHIM = r"""
#include <kvulkan/kvulkan.h>
kv_status kv_session_create(kv_model* m, const kv_session_desc* d, kv_session** o) { (void)m; (void)o; return (kv_status)d->n_ctx; }
kv_status kv_runtime_get_info(const kv_runtime* r, kv_device_info* i) { (void)r; return (kv_status)i->index; }
kv_status kv_model_get_cache_stats(kv_model* m, kv_cache_type t, kv_cache_stats* s) { (void)m; return (kv_status)t + (kv_status)s->page_size; }
#ifndef DROP_FN
kv_status kv_prefill(kv_session* s, const kv_token* t, uint32_t n) { (void)s; (void)t; return (kv_status)n; }
#endif
#ifdef ADD_FN
kv_status kv_added_function(kv_session* s) { (void)s; return 0; }
#endif
"""
MUTATIONS = [  # (name, compatible?, (old, new) header edit or None, extra -D flags)
    ("unchanged", True, None, []),
    ("field appended to kv_session_desc", True,
     ("    uint32_t sinks;\n} kv_session_desc;", "    uint32_t sinks;\n    uint64_t added;\n} kv_session_desc;"), []),
    ("enumerator appended", True, ("    KV_CACHE_Q4_0 = 3,", "    KV_CACHE_Q4_0 = 3,\n    KV_CACHE_ADDED = 4,"), []),
    ("function added", True, None, ["-DADD_FN"]),
    ("fields reordered", False,
     ("    uint32_t window;\n    uint32_t sinks;", "    uint32_t sinks;\n    uint32_t window;"), []),
    ("last field removed (struct shrunk)", False, ("    uint64_t evictions;          /* cached pages dropped to make room */\n", ""), []),
    ("field resized", False, ("    uint32_t n_batch;    ", "    uint64_t n_batch;    "), []),
    ("field inserted in the middle", False, ("    uint32_t n_ctx;      ", "    uint32_t added;\n    uint32_t n_ctx;      "), []),
    ("array element struct grown", False,
     ("    uint32_t reserved;\n} kv_memory_heap_info;", "    uint32_t reserved;\n    uint32_t added;\n} kv_memory_heap_info;"), []),
    ("enumerator value changed", False, ("    KV_CACHE_F32 = 1,", "    KV_CACHE_F32 = 7,"), []),
    ("function removed", False, None, ["-DDROP_FN"]),
]


def self_test(root):
    cc = shutil.which("cc") or shutil.which("gcc")
    frozen = os.path.join(HERE, "v0.1", "kvulkan", "kvulkan.h")
    text = open(frozen).read()
    wrong = 0
    with tempfile.TemporaryDirectory() as tmp:
        def build(tag, header_text, flags):
            inc = os.path.join(tmp, tag, "inc")
            os.makedirs(os.path.join(inc, "kvulkan"))
            header = os.path.join(inc, "kvulkan", "kvulkan.h")
            open(header, "w").write(header_text)
            src = os.path.join(tmp, tag, "shim.c")
            open(src, "w").write(SHIM)
            lib = os.path.join(tmp, tag, "libkvulkan.so")
            subprocess.run([cc, "-g", "-shared", "-fPIC", "-I" + inc, *flags, src, "-o", lib,
                            "-Wl,-soname,libkvulkan.so.0"], check=True)
            out = os.path.join(tmp, tag, "x.abi")
            abidw(lib, out)
            return out

        base = build("base", text, [])
        for i, (name, compatible, edit, flags) in enumerate(MUTATIONS):
            t = text
            if edit:
                assert edit[0] in t, "self-test edit no longer matches the frozen header: " + name
                t = t.replace(edit[0], edit[1], 1)
            problems = judge(abidiff(base, build("m%d" % i, t, flags)))
            ok = (not problems) == compatible
            wrong += not ok
            print("%-4s %-40s expected %-12s got %s" % ("ok" if ok else "FAIL", name,
                  "compatible" if compatible else "incompatible",
                  "compatible" if not problems else "incompatible: " + problems[0].splitlines()[0]))
    print("self-test: %d of %d verdicts right" % (len(MUTATIONS) - wrong, len(MUTATIONS)))
    return 1 if wrong else 0


def main(argv):
    if not (shutil.which("abidw") and shutil.which("abidiff")):
        print("SKIPPED: abidw/abidiff not installed (Debian: abigail-tools; scripts/deps.sh installs it)")
        return 77
    if len(argv) == 3 and argv[1] == "--self-test":
        return self_test(argv[2])
    if len(argv) != 3:
        print(__doc__)
        return 2
    return check(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
