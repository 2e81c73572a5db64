"""SynthEmo: a procedural video+text emotion benchmark.

SynthEmo writes real H.264 ``.mp4`` files and JSONL manifests. They are
built so that a model needs both video and text, and has to look at the
whole video (dense multi-clip inference), to reach the top score.

Layout written by :func:`generate_synthemo`::

    out_dir/
      synthemo.json             config, ceilings, counts (the summary dict)
      train.jsonl val.jsonl test.jsonl
      videos/<split>/<id>.mp4   ids are zero-padded (000017) and stable for a seed

Manifest format (user datasets use the same format)
----------------------------------------------------
Each line is one JSON object::

    {"video": "videos/train/000017.mp4", "text": "wow, look at that!",
     "label": "surprised", "meta": {...}}

``video`` is a path relative to the folder that holds the manifest.
``label`` is one of :data:`EMOTIONS`. ``meta`` is optional and holds only
diagnostics, so models must never read it. SynthEmo writes:
``id``, ``window_start`` / ``window_end`` (the expression window in seconds),
``ambiguous`` (a sad/angry video that shows the shared ambiguous expression),
``text_group`` (the transcript family) and ``visual`` (the expression family
shown). For ``neutral`` videos a window is still drawn and recorded, but
nothing happens in it.

Content
-------
Each video is a cartoon face on a random textured background, with a shape
drifting behind the face. The face has a random skin tone, size, position,
slow drift and blinks. Its expression ramps from neutral to the class
expression inside a random window that covers ``window_min..window_max`` of
the video: 25% ramp up, 50% hold, 25% ramp down. Outside the window the face
is neutral, so a single short clip often misses the expression.

Visual families (``visual`` in meta) for each class:

* neutral -> ``neutral`` (no expression at all)
* happy -> ``happy``
* sad -> ``sad`` with prob. 1-q, else ``ambiguous``
* angry -> ``angry`` with prob. 1-q, else ``ambiguous``
* surprised, fearful -> ``astonished`` (the same distribution on purpose)

Text groups for each class (a = ``happy_positive_text``, r = ``sad_specific_text``):

* neutral -> neutral_utterance
* happy -> positive_exclaim (a) / neutral_utterance (1-a)
* sad -> negative_low (r) / neutral_utterance (1-r)
* angry, fearful -> negative_agitated
* surprised -> positive_exclaim

Ceilings (Bayes-optimal held-out accuracy, balanced classes)
-------------------------------------------------------------
The families are separable from each other (jitter never makes two of them
overlap), and appearance, window, blinks and distractor do not depend on the
class. So the best classifier given an observation ``o`` picks
``argmax_c P(o|c)``, and accuracy = (1/6) * sum_o max_c P(o|c).
:func:`ceilings` computes this from the two probability tables above.

* video only, o = visual family: neutral 1 + happy 1 + sad-specific (1-q) +
  angry-specific (1-q) + ambiguous q + astonished 1 (surprised and fearful
  tie), giving (5 - q)/6 = **0.767** at q = 0.4.
* text only, o = text group: neutral_utterance 1 (neutral) +
  positive_exclaim 1 (surprised) + negative_agitated 1 (angry/fearful tie) +
  negative_low r (sad), giving (3 + r)/6 = **0.583** at r = 0.5
  (does not depend on a).
* video+text, o = (family, group): astonished is split by
  positive_exclaim/negative_agitated, and ambiguous is split because sad never
  says negative_agitated while angry always does, so **1.0** for any q, a, r.

Determinism: every video is seeded from (seed, split, index). Manifests are
byte-identical for a seed whatever ``workers`` is.

Extras for the pretraining and low-label experiments
----------------------------------------------------
:func:`generate_captioned_frames` writes still frames of SynthEmo faces at
their expression peak with captions that describe the face's look (never the
emotion), for image-text pretraining. :func:`subset_manifest` writes a
stratified fraction of a manifest (e.g. 10% of the train labels).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "fearful")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_KEY = {"train": 0, "val": 1, "test": 2}

# Expression vector layout. The neutral vector is the identity of the ramp.
EXPRESSION_FIELDS: tuple[str, ...] = (
    "mouth_curve",   # >0 smile (corners up), <0 frown
    "mouth_open",    # 0 closed .. 1 wide open
    "mouth_width",   # multiplier of the neutral width
    "brow_height",   # -1 lowered .. +1 raised
    "brow_tilt",     # >0 inner ends up (sad/fear), <0 inner ends down (angry)
    "eye_open",      # multiplier of the neutral eye height
)
NEUTRAL_EXPRESSION = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])

VISUAL_KINDS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "ambiguous", "astonished")
_KIND_TARGETS = {
    "neutral": NEUTRAL_EXPRESSION,
    "happy": np.array([0.85, 0.25, 1.15, 0.0, 0.0, 0.65]),
    "sad": np.array([-0.7, 0.0, 0.9, 0.15, 0.9, 0.8]),
    "angry": np.array([-0.3, 0.0, 0.75, -0.85, -0.9, 0.55]),
    "ambiguous": np.array([-0.35, 0.0, 0.9, -0.4, 0.0, 0.85]),
    "astonished": np.array([0.0, 1.0, 0.55, 1.0, 0.0, 1.45]),
}

TEXT_GROUPS: tuple[str, ...] = ("neutral_utterance", "positive_exclaim", "negative_agitated", "negative_low")

# Each template is filled from slot lists. Keep every expansion at 3-8 words;
# the test suite checks this.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "neutral_utterance": (
        "here is my video from {day}",
        "ok let me show you this",
        "so this is what i {saw} {day}",
        "just a quick clip from {day}",
        "let me tell you about {thing}",
        "this was recorded {day}",
        "let me talk about {thing}",
        "here we go with {thing}",
    ),
    "positive_exclaim": (
        "{wow} this is {amazing}",
        "no way, that is {amazing}",
        "{wow}, look at that!",
        "i can not believe it, {amazing}!",
        "{wow} what a {surprise}",
        "oh my gosh, {amazing}!",
        "that is so {amazing}, {wow}!",
        "what, really? that is {amazing}",
    ),
    "negative_agitated": (
        "oh no what is that",
        "this is {terrible} get away",
        "{stop} right now, {terrible}!",
        "no no no, {stop}!",
        "what is happening, this is {terrible}",
        "get away from me {now}",
        "why would you do that, {terrible}",
        "i can not stand this {now}",
    ),
    "negative_low": (
        "i feel so {down} today",
        "it is all gone now",
        "nothing {matters} anymore",
        "i just want to {rest}",
        "i {miss} them so much",
        "everything feels so {empty}",
        "it did not work out {again}",
        "i am so tired of {it}",
    ),
}
_SLOTS: dict[str, tuple[str, ...]] = {
    "day": ("today", "this morning", "yesterday", "last week", "this afternoon"),
    "saw": ("saw", "did", "found"),
    "thing": ("my weekend", "the new place", "my trip", "the meeting", "my day"),
    "wow": ("wow", "whoa", "oh wow", "yay"),
    "amazing": ("amazing", "incredible", "fantastic", "awesome", "unbelievable"),
    "surprise": ("surprise", "great surprise", "lovely thing"),
    "terrible": ("terrible", "awful", "horrible", "outrageous"),
    "stop": ("stop it", "stop", "back off"),
    "now": ("now", "right now"),
    "down": ("down", "low", "tired", "lonely"),
    "matters": ("matters", "helps", "works"),
    "rest": ("be alone", "stay in bed", "cry"),
    "miss": ("miss", "really miss"),
    "empty": ("empty", "grey", "heavy", "pointless"),
    "again": ("again", "at all", "this time"),
    "it": ("it", "everything", "all this"),
}


@dataclass
class SynthEmoConfig:
    num_train: int = 600
    num_val: int = 150
    num_test: int = 300
    size: int = 64            # frame width = height in px
    fps: float = 8.0
    duration: float = 4.0     # seconds per video
    window_min: float = 0.2   # expression window as a fraction of the video
    window_max: float = 0.4
    ambiguous_fraction: float = 0.4   # q: share of sad/angry videos drawn from the shared ambiguous expression
    happy_positive_text: float = 0.5  # a: share of happy videos whose transcript is positive-exclamation (else class-neutral)
    sad_specific_text: float = 0.5    # r: share of sad videos whose transcript is low-energy-negative (else class-neutral)
    seed: int = 0
    workers: int = 2

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.fps * self.duration)))

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}


# --------------------------------------------------------------------------
# Probability tables: the generator samples from them and ceilings() reads
# them, so the two can never disagree.


def visual_kind_table(cfg: SynthEmoConfig) -> np.ndarray:
    """P(visual kind | class): shape (len(EMOTIONS), len(VISUAL_KINDS))."""
    q = float(cfg.ambiguous_fraction)
    t = np.zeros((len(EMOTIONS), len(VISUAL_KINDS)))
    k = VISUAL_KINDS.index
    t[EMOTIONS.index("neutral"), k("neutral")] = 1.0
    t[EMOTIONS.index("happy"), k("happy")] = 1.0
    t[EMOTIONS.index("sad"), k("sad")] = 1.0 - q
    t[EMOTIONS.index("sad"), k("ambiguous")] = q
    t[EMOTIONS.index("angry"), k("angry")] = 1.0 - q
    t[EMOTIONS.index("angry"), k("ambiguous")] = q
    t[EMOTIONS.index("surprised"), k("astonished")] = 1.0
    t[EMOTIONS.index("fearful"), k("astonished")] = 1.0
    return t


def text_group_table(cfg: SynthEmoConfig) -> np.ndarray:
    """P(text group | class): shape (len(EMOTIONS), len(TEXT_GROUPS))."""
    a, r = float(cfg.happy_positive_text), float(cfg.sad_specific_text)
    t = np.zeros((len(EMOTIONS), len(TEXT_GROUPS)))
    g = TEXT_GROUPS.index
    t[EMOTIONS.index("neutral"), g("neutral_utterance")] = 1.0
    t[EMOTIONS.index("happy"), g("positive_exclaim")] = a
    t[EMOTIONS.index("happy"), g("neutral_utterance")] = 1.0 - a
    t[EMOTIONS.index("sad"), g("negative_low")] = r
    t[EMOTIONS.index("sad"), g("neutral_utterance")] = 1.0 - r
    t[EMOTIONS.index("angry"), g("negative_agitated")] = 1.0
    t[EMOTIONS.index("surprised"), g("positive_exclaim")] = 1.0
    t[EMOTIONS.index("fearful"), g("negative_agitated")] = 1.0
    return t


def _bayes_accuracy(likelihood: np.ndarray) -> float:
    # Uniform class prior: accuracy = mean over classes of the mass the
    # argmax rule assigns correctly = (1/C) * sum_o max_c P(o|c).
    return float(likelihood.max(axis=0).sum() / likelihood.shape[0])


def ceilings(cfg: SynthEmoConfig) -> dict[str, float]:
    """Best achievable held-out accuracy (Bayes ceiling) derived from cfg's parameters: keys 'video_only', 'text_only', 'video_text'."""
    v, t = visual_kind_table(cfg), text_group_table(cfg)
    joint = (v[:, :, None] * t[:, None, :]).reshape(len(EMOTIONS), -1)
    return {
        "video_only": _bayes_accuracy(v),
        "text_only": _bayes_accuracy(t),
        "video_text": _bayes_accuracy(joint),
    }


