"""Which frames of a video become clips: ClipBERT's sparse sampling.

A clip is ``num_frames`` (T) frames spread evenly over ``num_frames / clip_fps``
seconds. Training draws ``num_clips`` (N_train) clips at independent random
starts, so every epoch sees a different sparse glimpse of each video. Testing
places N_test clips deterministically: clip i starts at
``(video_len - clip_len) * i / N_test``, which covers the video evenly; with a
single test clip it sits in the middle, at the start (ClipBERT's QA) or a third
of the way in (ClipBERT's retrieval).

Two rules turn a clip's start into frame indices (``frame_index``):

- ``round`` (this library's): T positions spread over the clip's first..last
  frame, each rounded to the nearest index; a one-frame clip is one frame long.
- ``clipbert`` (the original's decoder, read from its code and checked by running
  it): the clip is ``T / clip_fps * fps`` frames long (for T = 1 too: one
  second's worth at 1 fps); its first frame is the first at or after the start
  (the decoder keeps frames from the start's timestamp on, so about ceil, not
  floor); its T frames are that frame plus ``trunc(linspace(0, clip_len - 1, T))``.
  101 frames at 10 fps, T = 2 at 2 fps, N_test = 2: [[0, 9], [46, 55]].

The functions here are pure: the same inputs (and, for training, the same
generator state) give the same indices, which keeps data loading reproducible
and resumable.
"""

from __future__ import annotations

import math

import numpy as np

FRAME_INDEX_RULES = ("round", "clipbert")
SINGLE_CLIP_PLACES = ("middle", "start", "third")
# A start this close to a whole frame counts as that frame: the decoder compares timestamps, and the float
# arithmetic of (L - clip_len) * i / N must not push an exact frame position to the next one.
_START_EPSILON = 1e-6


def clip_length_in_frames(num_frames: int, clip_fps: float, video_fps: float, frame_index: str = "round") -> float:
    """Length of one clip in frames of the source video (not rounded). A one-frame clip is one frame long under
    ``round`` and ``video_fps / clip_fps`` frames under ``clipbert`` (which moves where clips start)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_fps <= 0 or video_fps <= 0:
        raise ValueError(f"frame rates must be positive, got clip_fps={clip_fps}, video_fps={video_fps}")
    if num_frames == 1 and frame_index != "clipbert":
        return 1.0
    return num_frames / clip_fps * video_fps


def _frames_of_clip(start: float, clip_len: float, num_frames: int, video_len: int,
                    frame_index: str = "round") -> np.ndarray:
    """The T frame indices of a clip starting at frame ``start`` and ``clip_len`` frames long (rules: see the
    module's docstring). A clip longer than the video repeats its last frame rather than reading past the end."""
    if frame_index == "round":
        end = start + max(clip_len - 1.0, 0.0)
        idx = np.rint(np.linspace(start, end, num_frames))
    elif frame_index == "clipbert":
        first = math.ceil(start - _START_EPSILON)
        idx = first + np.trunc(np.linspace(0.0, max(clip_len - 1.0, 0.0), num_frames))
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
    clip_len = clip_length_in_frames(num_frames, clip_fps, video_fps, frame_index)
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
    """N_test clips evenly covering the video, deterministic. Returns (num_clips, num_frames) int64.
    A single clip (``num_clips`` 1) starts at ``single_clip``: the middle of the slack, its start, or a third."""
    _check(video_len, num_clips)
    clip_len = clip_length_in_frames(num_frames, clip_fps, video_fps, frame_index)
    slack = max(video_len - clip_len, 0.0)
    if num_clips == 1:
        if single_clip not in SINGLE_CLIP_PLACES:
            raise ValueError(f"single_clip must be one of {', '.join(SINGLE_CLIP_PLACES)}, got {single_clip!r}")
        starts = [{"middle": slack / 2.0, "start": 0.0, "third": slack / 3.0}[single_clip]]
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


def keyframe_tolerance(indices: np.ndarray, first: int, last: int) -> float:
    """How far (in frames) a clip of ``indices`` (N, T) may move to start on a keyframe: a quarter of the clip
    spacing, or one frame, whichever is larger. The spacing is the slack of the span ``first``..``last - 1``
    over N, which is exactly the step between evenly placed test clips (for one clip, a quarter of the slack:
    it stays in the middle half of where it could start)."""
    rows = np.asarray(indices)
    extent = int(rows[0, -1] - rows[0, 0]) + 1 if rows.size else 1
    slack = max(last - first - extent, 0)
    return max(slack / max(len(rows), 1) / 4.0, 1.0)


def snap_clips_to_keyframes(indices: np.ndarray, keyframes: np.ndarray | None, first: int, last: int) -> np.ndarray:
    """Clips moved whole onto keyframes where that costs the answer nothing. Returns (N, T) int64 like ``indices``.

    A clip (a row of ``indices``, in increasing start order as the samplers give them) moves so that its first
    frame is the keyframe nearest to where it was only when that keyframe lies within
    :func:`keyframe_tolerance`, keeps the clip inside frames ``first``..``last - 1`` (a manifest span), and keeps
    the clips' starts strictly increasing (after the previous clip's, before the next clip's sampled start).
    Every other clip keeps its sampled frames and is read exactly. The invariant, for any keyframe layout:
    N clips at N distinct increasing positions (wherever the sampled ones are distinct), each within the
    tolerance of the accurate placement. A video with one keyframe therefore costs accurate reads, not a
    collapse of all clips onto frame 0; one with a keyframe every second or two snaps every clip."""
    out = np.array(indices, dtype=np.int64, copy=True)
    if keyframes is None or len(keyframes) == 0 or out.size == 0:
        return out
    keys = np.unique(np.asarray(keyframes, dtype=np.int64))
    sampled = np.asarray(indices, dtype=np.int64)[:, 0]
    tolerance = keyframe_tolerance(out, first, last)
    for i in range(len(out)):
        offsets = out[i] - out[i, 0]
        if i > 0 and sampled[i] == sampled[i - 1]:  # a video shorter than N clips: equal clips stay equal
            out[i] = out[i - 1, 0] + offsets
            continue
        lowest = max(first, sampled[i] - tolerance, out[i - 1, 0] + 1 if i > 0 else first)
        highest = min(last - 1 - int(offsets.max()), sampled[i] + tolerance,
                      sampled[i + 1] - 1 if i + 1 < len(out) else last)
        reach = keys[(keys >= lowest) & (keys <= highest)]
        if reach.size:
            out[i] = reach[np.abs(reach - sampled[i]).argmin()] + offsets
    return out


def clip_spans_seconds(indices: np.ndarray, video_fps: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of each clip, from its first and last frame; for timelines."""
    return [(float(row[0]) / video_fps, float(row[-1] + 1) / video_fps) for row in indices]


def _check(video_len: int, num_clips: int) -> None:
    if video_len < 1:
        raise ValueError(f"video has no frames (video_len={video_len})")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
