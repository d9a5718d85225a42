"""Text normalisation and the word-level tokenizer of the shipped model.

The tokenizer is written as a Hugging Face `tokenizer.json` (WordLevel model) so the engine reads
it with the same library it uses for converted BART tokenizers. The normalisation ("mosaic-basic")
is declared in model.json and implemented again in TypeScript; test fixtures pin both together.
"""
from __future__ import annotations

import json
import re
import unicodedata

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = [PAD, UNK, BOS, EOS]


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces, punctuation runs turned into ' , '."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^a-z0-9\s]+", " , ", text)
    words = text.split()
    out: list[str] = []
    for w in words:
        if w == "," and (not out or out[-1] == ","):
            continue
        out.append(w)
    while out and out[-1] == ",":
        out.pop()
    return " ".join(out)


class WordTokenizer:
    def __init__(self, words: list[str]):
        self.vocab = {tok: i for i, tok in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}

    @property
    def pad_id(self) -> int:
        return self.vocab[PAD]

    def encode(self, text: str, max_length: int) -> list[int]:
        """<s> words </s>, truncated so that </s> is always kept."""
        ids = [self.vocab.get(w, self.vocab[UNK]) for w in normalise(text).split()]
        ids = ids[: max_length - 2]
        return [self.vocab[BOS]] + ids + [self.vocab[EOS]]

    def to_json(self) -> dict:
        added = [
            {"id": self.vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in SPECIALS
        ]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            # Normalisation happens before the tokenizer (model.json's text.normalization), so the
            # tokenizer itself only splits on white space.
            "normalizer": None,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": EOS, "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": EOS, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                         {"SpecialToken": {"id": EOS, "type_id": 1}}],
                "special_tokens": {
                    BOS: {"id": BOS, "ids": [self.vocab[BOS]], "tokens": [BOS]},
                    EOS: {"id": EOS, "ids": [self.vocab[EOS]], "tokens": [EOS]},
                },
            },
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": self.vocab, "unk_token": UNK},
        }

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)
