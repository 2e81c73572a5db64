"""Training samplers whose order can be replayed: a shuffle, and one that rebalances skewed splits.

Both follow one resume contract: epoch e's order is a pure function of (seed, e), and
``set_position(epoch, skip)`` drops the first ``skip`` indices of that order, so a run resumed
mid-epoch sees exactly the batches an uninterrupted run would have, without replaying
epochs 1..e-1.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["ClassBalancedSampler", "EpochShuffleSampler"]


class _ReplayableSampler(Sampler[int]):
    """The resume contract; subclasses say what ``epoch_indices`` is."""

    num_samples: int
    seed: int
    epoch: int = 0
    skip: int = 0  # samples of this epoch already consumed before a resume

    def set_position(self, epoch: int, skip: int = 0) -> None:
        # Not named set_epoch on purpose: accelerate calls set_epoch(its own counter) on every
        # iteration, which would overwrite the epoch and the resume offset.
        self.epoch = epoch
        self.skip = skip

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def epoch_indices(self, epoch: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self):
        return iter(self.epoch_indices(self.epoch)[self.skip:])

    def __len__(self) -> int:
        return self.num_samples


class EpochShuffleSampler(_ReplayableSampler):
    """A fresh permutation of all samples each epoch.

    ``groups`` (one key per sample, e.g. its video): the groups are shuffled instead, and each group's samples
    follow one another in manifest order, so a batch holds whole groups (but where a group straddles a batch
    boundary) and the samples of a video can share its clips (data.group_by_video)."""

    def __init__(self, num_samples: int, seed: int, groups: Sequence[Hashable] | None = None):
        self.num_samples = num_samples
        self.seed = seed
        self.members: list[list[int]] | None = None
        if groups is not None:
            if len(groups) != num_samples:
                raise ValueError(f"groups: one key per sample, got {len(groups)} for {num_samples} samples")
            by_key: dict = {}
            for i, key in enumerate(groups):
                by_key.setdefault(key, []).append(i)
            self.members = list(by_key.values())  # in order of first appearance

    def epoch_indices(self, epoch: int) -> list[int]:
        if self.members is None:
            return torch.randperm(self.num_samples, generator=self._generator(epoch)).tolist()
        order = torch.randperm(len(self.members), generator=self._generator(epoch)).tolist()
        return [i for g in order for i in self.members[g]]


class ClassBalancedSampler(_ReplayableSampler):
    """Draws ``num_samples`` indices per epoch, with replacement, so that every class is equally likely.

    Sample ``i`` is drawn with probability proportional to ``1 / count(labels[i])``,
    so each class that occurs in ``labels`` gets the same total probability
    ``1 / C`` (C = number of distinct labels present). A class with no sample in
    ``labels`` simply cannot be drawn: there is nothing to oversample, and the
    remaining classes share the probability equally. Every distinct value is a
    class, including a placeholder such as ``-1`` for "not annotated" (used when
    balancing one head of a multitask set): such samples then form their own
    group and are still seen, rather than silently dropped.

    ``num_samples`` defaults to ``len(labels)``, so an "epoch" has the usual
    length; with replacement, a minority sample appears several times in it and
    some majority samples not at all.

    The draw uses a ``torch.Generator`` seeded from (seed, epoch) only, never
    global RNG state.
    """

    def __init__(self, labels: Sequence[int], seed: int, num_samples: int | None = None):
        labels = list(labels)
        if not labels:
            raise ValueError("labels must not be empty")
        if num_samples is None:
            num_samples = len(labels)
        if int(num_samples) != num_samples or num_samples <= 0:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        counts: dict = {}
        for y in labels:
            counts[y] = counts.get(y, 0) + 1
        # float64 keeps 1/count exact enough that classes stay equally weighted for any split size.
        self.weights = torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.float64)
        self.class_counts = dict(sorted(counts.items(), key=lambda kv: str(kv[0])))
        self.num_samples = int(num_samples)
        self.seed = seed

    def epoch_indices(self, epoch: int) -> list[int]:
        """The full order of ``epoch`` (no skip), a pure function of (seed, epoch)."""
        return torch.multinomial(self.weights, self.num_samples, replacement=True,
                                 generator=self._generator(epoch)).tolist()
