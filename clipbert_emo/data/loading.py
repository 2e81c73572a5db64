"""A split's samples -> a DataLoader of batches, and the label-fraction subsets of a training split."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ..config import DataConfig
from .dataset import Collator, VideoTextDataset
from .manifest import Manifest
from .samplers import EpochShuffleSampler


def make_loader(manifest: Manifest, cfg: DataConfig, tokenizer, training: bool, batch_size: int, seed: int,
                task=None, num_clips: int | None = None, sampler: Sampler | None = None) -> DataLoader:
    """``task``: the task kind (``clipbert_emo.tasks``) whose annotation the batches carry; None = no labels.
    Training order comes from ``sampler`` (default: a fresh permutation per epoch, replayable on resume)."""
    dataset = VideoTextDataset(manifest, cfg, training=training, num_clips=num_clips, seed=seed,
                               target=task.target if task is not None else None,
                               text_of=(lambda sample: task.texts(sample, cfg)) if task is not None else None)
    collate = Collator(tokenizer, cfg.max_text_len,
                       (lambda targets: task.collate(targets, cfg)) if task is not None else None)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=(sampler or EpochShuffleSampler(len(dataset), seed)) if training else None,
        drop_last=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),  # page-locked batches: non-blocking copies to the GPU
    )


def stratified_subset(manifest: Manifest, fraction: float, seed: int, key=lambda sample: 0) -> Manifest:
    """Keep ``fraction`` of the samples, the same fraction of each group ``key(sample)`` (at least one each).

    For label-efficiency experiments: the subset is a function of the seed alone, so the
    runs being compared train on the same labelled samples.
    """
    if fraction >= 1.0:
        return manifest
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    groups: dict = {}
    for i, s in enumerate(manifest.samples):
        groups.setdefault(key(s), []).append(i)
    keep: list[int] = []
    for k in sorted(groups, key=str):
        members = groups[k]
        n = max(1, round(len(members) * fraction))
        order = torch.randperm(len(members), generator=g).tolist()
        keep.extend(members[j] for j in order[:n])
    keep.sort()
    return Manifest(path=manifest.path, samples=[manifest.samples[i] for i in keep], skipped=manifest.skipped)
