"""From a manifest line to a training example: sample clips, decode them, shape them.

Each item is drawn with its own generator seeded by (seed, epoch, index), so the
random clips and crops a sample gets do not depend on worker count or on the order
in which the loader asks, and a resumed run sees the same data as an uninterrupted one.
A video that fails to decode becomes an ``error`` item that the collator drops and
reports, so one bad file costs one sample, not the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .decode import VideoDecodeError, is_image_path, open_video, read_frames, read_image, video_info
from .manifest import Manifest, Sample
from .sampling import clip_spans_seconds, sample_clip_indices
from .transforms import clip_transform

logger = logging.getLogger(__name__)


def load_clips(
    sample: Sample,
    cfg: DataConfig,
    num_clips: int,
    training: bool,
    rng: np.random.Generator | None,
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Decode ``num_clips`` clips of one video. Returns (N, T, 3, S, S) uint8 and each clip's (start, end) s.

    A still image (``sample.image`` or an image file) is a one-frame video: every clip repeats it, and
    at train time each clip still gets its own crop and flip.
    """
    if sample.image is not None or (sample.video is not None and is_image_path(sample.video)):
        image = np.asarray(sample.image) if sample.image is not None else read_image(sample.video)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) grey -> (H, W, 3)
        frames = np.broadcast_to(image, (num_clips, cfg.num_frames, *image.shape)).copy()  # -> (N, T, H, W, 3)
        clips = torch.stack([
            clip_transform(c, cfg.frame_size, training and cfg.augment, rng, cfg.crop_scale_min, cfg.hflip,
                           cfg.pad)
            for c in frames
        ])  # N x (T, 3, S, S) -> (N, T, 3, S, S)
        return clips, [(0.0, 0.0)] * num_clips
    reader = open_video(sample.video)
    info = video_info(reader, sample.video)
    first = 0
    last = info.num_frames
    if sample.start is not None:
        first = min(int(sample.start * info.fps), info.num_frames - 1)
    if sample.end is not None:
        last = max(min(int(np.ceil(sample.end * info.fps)), info.num_frames), first + 1)
    indices = sample_clip_indices(
        last - first,
        info.fps,
        num_clips,
        cfg.num_frames,
        cfg.clip_fps,
        training=training,
        rng=rng,
        single_clip=cfg.single_clip,
    ) + first  # (N, T)
    frames = read_frames(reader, indices, sample.video)  # (N, T, H, W, 3)
    clips = torch.stack(
        [
            clip_transform(c, cfg.frame_size, training and cfg.augment, rng, cfg.crop_scale_min, cfg.hflip,
                           cfg.pad)
            for c in frames
        ]
    )  # N x (T, 3, S, S) -> (N, T, 3, S, S)
    return clips, clip_spans_seconds(indices, info.fps)


def sample_target(sample: Sample, task: str):
    """The annotation the task trains on: class id, list of class ids, per-head ids, or a value."""
    return {"single_label": sample.label, "multilabel": sample.labels, "multitask": sample.task_labels,
            "regression": sample.target}[task]


class VideoTextDataset(Dataset):
    def __init__(self, manifest: Manifest, cfg: DataConfig, training: bool, num_clips: int | None = None, seed: int = 0):
        self.samples = manifest.samples
        self.cfg = cfg
        self.training = training
        self.num_clips = num_clips or (cfg.num_clips_train if training else cfg.num_clips_test)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        item = {"index": index, "text": sample.text if self.cfg.use_text else "", "source": sample.source}
        item["label"] = sample_target(sample, self.cfg.task)
        if not self.cfg.use_video:
            return item
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.training else None
        try:
            item["video"], item["spans"] = load_clips(sample, self.cfg, self.num_clips, self.training, rng)
        except VideoDecodeError as e:
            item["error"] = str(e)
        return item


@dataclass
class Collator:
    """Stacks items into a batch and tokenizes the texts; failed items are dropped and listed."""

    tokenizer: object
    max_text_len: int
    num_labels: int
    task: str = "single_label"

    def __call__(self, items: list[dict]) -> dict:
        skipped = [(it["source"], it["error"]) for it in items if "error" in it]
        for source, reason in skipped:
            logger.warning("skipping %s: %s", source, reason)
        items = [it for it in items if "error" not in it]
        batch: dict = {"skipped": skipped, "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
        if not items:
            return batch
        enc = self.tokenizer(
            [it["text"] for it in items],
            padding="longest",
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        )
        batch["input_ids"] = enc["input_ids"]  # (B, L)
        batch["attention_mask"] = enc["attention_mask"]  # (B, L)
        if "video" in items[0]:
            batch["video"] = torch.stack([it["video"] for it in items])  # B x (N, T, 3, S, S) -> (B, N, T, 3, S, S)
            batch["spans"] = [it["spans"] for it in items]
        labels = [it["label"] for it in items]
        if all(lab is not None for lab in labels):
            if self.task == "multilabel":
                target = torch.zeros(len(items), self.num_labels)
                for row, idx in enumerate(labels):
                    target[row, idx] = 1.0
                batch["labels"] = target  # (B, K) multi-hot
            elif self.task == "regression":
                batch["labels"] = torch.tensor(labels, dtype=torch.float32)  # (B,)
            else:
                batch["labels"] = torch.tensor(labels, dtype=torch.long)  # (B,), or (B, H) for multitask
        return batch