# --------------------------------------------------------------------------
# Per-video parameters


@dataclass
class FaceParams:
    """Everything needed to render one video. Geometry is in fractions of the
    frame and times are in fractions of the video, so one FaceParams can be
    rendered at any size and frame count."""

    expression: np.ndarray            # target vector, see EXPRESSION_FIELDS
    window: tuple[float, float]       # expression window, fractions of the video
    center: tuple[float, float]       # face centre (x, y), fraction of frame
    face_ry: float                    # half face height, fraction of frame
    face_aspect: float                # rx / ry
    drift_amp: tuple[float, float]
    drift_freq: float                 # cycles per video
    drift_phase: tuple[float, float]
    skin: tuple[float, float, float]
    ink: tuple[float, float, float]   # colour of brows, mouth, outlines
    blinks: tuple[tuple[float, int], ...]   # (start fraction, length in frames)
    bg_colors: np.ndarray             # (2, 3) gradient end colours
    bg_angle: float
    blobs: np.ndarray                 # (n, 6): x, y, sigma, r, g, b
    blob_alpha: np.ndarray
    distractor_square: bool
    distractor_color: tuple[float, float, float]
    distractor_radius: float
    distractor_path: tuple[float, float, float, float]   # x0, y0, x1, y1
    noise_sigma: float = 2.0
    label: str = field(default="")



