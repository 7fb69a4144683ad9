#!/usr/bin/python3
"""Float64 logits of a GGUF transformer, written from the published model definitions (Hugging
Face transformers' Llama, Qwen2, Qwen3, Gemma 2, Gemma 3 and Phi-3 modeling code and its rope
scalings: linear, LongRoPE, YaRN), independently of
kvulkan's C++ (src/reference/, src/model/): its own GGUF reader and dequantizers, no KV cache (the
whole sequence at once, with a causal and sliding-window mask), every value float64.

    arch_oracle.py MODEL.gguf IDS OUT.f32 [N_CTX]
    arch_oracle.py --self-check SHARED_DIR


IDS: comma-separated token ids. OUT: the logits of every position, float32 little-endian,
[n_ids][n_vocab]. N_CTX: the context size of the session being checked (LongRoPE takes its long
factors when it exceeds the original context, as llama.cpp does; default: the model's
context_length). --self-check holds the oracle to the float64-exact logits of another
implementation in SHARED_DIR/reference (llama and qwen2 fixtures; exit 77 when absent). Needs
numpy only (Debian: python3-numpy).

GGUF conventions it follows (what llama.cpp's converter writes):
  - matrices are stored [out][in] (ggml ne = {in, out});
  - llama's Q and K rows are permuted so that rope pairs adjacent dims; the others pair halves
    (Hugging Face's rotate_half);
  - Gemma's RMS norm is x * (1 + w) and the file stores 1 + w: the definition below takes
    w = stored - 1 and adds the 1 back;
  - Gemma's query_pre_attn_scalar is not in the file: it is head_dim, except for the 27B
    configs (gemma-2-27b: 144, gemma-3-27b: 168 = hidden_size / num_attention_heads);
  - Gemma 2 alternates sliding (even layers) and global layers; Gemma 3 has 5 sliding layers
    then a global one, the sliding ones with rope base 10000 and no rope scaling;
  - Phi-3 may fuse Q, K and V (attn_qkv: rows q, then k, then v) and gate and up (ffn_up: rows
    gate, then up); LongRoPE's factor tables are rope_factors_short/long.weight, its attention
    factor rope.scaling.attn_factor (1 when absent);
  - YaRN (rope.scaling.type yarn): factor, original_context_length, attention factor from
    rope.scaling.attn_factor or else 0.1 ln(factor) + 1 (Hugging Face's rule), beta_fast 32,
    beta_slow 1 (or rope.scaling.yarn_beta_fast/slow).
"""
import math
import struct
import sys

try:
    import numpy as np
except ImportError:  # the tests skip (77) without it; scripts/deps.sh installs python3-numpy
    print("SKIPPED: numpy is not installed (python3-numpy)")
    sys.exit(77)

# ---- GGUF reader --------------------------------------------------------------------------

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
           11: "<q", 12: "<d"}


