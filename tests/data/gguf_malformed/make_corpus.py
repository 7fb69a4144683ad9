#!/usr/bin/env python3
"""Regenerates the GGUF regression corpus in this directory (python3, no dependencies).

Each file is named <expect>-<what>.gguf with <expect> one of ok, bad_model, unsupported;
tests/model/test_gguf.cpp checks every file gets that outcome, and tests/fuzz/run_fuzz.sh seeds
the fuzzer with them. Add a file by hand (same naming) whenever the fuzzer finds something.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack('<Q', len(b)) + b


def kv(key, t, payload):
    return s(key) + struct.pack('<I', t) + payload


def tinfo(name, ne, ggml_type, offset):
    return s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', d) for d in ne) + \
        struct.pack('<IQ', ggml_type, offset)


def pad(b, a=32):
    return b + b'\0' * ((-len(b)) % a)


def gguf(kvs, infos, data=b'', version=3, n_kv=None, n_t=None, align=32, magic=b'GGUF'):
    head = magic + struct.pack('<IQQ', version, len(infos) if n_t is None else n_t,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b''.join(kvs) + b''.join(infos)
    if infos:
        body = pad(body, align) + data
    return body


def arr(t, elems_payload, n):
    return struct.pack('<IQ', t, n) + elems_payload


ARCH = kv('general.architecture', STR, s('test'))
T_A = tinfo('t.a', [8, 2], 0, 0)          # f32, 64 bytes
T_B = tinfo('t.b', [32, 1], 2, 64)        # q4_0, 18 bytes
DATA = pad(bytes(range(64)), 32) + pad(b'\x00\x3c' + bytes(16), 32)


def valid():
    return gguf([ARCH, kv('test.n', U32, struct.pack('<I', 7))], [T_A, T_B], DATA)


def files():
    v = valid()
    out = {}
    out['ok-minimal'] = gguf([], [])
    out['ok-two-tensors'] = v
    out['ok-v2'] = gguf([ARCH], [T_A, T_B], DATA, version=2)
    out['ok-nested-arrays'] = gguf([kv('a', ARR, arr(ARR, arr(STR, s('x') + s(''), 2) + arr(U8, b'', 0), 2))], [])
    out['ok-unsupported-type-iq4_nl'] = gguf([ARCH], [T_A, tinfo('t.b', [32, 1], 20, 64)], DATA)
    out['ok-alignment-64'] = gguf([kv('general.alignment', U32, struct.pack('<I', 64))],
                                  [tinfo('t', [4], 0, 0)], b'\0' * 16, align=64)
    out['ok-zero-elements'] = gguf([], [tinfo('t', [0, 3], 0, 0)], b'')
    out['bad_model-empty'] = b''
    out['bad_model-magic-only'] = b'GGUF'
    out['bad_model-bad-magic'] = b'GGML' + v[4:]
    out['bad_model-truncated-header'] = v[:20]
    out['bad_model-truncated-key'] = gguf([struct.pack('<Q', 40) + b'general.arch' + b'\0' * 5], [], n_kv=1)
    out['bad_model-truncated-tensor-info'] = v[:len(v) - len(DATA) - 20]
    out['bad_model-truncated-data'] = v[:len(v) - 40]
    out['bad_model-version-0'] = gguf([ARCH], [], version=0)
    out['unsupported-version-1'] = gguf([ARCH], [], version=1)
    out['unsupported-version-4'] = gguf([ARCH], [], version=4)
    out['unsupported-big-endian'] = b'GGUF' + struct.pack('>IQQ', 3, 0, 0)
    out['bad_model-n-kv-huge'] = gguf([ARCH], [], n_kv=2**64 - 1)
    out['bad_model-n-tensors-huge'] = gguf([ARCH], [], n_t=2**62)
    out['bad_model-key-length-huge'] = gguf([struct.pack('<Q', 2**63) + b'x' * 20], [], n_kv=1)
    out['bad_model-string-length-huge'] = gguf([kv('k', STR, struct.pack('<Q', 2**64 - 2))], [])
    out['bad_model-value-type-13'] = gguf([kv('k', 13, b'\0' * 8)], [])
    out['bad_model-array-type-99'] = gguf([kv('k', ARR, arr(99, b'', 0))], [])
    out['bad_model-array-count-huge'] = gguf([kv('k', ARR, arr(U32, b'\0' * 8, 2**61))], [])
    out['bad_model-string-array-count-huge'] = gguf([kv('k', ARR, arr(STR, s('a'), 2**40))], [])
    out['bad_model-deep-nesting'] = gguf([kv('k', ARR, struct.pack('<IQ', ARR, 1) * 5000)], [])
    out['bad_model-duplicate-key'] = gguf([ARCH, ARCH], [])
    out['bad_model-duplicate-tensor'] = gguf([], [T_A, tinfo('t.a', [32, 1], 2, 64)], DATA)
    out['bad_model-n-dims-5'] = gguf([], [tinfo('t', [1, 1, 1, 1, 1], 0, 0)], b'\0' * 32)
    out['bad_model-ne-overflow'] = gguf([], [tinfo('t', [2**32, 2**32], 0, 0)], b'\0' * 32)
    out['bad_model-ne-negative'] = gguf([], [tinfo('t', [2**64 - 1], 0, 0)], b'\0' * 32)
    out['bad_model-partial-block'] = gguf([], [tinfo('t', [48], 2, 0)], b'\0' * 64)
    out['bad_model-unknown-type-4'] = gguf([], [tinfo('t', [32], 4, 0)], b'\0' * 64)
    out['bad_model-unknown-type-big'] = gguf([], [tinfo('t', [1], 0xFFFFFFFF, 0)], b'\0' * 32)
    out['bad_model-offset-misaligned'] = gguf([], [tinfo('t', [1], 0, 4)], b'\0' * 32)
    out['bad_model-offset-past-end'] = gguf([], [tinfo('t', [1], 0, 2**63)], b'\0' * 32)
    out['bad_model-data-past-end'] = gguf([], [tinfo('t', [1000], 0, 0)], b'\0' * 32)
    out['bad_model-overlap'] = gguf([], [tinfo('a', [16], 0, 0), tinfo('b', [16], 0, 32)], b'\0' * 96)
    out['bad_model-alignment-0'] = gguf([kv('general.alignment', U32, struct.pack('<I', 0))], [])
    out['bad_model-alignment-3'] = gguf([kv('general.alignment', U32, struct.pack('<I', 3))], [])
    out['bad_model-alignment-2pow25'] = gguf([kv('general.alignment', U32, struct.pack('<I', 2**25))], [])
    out['ok-alignment-2pow24-no-tensors'] = gguf([kv('general.alignment', U32, struct.pack('<I', 2**24))], [])
    out['bad_model-alignment-float'] = gguf([kv('general.alignment', F32, struct.pack('<f', 32))], [])
    out['bad_model-data-section-past-end'] = gguf([], [tinfo('t', [0], 0, 0)], b'')[:-1]
    return out


def main():
    for name, data in files().items():
        with open(os.path.join(HERE, name + '.gguf'), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
