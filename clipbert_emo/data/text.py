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
    """Train a lower-cased WordPiece vocabulary on ``texts``; save and return a BertTokenizerFast."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    # An empty corpus would give a vocabulary of special tokens only; a letter alphabet keeps
    # unseen words spellable as word pieces instead of collapsing to [UNK].
    alphabet = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    wp.train_from_iterator(
        list(texts) or [""], vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet, show_progress=False,
    )
    wp.save_model(str(out_dir))
    # Loading from the folder (not a vocab_file argument) works across transformers 4.x and 5.x.
    tok = BertTokenizerFast.from_pretrained(str(out_dir), do_lower_case=True)
    tok.save_pretrained(str(out_dir))
    return tok


def load_tokenizer(name_or_path: str | os.PathLike):
    """A BERT tokenizer from a local folder (with vocab.txt) or a hub id."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except OSError as e:
        raise FileNotFoundError(
            f"cannot load tokenizer {name_or_path!r}: not a local folder with vocab.txt/tokenizer.json, and not "
            f"reachable on the model hub ({str(e).splitlines()[0][:200]})"
        ) from None
