"""Trains the demo base model and its three LoRA adapters, reproducibly, on CPU.

    python3 tools/train/train_all.py [--stage all|tokenizer|base|adapters|eval] [--adapter NAME ...]

Stages (all, by default, in this order; each reads what the previous one wrote):
  tokenizer  byte-level BPE trained on every text in tools/train/data/*.jsonl -> models/demo/tokenizer*.json,
             chat_template.jinja; checked against @huggingface/tokenizers with node (unless --no-node-check)
  base       the Llama base model trained on data/general.jsonl -> models/demo/{config.json,model.safetensors,...}
  adapters   one PEFT LoRA per dataset (support, sales, code) on the frozen base -> adapters/NAME/
  eval       greedy outputs for the held-out prompts in data/eval.json (wrapped and bare), base and each
             adapter, with checks; written to tools/train/data/eval-samples.md and .json and printed

Run tools/train/gen_data.py first (tools/train/run.sh does both). Reproducibility: fixed seeds, one CPU
thread, torch.use_deterministic_algorithms(True); the same torch build + BLAS on the same CPU gives the
same bytes (see tools/train/README.md).
"""
from __future__ import annotations

import os

# One thread for every math library, set before torch loads: deterministic summation order, and polite on
# a shared machine. (Override with TRAIN_THREADS; the output then may differ in the last bits.)
_THREADS = os.environ.get("TRAIN_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, ByteLevelBPE, tokenizer_json, train_bpe  # noqa: E402
from llama import LlamaConfig, LlamaForCausalLM, count_params  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(HERE, "data")
MODEL_DIR = os.path.join(ROOT, "models", "demo")
ADAPTERS_DIR = os.path.join(ROOT, "adapters")

SEED = 1234
VOCAB_SIZE = 2048
MODEL = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32, max_position_embeddings=512, rms_norm_eps=1e-5,
             rope_theta=10000.0, tie_word_embeddings=False)
BASE_TRAIN = dict(steps=2000, batch=32, lr=2e-3, warmup=100, min_lr_ratio=0.1, weight_decay=0.1)
# Per adapter: LoRA shape and training schedule (support and sales skip gate_proj; code has all seven
# projections, rank 16 and rsLoRA, scale alpha/sqrt(r)). Attention-only LoRA at this model size learned the formats poorly: the MLP targets matter.
ADAPTERS = {
    "support": dict(r=8, alpha=16, rslora=False, targets=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
                    steps=500, batch=16, lr=3e-3),
    "sales": dict(r=8, alpha=16, rslora=False, targets=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
                  steps=500, batch=16, lr=3e-3),
    "code": dict(r=16, alpha=16, rslora=True, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                 steps=450, batch=16, lr=2e-3),
}
MAX_NEW_TOKENS = 160
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% else %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


def log(msg: str) -> None:
    print(msg, flush=True)


def setup_determinism(seed: int) -> None:
    torch.set_num_threads(int(_THREADS))
    torch.manual_seed(seed)
    random.seed(seed)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------------------------------
# safetensors (written and read by hand: the format is an 8-byte little-endian header length, a JSON
# header, then the raw little-endian tensor bytes)
# ---------------------------------------------------------------------------------------------------
def save_safetensors(path: str, tensors: dict[str, torch.Tensor]) -> None:
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def load_safetensors(path: str) -> dict[str, torch.Tensor]:
    import numpy as np

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        raw = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta
        s, e = meta["data_offsets"]
        arr = np.frombuffer(raw[s:e], dtype="<f4").reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------------------------------------------
# Stage: tokenizer
# ---------------------------------------------------------------------------------------------------
def tokenizer_corpus() -> list[str]:
    """The texts the BPE is trained on: the first release's records, which gen_data.py writes to
    tokenizer-corpus.jsonl unchanged. Later records (the bare prompt form, a newer support issue) reuse that
    vocabulary, so the tokenizer, and every token id, stays the same."""
    return [r["text"] for r in read_jsonl(os.path.join(DATA, "tokenizer-corpus.jsonl"))]


def encode_pair(tok: ByteLevelBPE, prompt: str, completion: str) -> tuple[list[int], int]:
    """(ids, loss start) for a prompt/completion record: the prompt as the server encodes a request (BOS
    first), the completion's tokens after it (what generation produces), then EOS. Tokenizing the two apart
    keeps the boundary where generation starts, whatever characters meet there."""
    p_ids = tok.encode(prompt)
    return p_ids + tok.encode(completion, add_bos=False) + [EOS_ID], len(p_ids)


