#!/usr/bin/env python3
"""Trains the demo model of ./scripts/demo.sh: a small llama-architecture model on the King James
Bible, with a SentencePiece-style ("llama") BPE vocabulary trained here too, and exports it for
kvulkan's own GGUF writer (kv-make-model --import).

Everything is deterministic on one CPU thread (seeded; torch.set_num_threads(1)). See README.md in
this folder for the exact command, the time it took and the loss it reached.

Steps:
  1. Corpus: `bible -l9999 gen1:1-rev22:21` (Debian's bible-kjv + bible-kjv-text), one verse a line,
     verse numbers and chapter headings dropped.
  2. Vocabulary: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> (byte fallback; "\n" is <0x0A>),
     every character of the corpus, then BPE merges learned on the corpus's chunks (a chunk is a
     word with its leading "▁"; no merge crosses a space or a newline). A merged token's score is
     minus its merge rank.
  3. Tokens: the corpus is encoded with exactly kvulkan's SentencePiece algorithm (repeatedly merge
     the adjacent pair whose concatenation is a token with the highest score, leftmost on ties;
     src/model/tokenizer.cpp encode_spm), so training sees the ids kvulkan will produce.
     add_space_prefix is false: a prompt "In the beginning" is tokenized like a verse start.
  4. Model: llama (RMSNorm, RoPE in llama.cpp's "norm" layout, i.e. adjacent pairs, SwiGLU, GQA,
     tied embeddings), trained on windows that start with <s> at a verse start.
  5. Export: <out>/ import folder for kv-make-model (meta.tsv, vocab.tsv, tensors.tsv + raw F32
     files), and reference logits of the model with its weights rounded as the GGUF stores them,
     for tests/reference/test_kjv_demo.cpp and tests/capi/test_kjv_demo.cpp (models/kjv-demo/README.md
     has the recipe as run, its time and loss; train.sh is the one command).
"""
import argparse
import collections
import math
import os
import re
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SP = "\u2581"  # SentencePiece's space marker


# ---- corpus ------------------------------------------------------------------------------------

def read_kjv(path):
    if path:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    else:
        raw = subprocess.run(["bible", "-l9999", "gen1:1-rev22:21"], check=True, capture_output=True,
                             text=True).stdout
    verses = []
    for line in raw.split("\n"):
        m = re.match(r"^\s*\d+ (.*)$", line)
        if m:
            verses.append(" ".join(m.group(1).split()))
    return verses


def chunks_of(text):
    """The pieces no merge crosses: "\n", and runs that start at a space marker."""
    s = text.replace(" ", SP)
    return re.findall(SP + "[^" + SP + "\n]*|[^" + SP + "\n]+|\n", s)


# ---- vocabulary ----------------------------------------------------------------------------------

def train_bpe(chunk_counts, base_chars, n_merges, log):
    """Classic BPE on chunk counts (deterministic: same input, same merges)."""
    words = [(list(c), n) for c, n in chunk_counts.items() if c != "\n"]
    vocab = set(base_chars)
    merges = []
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)  # pair -> indices of words that contain it
    for wi, (sym, n) in enumerate(words):
        for a, b in zip(sym, sym[1:]):
            pair_counts[(a, b)] += n
            where[(a, b)].add(wi)
    t0 = time.time()
    while len(merges) < n_merges and pair_counts:
        best = max(pair_counts.items(), key=lambda kv: kv[1])  # ties: the first in the dict's (deterministic) order
        (a, b), cnt = best
        if cnt < 2:
            break
        new = a + b
        merges.append(new)
        vocab.add(new)
        for wi in list(where[(a, b)]):
            sym, n = words[wi]
            for x, y in zip(sym, sym[1:]):
                pair_counts[(x, y)] -= n
                if pair_counts[(x, y)] <= 0:
                    del pair_counts[(x, y)]
            out = []
            i = 0
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            words[wi] = (out, n)
            for x, y in zip(out, out[1:]):
                pair_counts[(x, y)] += n
                where[(x, y)].add(wi)
        if len(merges) % 500 == 0:
            log(f"bpe: {len(merges)} merges ({time.time() - t0:.0f} s), last {new!r} x{cnt}")
    return merges


