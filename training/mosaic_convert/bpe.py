"""BART's byte-level BPE: `vocab.json` + `merges.txt` (as published with DALL·E mini and min-dalle)
-> a Hugging Face `tokenizer.json` the engine reads with @huggingface/tokenizers; and a plain Python
encoder the tests use as the reference."""
from __future__ import annotations

import json
import re

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (space -> 'Ġ')."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def read_merges(path: str) -> list[str]:
    with open(path, encoding="utf8") as f:
        lines = f.read().split("\n")
    return [l for l in lines if l and not l.startswith("#version")]


def tokenizer_json(vocab: dict[str, int], merges: list[str]) -> dict:
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": t == "<mask>", "rstrip": False,
              "normalized": t == "<mask>", "special": True} for t in SPECIALS if t in vocab]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        # dalle-mini's TextNormalizer runs before the tokenizer (the engine's "dalle-mini" normalisation).
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", vocab["</s>"]], "cls": ["<s>", vocab["<s>"]],
                           "trim_offsets": True, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
    }


def write_tokenizer(vocab_path: str, merges_path: str, out_path: str) -> dict:
    with open(vocab_path, encoding="utf8") as f:
        vocab = json.load(f)
    missing = [t for t in ("<s>", "<pad>", "</s>") if t not in vocab]
    if missing:
        raise ValueError(f"{vocab_path}: not a BART vocabulary (no {', '.join(missing)})")
    tok = tokenizer_json(vocab, read_merges(merges_path))
    with open(out_path, "w", encoding="utf8") as f:
        json.dump(tok, f, ensure_ascii=False)
    return vocab


# GPT-2's pre-tokenizer pattern with Python's `re` classes standing in for \p{L} / \p{N}.
_WORDS = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


class ByteLevelBPE:
    """Straightforward byte-level BPE with BART's <s> … </s> framing (the reference for tests)."""

    def __init__(self, vocab: dict[str, int], merges: list[str]):
        self.vocab = vocab
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.byte_char = bytes_to_unicode()

    def word(self, text: str) -> list[str]:
        parts = [self.byte_char[b] for b in text.encode("utf8")]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == float("inf"):
                break
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    def encode(self, text: str) -> list[int]:
        pieces = [p for w in _WORDS.findall(text) for p in self.word(w)]
        return [self.vocab["<s>"]] + [self.vocab.get(p, self.vocab.get("<unk>", 3)) for p in pieces] + [self.vocab["</s>"]]
