"""Where a sample's clips sit in its video: the frame span of its start/end times and its clips' frame indices by
data/sampling.py's rule. The video decoder (data/dataset.py) and the face decoder (data/face_tokens.py) both read
these, so two modalities of one sample sample the video alike."""

from __future__ import annotations

import numpy as np

from ..config import DataConfig
from .manifest import Sample
from .sampling import sample_clip_indices


def sample_frame_range(sample: Sample, info) -> tuple[int, int]:
    """First and one-past-last frame of the sample's start/end span (the whole video without one)."""
    first, last = 0, info.num_frames
    if sample.start is not None:
        first = min(int(sample.start * info.fps), info.num_frames - 1)
    if sample.end is not None:
        last = max(min(int(np.ceil(sample.end * info.fps)), info.num_frames), first + 1)
    return first, last


def sample_frame_indices(sample: Sample, info, cfg: DataConfig, num_clips: int, training: bool,
                         rng: np.random.Generator | None) -> np.ndarray:
    """Frame indices (N, T) of the sample's clips, within its start/end span if it has one."""
    first, last = sample_frame_range(sample, info)
    return sample_clip_indices(last - first, info.fps, num_clips, cfg.num_frames, cfg.clip_fps, training=training,
                               rng=rng, single_clip=cfg.single_clip, frame_index=cfg.frame_index) + first
