"""Retrieval data: videos with their captions, sampled negatives, and the gallery a query is ranked against.

A retrieval split is a list of (video, caption) records (MSR-VTT has 20 captions per video). Training
pairs each record's video with its own caption (label 1) and ``num_negatives`` captions of other videos
(label 0), drawn from a generator seeded by (seed, epoch, index) like every other random choice of the
data pipeline, so a run is reproducible and resumes exactly. Evaluation needs the distinct videos (the
gallery) and, per caption, which of them is its own: :func:`gallery`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .dataset import Collator, VideoTextDataset, video_key
from .manifest import Manifest, Sample


def gallery(manifest: Manifest) -> tuple[list[Sample], list[str], list[int]]:
    """(one sample per distinct video, in first-seen order; every caption; the index of each caption's video)."""
    index: dict[tuple, int] = {}
    videos: list[Sample] = []
    queries, truth = [], []
    for s in manifest.samples:
        key = video_key(s)
        if key not in index:
            index[key] = len(videos)
            videos.append(s)
        queries.append(s.text)
        truth.append(index[key])
    return videos, queries, truth


class RetrievalPairDataset(VideoTextDataset):
    """Items: a video's clips with 1 + ``num_negatives`` texts, its own caption first (labels [1, 0, ...]),
    and ``group``, the index of its video (records of one video share it)."""

    def __init__(self, manifest: Manifest, cfg, training: bool = True, num_negatives: int = 1, seed: int = 0,
                 num_clips: int | None = None):
        super().__init__(manifest, cfg, training=training, num_clips=num_clips, seed=seed)
        self.num_negatives = num_negatives
        keys: dict[tuple, int] = {}
        self.groups = [keys.setdefault(video_key(s), len(keys)) for s in self.samples]
        self.group_texts: dict[int, set] = {}
        for g, s in zip(self.groups, self.samples):
            self.group_texts.setdefault(g, set()).add(s.text)
        if len(keys) < 2:
            raise ValueError(f"{manifest.path}: retrieval needs at least two distinct videos to draw negatives from")

    def negatives(self, index: int) -> list[str]:
        """Captions of other videos, never one worded exactly like a caption of this video (that pair would
        match although labelled as not matching)."""
        rng = np.random.default_rng([self.seed, self.epoch, index, 2])
        own_group = self.groups[index]
        own_texts = self.group_texts[own_group]
        picked: list[str] = []
        for _ in range(self.num_negatives):
            choice = None
            for _ in range(16):  # a few draws; a caption shared across videos is rare
                j = int(rng.integers(len(self.samples)))
                if self.groups[j] != own_group and self.samples[j].text not in own_texts:
                    choice = self.samples[j].text
                    break
            if choice is None:  # pathological splits (one video owns nearly all captions): any other video's
                j = next(j for j in range(len(self.samples)) if self.groups[j] != own_group)
                choice = self.samples[j].text
            picked.append(choice)
        return picked

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["text"] = [item["text"], *(self.negatives(index) if self.cfg.use_text else [""] * self.num_negatives)]
        item["label"] = [1] + [0] * self.num_negatives
        item["group"] = self.groups[index]
        return item


@dataclass
class RetrievalCollator(Collator):
    """The fine-tuning batch (input_ids (B, P, L), labels (B, P)) plus ``group`` (B,), each item's video."""

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__(items)
        if "input_ids" in batch:
            batch["group"] = torch.tensor([it["group"] for it in items if "error" not in it], dtype=torch.long)
        return batch
