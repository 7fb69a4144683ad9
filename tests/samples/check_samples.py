#!/usr/bin/env python3
"""End-to-end checks of the command-line samples (run by ctest).

  check_samples.py BIN_DIR SHARED_DIR

- kv-generate --ids reproduces the 128 greedy reference tokens of stories260K with F32 and F16 KV,
  and --dump-logits writes one float32 row per evaluated step;
- kv-tokenize encodes and decodes "Once upon a time", and gives llama.cpp's tokens for every case
  of every vocab-only GGUF in models/vocab (any architecture: it loads the vocabulary alone);
- kv-info -m describes a model; bad flags and broken/missing files exit non-zero with a message;
- kv-town advances several NPC sessions and a newcomer together in batched steps;
- kv-generate --draft ngram|MODEL (speculative) gives the same reference tokens and prints the
  acceptance rate; --chat generates from the prompt rendered by the model's chat template, and
  stops with a message when the model has none.
- kv-bench prints prefill and decode figures against their floors, over 2 sessions, with the
  prefill computed (no prompt tokens reused from the prefix cache); --sessions N batches every
  step into one pass, --sequential does not, --json prints the same figures as JSON;
- kv-chat reuses the cached history, with a plain transcript (no chat template in the model) and
  with --template FILE (a Jinja chat template), and rejects a malformed template by name;
- kv-game-loop runs its frame loop with NPCs generating, prints the frame-time lines and tok/s,
  and never calls kv_ticket_wait on the frame thread.
"""
import json
import os
import subprocess
import sys
import tempfile

bin_dir, shared = sys.argv[1], sys.argv[2]
failures = []


def run(args, stdin=None):
    p = subprocess.run([os.path.join(bin_dir, args[0])] + args[1:], input=stdin, capture_output=True, timeout=600)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


if not os.path.isdir(shared):
    print("SKIPPED: ../shared (models and reference outputs) is absent")
    sys.exit(77)  # ctest: SKIP_RETURN_CODE

model = os.path.join(shared, "models/stories260K/stories260K.gguf")
ref = json.load(open(os.path.join(shared, "reference/stories260K.once-upon-a-time.json")))
ids = ",".join(str(i) for i in ref["prompt_ids"])
want = ref["generated_ids"]
for kv in ("f32", "f16"):
    rc, out, err = run(["kv-generate", "-m", model, "--prompt-ids", ids, "-n", str(len(want)), "--ids", "--kv-type", kv])
    got = [int(x) for x in out.strip().split(",")] if rc == 0 and out.strip() else []
    check(rc == 0 and got == want, f"kv-generate --ids --kv-type {kv}: the {len(want)} reference tokens")
    check("decode:" in err and "KV cache:" in err and "device:" in err, f"kv-generate {kv} prints speed, KV bytes and device")

for draft in ("ngram", model):  # the model as its own draft: every drafted token is accepted
    rc, out, err = run(["kv-generate", "-m", model, "--prompt-ids", ids, "-n", str(len(want)), "--ids",
                        "--draft", draft, "--draft-n", "3"])
    got = [int(x) for x in out.strip().split(",")] if rc == 0 and out.strip() else []
    check(rc == 0 and got == want and "drafted tokens accepted" in err,
          f"kv-generate --draft {os.path.basename(draft)}: the {len(want)} reference tokens, acceptance printed "
          f"({err.strip().splitlines()[-1] if err.strip() else ''})")
    if draft == model:
        check("(100.0%)" in err, "kv-generate --draft with the model itself accepts every drafted token")

with tempfile.TemporaryDirectory() as tmp:
    dump = os.path.join(tmp, "logits.f32")
    rc, out, err = run(["kv-generate", "-m", model, "--prompt-ids", ids, "-n", "4", "--ids", "--dump-logits", dump])
    check(rc == 0 and os.path.getsize(dump) == 4 * 512 * 4, "kv-generate --dump-logits: 4 rows of 512 floats")

rc, out, err = run(["kv-tokenize", "-m", model, "--bos"], stdin=b"Once upon a time")
check(rc == 0 and out.split() == ["1", "403", "407", "261", "378"], "kv-tokenize --bos")
rc, out, err = run(["kv-tokenize", "-m", model, "--decode"], stdin=b"1 403 407 261 378")
check(rc == 0 and out == "Once upon a time", "kv-tokenize --decode")
rc, out, err = run(["kv-info", "-m", model])
check(rc == 0 and "llama" in out and "layers 5" in out, "kv-info -m")

# models/vocab/X.gguf.inp: strings each followed by the separator (never trimmed); X.gguf.out: one
# line of " id id ..." per string, tokenized without BOS and without parsing special tokens.
vocab_dir = os.path.join(shared, "models/vocab")
vocabs = sorted(f for f in os.listdir(vocab_dir) if f.endswith(".gguf")) if os.path.isdir(vocab_dir) else []
check(len(vocabs) > 0, f"vocab-only GGUFs found in {vocab_dir}")
for name in vocabs:
    path = os.path.join(vocab_dir, name)
    texts = open(path + ".inp", "rb").read().split(b"\n__ggml_vocab_test__\n")[:-1]
    wants = open(path + ".out", encoding="utf-8").read().split("\n")[: len(texts)]
    bad = []
    for text, want in zip(texts, wants):
        rc, out, err = run(["kv-tokenize", "-m", path], stdin=text)
        if rc != 0 or out.split() != want.split():
            bad.append(f"{text[:40]!r}: rc {rc}, got {out.strip()!r} want {want.strip()!r} {err.strip()}")
    check(len(texts) == 46 and not bad, f"kv-tokenize -m {name}: {len(texts) - len(bad)}/{len(texts)} cases match llama.cpp"
          + "".join("\n       " + b for b in bad[:3]))