def sample_face_params(kind: str, window: tuple[float, float], rng: np.random.Generator) -> FaceParams:
    """Draws a video's appearance and the expression jitter for visual family
    ``kind``. The number of random draws does not depend on ``kind``, so two
    classes that share a family and a seed get identical parameters."""
    u = rng.random(40)
    ry = 0.5 * (0.45 + 0.25 * u[0])   # face height 45..70% of the frame
    aspect = 0.78 + 0.12 * u[1]
    amp = (0.015 + 0.02 * u[2], 0.01 + 0.015 * u[3])
    margin_y = ry + amp[1] + 0.01
    margin_x = ry * aspect + amp[0] + 0.01
    cx = margin_x + (1 - 2 * margin_x) * u[4]
    cy = margin_y + (1 - 2 * margin_y) * u[5]
    light, dark = np.array([240.0, 200.0, 170.0]), np.array([105.0, 68.0, 48.0])
    skin = light + (dark - light) * u[6] + (u[7] - 0.5) * np.array([14.0, 10.0, 8.0])
    ink = np.array([35.0, 25.0, 25.0]) + 25.0 * u[8]
    n_blinks = 1 + int(u[9] * 3)   # 1..3
    blinks = tuple((float(0.05 + 0.9 * u[10 + i]), 1 + int(u[13 + i] > 0.5)) for i in range(n_blinks))
    bg = rng.uniform(30, 230, size=(2, 3))
    blobs = np.concatenate([rng.uniform(0, 1, (5, 2)), rng.uniform(0.12, 0.3, (5, 1)), rng.uniform(0, 255, (5, 3))], axis=1)
    blob_alpha = rng.uniform(0.25, 0.6, 5)
    dist_col = rng.uniform(0, 255, 3)
    # The distractor starts on one side and leaves on the other.
    side = u[16] < 0.5
    x0, x1 = (-0.1, 1.1) if side else (1.1, -0.1)
    path = (x0, 0.1 + 0.8 * u[17], x1, 0.1 + 0.8 * u[18])

    # Multiplicative jitter of the deviation from neutral keeps every family
    # on its own side of neutral, so families never overlap.
    target = _KIND_TARGETS[kind]
    scale = rng.uniform(0.85, 1.15, len(EXPRESSION_FIELDS))
    add = rng.uniform(-0.04, 0.04, len(EXPRESSION_FIELDS))
    expr = NEUTRAL_EXPRESSION + (target - NEUTRAL_EXPRESSION) * scale
    if kind != "neutral":
        expr = expr + add
    return FaceParams(
        expression=expr,
        window=(float(window[0]), float(window[1])),
        center=(float(cx), float(cy)),
        face_ry=float(ry),
        face_aspect=float(aspect),
        drift_amp=(float(amp[0]), float(amp[1])),
        drift_freq=float(0.3 + 0.5 * u[19]),
        drift_phase=(float(u[20]), float(u[21])),
        skin=tuple(float(c) for c in skin),
        ink=tuple(float(c) for c in ink),
        blinks=blinks,
        bg_colors=bg,
        bg_angle=float(2 * np.pi * u[22]),
        blobs=blobs,
        blob_alpha=blob_alpha,
        distractor_square=bool(u[23] < 0.5),
        distractor_color=tuple(float(c) for c in dist_col),
        distractor_radius=float(0.07 + 0.06 * u[24]),
        distractor_path=tuple(float(p) for p in path),
    )


# --------------------------------------------------------------------------
# Rendering (vectorised numpy; soft edges from approximate signed distances)


def _blend(img: np.ndarray, alpha: np.ndarray, color) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(color, dtype=np.float32)


def _cover(dist: np.ndarray) -> np.ndarray:
    # One-pixel linear ramp: cheap anti-aliasing from a signed distance in px.
    return np.clip(0.5 - dist, 0.0, 1.0)


def _ellipse_sd(xx, yy, cx, cy, a, b):
    """Approximate signed distance in px to an axis-aligned ellipse."""
    a, b = max(a, 1e-3), max(b, 1e-3)
    dx, dy = xx - cx, yy - cy
    g = np.sqrt((dx / a) ** 2 + (dy / b) ** 2) + 1e-6
    grad = np.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2) / g + 1e-6
    return (g - 1.0) / grad


def _polyline_dist(xx, yy, pts: np.ndarray) -> np.ndarray:
    """Distance in px from each pixel to a polyline given as (K, 2) points."""
    p = np.stack([xx.ravel(), yy.ravel()], axis=1)[:, None, :]
    pts = pts.astype(np.float32)
    a, b = pts[:-1][None], pts[1:][None]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0.0, 1.0)
    diff = p - (a + t[..., None] * ab)
    d = np.sqrt((diff * diff).sum(-1).min(axis=1))
    return d.reshape(xx.shape)


def _draw_polyline(img, xx, yy, pts: np.ndarray, half_thick: float, color, alpha: float = 1.0) -> None:
    # Only the bounding box of the stroke is touched: distance fields over the
    # whole frame dominated render time.
    pad = half_thick + 2.0
    h, w = img.shape[:2]
    x0 = max(int(np.floor(pts[:, 0].min() - pad)), 0)
    x1 = min(int(np.ceil(pts[:, 0].max() + pad)), w)
    y0 = max(int(np.floor(pts[:, 1].min() - pad)), 0)
    y1 = min(int(np.ceil(pts[:, 1].max() + pad)), h)
    if x1 <= x0 or y1 <= y0 or alpha <= 0:
        return
    box = (slice(y0, y1), slice(x0, x1))
    d = _polyline_dist(xx[box], yy[box], pts)
    _blend(img[box], alpha * _cover(d - half_thick), color)


def _box(shape, x0, x1, y0, y1, pad: float):
    """Slices of the pixels within [x0, x1] x [y0, y1] (+pad), clipped to the frame."""
    h, w = shape[:2]
    xs = slice(max(int(np.floor(x0 - pad)), 0), max(min(int(np.ceil(x1 + pad)), w), 0))
    ys = slice(max(int(np.floor(y0 - pad)), 0), max(min(int(np.ceil(y1 + pad)), h), 0))
    return ys, xs


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def expression_intensity(window: tuple[float, float], t: np.ndarray) -> np.ndarray:
    """Ramp 0 -> 1 -> 0 inside ``window``: 25% up, 50% hold, 25% down."""
    s, e = window
    length = max(e - s, 1e-9)
    x = (np.asarray(t, dtype=np.float64) - s) / length
    up = _smoothstep(x / 0.25)
    down = _smoothstep((1.0 - x) / 0.25)
    return np.where((x < 0) | (x > 1), 0.0, np.minimum(up, down))