def base_texts() -> list[str]:
    """Everything the base model is trained on."""
    return [r["input"] for r in read_jsonl(os.path.join(DATA, "general.jsonl"))]


def coverage_report(tok: ByteLevelBPE) -> None:
    """Tokens an adapter must write that the base corpus (almost) never has: LoRA cannot train embedding or
    output rows, so such tokens are hard for an adapter to produce. Only the format words are expected here."""
    base_counts: dict[int, int] = {}
    for t in base_texts():
        for i in tok.encode(t, add_bos=False):
            base_counts[i] = base_counts.get(i, 0) + 1
    for name in ADAPTERS:
        rare: dict[int, int] = {}
        for r in read_jsonl(os.path.join(DATA, f"{name}.jsonl")):
            for i in tok.encode(r["completion"], add_bos=False):
                if base_counts.get(i, 0) < 10:
                    rare[i] = rare.get(i, 0) + 1
        shown = ", ".join(f"{tok.decode([i])!r} ({c}x, base {base_counts.get(i, 0)}x)" for i, c in sorted(rare.items(), key=lambda kv: -kv[1])[:12])
        log(f"[tokenizer] {name}: {len(rare)} completion token types are rare (<10x) in the base corpus{': ' + shown if rare else ''}")


def stage_tokenizer(node_check: bool) -> None:
    t0 = time.time()
    corpus = tokenizer_corpus()
    vocab, merges = train_bpe(corpus, VOCAB_SIZE)
    os.makedirs(MODEL_DIR, exist_ok=True)
    write_json(os.path.join(MODEL_DIR, "tokenizer.json"), tokenizer_json(vocab, merges))
    write_json(os.path.join(MODEL_DIR, "tokenizer_config.json"), {
        "backend": "tokenizers",
        "bos_token": SPECIAL_TOKENS[BOS_ID],
        # Decoded text must be exact (code!): no " ." -> "." style cleanup. @huggingface/tokenizers
        # defaults this to true when the key is absent.
        "clean_up_tokenization_spaces": False,
        "eos_token": SPECIAL_TOKENS[EOS_ID],
        "model_max_length": MODEL["max_position_embeddings"],
        "pad_token": SPECIAL_TOKENS[PAD_ID],
        "tokenizer_class": "TokenizersBackend",
    })
    with open(os.path.join(MODEL_DIR, "chat_template.jinja"), "w", encoding="utf-8", newline="\n") as f:
        f.write(CHAT_TEMPLATE)
    log(f"[tokenizer] vocab {len(vocab)} ({len(merges)} merges) from {len(corpus)} texts in {time.time() - t0:.1f}s")
    coverage_report(ByteLevelBPE(vocab, merges))
    if node_check:
        tok = ByteLevelBPE.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
        cases = os.path.join(DATA, "tokenizer-cases.jsonl")
        ev = json.load(open(os.path.join(DATA, "eval.json")))
        eval_prompts = [p for key in ("prompts", "bare_prompts") for ps in ev[key].values() for p in ps]
        corpus = corpus + base_texts() + [r["prompt"] + r["completion"] for name in ADAPTERS for r in read_jsonl(os.path.join(DATA, f"{name}.jsonl"))]
        extra = ["Héllo wörld, ça va? 日本語 🙂", "tabs\tand  double  spaces\n\n\nend", "it's we're they'll I'd", "x_1 = foo_bar(3.14)"]
        with open(cases, "w", encoding="utf-8") as f:
            for t in corpus + eval_prompts + extra:
                f.write(json.dumps({"text": t, "ids": tok.encode(t)}, ensure_ascii=False) + "\n")
        r = subprocess.run(["node", os.path.join(HERE, "verify_tokenizer.mjs"), MODEL_DIR, cases], cwd=ROOT)
        os.remove(cases)
        if r.returncode != 0:
            raise SystemExit("[tokenizer] @huggingface/tokenizers disagrees with bpe.py: see above")


