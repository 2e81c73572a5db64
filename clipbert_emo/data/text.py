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
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot load tokenizer {name!r}: not a local folder with vocab.txt/tokenizer.json, and not "
            f"reachable on the model hub ({str(e).strip().splitlines()[0][:200]}). Offline, pass a local folder"
        ) from None
