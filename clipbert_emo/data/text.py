"""Text side: a BERT WordPiece tokenizer, built locally or loaded with ``from_pretrained``.

With no tokenizer named in the config, a WordPiece vocabulary is trained on the
training split's texts (seconds, offline) and saved beside the checkpoint, so a
trained model always travels with the exact vocabulary it was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike):
    """Build a lower-cased WordPiece vocabulary from ``texts``; save and return a BertTokenizerFast.

    The vocabulary is: the special tokens, every character seen (alone and as a ``##``
    continuation piece, so any word made of known characters is spelled out rather than
    collapsed to [UNK]), then whole words by frequency, ties broken alphabetically. Unlike
    the ``tokenizers`` trainer, whose parallel merge order varies between runs, this gives
    the same ids every time, which a seeded run needs to be reproducible.
    """
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from transformers import BertTokenizerFast

    normalizer, pre = BertNormalizer(lowercase=True), BertPreTokenizer()
    words: Counter = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text or "")))
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'"))
    vocab = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    seen = set(vocab)
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        # from_pretrained prefers tokenizer.json: one left by an earlier run would win over the new vocab.
        (out_dir / stale).unlink(missing_ok=True)
    (out_dir / "vocab.txt").write_text("".join(t + "\n" for t in vocab))
    # Loading from the folder (not a vocab_file argument) works across transformers 4.x and 5.x.
    tok = BertTokenizerFast.from_pretrained(str(out_dir), do_lower_case=True)
    tok.save_pretrained(str(out_dir))
    return tok


def load_tokenizer(name_or_path: str | os.PathLike):
    """A BERT tokenizer from a local folder (with vocab.txt) or a hub id."""
    from transformers import AutoTokenizer

    from ..config import UserError

    name = str(name_or_path)
    looks_local = os.path.isabs(name) or name.startswith(".") or os.path.exists(name) or name.count("/") > 1
    if looks_local and not os.path.isdir(name):
        raise UserError(f"tokenizer {name}: no such folder (a tokenizer folder holds vocab.txt or tokenizer.json)")
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)  # a folder's auto_map never runs
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot load tokenizer {name!r}: not a local folder with vocab.txt/tokenizer.json, and not "
            f"reachable on the model hub ({str(e).strip().splitlines()[0][:200]}). Offline, pass a local folder"
        ) from None


class InferenceTokenizer:
    """A checkpoint's tokenizer.json run by the ``tokenizers`` library alone, called as transformers' tokenizers
    are (``tok(texts, padding=..., truncation=True, max_length=L, return_tensors="pt")`` -> input_ids and
    attention_mask): importing transformers costs seconds that prediction does not need. The same ids as
    transformers' tokenizer loaded from the same folder (tests/test_fast_paths.py)."""

    def __init__(self, file: str | os.PathLike, pad_token: str = "[PAD]"):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(file))
        self.pad_token = pad_token
        self.pad_token_id = self.backend.token_to_id(pad_token)
        if self.pad_token_id is None:
            raise ValueError(f"{file}: no {pad_token} token")
        self.cls_token_id = self.backend.token_to_id("[CLS]")  # None where the vocabulary has none, as in transformers
        self.sep_token_id = self.backend.token_to_id("[SEP]")

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts, padding: bool | str = True, truncation: bool = False, max_length: int | None = None,
                 return_tensors: str = "pt") -> dict:
        import torch

        if return_tensors != "pt":
            raise ValueError("InferenceTokenizer returns torch tensors only (return_tensors='pt')")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if truncation and max_length:
            self.backend.enable_truncation(max_length)
        else:
            self.backend.no_truncation()
        self.backend.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)  # to the longest
        encodings = self.backend.encode_batch(texts)
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),  # (B, L)
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)}  # (B, L)


def load_inference_tokenizer(folder: str | os.PathLike):
    """A checkpoint's tokenizer for inference: its tokenizer.json through ``InferenceTokenizer`` when it has a
    plain BERT one (lower-casing as its config says), else transformers' (``load_tokenizer``)."""
    import json

    folder = Path(folder)
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        if (folder / "tokenizer.json").is_file() and config.get("tokenizer_class") in ("BertTokenizer",
                                                                                        "BertTokenizerFast"):
            return InferenceTokenizer(folder / "tokenizer.json", config.get("pad_token") or "[PAD]")
    except Exception:  # unreadable JSON, a tokenizer.json the tokenizers library refuses: transformers knows more
        pass
    return load_tokenizer(folder)
