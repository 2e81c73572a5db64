"""Reading frames from a video file with decord, touching only the sampled frames."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

DEFAULT_FPS = 25.0
# Still images are read as one-frame videos (FER2013, image folders, COCO / Visual Genome pretraining).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; VideoDecodeError naming the file if it cannot be read."""
    from PIL import Image

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError for broken files
        raise VideoDecodeError(f"{path}: cannot read image ({_short(e)})") from None


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


@dataclass
class VideoInfo:
    path: str
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def open_video(path: str | os.PathLike, num_threads: int = 1):
    """Open ``path`` with decord; raise VideoDecodeError naming the file on any failure."""
    import decord

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: file not found")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: file is empty (0 bytes)")
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError variants
        raise VideoDecodeError(f"{path}: cannot open video ({_short(e)})") from None
    if len(reader) == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    return reader


def video_info(reader, path: str) -> VideoInfo:
    fps = float(reader.get_avg_fps() or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        # Some containers carry no frame rate; a fixed guess keeps clip spans sane.
        fps = DEFAULT_FPS
    return VideoInfo(path=path, num_frames=len(reader), fps=fps)


def read_frames(reader, indices: np.ndarray, path: str) -> np.ndarray:
    """Decode exactly the frames at ``indices`` (any shape). Returns indices.shape + (H, W, 3) uint8 RGB."""
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    try:
        frames = reader.get_batch(unique.tolist()).asnumpy()  # (U, H, W, 3)
    except Exception as e:
        if "DECORDArrayCopyFromTo" not in str(e):
            raise VideoDecodeError(f"{path}: decoding frames {unique.tolist()[:8]} failed ({_short(e)})") from None
        # decord 0.6 fails to copy out frames of some widths (24, 48, ... px) whose row padding it
        # mis-sizes; PyAV decodes those files correctly, up to the last frame needed.
        frames = _read_frames_pyav(path, unique)
    frames = frames[inverse]  # (U, H, W, 3) -> (N*T, H, W, 3)
    return frames.reshape(*np.shape(indices), *frames.shape[1:])  # (N*T, H, W, 3) -> (N, T, H, W, 3)


def _read_frames_pyav(path: str, wanted: np.ndarray) -> np.ndarray:
    import av

    wanted_set, last = set(int(i) for i in wanted), int(wanted.max())
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i in wanted_set:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except Exception as e:
        raise VideoDecodeError(f"{path}: decoding failed ({_short(e)})") from None
    missing = sorted(wanted_set - set(got))
    if missing:
        raise VideoDecodeError(f"{path}: frames {missing[:8]} could not be decoded (truncated file?)")
    return np.stack([got[int(i)] for i in wanted])


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