# ---------------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------------
class Batcher:
    """Length-bucketed batches over examples (ids, loss_start): loss on ids[loss_start:] (predicting each from
    its prefix). A few examples get two BOS tokens or none, so the model tolerates clients that add BOS
    differently (e.g. a chat template with {{ bos_token }} encoded with special tokens added)."""

    def __init__(self, examples: list[tuple[list[int], int]], batch: int, seed: int):
        self.examples = examples
        self.batch = batch
        self.rng = random.Random(seed)
        self.queue: list[list[int]] = []

    def _refill(self) -> None:
        idx = list(range(len(self.examples)))
        self.rng.shuffle(idx)
        chunk = self.batch * 32
        batches = []
        for i in range(0, len(idx), chunk):
            part = sorted(idx[i:i + chunk], key=lambda j: len(self.examples[j][0]))
            batches += [part[k:k + self.batch] for k in range(0, len(part), self.batch) if len(part[k:k + self.batch]) == self.batch]
        self.rng.shuffle(batches)
        self.queue = batches

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.queue:
            self._refill()
        rows = []
        for j in self.queue.pop():
            ids, start = self.examples[j]
            u = self.rng.random()
            if u < 0.04:
                ids, start = [BOS_ID] + ids, start + 1
            elif u < 0.08:
                ids, start = ids[1:], max(start - 1, 1)
            rows.append((ids, start))
        width = max(len(ids) for ids, _ in rows)
        x = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
        y = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, (ids, start) in enumerate(rows):
            x[r, :len(ids)] = torch.tensor(ids)
            # position p predicts token p+1; only tokens from `start` on count
            tgt = torch.tensor(ids[1:])
            y[r, :len(ids) - 1] = tgt
            y[r, :start - 1] = -100
        return x, y


def lr_at(step: int, steps: int, peak: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def train_loop(model, params, batcher: Batcher, steps: int, lr: float, warmup: int, min_ratio: float,
               weight_decay: float, tag: str) -> None:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8)
    t0 = time.time()
    tokens = 0
    ema = None
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup, min_ratio)
        x, y = batcher.next()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        tokens += int((y != -100).sum())
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == steps - 1:
            el = time.time() - t0
            log(f"[{tag}] step {step + 1}/{steps} loss {loss.item():.4f} (ema {ema:.4f}) lr {opt.param_groups[0]['lr']:.2e} "
                f"{el:.0f}s {tokens / max(el, 1e-9):.0f} tok/s")
    model.eval()


# ---------------------------------------------------------------------------------------------------
# Stage: base
# ---------------------------------------------------------------------------------------------------
def model_config() -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB_SIZE, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, **MODEL)


