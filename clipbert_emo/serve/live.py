"""The per-frame live mode: one small still frame from the webcam in, the largest face's box and its emotions out.

The page sends a JPEG of its camera preview (192 px wide) to ``POST /api/frame`` as soon as the answer to the
previous one has come, so the rate follows what the machine can do. Each frame is

1. judged by its header (JPEG, PNG or WebP; width x height within ``max_frame_pixels``) before it is decoded, by
   Pillow, which reads pixels and runs nothing from the file;
2. searched for faces by the served model's detector (``data.face_detector``: MTCNN unless the checkpoint says
   otherwise), the largest kept;
3. tracked across the frames of one page (its ``X-Live-Session`` header): a detection that overlaps the last box
   moves it part of the way (an exponential average of the box, so it does not jitter frame to frame), one that
   does not is a new face and taken as it is; a frame where the detector misses keeps the last box for at most
   ``CARRY_S`` s, since the face has rarely gone in a tenth of a second. While a face is tracked the detector runs
   on every other frame only (``DETECT_EVERY``), the frame between taking the box found a tenth of a second
   before: detection is three quarters of a frame's time, and a head moves little in that tenth;
4. cut as the ready face model cuts faces (data/face_tokens.py: grey, squared, 64 x 64) and scored by the served
   model as a one-frame clip: the very code ``POST /predict`` runs, without a video to decode.

Only a model that reads the face alone can score one frame this way: the ready face model (``model.fusion:
face_expression``). A ClipBERT checkpoint reads clips of several frames (and text, or sound) and was never shown a
still, so the mode is refused for it (409, saying why, and ``/labels`` says so before the page offers it): its
clip mode, which scores the last 2 s through the whole model, is the live mode for such a model.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections import OrderedDict

import numpy as np

from .limits import ServeLimits
from .upload import UploadRejected, size_text

FRAME_FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow's names of the formats a browser's canvas.toBlob writes
SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
CARRY_S = 0.5  # a face the detector missed keeps its last box this long
DETECT_EVERY = 2  # while a face is tracked, the detector runs on one frame in this many
REUSE_S = 0.25  # ... and only while its last detection is this recent (a slow page detects every frame)
FOLLOW = 0.6  # the share of the way a tracked box moves to each new detection
SAME_FACE_IOU = 0.2  # a detection overlapping the last box at least this much is the same face
MAX_SESSIONS = 64  # pages tracked at once; the one heard from least recently is forgotten first
SESSION_IDLE_S = 30.0


def frame_mode_refusal(predictor) -> str | None:
    """Why this predictor cannot score single frames, or None when it can (a face-expression model)."""
    cfg = predictor.cfg
    if cfg.model.fusion == "face_expression" and list(predictor.model.modality_names) == ["face"]:
        return None
    reads = " and ".join([*predictor.model.modality_names, *(["text"] if cfg.data.use_text else [])]) or "nothing"
    return (f"the per-frame mode needs a face-expression model (the ready face model: clipbert-emo serve with no "
            f"checkpoint); this server's model reads {reads} over clips of several frames, so use the clip mode "
            f"(Live), which scores the last 2 s of the camera through the whole model")


def check_frame_type(kind: str) -> None:
    """415 unless the declared content type is an image."""
    if not kind.startswith("image/"):
        raise UploadRejected(415, f"expected a JPEG, PNG or WebP image as the request body, got content type "
                                  f"{kind or 'none'!r}")


def decode_frame(data: bytes, limits: ServeLimits) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a JPEG, PNG or WebP body; UploadRejected(422) for anything else, a damaged image or
    one over ``max_frame_pixels`` (judged from its header, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadRejected(422, "the request body is empty: send the frame as a JPEG, PNG or WebP image")
    try:
        image = Image.open(io.BytesIO(data), formats=FRAME_FORMATS)
    except UnidentifiedImageError:
        raise UploadRejected(422, "the body is not a JPEG, PNG or WebP image") from None
    except Image.DecompressionBombError:  # Pillow's own cap, far above ours: refused by ours in words
        raise UploadRejected(422, f"the image has more than {limits.max_frame_pixels / 1e6:.1f} MP, the limit of "
                                  "a frame") from None
    width, height = image.size
    if width * height > limits.max_frame_pixels:
        raise UploadRejected(422, f"the image is {width}x{height} ({width * height / 1e6:.1f} MP); the limit of a "
                                  f"frame is {limits.max_frame_pixels / 1e6:.1f} MP (send the preview scaled down)")
    try:
        return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for a cut-short or damaged image
        raise UploadRejected(422, f"the {image.format} image could not be decoded: it is damaged or cut short") \
            from None


class _Track:
    __slots__ = ("box", "size", "seen", "heard", "reused")

    def __init__(self):
        self.box, self.size, self.seen, self.heard, self.reused = None, None, 0.0, 0.0, 0


class LiveTracker:
    """The face box of each live page (session) across its frames; thread-safe, bounded to MAX_SESSIONS."""

    def __init__(self, carry_s: float | None = None, follow: float | None = None, max_sessions: int | None = None,
                 detect_every: int | None = None, reuse_s: float | None = None):
        """Each setting defaults to the module's constant of its name (CARRY_S, FOLLOW, ...)."""
        self.carry_s = CARRY_S if carry_s is None else carry_s
        self.follow = FOLLOW if follow is None else follow
        self.max_sessions = MAX_SESSIONS if max_sessions is None else max_sessions
        self.detect_every = DETECT_EVERY if detect_every is None else detect_every
        self.reuse_s = REUSE_S if reuse_s is None else reuse_s
        self._tracks: OrderedDict[str, _Track] = OrderedDict()
        self._lock = threading.Lock()

    def reuse(self, session: str | None, size: tuple[int, int], now: float | None = None):
        """The tracked box when this frame may skip the detector (a face detected on one of the last
        ``detect_every - 1`` frames, within ``reuse_s`` s, in frames of this size), else None: detect."""
        if session is None:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            track = self._tracks.get(session)
            if (track is None or track.box is None or track.size != size or now - track.seen > self.reuse_s
                    or track.reused + 1 >= self.detect_every):
                return None
            track.reused += 1
            track.heard = now
            self._tracks.move_to_end(session)
            return track.box

    def update(self, session: str | None, size: tuple[int, int], found, now: float | None = None):
        """The box to show and score for a frame of ``size`` (width, height) where the detector ``found`` a box
        (x, y, w, h) or None, and whether it was carried over a miss. Without a session, the detection as it is."""
        from ..data.face_tracking import iou

        if session is None:
            return found, False
        now = time.monotonic() if now is None else now
        with self._lock:
            track = self._tracks.pop(session, None) or _Track()
            track.heard = now
            self._tracks[session] = track  # most recently heard last
            for key in [k for k, t in self._tracks.items() if now - t.heard > SESSION_IDLE_S][:8]:
                del self._tracks[key]
            while len(self._tracks) > self.max_sessions:
                self._tracks.popitem(last=False)
            if track.size != size:  # another camera or another frame width: nothing carries over
                track.box, track.size = None, size
            track.reused = 0
            if found is not None:
                old = track.box
                if old is not None and iou(old, found) >= SAME_FACE_IOU:
                    found = tuple(o + self.follow * (f - o) for o, f in zip(old, found))
                track.box, track.seen = tuple(float(v) for v in found), now
                return track.box, False
            if track.box is not None and now - track.seen <= self.carry_s:
                return track.box, True
            track.box = None
            return None, False


