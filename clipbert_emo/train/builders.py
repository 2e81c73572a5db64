"""Wiring shared by fine-tuning, evaluation and prediction: manifests -> datasets -> loaders."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ..config import DataConfig
from ..data.dataset import Collator, VideoTextDataset
from ..data.manifest import Manifest, read_manifest


def load_manifest(path: str, cfg: DataConfig, require_label: bool = True) -> Manifest:
    return read_manifest(path, cfg.labels, multilabel=cfg.multilabel, require_video=cfg.use_video,
                         require_label=require_label, strict=cfg.strict)


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation each epoch, drawn from (seed, epoch) alone.

    Epoch e's order is known without replaying epochs 1..e-1, so a resumed run sees
    exactly the batches an uninterrupted one would have.
    """

    def __init__(self, num_samples: int, seed: int):
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.skip = 0  # samples of this epoch already consumed before a resume

    def set_position(self, epoch: int, skip: int = 0) -> None:
        # Not named set_epoch on purpose: accelerate calls set_epoch(its own counter) on every
        # iteration, which would overwrite the epoch and the resume offset.
        self.epoch = epoch
        self.skip = skip

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist()[self.skip:])

    def __len__(self) -> int:
        return self.num_samples


def make_loader(manifest: Manifest, cfg: DataConfig, tokenizer, training: bool, batch_size: int, seed: int,
                num_clips: int | None = None) -> DataLoader:
    dataset = VideoTextDataset(manifest, cfg, training=training, num_clips=num_clips, seed=seed)
    collate = Collator(tokenizer, cfg.max_text_len, len(cfg.labels), cfg.multilabel)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed) if training else None,
        drop_last=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=False,
    )