def _background(p: FaceParams, size: int, xx, yy) -> np.ndarray:
    s = float(size)
    proj = ((xx / s - 0.5) * np.cos(p.bg_angle) + (yy / s - 0.5) * np.sin(p.bg_angle)) + 0.5
    w = np.clip(proj, 0, 1)[..., None]
    img = (p.bg_colors[0] * (1 - w) + p.bg_colors[1] * w).astype(np.float32)
    for blob, alpha in zip(p.blobs, p.blob_alpha):
        d2 = (xx / s - blob[0]) ** 2 + (yy / s - blob[1]) ** 2
        _blend(img, (alpha * np.exp(-d2 / (2 * blob[2] ** 2))).astype(np.float32), blob[3:6])
    return img


def face_center(params: FaceParams, t: float, size: int) -> tuple[float, float]:
    """Face centre in px at time ``t`` (fraction of the video); tests and
    diagnostics use it to find the mouth without re-deriving the drift."""
    ph = 2 * np.pi * params.drift_freq * t
    cx = params.center[0] + params.drift_amp[0] * np.sin(ph + 2 * np.pi * params.drift_phase[0])
    cy = params.center[1] + params.drift_amp[1] * np.sin(ph + 2 * np.pi * params.drift_phase[1])
    return float(cx * size), float(cy * size)