# --bw-mib 8: the floors' bandwidth on a small buffer (the default size takes seconds on lavapipe).
rc, out, err = run(["kv-bench", "-m", model, "--prompt", "40", "--gen", "4", "--reps", "2", "--sessions", "2",
                    "--bw-mib", "8"])
check(rc == 0 and "prefill: 2 x 40 tokens" in out and "decode floor:" in out and "device:" in out
      and "batched" in out, "kv-bench prints prefill, batched decode and the floor")
check("prefix cache:" not in out, "kv-bench measures a computed prefill (fresh prompts, no prefix reuse)")
for extra, mode in ((["--sequential"], "sequential"), ([], "batched")):
    rc, out, err = run(["kv-bench", "-m", model, "--prompt", "24", "--gen", "3", "--reps", "1", "--sessions", "3",
                        "--json", "--bw-mib", "8"] + extra)
    try:
        j = json.loads(out)
    except ValueError:
        j = {}
    # Each session of the last repetition: its prefill (one pass when batched: 3 x 24 rows fit one
    # pass) and 3 decode steps; sequential runs a pass of its own for each.
    check(rc == 0 and j.get("mode") == mode and j.get("sessions") == 3 and j.get("decode_tok_s", 0) > 0
          and j.get("decode_floor_tok_s", 0) > 0 and j.get("forward_passes") == 4,
          f"kv-bench --sessions 3 --json {' '.join(extra)} reports a {mode} run ({out.strip()[:300]} {err[-300:]})")

rc, out, err = run(["kv-town", "-m", model, "--npcs", "3", "-n", "8", "--temp", "0.8"])
town = [l for l in out.splitlines() if l.startswith("town:")]
check(rc == 0 and out.count("[npc ") == 3 and "[newcomer]" in out and town and "batched steps" in town[0],
      f"kv-town advances 3 NPCs and a newcomer together ({town[0] if town else err[-300:]})")

with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
    f.write("Once upon a time there was a cat.\nWhat did the cat do?\n")
    f.flush()
    rc, out, err = run(["kv-chat", "-m", model, "--script", f.name, "-n", "16", "--temp", "0"])
    import re
    turns = re.findall(r"\[turn (\d+): prompt (\d+) tokens, (\d+) reused from the cache, (\d+) prefilled\]", out)
    check(rc == 0 and len(turns) == 2 and int(turns[0][2]) == 0 and int(turns[1][2]) > 0,
          f"kv-chat reuses the cached history on turn 2 ({turns})")
    check("plain User:/Assistant: transcript (the model has no chat template" in err,
          "kv-chat says stories260K has no chat template and falls back to a transcript")
    # A chat template of the caller's (ChatML): the conversation is rendered by it, turn 2 still
    # reuses turn 1's pages; a malformed template stops with the construct and place named.
    chatml = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chat", "templates", "chatml.jinja")
    rc, out, err = run(["kv-chat", "-m", model, "--script", f.name, "-n", "8", "--temp", "0", "--template", chatml])
    turns = re.findall(r"\[turn (\d+): prompt (\d+) tokens, (\d+) reused from the cache, (\d+) prefilled\]", out)
    check(rc == 0 and "prompt format: " + chatml in err and len(turns) == 2 and int(turns[1][2]) > 0,
          f"kv-chat --template renders the chat with it and reuses turn 1 ({turns}) {err.strip()[-200:]}")
    with tempfile.NamedTemporaryFile("w", suffix=".jinja") as bad:
        bad.write("{% for m in messages %}{{ m.content }}")
        bad.flush()
        rc, out, err = run(["kv-chat", "-m", model, "--script", f.name, "-n", "4", "--template", bad.name])
        check(rc == 1 and "{% for %} is never closed" in err and "line 1, column 1" in err,
              f"kv-chat --template with a malformed template names the construct ({err.strip()[-200:]})")

