"""Wiring shared by fine-tuning, evaluation and prediction: manifests -> datasets -> loaders."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..config import DataConfig
from ..data.dataset import Collator, VideoTextDataset
from ..data.manifest import Manifest, read_manifest


def load_manifest(path: str, cfg: DataConfig, require_label: bool = True) -> Manifest:
    return read_manifest(path, cfg.labels, multilabel=cfg.multilabel, require_video=cfg.use_video,
                         require_label=require_label, strict=cfg.strict)


def make_loader(manifest: Manifest, cfg: DataConfig, tokenizer, training: bool, batch_size: int, seed: int,
                num_clips: int | None = None) -> DataLoader:
    dataset = VideoTextDataset(manifest, cfg, training=training, num_clips=num_clips, seed=seed)
    collate = Collator(tokenizer, cfg.max_text_len, len(cfg.labels), cfg.multilabel)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=training,
        drop_last=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=False,
    )