def render_face_frames(params: FaceParams, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Renders a video as a (F, H, W, 3) uint8 RGB array. ``rng`` only drives
    the per-pixel sensor noise; all content comes from ``params``."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    base = _background(params, size, xx, yy)
    t = (np.arange(num_frames) + 0.5) / num_frames
    intensity = expression_intensity(params.window, t)
    blink_open = np.ones(num_frames)
    for start, length in params.blinks:
        i0 = min(int(start * num_frames), num_frames - 1)
        blink_open[i0:i0 + length] = 0.0

    ry_px = params.face_ry * s
    rx_px = ry_px * params.face_aspect
    # Feature thickness scales with the face but never drops below 2 px so
    # brows and mouth stay readable at 64 px.
    thick = max(2.0, 0.13 * ry_px)
    frames = np.empty((num_frames, size, size, 3), dtype=np.float32)
    for f in range(num_frames):
        img = base.copy()
        # Distractor first: the face occludes it, so it never touches the
        # features and only adds motion clutter.
        x0, y0, x1, y1 = params.distractor_path
        dx, dy = (x0 + (x1 - x0) * t[f]) * s, (y0 + (y1 - y0) * t[f]) * s
        rad = params.distractor_radius * s
        if params.distractor_square:
            sd = np.maximum(np.abs(xx - dx), np.abs(yy - dy)) - rad
        else:
            sd = np.sqrt((xx - dx) ** 2 + (yy - dy) ** 2) - rad
        _blend(img, _cover(sd), params.distractor_color)

        cx, cy = face_center(params, t[f], size)
        fb = _box(img.shape, cx - rx_px, cx + rx_px, cy - ry_px, cy + ry_px, 2.0)
        face_sd = _ellipse_sd(xx[fb], yy[fb], cx, cy, rx_px, ry_px)
        _blend(img[fb], _cover(face_sd + 1.0), params.ink)      # 1 px outline
        _blend(img[fb], _cover(face_sd), params.skin)

        e = NEUTRAL_EXPRESSION + intensity[f] * (params.expression - NEUTRAL_EXPRESSION)
        curve, mopen, mwidth, brow_h, brow_tilt, eye_open = e

        # Eyes: white ellipse, ink outline, pupil; a blink collapses them to a line.
        ew, eh = 0.23 * rx_px, 0.15 * ry_px * max(eye_open, 0.05) * blink_open[f]
        eh_draw = max(eh, 0.3)
        ey = cy - 0.18 * ry_px
        for side in (-1.0, 1.0):
            ex = cx + side * 0.38 * rx_px
            eb = _box(img.shape, ex - ew, ex + ew, ey - eh_draw, ey + eh_draw, 2.0)
            sub, sx, sy = img[eb], xx[eb], yy[eb]
            sd = _ellipse_sd(sx, sy, ex, ey, ew, eh_draw)
            _blend(sub, _cover(np.abs(sd) - 0.6), params.ink)
            if eh > 0.8:
                _blend(sub, _cover(sd + 0.6), (245.0, 245.0, 245.0))
                pr = min(0.5 * ew, eh) * 0.8
                pupil = _cover(np.sqrt((sx - ex) ** 2 + (sy - ey) ** 2) - pr) * _cover(sd)
                _blend(sub, pupil, (20.0, 20.0, 30.0))

            # Brows: inner end nearer the nose; tilt moves the inner end.
            by = ey - (0.30 + 0.2 * brow_h) * ry_px
            inner_x, outer_x = ex - side * 0.24 * rx_px, ex + side * 0.24 * rx_px
            inner_y = by - brow_tilt * 0.13 * ry_px
            outer_y = by + brow_tilt * 0.06 * ry_px
            seg = np.array([[inner_x, inner_y], [outer_x, outer_y]])
            _draw_polyline(img, xx, yy, seg, thick / 2, params.ink)

        # Mouth: centre line y = my + k*curve*(0.5 - u^2); y grows downward, so
        # curve > 0 lowers the middle and raises the corners (smile).
        my = cy + 0.45 * ry_px
        mw = 0.4 * rx_px * max(mwidth, 0.2)
        k = 0.28 * ry_px
        uu = np.linspace(-1.0, 1.0, 13)
        line_y = my + k * curve * (0.5 - uu**2)
        oh = 0.24 * ry_px * max(mopen, 0.0)
        if oh > 0.3:
            span = abs(k * curve) * 0.5 + oh
            mb = _box(img.shape, cx - mw, cx + mw, my - span, my + span, 2.0)
            sub, sx, sy = img[mb], xx[mb], yy[mb]
            um = (sx - cx) / mw
            yc = my + k * curve * (0.5 - np.clip(um, -1, 1) ** 2)
            half = oh * np.sqrt(np.clip(1.0 - um**2, 0.0, None))
            margin = np.minimum(half - np.abs(sy - yc), (1.0 - np.abs(um)) * mw)
            _blend(sub, _cover(-margin - 1.0), params.ink)   # lips outline
            _blend(sub, _cover(-margin), (90.0, 20.0, 30.0))
        # The closed-mouth line fades out as the mouth opens into an O, so a
        # wide-open mouth is not crossed by a bar.
        pts = np.stack([cx + uu * mw, line_y], axis=1)
        line_alpha = 1.0 - float(np.clip((mopen - 0.2) / 0.5, 0.0, 1.0))
        _draw_polyline(img, xx, yy, pts, thick / 2, params.ink, line_alpha)
        frames[f] = img

    if params.noise_sigma > 0:
        frames += params.noise_sigma * rng.standard_normal(frames.shape, dtype=np.float32)
    out = np.clip(frames + 0.5, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------
# Video writing


def _as_rate(fps) -> Fraction:
    if isinstance(fps, Fraction):
        rate = fps
    else:
        # limit_denominator turns float noise (29.97 -> 29.969999...) back
        # into a short ratio that the mp4 muxer stores exactly.
        rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def write_mp4(path, frames: np.ndarray, fps: float) -> None:
    """Writes (F, H, W, 3) uint8 RGB frames (or (F, H, W) grey) as an H.264
    yuv420p mp4 at ``fps`` (float or Fraction, e.g. 7.5 or Fraction(30000, 1001)).

    yuv420p needs even sizes, so an odd width/height is PADDED by one pixel,
    replicating the last column/row: a 45x33 input reads back as 46x34.
    Known decord 0.6.0 bug (dmlc/decord#93, #336): for some widths
    (2, 4, 6, 8, 12, 16, 24, 48, 72 px) it decodes 4 channels and get_batch
    fails. The file itself is fine (PyAV reads it); just avoid those widths
    when the reader is decord.
    The file appears atomically: it is written to a temporary name in the same
    folder and renamed, so an interrupted run never leaves a partial file.
    """
    import av  # local import: keeps module import light for spawn workers

    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    h, w = frames.shape[1:3]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    frames = np.ascontiguousarray(frames)
    rate = _as_rate(fps)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            # One thread: parallelism comes from the worker pool. A keyframe
            # every ~second keeps random clip seeks cheap; no B-frames keeps
            # decoded frame counts exact.
            gop = max(1, int(round(float(rate))))
            stream.codec_context.thread_count = 1
            stream.codec_context.options = {
                "crf": "18",
                "preset": "veryfast",
                "x264-params": f"keyint={gop}:min-keyint=1:scenecut=0:bframes=0",
            }
            for i, arr in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
                frame.pts = i
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------
# Dataset generation


def _seed_seq(cfg: SynthEmoConfig, split: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(cfg.seed), spawn_key=(_SPLIT_KEY[split], *key))


def balanced_labels(n: int, rng: np.random.Generator) -> list[str]:
    """A shuffled label list with counts differing by at most one."""
    order = rng.permutation(len(EMOTIONS))
    labels = [EMOTIONS[order[i % len(EMOTIONS)]] for i in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def make_text(group: str, rng: np.random.Generator) -> str:
    template = _TEMPLATES[group][int(rng.integers(len(_TEMPLATES[group])))]
    fills = {name: vals[int(rng.integers(len(vals)))] for name, vals in sorted(_SLOTS.items())}
    return template.format(**fills)


def _draw_from_row(row: np.ndarray, u: float) -> int:
    # Inverse CDF on a shared uniform: classes with the same row (surprised,
    # fearful) or the same ambiguous share (sad, angry) make the same choice.
    cum = np.cumsum(row)
    cum = cum / cum[-1]   # exact 1.0 at the end, so rounding never picks a zero-probability tail
    return int(min(np.searchsorted(cum, u, side="right"), len(row) - 1))


def sample_video(cfg: SynthEmoConfig, split: str, index: int, label: str) -> tuple[FaceParams, str, dict]:
    """Draws the params, transcript and meta of one video from (seed, split, index)."""
    vis_ss, text_ss = _seed_seq(cfg, split, 1, index).spawn(2)
    vrng = np.random.default_rng(vis_ss)
    c = EMOTIONS.index(label)
    kind = VISUAL_KINDS[_draw_from_row(visual_kind_table(cfg)[c], vrng.random())]
    wlen = vrng.uniform(cfg.window_min, cfg.window_max)
    wstart = vrng.uniform(0.0, 1.0 - wlen)
    params = sample_face_params(kind, (wstart, wstart + wlen), vrng)
    params.label = label

    trng = np.random.default_rng(text_ss)
    group = TEXT_GROUPS[_draw_from_row(text_group_table(cfg)[c], trng.random())]
    text = make_text(group, trng)
    n = cfg.num_frames
    dur = n / cfg.fps   # actual encoded length, may differ from cfg.duration by rounding
    meta = {
        "id": f"{index:06d}",
        "window_start": round(wstart * dur, 4),
        "window_end": round((wstart + wlen) * dur, 4),
        "ambiguous": kind == "ambiguous",
        "text_group": group,
        "visual": kind,
    }
    return params, text, meta


def _render_task(task) -> str:
    path, params, num_frames, size, fps, entropy, key = task
    rng = np.random.default_rng(np.random.SeedSequence(entropy=entropy, spawn_key=key))
    write_mp4(path, render_face_frames(params, num_frames, size, rng), fps)
    return path


def _run_tasks(fn, tasks: list, workers: int, progress: bool, desc: str, unit: str, chunksize: int) -> None:
    """Run ``fn`` on every task, in a process pool when ``workers`` > 1, with a progress bar."""
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc=desc, unit=unit)
    workers = max(1, int(workers))
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            fn(task)
            if bar is not None:
                bar.update(1)
    else:
        # fork where available: spawn/forkserver re-import __main__, which
        # breaks (and respawns workers forever) for stdin scripts and scripts
        # without a main guard. Workers only touch numpy and PyAV, never CUDA,
        # so forking a parent that holds a GPU context is safe.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for _ in pool.imap_unordered(fn, tasks, chunksize=chunksize):
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def generate_synthemo(out_dir: str | os.PathLike, cfg: SynthEmoConfig = SynthEmoConfig(), progress: bool = True) -> dict:
    """Writes out_dir/{train,val,test}.jsonl and out_dir/videos/<split>/<id>.mp4, plus out_dir/synthemo.json (the config and the ceilings). Returns that summary dict.

    The returned dict also carries ``generation_seconds`` (not written to disk)."""
    if not 0 < cfg.window_min <= cfg.window_max <= 1:
        raise ValueError("need 0 < window_min <= window_max <= 1")
    for name in ("ambiguous_fraction", "happy_positive_text", "sad_specific_text"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]")
    out = Path(out_dir)
    manifests: dict[str, list[str]] = {}
    tasks = []
    for split, n in cfg.split_sizes().items():
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
        labels = balanced_labels(n, np.random.default_rng(_seed_seq(cfg, split, 0)))
        lines = []
        for i, label in enumerate(labels):
            params, text, meta = sample_video(cfg, split, i, label)
            rel = f"videos/{split}/{i:06d}.mp4"
            lines.append(json.dumps({"video": rel, "text": text, "label": label, "meta": meta}, sort_keys=False))
            tasks.append((str(out / rel), params, cfg.num_frames, cfg.size, cfg.fps, int(cfg.seed), (_SPLIT_KEY[split], 2, i)))
        manifests[split] = lines

    t0 = time.perf_counter()
    _run_tasks(_render_task, tasks, int(cfg.workers), progress, "synthemo", "video", chunksize=4)

    # Manifests go last so they never point at videos that are not written yet.
    for split, lines in manifests.items():
        _atomic_write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    cfg_dict = asdict(cfg)
    summary = {
        "name": "synthemo",
        "version": 1,
        "config": cfg_dict,
        "ceilings": ceilings(cfg),
        "emotions": list(EMOTIONS),
        "num_frames": cfg.num_frames,
        "counts": {s: len(v) for s, v in manifests.items()},
        "manifests": {s: f"{s}.jsonl" for s in manifests},
    }
    _atomic_write_text(out / "synthemo.json", json.dumps(summary, indent=2) + "\n")
    # Wall time goes only into the returned dict: the file must stay
    # byte-identical for a seed.
    summary["generation_seconds"] = time.perf_counter() - t0
    return summary


# --------------------------------------------------------------------------
# Captioned still frames (image-text pretraining) and labelled subsets
#
# ClipBERT's first stage matches images with captions (ITM) and fills in
# masked caption words (MLM). generate_captioned_frames() gives that stage an
# in-domain corpus: SynthEmo faces at their expression peak, each with a
# caption that says what the face LOOKS like (mouth, brows, eyes) and never
# which emotion it is. Fine-tuning then still has to learn the mapping from
# appearance to label; pretraining only teaches the model to see the features.

_CAPTION_KEY = 7   # spawn-key branch of the caption corpus; videos use 0..2, so the two never share streams

# Words a caption must never contain: emotion names, their obvious synonyms
# and stems, and the visual family names. "calm" is here too because RAVDESS
# uses it as an emotion class. Tests check every caption against this list.
CAPTION_FORBIDDEN_WORDS: frozenset[str] = frozenset({
    "happy", "happiness", "happily", "joy", "joyful", "glad", "cheerful", "delighted", "pleased", "content",
    "sad", "sadness", "sadly", "unhappy", "sorrow", "sorrowful", "grief", "gloomy", "depressed", "miserable",
    "angry", "anger", "angrily", "mad", "furious", "rage", "irritated", "annoyed", "hostile",
    "surprise", "surprised", "surprising", "astonished", "astonishment", "amazed", "shocked", "startled",
    "fear", "fearful", "afraid", "scared", "frightened", "terrified", "anxious", "worried", "nervous",
    "neutral", "calm", "relaxed", "disgust", "disgusted", "contempt", "upset", "excited",
    "emotion", "emotional", "mood", "feeling", "ambiguous",
})

# Phrases for each visible feature. "np": noun phrases that follow "with";
# "verb": participles for "someone <verb> with ..."; "adj": for "a <adj> face".
_FEATURE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "smile": {
        "np": ("a broad smile", "a wide smile", "upturned mouth corners", "mouth corners curled up", "a big grin"),
        "verb": ("smiling broadly", "grinning", "smiling widely"),
        "adj": ("smiling", "grinning"),
    },
    "frown": {
        "np": ("mouth corners turned down", "a downturned mouth", "a drooping mouth",
               "the corners of the mouth pulled down"),
        "verb": ("frowning", "frowning deeply"),
        "adj": ("frowning",),
    },
    "slight_frown": {
        "np": ("slightly downturned mouth corners", "a mouth that curves down a little",
               "a faint downward curve to the mouth"),
        "verb": ("frowning slightly",),
        "adj": ("slightly frowning",),
    },
    "mouth_straight": {
        "np": ("a closed mouth", "a straight closed mouth", "lips closed in a straight line", "a flat closed mouth"),
    },
    "mouth_wide_open": {
        "np": ("a wide open mouth", "a gaping mouth", "a round open mouth", "the mouth open wide", "a dropped jaw"),
        "verb": ("gaping", "staring open-mouthed"),
        "adj": ("open-mouthed", "gaping"),
    },
    "mouth_parted": {
        "np": ("parted lips", "a slightly open mouth", "lips a little apart"),
    },
    "tight_lips": {
        "np": ("tightly pressed lips", "a tight narrow mouth", "lips pressed together"),
    },
    "brows_raised": {
        "np": ("raised brows", "eyebrows lifted high", "brows arched up high", "high raised eyebrows"),
    },
    "brows_lowered": {
        "np": ("brows pulled down", "lowered eyebrows", "eyebrows drawn low"),
    },
    "brows_slightly_lowered": {
        "np": ("slightly lowered brows", "brows a little low", "eyebrows set a bit low"),
    },
    "brows_inner_up": {
        "np": ("brows raised at the inner ends", "eyebrows slanting up toward the middle", "inner brow corners lifted"),
    },
    "brows_knitted": {
        "np": ("brows drawn together", "knitted eyebrows", "brows slanting down toward the nose"),
    },
    "brows_level": {
        "np": ("level brows", "flat eyebrows", "eyebrows at rest"),
    },
    "eyes_wide": {
        "np": ("wide open eyes", "eyes opened wide", "big round eyes"),
        "adj": ("wide-eyed",),
    },
    "eyes_narrow": {
        "np": ("narrowed eyes", "squinting eyes", "half-closed eyes"),
        "verb": ("squinting",),
    },
    "eyes_normal": {
        "np": ("eyes open normally", "ordinary open eyes", "a steady gaze"),
    },
}
CAPTION_FEATURES: tuple[str, ...] = tuple(_FEATURE_PHRASES)

_CAPTION_SUBJECTS = ("a face", "a cartoon face", "a drawn face", "a person", "someone", "a cartoon person",
                     "a close-up of a face")
_CAPTION_NOUN_TEMPLATES = ("{subject} with {list}", "{subject} showing {list}", "{subject} that has {list}")
_CAPTION_VERB_TEMPLATES = ("{person} {verb} with {list}", "{person} {verb}, with {list}")
_CAPTION_ADJ_TEMPLATES = ("{article} {adj} face with {list}", "{article} {adj} cartoon face with {list}")
_CAPTION_PERSONS = ("someone", "a person", "a cartoon person", "a cartoon face", "a drawn face")


def describe_expression(expression) -> list[str]:
    """The visible features of an expression vector (layout :data:`EXPRESSION_FIELDS`), as
    :data:`CAPTION_FEATURES` keys in a fixed order (mouth, brows, eyes).

    Thresholds sit in the gaps between the visual families' jitter ranges
    (see ``sample_face_params``: deviation from neutral x U(0.85, 1.15),
    +- 0.04), so every family always gets its own core features:

    * happy: smile, mouth_parted (+ eyes_narrow for most draws: the happy
      eye range 0.56..0.74 straddles the 0.72 cut);
    * sad: frown, brows_inner_up;
    * angry: slight_frown, tight_lips, brows_lowered, brows_knitted, eyes_narrow;
    * ambiguous: slight_frown, brows_slightly_lowered;
    * astonished: mouth_wide_open, brows_raised, eyes_wide;
    * neutral: mouth_straight, brows_level, eyes_normal.
    """
    curve, mopen, mwidth, brow_h, brow_tilt, eye_open = (float(v) for v in np.asarray(expression, dtype=np.float64))
    feats: list[str] = []
    # mouth
    if mopen > 0.6:
        feats.append("mouth_wide_open")
    if curve > 0.4:
        feats.append("smile")
    elif curve < -0.5:
        feats.append("frown")
    elif curve < -0.15:
        feats.append("slight_frown")
    if 0.1 < mopen <= 0.6:
        feats.append("mouth_parted")
    elif mopen <= 0.1:
        if mwidth < 0.84:
            feats.append("tight_lips")
        elif abs(curve) < 0.15:
            feats.append("mouth_straight")
    # brows
    n_before = len(feats)
    if brow_h > 0.5:
        feats.append("brows_raised")
    elif brow_h < -0.6:
        feats.append("brows_lowered")
    elif brow_h < -0.2:
        feats.append("brows_slightly_lowered")
    if brow_tilt > 0.5:
        feats.append("brows_inner_up")
    elif brow_tilt < -0.5:
        feats.append("brows_knitted")
    if len(feats) == n_before:
        feats.append("brows_level")
    # eyes
    if eye_open > 1.2:
        feats.append("eyes_wide")
    elif eye_open < 0.72:
        feats.append("eyes_narrow")
    elif 0.95 <= eye_open <= 1.2:
        feats.append("eyes_normal")
    return feats


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _join_phrases(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(expression, rng: np.random.Generator) -> str:
    """A plain-words caption of the face's look, e.g. "someone smiling broadly with narrowed eyes
    and level brows". Varies template, feature order and synonyms with ``rng``; the content
    comes from :func:`describe_expression` only, and no word of
    :data:`CAPTION_FORBIDDEN_WORDS` can occur."""
    feats = describe_expression(expression)
    order = [feats[i] for i in rng.permutation(len(feats))]
    style = int(rng.integers(3))   # 0 noun phrase, 1 verb lead, 2 adjective lead
    lead_key = "verb" if style == 1 else "adj"
    leads = [f for f in order if lead_key in _FEATURE_PHRASES[f]]
    if style and leads:
        lead = leads[0]
        rest = [_pick(_FEATURE_PHRASES[f]["np"], rng) for f in order if f != lead]
        if style == 1:
            verb = _pick(_FEATURE_PHRASES[lead]["verb"], rng)
            person = _pick(_CAPTION_PERSONS, rng)
            if not rest:
                return f"{person} {verb}"
            return _pick(_CAPTION_VERB_TEMPLATES, rng).format(person=person, verb=verb, list=_join_phrases(rest))
        adj = _pick(_FEATURE_PHRASES[lead]["adj"], rng)
        article = "an" if adj[0] in "aeiou" else "a"
        if not rest:
            return f"{article} {adj} face"
        return _pick(_CAPTION_ADJ_TEMPLATES, rng).format(article=article, adj=adj, list=_join_phrases(rest))
    parts = [_pick(_FEATURE_PHRASES[f]["np"], rng) for f in order]
    return _pick(_CAPTION_NOUN_TEMPLATES, rng).format(subject=_pick(_CAPTION_SUBJECTS, rng), list=_join_phrases(parts))


def write_png(path, image: np.ndarray) -> None:
    """Writes an (H, W, 3) uint8 RGB array as an 8-bit PNG, atomically.

    Plain zlib, no imaging library: the bytes depend only on the pixels (and
    zlib's level-6 output), so the corpus is byte-identical for a seed
    whatever Pillow version is installed.
    """
    import struct
    import zlib

    img = np.ascontiguousarray(np.asarray(image))
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    # Each scanline starts with its filter type byte; 0 = no filter.
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    data = (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))   # 8 bit, RGB, deflate, no interlace
            + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _caption_seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(_CAPTION_KEY, *key))