class Vocab:
    def __init__(self, base_chars, merges):
        self.tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        self.types = [2, 3, 3] + [6] * 256  # unknown, control, control, byte
        self.scores = [0.0] * len(self.tokens)
        for ch in base_chars:
            self.tokens.append(ch)
            self.types.append(1)
            self.scores.append(0.0)
        for rank, m in enumerate(merges):
            self.tokens.append(m)
            self.types.append(1)
            self.scores.append(-float(rank + 1))
        self.id = {}
        for i, t in enumerate(self.tokens):
            if self.types[i] == 1:
                self.id[t] = i
        self.cache = {}

    def encode_chunk(self, chunk):
        """kvulkan's encode_spm on one chunk (src/model/tokenizer.cpp)."""
        hit = self.cache.get(chunk)
        if hit is not None:
            return hit
        sym = list(chunk)
        while True:
            best, best_i = None, -1
            for i in range(len(sym) - 1):
                j = self.id.get(sym[i] + sym[i + 1])
                if j is not None and (best is None or self.scores[j] > best):
                    best, best_i = self.scores[j], i
            if best is None:
                break
            sym[best_i:best_i + 2] = [sym[best_i] + sym[best_i + 1]]
        ids = []
        for s in sym:
            j = self.id.get(s)
            if j is not None:
                ids.append(j)
            else:
                ids.extend(3 + b for b in s.encode("utf-8"))  # byte fallback: <0xXX> is id 3 + XX
        self.cache[chunk] = ids
        return ids

    def encode(self, text):
        out = []
        for c in chunks_of(text):
            out.extend(self.encode_chunk(c))
        return out

    def decode(self, ids):
        b = bytearray()
        for i in ids:
            if self.types[i] == 6:
                b.append(i - 3)
            elif self.types[i] == 1:
                b += self.tokens[i].replace(SP, " ").encode("utf-8")
        return b.decode("utf-8", errors="replace")


