"""Face crops: find the largest face in each sampled frame and cut the clip down to it.

Emotion lives in the face; a frame where the face covers a tenth of the picture wastes most of the
backbone's pixels on background. ``data.face_crop`` (training) and ``predict --face-crop`` put this
before the backbone:

1. every sampled frame goes through a face detector, which keeps the largest face it finds. The
   offline default is OpenCV's frontal-face Haar cascade (it ships inside opencv-python-headless); a
   YuNet ONNX file (``data.face_detector=face_detection_yunet_2023mar.onnx``, OpenCV's cv2.FaceDetectorYN)
   is the stronger choice when the user has one;
2. within one clip, frames where the detector missed borrow the nearest detected box, and the boxes are
   smoothed over the clip's frames (a moving average of centre and size), so the crop does not jitter;
3. each frame is cut to a square around its box, widened by ``data.face_margin`` on every side, and all
   T crops of a clip are resized to one size. A clip with no face in any frame keeps its full frames;
   those frames are counted (``FaceStats``) and reported by predict.

At train time the boxes of a video are cached on disk (one small JSON per video file version and
detector, keyed by frame index), so the second epoch onwards detects nothing it saw before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config.errors import UserError

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # (x, y, w, h) in the frame's pixels

# The Haar cascade looks for faces of at least ~24 px; small frames (SynthEmo's 64 px) are upscaled so a
# face filling the frame is still in its range, large ones downscaled so a 720p frame costs ~10 ms.
_DETECT_MIN_SIDE = 192
_DETECT_MAX_SIDE = 480


@dataclass
class FaceStats:
    """How the face crop went on one video: ``frames`` sampled, ``no_face_frames`` where the detector found
    no face, ``full_frame_clips`` clips without any face (kept as full frames)."""

    frames: int = 0
    no_face_frames: int = 0
    clips: int = 0
    full_frame_clips: int = 0

    def add(self, other: "FaceStats") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict:
        return asdict(self)


class FaceDetector:
    """The largest face of a frame. ``model`` = "" for OpenCV's bundled Haar cascade, or a YuNet ``.onnx`` file.

    One instance per thread (OpenCV's detectors keep per-call state); use :func:`get_detector`.
    """

    def __init__(self, model: str = "", score_threshold: float = 0.6):
        try:
            import cv2
        except ImportError:
            raise UserError("face crops need OpenCV: pip install opencv-python-headless==4.14.0.94") from None
        self._cv2 = cv2
        self.model = os.fspath(model) if model else ""
        if not self.model:
            path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise UserError(f"OpenCV's Haar cascade {path} did not load; reinstall opencv-python-headless")
            self.identity = "haar-frontalface-default"
            return
        if not os.path.isfile(self.model):
            raise UserError(f"face detector model {self.model}: file not found (give a YuNet .onnx file, or leave "
                            "it empty for the built-in Haar cascade)")
        if not self.model.lower().endswith(".onnx"):
            raise UserError(f"face detector model {self.model}: expected a YuNet .onnx file "
                            "(e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise UserError("this OpenCV build has no cv2.FaceDetectorYN; install opencv-python-headless>=4.8")
        try:
            self._yunet = cv2.FaceDetectorYN.create(self.model, "", (320, 320), score_threshold, 0.3, 50)
        except cv2.error as e:
            raise UserError(f"face detector model {self.model}: OpenCV cannot load it as a YuNet model "
                            f"({str(e).strip().splitlines()[-1][:160]})") from None
        st = os.stat(self.model)
        self.identity = f"yunet-{os.path.basename(self.model)}-{st.st_size}-{st.st_mtime_ns}"

    def __call__(self, frame: np.ndarray) -> Box | None:
        """(x, y, w, h) of the largest face in an (H, W, 3) uint8 RGB frame, or None."""
        cv2 = self._cv2
        h, w = frame.shape[:2]
        side = max(h, w)
        scale = min(max(1.0, _DETECT_MIN_SIDE / side), _DETECT_MAX_SIDE / side)
        small = frame if scale == 1.0 else cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if self.model:
            bgr = np.ascontiguousarray(small[:, :, ::-1])  # YuNet was trained on OpenCV's BGR order
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._yunet.detect(bgr)
            boxes = [] if faces is None else [tuple(float(v) for v in f[:4]) for f in faces]  # (x, y, w, h, ...)
        else:
            grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
            boxes = [tuple(float(v) for v in b) for b in
                     self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24))]
        if not boxes:
            return None
        x, y, bw, bh = max(boxes, key=lambda b: b[2] * b[3])
        return x / scale, y / scale, bw / scale, bh / scale


_local = threading.local()


def get_detector(model: str = "") -> FaceDetector:
    """This thread's detector for ``model`` (built once per thread and process: DataLoader workers and the
    server's inference threads each get their own)."""
    cache = getattr(_local, "detectors", None)
    if cache is None:
        cache = _local.detectors = {}
    if model not in cache:
        cache[model] = FaceDetector(model)
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


def detect_boxes(frames: np.ndarray, indices: np.ndarray, detector: FaceDetector, video: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> list[Box | None]:
    """The largest face box of each frame. ``frames`` (M, H, W, 3) are the frames at video ``indices`` (M,);
    with ``cache_dir`` and ``video``, boxes found earlier are read from the cache and new ones added to it."""
    cache = BoxCache(cache_dir, video, detector.identity) if cache_dir and video else None
    known: dict[int, Box | None] = dict(cache.boxes) if cache is not None else {}
    new = False
    boxes: list[Box | None] = []
    for frame, idx in zip(frames, np.asarray(indices).reshape(-1).tolist()):
        if idx not in known:  # a frame shared by two clips (or a still image's repeats) is detected once
            known[idx] = detector(frame)
            new = True
        boxes.append(known[idx])
    if cache is not None and new:
        cache.boxes = known
        cache.save()
    return boxes


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


def face_crop_clips(frames: np.ndarray, indices: np.ndarray, detector: FaceDetector, margin: float = 0.25,
                    video: str | None = None, cache_dir: str | os.PathLike | None = None
                    ) -> tuple[list[np.ndarray], FaceStats]:
    """Face crops of a video's sampled clips. ``frames`` (N, T, H, W, 3) at ``indices`` (N, T). Returns N arrays,
    each (T, S, S, 3) around the face or the clip's full (T, H, W, 3) frames when it has no face, and the stats."""
    n, t = frames.shape[:2]
    flat_boxes = detect_boxes(frames.reshape(n * t, *frames.shape[2:]), indices, detector, video, cache_dir)
    # (N, T, H, W, 3) -> (N*T, H, W, 3) for the detector; its N*T boxes go back into clips of T
    stats = FaceStats(frames=n * t, clips=n, no_face_frames=sum(b is None for b in flat_boxes))
    clips = []
    for i in range(n):
        centres = smooth_clip_boxes(flat_boxes[i * t:(i + 1) * t])
        if centres is None:
            stats.full_frame_clips += 1
            clips.append(frames[i])
        else:
            clips.append(crop_clip(frames[i], centres, margin))
    return clips, stats
