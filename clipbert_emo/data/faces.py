"""Face crops: find the largest face in each sampled frame and cut the clip down to it.

Emotion lives in the face; a frame where the face covers a tenth of the picture wastes most of the
backbone's pixels on background. ``data.face_crop`` (training) and ``predict --face-crop`` put this
before the backbone:

1. every sampled frame goes through a face detector (data/face_detectors.py), which keeps the largest face
   it finds. ``data.face_detector`` names it: "" = MTCNN (data/face_mtcnn.py, on the weights facenet-pytorch
   ships), ``haar`` = OpenCV's Haar cascade (the default before: it loses the face in a third of the frames
   of a real talking-head clip), ``ssd`` = OpenCV's ResNet-10 SSD, or a YuNet ``.onnx`` file;
2. across the video's sampled frames, a frame where the detector missed takes a box carried from the
   detections around it (data/face_tracking.py: linked by overlap, interpolated, at most ~0.5 s away);
3. within one clip, frames still without a box borrow the nearest box of the clip, and the boxes are
   smoothed over the clip's frames (a moving average of centre and size), so the crop does not jitter;
4. each frame is cut to a square around its box, widened by ``data.face_margin`` on every side, and all
   T crops of a clip are resized to one size. A clip with no face in any frame keeps its full frames;
   those frames are counted (``FaceStats``) and reported by predict, with each clip's boxes.

At train time the detected boxes of a video are cached on disk (one small JSON per video file version and
detector, keyed by frame index), so the second epoch onwards detects nothing it saw before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .face_detectors import (DEFAULT_DETECTOR, DETECTOR_NAMES, Box, FaceDetector, MTCNNFaceDetector,
                             SSDFaceDetector, make_detector)
from .face_tracking import track_boxes

__all__ = ["Box", "BoxCache", "DEFAULT_DETECTOR", "DETECTOR_NAMES", "FaceDetector", "FaceStats", "MTCNNFaceDetector",
           "SSDFaceDetector", "boxes_by_clip", "clip_face_box", "crop_clip", "default_cache_dir", "detect_and_track",
           "detect_boxes", "face_crop_clips", "get_detector", "smooth_clip_boxes", "track_boxes"]

logger = logging.getLogger(__name__)


@dataclass
class FaceStats:
    """How the face crop went on one video: ``frames`` sampled, ``no_face_frames`` left without a face box (neither
    detected nor carried by the tracker), ``tracked_frames`` whose box the tracker carried from neighbouring
    detections, ``full_frame_clips`` clips without any face (kept as full frames). ``boxes`` (not a count: left out
    of ``as_dict`` and ``add``): each clip's per-frame boxes, ``boxes_by_clip``'s lists."""

    frames: int = 0
    no_face_frames: int = 0
    clips: int = 0
    full_frame_clips: int = 0
    tracked_frames: int = 0
    boxes: list | None = field(default=None, compare=False, repr=False, metadata={"count": False})

    def _counts(self) -> list[str]:
        return [f.name for f in fields(self) if f.metadata.get("count", True)]

    def add(self, other: "FaceStats") -> None:
        for k in self._counts():
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self._counts()}


_local = threading.local()


def get_detector(model: str = ""):
    """This thread's detector for ``model`` (data/face_detectors.py: "" = MTCNN, "haar", "ssd", or a YuNet .onnx
    file), built once per thread and process: DataLoader workers and the server's inference threads each get their
    own. A callable ``frame (H, W, 3) uint8 RGB -> (x, y, w, h) | None``, with ``detect_many`` and ``identity``."""
    cache = getattr(_local, "detectors", None)
    if cache is None:
        cache = _local.detectors = {}
    model = os.fspath(model) if model else ""
    if model not in cache:
        cache[model] = make_detector(model)
    return cache[model]


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "clipbert_emo" / "faces"


class BoxCache:
    """Detected boxes of one video file version, by frame index, in ``<dir>/<hash>.json``.

    The hash covers the absolute path, size and modification time of the video and the detector's identity,
    so an edited video or another detector never reads stale boxes. DataLoader workers may write the same
    file at once: each write is atomic, so the worst case is detecting a frame twice.
    """

    def __init__(self, folder: str | os.PathLike, video: str, detector_identity: str):
        st = os.stat(video)
        key = f"{os.path.abspath(video)}|{st.st_size}|{st.st_mtime_ns}|{detector_identity}"
        self.path = Path(folder) / (hashlib.sha1(key.encode()).hexdigest() + ".json")
        self.key = key
        self.boxes: dict[int, Box | None] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("key") == key:
                self.boxes = {int(k): (tuple(v) if v is not None else None) for k, v in data["boxes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no cache yet, or a damaged one: detect again

    def save(self) -> None:
        from ..config.atomic import atomic_write_text

        try:
            atomic_write_text(self.path, json.dumps({"key": self.key, "boxes": {str(k): v for k, v in
                                                                               sorted(self.boxes.items())}}))
        except OSError as e:  # a read-only cache folder costs speed, not the run
            logger.warning("face box cache %s not written (%s); boxes will be detected again", self.path, e)


def detect_and_track(frames: np.ndarray, indices: np.ndarray, detector, video: str | None = None,
                     cache_dir: str | os.PathLike | None = None, track: bool = True
                     ) -> tuple[list[Box | None], list[bool]]:
    """Each frame's face box and whether the tracker carried it there (not detected). ``frames`` (M, H, W, 3) are
    the frames at video ``indices`` (M,), in any order, repeats allowed; each distinct frame is detected once (the
    frames of one size in one pass where the detector has ``detect_many``). With ``cache_dir`` and ``video``, boxes
    found earlier are read from the cache and new ones added to it. ``track``: misses take a box carried from the
    detections of the sampled frames around them (data/face_tracking.py)."""
    cache = BoxCache(cache_dir, video, detector.identity) if cache_dir and video else None
    known: dict[int, Box | None] = dict(cache.boxes) if cache is not None else {}
    idx = np.asarray(indices).reshape(-1).tolist()
    todo: dict[int, int] = {}  # frame index -> its first row in ``frames``
    for row, i in enumerate(idx):
        if i not in known and i not in todo:  # a frame shared by two clips (or a still image's repeats) once
            todo[i] = row
    if todo:
        many = getattr(detector, "detect_many", None)
        rows = list(todo.values())
        found = many(frames[rows]) if many is not None else [detector(frames[r]) for r in rows]
        known.update(zip(todo, found))
        if cache is not None:
            cache.boxes = known
            cache.save()
    order = sorted(set(idx))  # the sampled frames in time order: only these, so a cache's extra frames change nothing
    boxes = [known[i] for i in order]
    carried = [False] * len(order)
    if track:
        boxes, carried = track_boxes(boxes, order)
    at = {i: r for r, i in enumerate(order)}
    return [boxes[at[i]] for i in idx], [carried[at[i]] for i in idx]


def detect_boxes(frames: np.ndarray, indices: np.ndarray, detector, video: str | None = None,
                 cache_dir: str | os.PathLike | None = None, track: bool = True) -> list[Box | None]:
    """The largest face box of each frame (``detect_and_track`` without the carried flags): ``frames`` (M, H, W, 3)
    at video ``indices`` (M,); a miss takes the tracker's box where detections around it give one."""
    return detect_and_track(frames, indices, detector, video, cache_dir, track)[0]


