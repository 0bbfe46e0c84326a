"""A plain-PyTorch Llama (the math of Hugging Face's LlamaForCausalLM) with optional PEFT-style LoRA.

Written against PyTorch 1.13 (Debian bookworm's python3-torch), no transformers/peft needed. It follows
HF's modeling_llama.py operation for operation so that any faithful implementation (HF itself, or the
server's ONNX graph) reproduces the same logits:

- RMSNorm: x * rsqrt(mean(x^2) + eps) computed in float32, then times the weight.
- Rotary embeddings, non-interleaved ("rotate_half"): inv_freq = 1 / theta^(2i/d), emb = cat(freqs, freqs),
  q' = q*cos + rotate_half(q)*sin with rotate_half(x) = cat(-x2, x1).
- Attention: softmax(q k^T / sqrt(head_dim) + causal mask) v, GQA by repeating the KV heads.
- MLP: down(silu(gate(x)) * up(x)). No biases anywhere.
- LoRA (PEFT semantics): y = W x + (B (A x)) * scale, scale = lora_alpha / r (or / sqrt(r) with rsLoRA).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 32
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    bos_token_id: int = 0
    eos_token_id: int = 1
    pad_token_id: int = 2
    initializer_range: float = 0.02

    def to_hf(self) -> dict:
        """config.json as transformers 5 writes it for LlamaForCausalLM (keys sorted like save_pretrained)."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "dtype": "float32",
            "eos_token_id": self.eos_token_id,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": self.initializer_range,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "mlp_bias": False,
            "model_type": "llama",
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "pad_token_id": self.pad_token_id,
            "pretraining_tp": 1,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "tie_word_embeddings": self.tie_word_embeddings,
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }


class LoraLinear(nn.Module):
    """nn.Linear without bias plus an optional LoRA branch (PEFT's layout: A [r, in], B [out, r])."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.lora_A: nn.Parameter | None = None
        self.lora_B: nn.Parameter | None = None
        self.scale = 0.0

    def add_lora(self, r: int, alpha: float, rslora: bool, generator: torch.Generator) -> None:
        out_features, in_features = self.weight.shape
        # PEFT's default init: A ~ kaiming_uniform(a=sqrt(5)) (= U(-1/sqrt(in), 1/sqrt(in))), B = 0.
        bound = 1.0 / math.sqrt(in_features)
        a = (torch.rand(r, in_features, generator=generator) * 2 - 1) * bound
        self.lora_A = nn.Parameter(a)
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        self.scale = alpha / math.sqrt(r) if rslora else alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if self.lora_A is not None:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale
        return y


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(cfg: LlamaConfig, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    pos = torch.arange(seq_len, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = LoraLinear(h, cfg.num_attention_heads * d)
        self.k_proj = LoraLinear(h, cfg.num_key_value_heads * d)
        self.v_proj = LoraLinear(h, cfg.num_key_value_heads * d)
        self.o_proj = LoraLinear(cfg.num_attention_heads * d, h)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        cfg = self.cfg
        nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self.q_proj(x).view(b, t, nh, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, nkv, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, nkv, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * (d ** -0.5) + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, nh * d)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = LoraLinear(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = LoraLinear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = LoraLinear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = LoraLinear(cfg.hidden_size, cfg.vocab_size)
        self._rope_len = 0

    def init_weights(self, generator: torch.Generator) -> None:
        """HF's _init_weights: normal(0, initializer_range) for Linear/Embedding, ones for norms."""
        std = self.cfg.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                with torch.no_grad():
                    p.fill_(1.0)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * std)
        # GPT-2 style: shrink the residual-branch output projections by 1/sqrt(2 * layers) for a stable start.
        shrink = 1.0 / math.sqrt(2 * self.cfg.num_hidden_layers)
        with torch.no_grad():
            for layer in self.model.layers:
                layer.self_attn.o_proj.weight.mul_(shrink)
                layer.mlp.down_proj.weight.mul_(shrink)
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape
        if t > self._rope_len:
            self._cos, self._sin = rope_cos_sin(self.cfg, max(t, 64))
            self._rope_len = self._cos.shape[0]
        cos, sin = self._cos[:t], self._sin[:t]
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))

    # -- LoRA --------------------------------------------------------------------------------------
    def lora_modules(self, targets: list[str]) -> dict[str, LoraLinear]:
        found: dict[str, LoraLinear] = {}
        for name, mod in self.named_modules():
            if isinstance(mod, LoraLinear) and name.startswith("model.layers.") and name.split(".")[-1] in targets:
                found[name] = mod
        return found

    def add_lora(self, targets: list[str], r: int, alpha: float, rslora: bool, generator: torch.Generator) -> dict[str, LoraLinear]:
        mods = self.lora_modules(targets)
        for name in sorted(mods):
            mods[name].add_lora(r, alpha, rslora, generator)
        return mods

    def remove_lora(self) -> None:
        for mod in self.modules():
            if isinstance(mod, LoraLinear):
                mod.lora_A = None
                mod.lora_B = None
                mod.scale = 0.0

    # -- HF state dict -------------------------------------------------------------------------------
    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The base weights under HF's names (lm_head.weight included even when tied, as HF reads either)."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.named_parameters():
            if ".lora_" in name:
                continue
            out[name] = p.detach().clone().contiguous()
        if "lm_head.weight" not in out:
            out["lm_head.weight"] = self.model.embed_tokens.weight.detach().clone()
        return out

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, p in params.items():
                if ".lora_" in name:
                    continue
                p.copy_(sd[name])

    def peft_state_dict(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, mod in self.named_modules():
            if isinstance(mod, LoraLinear) and mod.lora_A is not None:
                out[f"base_model.model.{name}.lora_A.weight"] = mod.lora_A.detach().clone().contiguous()
                out[f"base_model.model.{name}.lora_B.weight"] = mod.lora_B.detach().clone().contiguous()
        return out


def count_params(model: nn.Module) -> int:
    seen: set[int] = set()
    n = 0
    for name, p in model.named_parameters():
        if ".lora_" in name or id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
    return n