def sample_captioned_frame(seed: int, index: int, kind: str) -> tuple[FaceParams, str]:
    """Params and caption of still ``index``: a face of visual family ``kind``
    drawn as in the videos, but with no blinks (a one-frame render at t = 0.5 would otherwise often
    catch one) and a window covering the whole clip, so the single frame shows the expression at
    full intensity."""
    from dataclasses import replace

    vis_ss, text_ss = _caption_seq(seed, 1, index).spawn(2)
    params = replace(sample_face_params(kind, (0.0, 1.0), np.random.default_rng(vis_ss)), blinks=())
    caption = make_caption(params.expression, np.random.default_rng(text_ss))
    return params, caption


def _render_still_task(task) -> str:
    path, params, size, seed, index = task
    rng = np.random.default_rng(_caption_seq(seed, 2, index))
    # One frame at t = 0.5; with window (0, 1) the intensity there is exactly 1.
    write_png(path, render_face_frames(params, 1, size, rng)[0])
    return path


def generate_captioned_frames(out_dir: str | os.PathLike, num_images: int = 2000, size: int = 64, seed: int = 0,
                              progress: bool = True, workers: int = 0) -> dict:
    """Writes SynthEmo still frames with appearance captions, for image-text pretraining.

    Layout::

        out_dir/
          images/<id>.png        (size x size RGB), ids 000000.. stable for a seed
          captions.jsonl         90%: {"video": "images/000017.png", "text": caption,
                                       "meta": {"id", "kind", "features"}}
          val_captions.jsonl     10% held out (round(0.1 * num_images) images)
          captions.json          summary: config, counts, kinds

    The key is ``video`` because the pretraining reader treats an image as a
    one-frame video; paths are relative to ``out_dir`` (the manifests' folder).
    Visual kinds (:data:`VISUAL_KINDS`, neutral included) are balanced (counts
    differ by at most one); appearance is drawn as for the videos; the face is
    fully expressed. Captions come from :func:`make_caption` and contain no
    emotion word (:data:`CAPTION_FORBIDDEN_WORDS`); ``meta`` carries the kind
    and feature keys for diagnostics only.

    Deterministic: everything is seeded from (seed, index), so the files are
    byte-identical for a seed whatever ``workers`` is. ``workers`` <= 1
    renders in this process; more uses a process pool. Returns the summary
    dict plus ``generation_seconds`` (not written to disk).
    """
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be a positive int, got {num_images!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    num_images, size, seed = int(num_images), int(size), int(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)

    order_rng = np.random.default_rng(_caption_seq(seed, 0))
    kind_order = order_rng.permutation(len(VISUAL_KINDS))
    kinds = [VISUAL_KINDS[kind_order[i % len(VISUAL_KINDS)]] for i in range(num_images)]
    kinds = [kinds[i] for i in order_rng.permutation(num_images)]
    num_val = int(round(0.1 * num_images))
    val_ids = set(order_rng.permutation(num_images)[:num_val].tolist())

    lines = {"train": [], "val": []}
    tasks = []
    for i, kind in enumerate(kinds):
        params, caption = sample_captioned_frame(seed, i, kind)
        rel = f"images/{i:06d}.png"
        meta = {"id": f"{i:06d}", "kind": kind, "features": describe_expression(params.expression)}
        lines["val" if i in val_ids else "train"].append(json.dumps({"video": rel, "text": caption, "meta": meta}))
        tasks.append((str(out / rel), params, size, seed, i))

    t0 = time.perf_counter()
    _run_tasks(_render_still_task, tasks, workers, progress, "synthemo captions", "image", chunksize=16)

    # Manifests last, so they never point at images that are not written yet.
    _atomic_write_text(out / "captions.jsonl", "".join(line + "\n" for line in lines["train"]))
    _atomic_write_text(out / "val_captions.jsonl", "".join(line + "\n" for line in lines["val"]))
    kind_counts = {k: kinds.count(k) for k in VISUAL_KINDS}
    summary = {
        "name": "synthemo_captions",
        "version": 1,
        "config": {"num_images": num_images, "size": size, "seed": seed},
        "counts": {"train": len(lines["train"]), "val": len(lines["val"])},
        "kinds": kind_counts,
        "manifests": {"train": "captions.jsonl", "val": "val_captions.jsonl"},
    }
    _atomic_write_text(out / "captions.json", json.dumps(summary, indent=2) + "\n")
    summary["generation_seconds"] = time.perf_counter() - t0
    return summary


def _allocate_stratified(sizes: list[int], fraction: float) -> list[int]:
    """How many to keep from each group: about ``fraction`` of the total, at least one per
    non-empty group. Largest-remainder rounding makes the total exactly
    ``round(fraction * N)`` unless the one-per-group floor forces more."""
    n = sum(sizes)
    target = int(round(fraction * n))
    quotas = [fraction * s for s in sizes]
    alloc = [min(s, max(1, int(np.floor(q)))) if s else 0 for s, q in zip(sizes, quotas)]
    while sum(alloc) < target:
        # Give the next one to the group furthest below its quota (lowest index on ties).
        gaps = [(q - a) if a < s else -np.inf for a, s, q in zip(alloc, sizes, quotas)]
        alloc[int(np.argmax(gaps))] += 1
    return alloc


def subset_manifest(manifest_path: str | os.PathLike, out_path: str | os.PathLike, fraction: float,
                    seed: int = 0) -> dict:
    """Writes a stratified random subset of a JSONL manifest (e.g. 10% of the SynthEmo train labels).

    Lines are grouped by ``label`` (a list label, as in multi-label manifests, is grouped by its
    sorted tuple; a line without a label forms its own group). Each group keeps a random
    ``~fraction`` of its lines, at least one, with the total exactly ``round(fraction * N)``
    unless keeping one per group needs more (see :func:`_allocate_stratified`). Kept lines stay in
    their original order, otherwise unchanged, except ``video``: a relative path is rewritten
    relative to ``out_path``'s folder (absolute if that is impossible, e.g. another drive), so
    the subset works wherever it is written. Randomness comes from ``seed`` only.

    Returns ``{"source", "fraction", "seed", "num_lines", "num_source_lines", "counts"}``
    (``counts``: kept lines per label, labels as strings).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    src = Path(manifest_path)
    out = Path(out_path)
    raw_lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not raw_lines:
        raise ValueError(f"{src} has no lines")
    records = [json.loads(ln) for ln in raw_lines]

    def key(rec):
        lab = rec.get("label")
        return tuple(sorted(lab)) if isinstance(lab, list) else lab

    groups: dict = {}
    for i, rec in enumerate(records):
        groups.setdefault(key(rec), []).append(i)
    names = sorted(groups, key=lambda k: (k is None, json.dumps(k, sort_keys=True)))   # a stable order
    alloc = _allocate_stratified([len(groups[k]) for k in names], float(fraction))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    keep: list[int] = []
    counts: dict[str, int] = {}
    for name, k in zip(names, alloc):
        idx = groups[name]
        keep.extend(idx[j] for j in rng.permutation(len(idx))[:k])
        counts[name if isinstance(name, str) else json.dumps(name)] = int(k)
    keep.sort()

    src_dir = src.resolve().parent
    out_dir = out.resolve().parent
    lines = []
    for i in keep:
        rec = records[i]
        video = rec.get("video")
        if isinstance(video, str) and video and not os.path.isabs(video) and src_dir != out_dir:
            target = src_dir / video
            try:
                rec = {**rec, "video": Path(os.path.relpath(target, out_dir)).as_posix()}
            except ValueError:   # no relative path between them (Windows drives)
                rec = {**rec, "video": str(target)}
            lines.append(json.dumps(rec))
        else:
            lines.append(raw_lines[i])   # untouched lines are copied byte for byte
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {
        "source": str(src),
        "fraction": float(fraction),
        "seed": int(seed),
        "num_lines": len(lines),
        "num_source_lines": len(records),
        "counts": counts,
    }