def boxes_by_clip(boxes: list[Box | None], n: int, t: int) -> list[list[list[float] | None]]:
    """N*T boxes (x, y, w, h), clip by clip -> N lists of T boxes [x, y, w, h] in whole tenths of a pixel of the
    frame (JSON-ready), None where a frame has none."""
    return [[None if b is None else [round(float(v), 1) for v in b] for b in boxes[i * t:(i + 1) * t]]
            for i in range(n)]


def clip_face_box(frame_boxes: list[list[float] | None]) -> list[float] | None:
    """One clip's face box [x, y, w, h]: the mean of its frames' boxes, None when none has one."""
    present = [b for b in frame_boxes if b is not None]
    return [round(float(v), 1) for v in np.mean(present, axis=0)] if present else None


def smooth_clip_boxes(boxes: list[Box | None], window: int = 3) -> np.ndarray | None:
    """One clip's boxes as (T, 3) centre x, centre y, side; misses take the nearest detected frame's box, then a
    moving average over ``window`` frames steadies the crop. None when no frame of the clip has a face."""
    found = [i for i, b in enumerate(boxes) if b is not None]
    if not found:
        return None
    filled = []
    for i in range(len(boxes)):
        x, y, w, h = boxes[min(found, key=lambda j: abs(j - i))]
        filled.append((x + w / 2, y + h / 2, max(w, h)))
    arr = np.asarray(filled, dtype=np.float64)  # (T, 3)
    half = window // 2
    return np.stack([arr[max(0, i - half): i + half + 1].mean(0) for i in range(len(arr))])  # (T, 3)


