"""Frame geometry: letterbox to a square, plus train-time random resized crop and flip.

Frames stay uint8 here; scaling to float and normalising happens in the model, on
the device, so that the data loader moves four times fewer bytes.
All T frames of a clip get the same crop and flip: a clip is one short moment, and
jittering its frames independently would invent motion that is not in the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Resize:
    """How frames are resized: ``rounding`` of the new size (round | floor), bilinear with or without
    ``antialias``, and the ``output`` kept as uint8 (rounded) or float. The original ClipBERT floors the size,
    does not antialias and keeps floats; this library's default rounds, antialiases and stores uint8 (4x fewer
    bytes through the loader)."""

    rounding: str = "round"
    antialias: bool = True
    output: str = "uint8"

    @classmethod
    def from_config(cls, cfg) -> "Resize":
        return cls(cfg.resize_rounding, cfg.resize_antialias, cfg.resize_output)


def letterbox(frames: torch.Tensor, size: int, pad: str = "bottom_right", resize: Resize = Resize()) -> torch.Tensor:
    """Resize the longer side to ``size`` (bilinear) and zero-pad to a square.

    (F, 3, H, W) uint8 -> (F, 3, size, size) uint8 (float with ``resize.output="float"``). This is ClipBERT's
    test-time geometry: no pixel of the frame is cropped away. ``pad="bottom_right"`` puts the frame in the
    top-left corner as ClipBERT does (its weights saw content there); ``"center"`` splits the padding evenly.
    """
    if pad not in ("bottom_right", "center"):
        raise ValueError(f"pad must be bottom_right or center, got {pad!r}")
    f, c, h, w = frames.shape
    nh, nw = resized_size(h, w, size, resize.rounding)
    resized = _resize(frames, nh, nw, resize)
    top, left = ((size - nh) // 2, (size - nw) // 2) if pad == "center" else (0, 0)
    out = torch.zeros((f, c, size, size), dtype=resized.dtype)
    out[:, :, top : top + nh, left : left + nw] = resized
    return out


def resized_size(height: int, width: int, size: int, rounding: str = "round") -> tuple[int, int]:
    """(height, width) with the longer side brought to ``size``, aspect kept. ``round``: both sides
    ``side * size / longer``, rounded. ``floor``: the original ClipBERT's, exactly: the longer side is ``size``
    itself and the shorter ``int(size * short / long)``, in that order (``int(short * (size / long))`` truncates
    a float a hair below the whole number on about 9% of frame sizes at 448: 720x1280 gives 251, not 252)."""
    if rounding == "round":
        scale = size / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    if rounding != "floor":
        raise ValueError(f"resize rounding must be round or floor, got {rounding!r}")
    if height >= width:
        return size, max(1, int(size * width / height))
    return max(1, int(size * height / width)), size


def random_resized_crop_params(
    height: int, width: int, scale_min: float, rng: np.random.Generator, ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering scale_min..1 of the area with an aspect ratio in ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale_min, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    return 0, 0, height, width  # fall back to the whole frame


def clip_transform(
    clip: np.ndarray,
    size: int,
    training: bool,
    rng: np.random.Generator | None = None,
    scale_min: float = 0.6,
    hflip: bool = True,
    pad: str = "bottom_right",
    resize: Resize = Resize(),
) -> torch.Tensor:
    """One clip of decoded frames to model input geometry.

    (T, H, W, 3) uint8 numpy -> (T, 3, size, size) uint8 torch (float with ``resize.output="float"``).
    """
    frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    frames = letterbox(frames, size, pad, resize)
    if training and rng is not None:
        frames = _crop_and_flip(frames, size, rng, scale_min, hflip, resize)
    return frames


# Frames letterboxed per interpolate call in clips_transform: one call instead of one per clip, with the float
# copy it makes bounded (64 frames of 720p: 0.7 GB) however many clips a video has.
LETTERBOX_CHUNK = 64


def clips_transform(
    clips: np.ndarray,
    size: int,
    training: bool,
    rng: np.random.Generator | None = None,
    scale_min: float = 0.6,
    hflip: bool = True,
    pad: str = "bottom_right",
    resize: Resize = Resize(),
) -> torch.Tensor:
    """All N clips of a video at once, the same tensors as ``clip_transform`` clip by clip (each frame is resized
    on its own; the random crops and flips are drawn clip by clip in the same order).

    (N, T, H, W, 3) uint8 numpy -> (N, T, 3, size, size) uint8 torch (float with ``resize.output="float"``).
    """
    n, t = clips.shape[:2]
    frames = torch.from_numpy(np.ascontiguousarray(clips)).flatten(0, 1)  # (N, T, H, W, 3) -> (N*T, H, W, 3)
    frames = frames.permute(0, 3, 1, 2)  # (N*T, H, W, 3) -> (N*T, 3, H, W)
    boxed = torch.cat([letterbox(frames[i:i + LETTERBOX_CHUNK], size, pad, resize)
                       for i in range(0, n * t, LETTERBOX_CHUNK)])  # -> (N*T, 3, S, S)
    boxed = boxed.unflatten(0, (n, t))  # (N*T, 3, S, S) -> (N, T, 3, S, S)
    if training and rng is not None:
        boxed = torch.stack([_crop_and_flip(c, size, rng, scale_min, hflip, resize) for c in boxed])
    return boxed


def _crop_and_flip(frames: torch.Tensor, size: int, rng: np.random.Generator, scale_min: float, hflip: bool,
                   resize: Resize) -> torch.Tensor:
    """One clip's random resized crop and flip, the same for its T frames: (T, 3, S, S) -> (T, 3, S, S)."""
    top, left, h, w = random_resized_crop_params(size, size, scale_min, rng)
    frames = _resize(frames[:, :, top : top + h, left : left + w], size, size, resize)
    if hflip and rng.random() < 0.5:
        frames = frames.flip(-1)
    return frames


def _resize(frames: torch.Tensor, h: int, w: int, resize: Resize = Resize()) -> torch.Tensor:
    if frames.shape[-2:] == (h, w):
        return frames if resize.output == "uint8" else frames.float()
    out = F.interpolate(frames.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=resize.antialias)
    return out.round_().clamp_(0, 255).to(torch.uint8) if resize.output == "uint8" else out
