"""One video's face: its random parameters, and its position and expression strength over time.

Everything a render needs is drawn here, up front: the frames are a function of :class:`FaceParams`
plus sensor noise only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .spec import _KIND_TARGETS, EXPRESSION_FIELDS, NEUTRAL_EXPRESSION


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


def face_center(params: FaceParams, t: float, size: int) -> tuple[float, float]:
    """Face centre in px at time ``t`` (fraction of the video); tests and
    diagnostics use it to find the mouth without re-deriving the drift."""
    ph = 2 * np.pi * params.drift_freq * t
    cx = params.center[0] + params.drift_amp[0] * np.sin(ph + 2 * np.pi * params.drift_phase[0])
    cy = params.center[1] + params.drift_amp[1] * np.sin(ph + 2 * np.pi * params.drift_phase[1])
    return float(cx * size), float(cy * size)