def crop_clip(frames: np.ndarray, centres: np.ndarray, margin: float) -> np.ndarray:
    """Square crops of (T, H, W, 3) frames around (T, 3) centre x, centre y, side, widened by ``margin`` of the
    side on each edge and shifted to stay inside the frame. Returns (T, S, S, 3), S the clip's mean crop side."""
    import cv2

    t, h, w = frames.shape[:3]
    sides = np.minimum(centres[:, 2] * (1 + 2 * margin), min(h, w))  # (T,)
    out_side = max(1, int(round(sides.mean())))
    crops = []
    for frame, (cx, cy, _), side in zip(frames, centres, sides):
        s = max(1, int(round(side)))
        x0 = int(round(min(max(cx - s / 2, 0), w - s)))
        y0 = int(round(min(max(cy - s / 2, 0), h - s)))
        crop = frame[y0:y0 + s, x0:x0 + s]
        if crop.shape[0] != out_side:
            crop = cv2.resize(crop, (out_side, out_side),
                              interpolation=cv2.INTER_AREA if crop.shape[0] > out_side else cv2.INTER_LINEAR)
        crops.append(crop)
    return np.stack(crops)  # T x (S, S, 3) -> (T, S, S, 3)


def face_crop_clips(frames: np.ndarray, indices: np.ndarray, detector, margin: float = 0.25,
                    video: str | None = None, cache_dir: str | os.PathLike | None = None
                    ) -> tuple[list[np.ndarray], FaceStats]:
    """Face crops of a video's sampled clips. ``frames`` (N, T, H, W, 3) at ``indices`` (N, T). Returns N arrays,
    each (T, S, S, 3) around the face or the clip's full (T, H, W, 3) frames when it has no face, and the stats
    (with ``stats.boxes``: each clip's T boxes in the frames' pixels, detected or tracked, before smoothing)."""
    n, t = frames.shape[:2]
    flat_boxes, carried = detect_and_track(frames.reshape(n * t, *frames.shape[2:]), indices, detector, video,
                                           cache_dir)
    # (N, T, H, W, 3) -> (N*T, H, W, 3) for the detector; its N*T boxes go back into clips of T
    stats = FaceStats(frames=n * t, clips=n, no_face_frames=sum(b is None for b in flat_boxes),
                      tracked_frames=sum(carried), boxes=boxes_by_clip(flat_boxes, n, t))
    clips = []
    for i in range(n):
        centres = smooth_clip_boxes(flat_boxes[i * t:(i + 1) * t])
        if centres is None:
            stats.full_frame_clips += 1
            clips.append(frames[i])
        else:
            clips.append(crop_clip(frames[i], centres, margin))
    return clips, stats