class FrameScorer:
    """Scores one frame (its image bytes) with a face-expression predictor: box, probabilities, top label, times."""

    def __init__(self, predictor, limits: ServeLimits, tracker: LiveTracker | None = None):
        self.predictor, self.limits = predictor, limits
        self.tracker = tracker or LiveTracker()
        self.refusal = frame_mode_refusal(predictor)
        tokens = predictor.tokenizer([""], return_tensors="pt")  # the face model reads no text, but takes ids
        self._text = {"input_ids": tokens["input_ids"].to(predictor.device),
                      "attention_mask": tokens["attention_mask"].to(predictor.device)}

    def detector(self):
        from ..data.faces import get_detector

        return get_detector(self.predictor.cfg.data.face_detector)  # this thread's own

    def warm(self) -> None:
        """Run the detector and the model once, so that the first frame of a page does not pay their set-up."""
        if self.refusal is None:
            blank = np.full((120, 160, 3), 128, np.uint8)
            self.detector()(blank)
            self.score_face(blank, (40.0, 20.0, 80.0, 80.0))

    def __call__(self, data: bytes, session: str | None = None) -> dict:
        start = time.perf_counter()
        frame = decode_frame(data, self.limits)
        height, width = frame.shape[:2]
        decoded = time.perf_counter()
        box = self.tracker.reuse(session, (width, height))
        detected = box is None
        if detected:
            box, carried = self.tracker.update(session, (width, height), self.detector()(frame))
        else:
            carried = True
        found = time.perf_counter()
        result = {"box": None, "tracked": False, "detected": detected, "prediction": None, "probabilities": None,
                  "width": width, "height": height}
        if box is not None:
            result.update(self.score_face(frame, box), box=[round(v, 1) for v in box], tracked=carried)
        done = time.perf_counter()
        result.update(decode_ms=round(1000 * (decoded - start), 2), detect_ms=round(1000 * (found - decoded), 2),
                      score_ms=round(1000 * (done - found), 2), ms=round(1000 * (done - start), 2))
        return result

    def score_face(self, frame: np.ndarray, box) -> dict:
        """The served model's prediction for the face in ``box`` of ``frame``, as a one-frame clip."""
        import torch

        from ..data.face_tokens import _square_box, fer_crop, grey
        from ..models.aggregation import aggregate_clip_logits

        p = self.predictor
        cfg = p.cfg.data
        x, y, w, h = box
        square = _square_box((x + w / 2, y + h / 2, max(w, h)))  # the square /predict cuts around a face's box
        face = fer_crop(grey(frame), square, cfg.face.size, cfg.face.offset)
        if face is None:  # only a box wholly off the frame; the tracker never makes one
            return {}
        crops = torch.from_numpy(face)[None, None, None].to(p.device)  # (S, S) -> (1, 1, 1, S, S): a one-frame clip
        clip_logits = p.model.clip_logits(**self._text, face=crops,
                                          face_present=torch.tensor([True], device=p.device)).float().cpu()
        logits = aggregate_clip_logits(clip_logits, p.cfg.model.aggregation)  # (1, 1, K) -> (1, K)
        out = p.task.prediction(logits[0], clip_logits[0], [(None, None)], cfg)
        return {"prediction": out["prediction"], "probabilities": out["probabilities"]}


def session_of(header: str | None) -> str | None:
    """The X-Live-Session header's value, None when absent; UploadRejected(400) when it is not a plain token."""
    if header is None:
        return None
    if not SESSION.fullmatch(header):
        raise UploadRejected(400, "X-Live-Session: 1 to 64 letters, digits, '-' or '_' (one per page, to track its "
                                  "face across frames)")
    return header


def too_large(n: int, limits: ServeLimits) -> UploadRejected:
    return UploadRejected(413, f"a frame of {size_text(n)} is over the {size_text(limits.max_frame_bytes)} limit "
                               "(send the preview scaled down, as a JPEG)")
