"""A per-clip modality added from outside the library (a decoder, an encoder with its token embeddings, a
``data.use_<name>`` switch) is decoded, batched, encoded, fused and trained without any library change."""

import torch
import torch.nn as nn

from clipbert_emo.config import load_config
from clipbert_emo.data import dataset
from clipbert_emo.models import modalities
from clipbert_emo.models.modalities import Modality
from support import TINY_OVERRIDES


def decode_timing(sample, cfg, num_clips, training, rng, context):
    """Toy modality: where each of the video's sampled clips sits in time, one (start, end) pair per clip,
    read from the spans the video decoder chose (as an audio decoder would centre its windows on them)."""
    spans = context["spans"]
    return torch.tensor(spans, dtype=torch.float32), spans  # (N, 2)


class TimingEncoder(nn.Module):
    def __init__(self, cfg, pretrained=True):
        super().__init__()
        self.proj = nn.Linear(2, cfg.hidden_size)

    def forward(self, x):  # (B, N, 2) -> (B, N, D, 1): one token per clip
        return self.proj(x)[..., None]

    def enable_gradient_checkpointing(self):
        pass


class TimingEmbeddings(nn.Module):
    def __init__(self, cfg, bert):
        super().__init__()
        self.type_embedding = nn.Parameter(torch.zeros(bert.hidden_size))

    def forward(self, feats):  # (B', D, 1) -> (B', 1, D)
        return feats.transpose(1, 2) + self.type_embedding


def _loader(cfg):
    from clipbert_emo.data.loading import make_loader
    from clipbert_emo.data.text import build_wordpiece_tokenizer
    from clipbert_emo.tasks import get_task, load_split

    tok = build_wordpiece_tokenizer(["hello"], 50, cfg.train.output_dir + "/tok")
    return make_loader(load_split(cfg.data, "train"), cfg.data, tok, True, 4, 0, task=get_task("single_label")), tok


def test_a_modality_added_from_outside_trains_end_to_end(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.build import build_model
    from clipbert_emo.train.finetune import finetune

    monkeypatch.setitem(dataset.MODALITY_DECODERS, "timing", decode_timing)
    spec = Modality("timing", "timing_encoder", "timing_embeddings", TimingEncoder, TimingEmbeddings)
    monkeypatch.setitem(modalities.MODALITY_BY_NAME, "timing", spec)
    modalities.MODALITIES.append(spec)
    try:
        cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={synthemo_dir / 'train.jsonl'}",
                                 f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
                                 f"train.output_dir={tmp_path / 'run'}", "train.max_steps=3"])
        cfg.data.use_timing = True  # the toy's config switch (a real modality adds a config section)

        loader, tok = _loader(cfg)
        model = build_model(cfg, len(tok))
        assert model.modality_names == ["video", "timing"]
        assert hasattr(model.transformer.bert, "timing_embeddings")
        batch = next(iter(loader))
        assert batch["timing"].shape == (4, 2, 2)  # (B, N_train, 2): one span per training clip
        assert torch.equal(batch["timing"][0], torch.tensor(batch["spans"][0]))
        out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "video", "timing")},
                    labels=batch["labels"])
        out.loss.backward()
        assert model.timing_encoder.proj.weight.grad.abs().sum() > 0, "the new encoder is trained"

        m = finetune(cfg, progress=False)
        assert m["steps"] == 3 and all(torch.isfinite(torch.tensor(m["step_losses"])))
        assert "val_macro_f1" in m["history"][0]
    finally:
        modalities.MODALITIES.remove(spec)
