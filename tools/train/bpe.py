"""Byte-level BPE (GPT-2 style), trained from scratch, written as a Hugging Face tokenizer.json.

The tokenizer.json mirrors what the `tokenizers` library writes for a ByteLevel BPE (the layout of the
reference checkpoint in shared/reference/llama-tiny): ByteLevel pre-tokenizer (GPT-2 split regex, no prefix
space), BPE model with the 256-symbol byte alphabet + merges, ByteLevel decoder, and a TemplateProcessing
post-processor that prepends the BOS token. Special tokens: <|begin|> (BOS, id 0), <|end|> (EOS, id 1),
<|pad|> (id 2).

The encoder here exists only so training does not depend on node; tools/train/verify_tokenizer.mjs checks
that @huggingface/tokenizers (what the server uses) gives the very same ids for every training text.
"""
from __future__ import annotations

import json
import re
from collections import Counter

SPECIAL_TOKENS = ["<|begin|>", "<|end|>", "<|pad|>"]
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2

# GPT-2's split pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+) written
# for Python's re: [^\W\d_] is "a letter", \d "a digit", and (?:[^\s\w]|_) "neither" ("_" is \w in Python but
# not a letter or digit). Exact for the ASCII text this corpus uses.
PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


def pre_tokens(text: str) -> list[str]:
    """Splits text like the ByteLevel pre-tokenizer and maps each piece to its byte-level characters."""
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8")) for piece in PRETOKENIZE.findall(text)]


def train_bpe(texts: list[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Classic BPE: repeatedly merge the most frequent adjacent pair (ties: the smallest pair, for determinism)."""
    word_counts: Counter[str] = Counter()
    for t in texts:
        word_counts.update(pre_tokens(t))
    alphabet = sorted(BYTE_ENCODER.values())
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    words = [(list(w), c) for w, c in sorted(word_counts.items())]
    merges: list[tuple[str, str]] = []

    pair_counts: Counter[tuple[str, str]] = Counter()
    for syms, c in words:
        for a, b in zip(syms, syms[1:]):
            pair_counts[(a, b)] += c

    while len(vocab) < vocab_size and pair_counts:
        best_count = max(pair_counts.values())
        if best_count < 2:
            break
        best = min(p for p, c in pair_counts.items() if c == best_count)
        merged = best[0] + best[1]
        merges.append(best)
        vocab[merged] = len(vocab)
        for syms, c in words:
            if len(syms) < 2:
                continue
            i = 0
            changed = False
            while i < len(syms) - 1:
                if syms[i] == best[0] and syms[i + 1] == best[1]:
                    if not changed:
                        for a, b in zip(syms, syms[1:]):
                            pair_counts[(a, b)] -= c
                        changed = True
                    syms[i:i + 2] = [merged]
                i += 1
            if changed:
                for a, b in zip(syms, syms[1:]):
                    pair_counts[(a, b)] += c
        pair_counts = Counter({p: c for p, c in pair_counts.items() if c > 0})
    return vocab, merges


class ByteLevelBPE:
    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.merges = merges
        self.cache: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str) -> "ByteLevelBPE":
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        vocab = dict(tj["model"]["vocab"])
        for t in tj["added_tokens"]:
            vocab[t["content"]] = t["id"]
        return cls(vocab, [tuple(m) for m in tj["model"]["merges"]])

    def _bpe(self, word: str) -> list[int]:
        hit = self.cache.get(word)
        if hit is not None:
            return hit
        syms = list(word)
        while len(syms) > 1:
            best_rank, best_i = None, -1
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best_rank, best_i = r, i
            if best_rank is None:
                break
            a, b = self.merges[best_rank]
            out, i = [], 0
            while i < len(syms):
                if i < len(syms) - 1 and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """Ids as tokenizer.encode(text) gives them (BOS prepended by the post-processor). No special-token parsing."""
        ids = [BOS_ID] if add_bos else []
        for w in pre_tokens(text):
            ids.extend(self._bpe(w))
        return ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        out = bytearray()
        text = []
        for i in ids:
            tok = self.id_to_token[i]
            if tok in SPECIAL_TOKENS:
                if not skip_special:
                    text.append(out.decode("utf-8", errors="replace"))
                    out = bytearray()
                    text.append(tok)
                continue
            out.extend(BYTE_DECODER[c] for c in tok)
        text.append(out.decode("utf-8", errors="replace"))
        return "".join(text)


def tokenizer_json(vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict:
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for i, t in enumerate(SPECIAL_TOKENS)]
    bos = SPECIAL_TOKENS[BOS_ID]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {bos: {"id": bos, "ids": [BOS_ID], "tokens": [bos]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b in merges],
        },
    }
