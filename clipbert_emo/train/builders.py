"""Wiring shared by fine-tuning, evaluation and prediction: manifests -> datasets -> loaders."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from ..config import DataConfig
from ..data.dataset import Collator, VideoTextDataset, sample_target
from ..data.manifest import Manifest, read_manifest
from .samplers import ClassBalancedSampler, EpochShuffleSampler


def load_manifest(path: str, cfg: DataConfig, require_label: bool = True) -> Manifest:
    return read_manifest(path, cfg.labels, require_video=cfg.use_video, require_label=require_label,
                         strict=cfg.strict, task=cfg.task, heads=cfg.heads)


def has_split(cfg: DataConfig, split: str) -> bool:
    """Whether the experiment has this split: a manifest path is set, or a release is read from data.root."""
    return cfg.format != "manifest" or bool(getattr(cfg, f"{split}_manifest"))


def load_split(cfg: DataConfig, split: str) -> Manifest:
    """The samples of one split: from the manifests, or read from a public release under data.root."""
    from ..data.benchmarks import read_split

    return read_split(cfg, split)


def stratified_subset(manifest: Manifest, fraction: float, seed: int, task: str) -> Manifest:
    """Keep ``fraction`` of the samples, the same fraction of each class (at least one per class).

    For label-efficiency experiments: the subset is a function of the seed alone, so the
    runs being compared train on the same labelled samples.
    """
    if fraction >= 1.0:
        return manifest
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    groups: dict = {}
    for i, s in enumerate(manifest.samples):
        key = sample_target(s, task) if task == "single_label" else 0
        groups.setdefault(key, []).append(i)
    keep: list[int] = []
    for key in sorted(groups, key=str):
        members = groups[key]
        n = max(1, round(len(members) * fraction))
        order = torch.randperm(len(members), generator=g).tolist()
        keep.extend(members[j] for j in order[:n])
    keep.sort()
    return Manifest(path=manifest.path, samples=[manifest.samples[i] for i in keep], skipped=manifest.skipped)


def class_counts(manifest: Manifest, cfg: DataConfig) -> torch.Tensor:
    """Training-split class counts: (K,) for single_label, (H, K) for multitask (unlabelled -1 not counted)."""
    k = len(cfg.labels)
    if cfg.task == "multitask":
        counts = torch.zeros(len(cfg.heads), k, dtype=torch.long)
        for s in manifest.samples:
            for h, c in enumerate(s.task_labels or []):
                if c >= 0:
                    counts[h, c] += 1
        return counts
    if cfg.task != "single_label":
        raise ValueError(f"class counts need a single_label or multitask task, not {cfg.task}")
    counts = torch.zeros(k, dtype=torch.long)
    for s in manifest.samples:
        counts[s.label] += 1
    return counts


def make_train_sampler(manifest: Manifest, cfg: DataConfig, kind: str, seed: int, balance_head: str = ""):
    """shuffle: EpochShuffleSampler; class_balanced: ClassBalancedSampler over the single label, or over
    one multitask head (train.balance_head). Both are functions of (seed, epoch), so resume is exact."""
    if kind == "shuffle":
        return EpochShuffleSampler(len(manifest.samples), seed)
    if cfg.task == "single_label":
        labels = [s.label for s in manifest.samples]
    elif cfg.task == "multitask":
        if balance_head not in cfg.heads:
            raise ValueError(f"train.sampler=class_balanced with a multitask model needs train.balance_head, one "
                             f"of {', '.join(cfg.heads)} (got {balance_head!r})")
        h = cfg.heads.index(balance_head)
        labels = [s.task_labels[h] for s in manifest.samples]
    else:
        raise ValueError(f"train.sampler=class_balanced needs single_label or multitask data, not {cfg.task}")
    return ClassBalancedSampler(labels, seed)


def make_loader(manifest: Manifest, cfg: DataConfig, tokenizer, training: bool, batch_size: int, seed: int,
                num_clips: int | None = None, sampler: Sampler | None = None) -> DataLoader:
    dataset = VideoTextDataset(manifest, cfg, training=training, num_clips=num_clips, seed=seed)
    collate = Collator(tokenizer, cfg.max_text_len, len(cfg.labels), cfg.task)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=(sampler or EpochShuffleSampler(len(dataset), seed)) if training else None,
        drop_last=False,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        generator=generator,
        persistent_workers=False,
    )