# ---- model ---------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, n, base):
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, cos, sin):
    """llama.cpp's "norm" RoPE: rotates the adjacent pairs (x[2i], x[2i+1]). x: [B, H, T, hd]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack((r0, r1), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.h, self.kvh, self.hd = a.heads, a.kv_heads, a.dim // a.heads
        self.attn_norm = RMSNorm(a.dim, a.eps)
        self.wq = nn.Linear(a.dim, a.dim, bias=False)
        self.wk = nn.Linear(a.dim, self.kvh * self.hd, bias=False)
        self.wv = nn.Linear(a.dim, self.kvh * self.hd, bias=False)
        self.wo = nn.Linear(a.dim, a.dim, bias=False)
        self.ffn_norm = RMSNorm(a.dim, a.eps)
        self.gate = nn.Linear(a.dim, a.ffn, bias=False)
        self.up = nn.Linear(a.dim, a.ffn, bias=False)
        self.down = nn.Linear(a.ffn, a.dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.wk(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        v = self.wv(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.h // self.kvh
        k = k.repeat_interleave(g, dim=1)  # query head i reads kv head i / g
        v = v.repeat_interleave(g, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        o = F.softmax(att, dim=-1) @ v
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, a, vocab_size):
        super().__init__()
        self.embd = nn.Embedding(vocab_size, a.dim)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.dim, a.eps)
        cos, sin = rope_tables(a.dim // a.heads, a.ctx, a.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        nn.init.normal_(self.embd.weight, std=0.02)
        for n, p in self.named_parameters():
            if p.dim() == 2 and n != "embd.weight":
                std = 0.02 / math.sqrt(2 * a.layers) if n.endswith(("wo.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embd(ids)
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        return self.norm(x) @ self.embd.weight.t()  # tied output


# ---- export --------------------------------------------------------------------------------------

GGUF_TENSORS = [  # (gguf name, torch name pattern, stored type)
    ("token_embd.weight", "embd.weight", "model"),
    ("output_norm.weight", "norm.weight", "f32"),
]
LAYER_TENSORS = [
    ("attn_norm.weight", "attn_norm.weight", "f32"),
    ("attn_q.weight", "wq.weight", "model"),
    ("attn_k.weight", "wk.weight", "model"),
    ("attn_v.weight", "wv.weight", "model"),
    ("attn_output.weight", "wo.weight", "model"),
    ("ffn_norm.weight", "ffn_norm.weight", "f32"),
    ("ffn_gate.weight", "gate.weight", "model"),
    ("ffn_up.weight", "up.weight", "model"),
    ("ffn_down.weight", "down.weight", "model"),
]


def export(model, vocab, a, out, log):
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    rows = []
    names = list(GGUF_TENSORS)
    for l in range(a.layers):
        names += [(f"blk.{l}.{g}", f"blocks.{l}.{t}", ty) for g, t, ty in LAYER_TENSORS]
    for gname, tname, ty in names:
        t = sd[tname]
        fname = gname + ".f32"
        t.numpy().astype("<f4").tofile(os.path.join(out, fname))
        shape = ",".join(str(d) for d in reversed(t.shape))  # GGUF order: ne0 (the row) first
        rows.append(f"{gname}\t{ty}\t{shape}\t{fname}")
    with open(os.path.join(out, "tensors.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    meta = [
        ("str", "general.architecture", "llama"),
        ("str", "general.name", "kvulkan kjv-demo"),
        ("str", "general.license", "weights: the kvulkan project's licence; training text: KJV, public domain"),
        ("u32", "llama.context_length", a.ctx),
        ("u32", "llama.embedding_length", a.dim),
        ("u32", "llama.block_count", a.layers),
        ("u32", "llama.feed_forward_length", a.ffn),
        ("u32", "llama.attention.head_count", a.heads),
        ("u32", "llama.attention.head_count_kv", a.kv_heads),
        ("u32", "llama.rope.dimension_count", a.dim // a.heads),
        ("f32", "llama.rope.freq_base", a.rope_base),
        ("f32", "llama.attention.layer_norm_rms_epsilon", a.eps),
        ("str", "tokenizer.ggml.model", "llama"),
        ("u32", "tokenizer.ggml.unknown_token_id", 0),
        ("u32", "tokenizer.ggml.bos_token_id", 1),
        ("u32", "tokenizer.ggml.eos_token_id", 2),
        ("bool", "tokenizer.ggml.add_bos_token", "true"),
        ("bool", "tokenizer.ggml.add_space_prefix", "false"),
    ]
    with open(os.path.join(out, "meta.tsv"), "w") as f:
        for kind, key, val in meta:
            f.write(f"{kind}\t{key}\t{val}\n")
    with open(os.path.join(out, "vocab.tsv"), "w") as f:
        for t, ty, sc in zip(vocab.tokens, vocab.types, vocab.scores):
            f.write(f"{ty}\t{sc:g}\t{t.encode('utf-8').hex()}\n")
    log(f"export: {out}/ ({len(rows)} tensors, {len(vocab.tokens)} tokens)")


def f16_rounded(model):
    """A copy whose 2-D weights are rounded to F16, as kv-make-model --type f16 stores them."""
    import copy
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(p.half().float())
    return m


def write_reference(model, vocab, prompt, path, log):
    """Token ids of `prompt` (with <s>) and the logits of the F16-rounded model at every position,
    computed in float64: the oracle for kvulkan's CPU reference and GPU path."""
    m = f16_rounded(model).double()
    ids = [1] + vocab.encode(prompt)
    with torch.no_grad():
        logits = m(torch.tensor([ids]))[0]
    with open(path, "wb") as f:  # "KVRL", n_tokens, n_vocab, ids (i32), logits (f32, row-major)
        f.write(b"KVRL" + struct.pack("<II", len(ids), logits.shape[1]))
        f.write(np.array(ids, dtype="<i4").tobytes())
        f.write(logits.float().numpy().astype("<f4").tobytes())
    log(f"reference logits: {path} ({len(ids)} tokens: {ids})")