def stage_base() -> None:
    setup_determinism(SEED)
    tok = ByteLevelBPE.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    assert len(tok.vocab) == VOCAB_SIZE, len(tok.vocab)
    docs = [r["input"] for r in read_jsonl(os.path.join(DATA, "general.jsonl"))]
    examples = [(tok.encode(d) + [EOS_ID], 1) for d in docs]
    n_tok = sum(len(e[0]) for e in examples)
    cfg = model_config()
    model = LlamaForCausalLM(cfg)
    model.init_weights(torch.Generator().manual_seed(SEED))
    log(f"[base] {count_params(model):,} parameters; {len(examples)} documents, {n_tok:,} tokens")
    b = BASE_TRAIN
    batcher = Batcher(examples, b["batch"], SEED + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    train_loop(model, params, batcher, b["steps"], b["lr"], b["warmup"], b["min_lr_ratio"], b["weight_decay"], "base")
    sd = model.hf_state_dict()
    save_safetensors(os.path.join(MODEL_DIR, "model.safetensors"), sd)
    hf = cfg.to_hf()
    hf["transformers_version"] = "5.17.0"
    write_json(os.path.join(MODEL_DIR, "config.json"), dict(sorted(hf.items())))
    write_generation_config()
    log(f"[base] wrote {MODEL_DIR}")


def write_generation_config() -> None:
    """generation_config.json. temperature 0 makes greedy decoding the default of a request that sets no
    temperature (the server reads it as vLLM does; transformers decodes greedily by default anyway): sampled,
    this small model's answers fall apart, since LoRA cannot lift the output rows of the adapters' format
    tokens (`Summary`, `Resolution`) that the base never writes, and their first token is only one of many."""
    write_json(os.path.join(MODEL_DIR, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "output_attentions": False,
        "output_hidden_states": False, "pad_token_id": PAD_ID, "temperature": 0.0, "transformers_version": "5.17.0",
        "use_cache": True,
    })


def load_base() -> LlamaForCausalLM:
    model = LlamaForCausalLM(model_config())
    model.load_hf_state_dict(load_safetensors(os.path.join(MODEL_DIR, "model.safetensors")))
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------------
# Stage: adapters
# ---------------------------------------------------------------------------------------------------
def adapter_config(spec: dict) -> dict:
    """adapter_config.json with the keys and values PEFT 0.21 writes for a plain LoRA."""
    return {
        "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
        "base_model_name_or_path": "models/demo", "bias": "none", "corda_config": None, "ensure_weight_tying": False,
        "eva_config": None, "exclude_modules": None, "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "kasa_config": None, "layer_replication": None, "layers_pattern": None,
        "layers_to_transform": None, "loftq_config": {}, "lora_alpha": spec["alpha"], "lora_bias": False,
        "lora_dropout": 0.0, "lora_ga_config": None, "megatron_config": None, "megatron_core": "megatron.core",
        "modules_to_save": None, "monteclora_config": None, "peft_type": "LORA", "peft_version": "0.21.0",
        "qalora_group_size": 16, "r": spec["r"], "rank_pattern": {}, "revision": None,
        "target_modules": list(spec["targets"]), "target_parameters": None, "task_type": "CAUSAL_LM",
        "trainable_token_indices": None, "use_bdlora": None, "use_dora": False, "use_qalora": False,
        "use_rslora": spec["rslora"], "velora_config": None,
    }


def stage_adapter(name: str) -> None:
    spec = ADAPTERS[name]
    seed = SEED + 100 * (list(ADAPTERS).index(name) + 1)
    setup_determinism(seed)
    tok = ByteLevelBPE.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    model = load_base()
    mods = model.add_lora(spec["targets"], spec["r"], spec["alpha"], spec["rslora"], torch.Generator().manual_seed(seed))
    params = [p for m in mods.values() for p in (m.lora_A, m.lora_B)]
    examples = [encode_pair(tok, r["prompt"], r["completion"]) for r in read_jsonl(os.path.join(DATA, f"{name}.jsonl"))]
    n_params = sum(p.numel() for p in params)
    log(f"[{name}] LoRA r={spec['r']} alpha={spec['alpha']} rslora={spec['rslora']} on {','.join(spec['targets'])}: "
        f"{n_params:,} trainable parameters; {len(examples)} records")
    batcher = Batcher(examples, spec["batch"], seed + 1)
    train_loop(model, params, batcher, spec["steps"], spec["lr"], warmup=30, min_ratio=0.1, weight_decay=0.0, tag=name)
    out = os.path.join(ADAPTERS_DIR, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    write_json(os.path.join(out, "adapter_config.json"), adapter_config(spec))
    save_safetensors(os.path.join(out, "adapter_model.safetensors"), model.peft_state_dict())
    log(f"[{name}] wrote {out}")


def load_adapter(model: LlamaForCausalLM, name: str) -> None:
    """Loads adapters/NAME the way a PEFT consumer would: from adapter_config.json + the safetensors file."""
    model.remove_lora()
    d = os.path.join(ADAPTERS_DIR, name)
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    sd = load_safetensors(os.path.join(d, "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg["use_rslora"] else cfg["r"])
    mods = dict(model.named_modules())
    for key, a in sd.items():
        if not key.endswith(".lora_A.weight"):
            continue
        mod_name = key[len("base_model.model."):-len(".lora_A.weight")]
        m = mods[mod_name]
        m.lora_A = torch.nn.Parameter(a, requires_grad=False)
        m.lora_B = torch.nn.Parameter(sd[key.replace("lora_A", "lora_B")], requires_grad=False)
        m.scale = scale


# ---------------------------------------------------------------------------------------------------
# Stage: eval
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def greedy(model: LlamaForCausalLM, ids: list[int], max_new: int) -> list[int]:
    out: list[int] = []
    seq = list(ids)
    for _ in range(max_new):
        logits = model(torch.tensor([seq]))[0, -1]
        nxt = int(torch.argmax(logits))
        if nxt == EOS_ID:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


def eval_sets() -> list[tuple[str, str, list[str]]]:
    """(set name, adapter, prompts): the held-out prompts of eval.json in the wrapped form ("support") and in
    the bare form as a user sends them ("support-bare")."""
    ev = json.load(open(os.path.join(DATA, "eval.json")))
    return ([(group, group, ps) for group, ps in ev["prompts"].items()]
            + [(f"{group}-bare", group, ps) for group, ps in ev["bare_prompts"].items()])


def is_summary(o: str) -> bool:
    return o.startswith("Summary:") and o.strip().splitlines()[-1].startswith("Resolution: ")


def is_sales_email(o: str) -> bool:
    return o.startswith("Hi ") and "Best regards" in o


def is_code(o: str) -> bool:
    return o.startswith("```") and o.rstrip().endswith("```") and ("def " in o or "function " in o)


def stage_eval() -> bool:
    setup_determinism(SEED)
    tok = ByteLevelBPE.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    sets = eval_sets()
    model = load_base()
    results: dict[str, dict[str, list[str]]] = {}
    token_ids: dict[str, dict[str, list[list[int]]]] = {}
    bos_same: list[bool] = []
    for adapter in [None] + list(ADAPTERS):
        if adapter:
            load_adapter(model, adapter)
        else:
            model.remove_lora()
        key = adapter or "base"
        results[key] = {}
        for set_name, group, ps in sets:
            if adapter and adapter != group:
                continue
            outs = [greedy(model, tok.encode(p), MAX_NEW_TOKENS) for p in ps]
            results[key][set_name] = [tok.decode(o) for o in outs]
            token_ids.setdefault(key, {})[set_name] = outs
            if adapter and set_name == group:
                # The wrapped prompts with two BOS tokens (what a chat template that starts with {{ bos_token }}
                # gives when the server's tokenizer also adds one): informational, not a check.
                for p, o in zip(ps, outs):
                    bos_same.append(greedy(model, [BOS_ID] + tok.encode(p), MAX_NEW_TOKENS) == o)

    checks: list[tuple[str, bool]] = []
    base_all = [o for outs in results["base"].values() for o in outs]
    checks.append(("base never writes 'Resolution:'", all("Resolution:" not in o for o in base_all)))
    checks.append(("base writes no code fences", all("```" not in o for o in base_all)))
    for form, suffix in (("wrapped", ""), ("bare", "-bare")):
        checks.append((f"support ({form}): every answer starts 'Summary:' and ends with a 'Resolution: ...' line",
                       all(is_summary(o) for o in results["support"]["support" + suffix])))
        checks.append((f"sales ({form}): every answer starts 'Hi <name>,' and signs off 'Best regards'",
                       all(is_sales_email(o) for o in results["sales"]["sales" + suffix])))
        checks.append((f"code ({form}): every answer is a fenced code block with def/function",
                       all(is_code(o) for o in results["code"]["code" + suffix])))

    lines = ["# Greedy samples (temperature 0) from tools/train/train_all.py --stage eval", "",
             "Held-out prompts (tools/train/data/eval.json) in the wrapped form (what the chat template renders; the",
             "instruction inside it is shown) and in the bare form (the prompt exactly as sent to /v1/generate).", ""]
    for set_name, group, ps in sets:
        bare = set_name.endswith("-bare")
        for i, p in enumerate(ps):
            shown = p if bare else p.split("### Instruction:\n", 1)[1].split("\n\n### Response:", 1)[0]
            lines += [f"## {set_name} #{i + 1}", "", "Prompt (bare, as sent):" if bare else "Instruction (wrapped):", "",
                      "```text\n" + shown + "\n```", "", "Base model (no adapter):", "",
                      "```text\n" + results["base"][set_name][i] + "\n```", "", f"`{group}` adapter:", "",
                      "````text\n" + results[group][set_name][i] + "\n````", ""]
    lines.append("## Checks")
    lines.append("")
    for desc, ok in checks:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {desc}")
    lines.append(f"- info: with a second BOS token prepended, {sum(bos_same)} of {len(bos_same)} adapter answers to wrapped prompts are identical")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(DATA, "eval-samples.md"), "w", encoding="utf-8") as f:
        f.write(text)
    # Machine-readable too (token ids included), for comparing another implementation (e.g. the server).
    write_json(os.path.join(DATA, "eval-samples.json"), {
        "max_new_tokens": MAX_NEW_TOKENS, "prompts": {set_name: ps for set_name, _g, ps in sets},
        "outputs": {k: {g: [{"text": t, "token_ids": i} for t, i in zip(results[k][g], token_ids[k][g])] for g in results[k]} for k in results},
        "checks": [{"check": d, "pass": ok} for d, ok in checks],
        "double_bos_identical": f"{sum(bos_same)}/{len(bos_same)}",
    })
    log(text)
    return all(ok for _, ok in checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="all", choices=["all", "tokenizer", "base", "adapters", "eval"])
    ap.add_argument("--adapter", action="append", choices=list(ADAPTERS), help="with --stage adapters: only these")
    ap.add_argument("--no-node-check", action="store_true", help="skip checking the tokenizer against @huggingface/tokenizers")
    args = ap.parse_args()
    t0 = time.time()
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.stage in ("all", "tokenizer"):
        stage_tokenizer(not args.no_node_check)
    if args.stage in ("all", "base"):
        stage_base()
    if args.stage in ("all", "adapters"):
        for name in args.adapter or list(ADAPTERS):
            stage_adapter(name)
    ok = True
    if args.stage in ("all", "eval"):
        ok = stage_eval()
    log(f"done in {time.time() - t0:.0f}s")
    if not ok:
        raise SystemExit("some eval checks FAILED (see above)")


if __name__ == "__main__":
    main()
