"""Which frames of a video become clips: ClipBERT's sparse sampling.

A clip is ``num_frames`` (T) frames spread evenly over ``num_frames / clip_fps``
seconds. Training draws ``num_clips`` (N_train) clips at independent random
starts, so every epoch sees a different sparse glimpse of each video. Testing
places N_test clips deterministically: clip i starts at
``(video_len - clip_len) * i / N_test``, which covers the video evenly; with a
single test clip it sits in the middle (or at the start, as ClipBERT's QA does).

The functions here are pure: the same inputs (and, for training, the same
generator state) give the same indices, which keeps data loading reproducible
and resumable.
"""

from __future__ import annotations

import numpy as np


def clip_length_in_frames(num_frames: int, clip_fps: float, video_fps: float) -> float:
    """Length of one clip in frames of the source video (not rounded)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_fps <= 0 or video_fps <= 0:
        raise ValueError(f"frame rates must be positive, got clip_fps={clip_fps}, video_fps={video_fps}")
    if num_frames == 1:
        return 1.0
    return num_frames / clip_fps * video_fps


FRAME_INDEX_RULES = ("round", "floor_exclusive")


def _frames_of_clip(start: float, clip_len: float, num_frames: int, video_len: int,
                    frame_index: str = "round") -> np.ndarray:
    """The T frame indices of a clip starting at frame ``start`` and ``clip_len`` frames long.

    ``round``: T positions spread over the clip's first..last frame, rounded to the nearest index.
    ``floor_exclusive``: spread over first..one past the last, truncated (the original ClipBERT's test-time
    decoder). A clip longer than the video repeats frames rather than reading past the end.
    """
    if frame_index == "round":
        end = start + max(clip_len - 1.0, 0.0)
        idx = np.rint(np.linspace(start, end, num_frames))
    elif frame_index == "floor_exclusive":
        idx = np.floor(np.linspace(start, start + clip_len, num_frames))
    else:
        raise ValueError(f"frame_index must be one of {', '.join(FRAME_INDEX_RULES)}, got {frame_index!r}")
    return np.clip(idx.astype(np.int64), 0, video_len - 1)


def sample_clip_indices_train(
    video_len: int,
    video_fps: float,
    num_clips: int,
    num_frames: int,
    clip_fps: float,
    rng: np.random.Generator,
    frame_index: str = "round",
) -> np.ndarray:
    """N_train clips at independent uniformly random starts. Returns (num_clips, num_frames) int64."""
    _check(video_len, num_clips)
    clip_len = clip_length_in_frames(num_frames, clip_fps, video_fps)
    slack = max(video_len - clip_len, 0.0)
    starts = rng.uniform(0.0, slack, size=num_clips) if slack > 0 else np.zeros(num_clips)
    return np.stack([_frames_of_clip(s, clip_len, num_frames, video_len, frame_index) for s in starts])


def sample_clip_indices_test(
    video_len: int,
    video_fps: float,
    num_clips: int,
    num_frames: int,
    clip_fps: float,
    single_clip: str = "middle",
    frame_index: str = "round",
) -> np.ndarray:
    """N_test clips evenly covering the video, deterministic. Returns (num_clips, num_frames) int64."""
    _check(video_len, num_clips)
    clip_len = clip_length_in_frames(num_frames, clip_fps, video_fps)
    slack = max(video_len - clip_len, 0.0)
    if num_clips == 1:
        if single_clip not in ("middle", "start"):
            raise ValueError(f"single_clip must be 'middle' or 'start', got {single_clip!r}")
        starts = [slack / 2.0 if single_clip == "middle" else 0.0]
    else:
        starts = [slack * i / num_clips for i in range(num_clips)]
    return np.stack([_frames_of_clip(s, clip_len, num_frames, video_len, frame_index) for s in starts])


def sample_clip_indices(
    video_len: int,
    video_fps: float,
    num_clips: int,
    num_frames: int,
    clip_fps: float,
    training: bool,
    rng: np.random.Generator | None = None,
    single_clip: str = "middle",
    frame_index: str = "round",
) -> np.ndarray:
    """Dispatch to the train (random) or test (uniform) sampler. Returns (num_clips, num_frames) int64."""
    if training:
        if rng is None:
            raise ValueError("training sampling needs an explicit numpy Generator, for reproducibility")
        return sample_clip_indices_train(video_len, video_fps, num_clips, num_frames, clip_fps, rng, frame_index)
    return sample_clip_indices_test(video_len, video_fps, num_clips, num_frames, clip_fps, single_clip, frame_index)


def snap_clips_to_keyframes(indices: np.ndarray, keyframes: np.ndarray | None, first: int, last: int) -> np.ndarray:
    """Each clip (a row of ``indices``) moved whole so that its first frame is the keyframe nearest to where
    it was; the clip keeps its frame spacing and stays inside frames ``first``..``last - 1`` (a manifest span).
    A clip with no keyframe in reach keeps its frames. Returns (N, T) int64 like ``indices``.

    Decoding from a keyframe needs no frames before it, so each clip costs its own frames, not the frames
    from the previous keyframe up to it. Clips may land on the same keyframe (keyframes sparser than clips);
    their frames are decoded once."""
    out = np.array(indices, dtype=np.int64, copy=True)
    if keyframes is None or len(keyframes) == 0:
        return out
    keys = np.asarray(keyframes, dtype=np.int64)
    for i, row in enumerate(out):
        offsets = row - row[0]
        latest = last - 1 - int(offsets.max())  # the last start that keeps the whole clip inside the span
        reach = keys[(keys >= first) & (keys <= latest)]
        if reach.size:
            out[i] = reach[np.abs(reach - row[0]).argmin()] + offsets
    return out


def clip_spans_seconds(indices: np.ndarray, video_fps: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of each clip, from its first and last frame; for timelines."""
    return [(float(row[0]) / video_fps, float(row[-1] + 1) / video_fps) for row in indices]


def _check(video_len: int, num_clips: int) -> None:
    if video_len < 1:
        raise ValueError(f"video has no frames (video_len={video_len})")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