class Reader:
    def __init__(self, data):
        self.d = data
        self.o = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.d, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        s = self.d[self.o:self.o + n].decode("utf-8")
        self.o += n
        return s

    def value(self, t):
        if t in _SCALAR:
            return self.take(_SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et = self.take("<I")
            n = self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError("unknown GGUF value type %d" % t)


def fp16(raw):
    return np.frombuffer(raw, dtype="<f2").astype(np.float64)


def dequantize(ggml_type, raw, n):
    if ggml_type == 0:  # F32
        return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float64)
    if ggml_type == 1:  # F16
        return np.frombuffer(raw, dtype="<f2", count=n).astype(np.float64)
    if ggml_type == 8:  # Q8_0: blocks of fp16 d + 32 int8; x = d * q
        b = np.frombuffer(raw, dtype=np.uint8, count=n // 32 * 34).reshape(-1, 34)
        d = fp16(b[:, :2].copy().tobytes())
        q = b[:, 2:].copy().view(np.int8).astype(np.float64)
        return (q * d[:, None]).reshape(-1)
    if ggml_type == 2:  # Q4_0: fp16 d + 16 bytes; element j < 16 low nibble of byte j, else high
        b = np.frombuffer(raw, dtype=np.uint8, count=n // 32 * 18).reshape(-1, 18)
        d = fp16(b[:, :2].copy().tobytes())
        qs = b[:, 2:]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float64) - 8.0
        return (q * d[:, None]).reshape(-1)
    raise ValueError("weight type %d is not supported by the oracle" % ggml_type)


_TYPE_BYTES = {0: (1, 4), 1: (1, 2), 8: (32, 34), 2: (32, 18)}  # type -> (block, bytes per block)


def read_gguf(path):
    data = open(path, "rb").read()
    r = Reader(data)
    if r.take("<I") != 0x46554747:
        raise ValueError("not a GGUF file")
    version = r.take("<I")
    if version not in (2, 3):
        raise ValueError("GGUF version %d" % version)
    n_tensors = r.take("<Q")
    n_kv = r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        k = r.string()
        meta[k] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        t = r.take("<I")
        off = r.take("<Q")
        infos.append((name, ne, t, off))
    align = meta.get("general.alignment", 32)
    base = (r.o + align - 1) // align * align
    tensors = {}
    for name, ne, t, off in infos:
        n = int(np.prod(ne))
        block, nbytes = _TYPE_BYTES[t]
        raw = data[base + off: base + off + n // block * nbytes]
        v = dequantize(t, raw, n)
        # numpy shape: reversed ne (ne[0] contiguous): a matrix [out][in].
        tensors[name] = v.reshape(list(reversed(ne))) if len(ne) > 1 else v
    return meta, tensors


# ---- the model definitions ----------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, pos, n_rot, inv_freq, mscale, halves):
    """x: [n][heads][head_dim]; the first n_rot dims rotate by pos * inv_freq[i], cos and sin
    times mscale."""
    half = n_rot // 2
    ang = pos.astype(np.float64)[:, None] * inv_freq[None, :]  # [n][half]
    c = np.cos(ang)[:, None, :] * mscale
    s = np.sin(ang)[:, None, :] * mscale
    out = x.copy()
    if halves:  # rotate_half: (x[i], x[i + half])
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * c - b * s
        out[..., half:n_rot] = b * c + a * s
    else:  # adjacent pairs (x[2i], x[2i+1])
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * c - b * s
        out[..., 1:n_rot:2] = b * c + a * s
    return out


class Config:
    def __init__(self, meta, tensors):
        a = meta["general.architecture"]
        if a not in ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"):
            raise ValueError("architecture %s not in the oracle" % a)
        self.arch = a
        g = lambda k, d=None: meta.get(a + "." + k, d)
        self.dim = g("embedding_length")
        self.n_layer = g("block_count")
        self.n_head = g("attention.head_count")
        self.n_head_kv = g("attention.head_count_kv", self.n_head)
        self.head_dim = g("attention.key_length", self.dim // self.n_head)
        self.n_rot = g("rope.dimension_count", self.head_dim)
        self.eps = g("attention.layer_norm_rms_epsilon")
        self.base = g("rope.freq_base", 10000.0)
        self.scaling = g("rope.scaling.type", "linear")
        self.factor = g("rope.scaling.factor", 0.0)
        self.scale = 1.0 / self.factor if self.scaling == "linear" and self.factor else 1.0
        self.n_ctx_orig = g("rope.scaling.original_context_length", g("context_length"))
        self.attn_factor = g("rope.scaling.attn_factor")
        self.beta_fast = g("rope.scaling.yarn_beta_fast", 32.0)
        self.beta_slow = g("rope.scaling.yarn_beta_slow", 1.0)
        self.gemma = a in ("gemma2", "gemma3")
        self.qk_norm = a in ("qwen3", "gemma3")
        self.halves = a != "llama"
        # query_pre_attn_scalar of the published configs (see the module's comment).
        qpas = self.head_dim
        if (a, self.n_layer, self.dim, self.n_head) in (("gemma2", 46, 4608, 32), ("gemma3", 62, 5376, 32)):
            qpas = self.dim // self.n_head
        self.query_scale = qpas ** -0.5
        self.attn_cap = g("attn_logit_softcapping") if a == "gemma2" else None
        self.final_cap = g("final_logit_softcapping") if self.gemma else None
        sw = g("attention.sliding_window", 0)
        self.window = []
        for l in range(self.n_layer):
            if isinstance(sw, list):
                self.window.append(sw[l])
            elif a == "gemma2":
                self.window.append(sw if l % 2 == 0 else 0)
            elif a == "gemma3":
                self.window.append(sw if (l + 1) % 6 != 0 else 0)
            else:
                self.window.append(sw)
        self.vocab = tensors["token_embd.weight"].shape[0]


def rope_freqs(cfg, T, base, scale, n_ctx):
    """(inv_freq[n_rot / 2], mscale) of the model's rope scaling."""
    d = cfg.n_rot
    pos_freqs = base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if "rope_freqs.weight" in T:  # Llama 3.1 factors
        return 1.0 / (pos_freqs * T["rope_freqs.weight"]) * scale, 1.0
    if "rope_factors_long.weight" in T:  # LongRoPE
        ext = T["rope_factors_long.weight"] if n_ctx > cfg.n_ctx_orig else T["rope_factors_short.weight"]
        return 1.0 / (ext * pos_freqs), (cfg.attn_factor if cfg.attn_factor is not None else 1.0)
    if cfg.scaling == "yarn" and cfg.factor and cfg.factor != 1.0:
        f = cfg.factor
        def corr_dim(rot):
            return d * math.log(cfg.n_ctx_orig / (rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr_dim(cfg.beta_fast)), 0)
        high = min(math.ceil(corr_dim(cfg.beta_slow)), d - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(d // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
        extrap = 1.0 - ramp  # 1: the original frequency, 0: interpolated by the factor
        inv = (1.0 / (f * pos_freqs)) * (1.0 - extrap) + (1.0 / pos_freqs) * extrap
        mscale = cfg.attn_factor if cfg.attn_factor is not None else 0.1 * math.log(f) + 1.0
        return inv, mscale
    return scale / pos_freqs, 1.0


def norm_weight(cfg, w):
    # Gemma: the definition's weight is w_def = stored - 1, applied as (1 + w_def).
    return 1.0 + (w - 1.0) if cfg.gemma else w


def forward(meta, T, ids, n_ctx=None):
    cfg = Config(meta, T)
    if n_ctx is None:
        n_ctx = meta[cfg.arch + ".context_length"]
    n = len(ids)
    pos = np.arange(n)
    x = T["token_embd.weight"][ids]  # [n][dim]
    if cfg.gemma:
        x = x * np.sqrt(float(cfg.dim))
    hd, H, HK = cfg.head_dim, cfg.n_head, cfg.n_head_kv
    for l in range(cfg.n_layer):
        p = "blk.%d." % l
        nw = lambda name: norm_weight(cfg, T[p + name])
        h = rms_norm(x, nw("attn_norm.weight"), cfg.eps)
        if p + "attn_qkv.weight" in T:  # phi3: fused rows q, k, v
            qkv = h @ T[p + "attn_qkv.weight"].T
            q, k, v = np.split(qkv, [H * hd, H * hd + HK * hd], axis=1)
        else:
            q = h @ T[p + "attn_q.weight"].T
            k = h @ T[p + "attn_k.weight"].T
            v = h @ T[p + "attn_v.weight"].T
        if p + "attn_q.bias" in T:
            q = q + T[p + "attn_q.bias"]
            k = k + T[p + "attn_k.bias"]
            v = v + T[p + "attn_v.bias"]
        q = q.reshape(n, H, hd)
        k = k.reshape(n, HK, hd)
        v = v.reshape(n, HK, hd)
        if cfg.qk_norm:
            q = rms_norm(q, nw("attn_q_norm.weight"), cfg.eps)
            k = rms_norm(k, nw("attn_k_norm.weight"), cfg.eps)
        base, scale = cfg.base, cfg.scale
        if cfg.arch == "gemma3" and cfg.window[l]:
            base, scale = 10000.0, 1.0
        inv_freq, mscale = rope_freqs(cfg, T, base, scale, n_ctx)
        q = rope(q, pos, cfg.n_rot, inv_freq, mscale, cfg.halves)
        k = rope(k, pos, cfg.n_rot, inv_freq, mscale, cfg.halves)
        # mask[i][j]: query i sees key j
        mask = pos[None, :] <= pos[:, None]
        if cfg.window[l]:
            mask &= pos[None, :] > pos[:, None] - cfg.window[l]
        out = np.empty((n, H, hd))
        for hh in range(H):
            kv = hh // (H // HK)
            s = (q[:, hh, :] @ k[:, kv, :].T) * cfg.query_scale
            if cfg.attn_cap:
                s = cfg.attn_cap * np.tanh(s / cfg.attn_cap)
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, hh, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, kv, :]
        o = out.reshape(n, H * hd) @ T[p + "attn_output.weight"].T
        if p + "attn_output.bias" in T:
            o = o + T[p + "attn_output.bias"]
        if cfg.gemma:
            o = rms_norm(o, nw("post_attention_norm.weight"), cfg.eps)
        x = x + o
        h = rms_norm(x, nw("ffn_norm.weight"), cfg.eps)
        if p + "ffn_gate.weight" in T:
            gate = h @ T[p + "ffn_gate.weight"].T
            up = h @ T[p + "ffn_up.weight"].T
        else:  # phi3: fused rows gate, then up
            gate, up = np.split(h @ T[p + "ffn_up.weight"].T, 2, axis=1)
        act = gelu_tanh(gate) if cfg.gemma else silu(gate)
        d = (act * up) @ T[p + "ffn_down.weight"].T
        if cfg.gemma:
            d = rms_norm(d, nw("post_ffw_norm.weight"), cfg.eps)
        x = x + d
    h = rms_norm(x, norm_weight(cfg, T["output_norm.weight"]), cfg.eps)
    out_w = T.get("output.weight", T["token_embd.weight"])
    logits = h @ out_w.T
    if cfg.final_cap:
        logits = cfg.final_cap * np.tanh(logits / cfg.final_cap)
    return logits


def self_check(shared):
    import json
    import os
    stems = ["llama-gqa.q8_0.short", "llama-gqa.f16.long", "qwen2-bias.f16.short"]
    if not all(os.path.exists("%s/reference/%s.json" % (shared, s)) for s in stems):
        print("SKIPPED: %s/reference is absent" % shared)
        return 77
    worst = 0.0
    for stem in stems:
        j = json.load(open("%s/reference/%s.json" % (shared, stem)))
        ids = j["prompt_ids"] + j["generated_ids"][:3]
        meta, tensors = read_gguf("%s/models/fixtures/%s" % (shared, j["model"]))
        got = forward(meta, tensors, ids)[len(j["prompt_ids"]) - 1:].astype(np.float32).astype(np.float64)
        exact = np.fromfile("%s/reference/%s.exact.logits.f32" % (shared, stem), dtype="<f4")
        exact = exact.reshape(got.shape).astype(np.float64)
        err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
        print("%s: rel L2 vs the exact logits %.3g" % (stem, err))
        worst = max(worst, err)
    return 0 if worst <= 1e-6 else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "--self-check":
        return self_check(argv[2])
    if len(argv) not in (4, 5):
        sys.stderr.write(__doc__)
        return 2
    meta, tensors = read_gguf(argv[1])
    ids = [int(t) for t in argv[2].split(",") if t]
    logits = forward(meta, tensors, ids, int(argv[4]) if len(argv) == 5 else None)
    logits.astype("<f4").tofile(argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