# kv-generate --chat: the prompt as one user message in the model's chat template (a random model
# that kv-make-model gives ChatML). Its tokens are those of the ChatML render written here from the
# format's specification, tokenized with its special markers parsed and no BOS added.
with tempfile.TemporaryDirectory() as tmp:
    chat_model = os.path.join(tmp, "chatml.gguf")
    chatml = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chat", "templates", "chatml.jinja")
    rc, out, err = run(["kv-make-model", "-o", chat_model, "--dim", "64", "--layers", "2", "--heads", "4",
                        "--kv-heads", "2", "--ffn", "128", "--vocab", "1000", "--chat-template", chatml])
    check(rc == 0, f"kv-make-model --chat-template writes a model with a chat template {err.strip()[-200:]}")
    rendered = "<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n"
    rc, out, err = run(["kv-tokenize", "-m", chat_model, "--special"], stdin=rendered.encode())
    chat_ids = ",".join(out.split())
    rc, out, err = run(["kv-generate", "-m", chat_model, "--prompt-ids", chat_ids, "-n", "8", "--ids"])
    want_chat = out.strip()
    rc, out, err = run(["kv-generate", "-m", chat_model, "-p", "Once upon a time", "-n", "8", "--ids", "--chat"])
    check(rc == 0 and want_chat and out.strip() == want_chat,
          f"kv-generate --chat generates from the ChatML render ({out.strip()} vs {want_chat}) {err.strip()[-200:]}")
    rc, out, err = run(["kv-generate", "-m", chat_model, "-p", "Once upon a time", "-n", "4", "--chat"])
    check(rc == 0 and out.startswith(rendered), f"kv-generate --chat echoes the rendered prompt ({out[:120]!r})")
    rc, out, err = run(["kv-generate", "-m", chat_model, "-p", "Once upon a time", "-n", "8", "--ids"])
    check(rc == 0 and out.strip() != want_chat, "kv-generate without --chat continues the plain prompt instead")
rc, out, err = run(["kv-generate", "-m", model, "--chat", "-n", "4"])
check(rc == 1 and "has no chat template" in err, f"kv-generate --chat on a model without a chat template ({err.strip()[-200:]})")
rc, out, err = run(["kv-generate", "-m", model, "--chat", "--prompt-ids", ids])
check(rc == 2 and "not with --prompt-ids" in err, "kv-generate --chat refuses --prompt-ids")

rc, out, err = run(["kv-generate", "-m", model, "--temp", "hot"])
check(rc == 2 and "bad value" in err, "kv-generate rejects a bad flag value")
rc, out, err = run(["kv-generate", "--no-such-flag"])
check(rc == 2 and "unknown argument" in err, "kv-generate rejects an unknown flag")
rc, out, err = run(["kv-generate", "-m", "/nonexistent.gguf"])
check(rc == 1 and "KV_ERR_IO" in err, "kv-generate on a missing file")
with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
    f.write(open(model, "rb").read()[:1000])
    f.flush()
    rc, out, err = run(["kv-generate", "-m", f.name])
    check(rc == 1 and "KV_ERR_BAD_MODEL" in err, "kv-generate on a truncated file")
    rc, out, err = run(["kv-info", "-m", f.name])
    check(rc == 1 and "KV_ERR_BAD_MODEL" in err, "kv-info -m on a truncated file")

# kv-game-loop: a 60 Hz frame loop with its own compute work on the same device while 2 NPC
# sessions generate through the non-blocking API. Completion, the figures' lines and tokens are
# checked here; its timings are figures to read, not to assert.
rc, out, err = run(["kv-game-loop", "-m", model, "--frames", "30", "--npcs", "2", "--kernel-ms", "2",
                   "--gpu-budget-us", "2000"])
import re
check(re.search(r"^GPU budget: on, kvulkan's submissions cut to about 2000 us each$", out, re.M) is not None,
      f"kv-game-loop: the GPU budget was granted and reported ({out.strip()[:300]})")
phases = re.findall(r"^(without generation|with 2 NPCs generating): 30 frames, frame time p50 ([\d.]+) ms  "
                    r"p99 ([\d.]+) ms  max ([\d.]+) ms", out, re.M)
tokens = re.search(r"^NPC tokens: (\d+) in [\d.]+ s of frames = ([\d.]+) tok/s", out, re.M)
waits = re.search(r"^frame thread: (\d+) kv_ticket_wait calls; (\d+) kvulkan calls, the longest ([\d.]+) ms", out, re.M)
npcs = re.findall(r"^NPC (\d) \((\d+) tokens, [^)]*\): (.*)$", out, re.M)
check(rc == 0 and len(phases) == 2 and all(float(p[3]) > 0 for p in phases),
      f"kv-game-loop prints frame-time p50/p99/max without and with generation ({out.strip()[:400]} {err[-400:]})")
check(tokens is not None and int(tokens.group(1)) > 0 and float(tokens.group(2)) > 0,
      "kv-game-loop: the NPCs generated tokens and tok/s is printed")
check(waits is not None and waits.group(1) == "0" and int(waits.group(2)) > 0,
      "kv-game-loop: the frame loop polled kvulkan and never called kv_ticket_wait")
check(len(npcs) == 2 and npcs[0][2].startswith("Once upon a time") and sum(int(n[1]) for n in npcs) == int(tokens.group(1) if tokens else -1),
      f"kv-game-loop prints each NPC's text after its prompt ({npcs})")
rc, out, err = run(["kv-game-loop", "-m", "/nonexistent.gguf"])
check(rc == 1 and "/nonexistent.gguf not found" in err, "kv-game-loop on a missing model")
rc, out, err = run(["kv-game-loop", "--npcs", "0"])
check(rc == 2 and "bad value for --npcs" in err, "kv-game-loop rejects --npcs 0")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