def sample(model, vocab, prompt, n, temp=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = [1] + vocab.encode(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-model.cos.shape[0]:]]))[0, -1]
            if temp <= 0:
                nxt = int(logits.argmax())
            else:
                nxt = int(torch.multinomial(F.softmax(logits / temp, -1), 1, generator=g))
            ids.append(nxt)
    return vocab.decode(ids[1:])


# ---- main ----------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the checkpoint, the import folder and logs")
    p.add_argument("--corpus", help="output of `bible -l9999 gen1:1-rev22:21` (default: run it)")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=512)
    p.add_argument("--ctx", type=int, default=256, help="context length the model is trained and stored for")
    p.add_argument("--seq", type=int, default=128, help="training window (tokens, <s> included)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eps", type=float, default=1e-5)
    p.add_argument("--rope-base", type=float, default=10000.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--export-only", action="store_true", help="reuse <out>/model.pt, only export")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, "train.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    log(f"args: {vars(a)}")
    t_start = time.time()
    verses = read_kjv(a.corpus)
    text = "\n".join(verses) + "\n"
    log(f"corpus: {len(verses)} verses, {len(text)} characters")
    counts = collections.Counter(chunks_of(text))
    base_chars = sorted({ch for c in counts for ch in c if ch != "\n"})
    n_merges = a.vocab - 3 - 256 - len(base_chars)
    merges = train_bpe(counts, base_chars, n_merges, log)
    vocab = Vocab(base_chars, merges)
    log(f"vocab: {len(vocab.tokens)} tokens ({len(base_chars)} characters, {len(merges)} merges)")

    # Token stream; verse starts are where windows begin.
    stream, starts = [], []
    for v in verses:
        starts.append(len(stream))
        stream.extend(vocab.encode(v + "\n"))
    data = torch.tensor(stream, dtype=torch.long)
    starts = torch.tensor(starts[:-1] if len(starts) > 1 else starts)
    starts = starts[starts + a.seq <= len(stream)]
    log(f"tokens: {len(stream)} ({len(text) / len(stream):.2f} characters a token), "
        f"prepared in {time.time() - t_start:.0f} s")
    assert vocab.decode(stream) == text, "tokenizer does not round-trip the corpus"

    model = Llama(a, len(vocab.tokens))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters")
    ckpt = os.path.join(a.out, "model.pt")
    if a.export_only:
        model.load_state_dict(torch.load(ckpt))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
        warm = max(1, a.steps // 20)
        bos = torch.ones(a.batch, 1, dtype=torch.long)
        t0 = time.time()
        ema = None
        for step in range(1, a.steps + 1):
            lr = a.lr * (step / warm if step <= warm else
                         0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (a.steps - warm))))
            for grp in opt.param_groups:
                grp["lr"] = lr
            pick = starts[torch.randint(len(starts), (a.batch,))]
            win = torch.stack([data[s:s + a.seq] for s in pick.tolist()])
            x = torch.cat([bos, win[:, :-1]], 1)
            loss = F.cross_entropy(model(x).view(-1, len(vocab.tokens)), win.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % 50 == 0 or step == 1:
                el = time.time() - t0
                log(f"step {step}/{a.steps} loss {loss.item():.3f} (avg {ema:.3f}) lr {lr:.2e} "
                    f"{el:.0f} s ({el / step:.2f} s/step)")
            if step % 200 == 0:
                torch.save(model.state_dict(), ckpt)
                log("sample: " + repr(sample(model, vocab, "In the beginning", 40)))
        torch.save(model.state_dict(), ckpt)
        log(f"trained {a.steps} steps in {time.time() - t0:.0f} s; final loss (avg of the last ~50 steps) "
            f"{ema:.3f}")
    model.eval()
    for pr in ["In the beginning", "And the LORD said unto Moses,", "Blessed are"]:
        log("greedy: " + repr(sample(model, vocab, pr, 60)))
    export(model, vocab, a, os.path.join(a.out, "import"), log)
    write_reference(model, vocab, "In the beginning God created", os.path.join(a.out, "reference.bin"), log)
    log(f"total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
