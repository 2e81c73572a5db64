"""Rendering a face video to pixels: vectorised numpy, soft edges from approximate signed distances."""

from __future__ import annotations

import numpy as np

from .face import FaceParams, expression_intensity, face_center
from .spec import NEUTRAL_EXPRESSION


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


def _background(p: FaceParams, size: int, xx, yy) -> np.ndarray:
    s = float(size)
    proj = ((xx / s - 0.5) * np.cos(p.bg_angle) + (yy / s - 0.5) * np.sin(p.bg_angle)) + 0.5
    w = np.clip(proj, 0, 1)[..., None]
    img = (p.bg_colors[0] * (1 - w) + p.bg_colors[1] * w).astype(np.float32)
    for blob, alpha in zip(p.blobs, p.blob_alpha):
        d2 = (xx / s - blob[0]) ** 2 + (yy / s - blob[1]) ** 2
        _blend(img, (alpha * np.exp(-d2 / (2 * blob[2] ** 2))).astype(np.float32), blob[3:6])
    return img


def _blink_open(params: FaceParams, num_frames: int) -> np.ndarray:
    """Per frame: 1 with the eyes open, 0 during a blink."""
    blink_open = np.ones(num_frames)
    for start, length in params.blinks:
        i0 = min(int(start * num_frames), num_frames - 1)
        blink_open[i0:i0 + length] = 0.0
    return blink_open


def _draw_distractor(img: np.ndarray, params: FaceParams, xx, yy, t: float, s: float) -> None:
    """The moving disc or square at time ``t`` (0..1) along its path."""
    x0, y0, x1, y1 = params.distractor_path
    dx, dy = (x0 + (x1 - x0) * t) * s, (y0 + (y1 - y0) * t) * s
    rad = params.distractor_radius * s
    if params.distractor_square:
        sd = np.maximum(np.abs(xx - dx), np.abs(yy - dy)) - rad
    else:
        sd = np.sqrt((xx - dx) ** 2 + (yy - dy) ** 2) - rad
    _blend(img, _cover(sd), params.distractor_color)


def _draw_head(img: np.ndarray, params: FaceParams, xx, yy, cx, cy, rx_px, ry_px) -> None:
    fb = _box(img.shape, cx - rx_px, cx + rx_px, cy - ry_px, cy + ry_px, 2.0)
    face_sd = _ellipse_sd(xx[fb], yy[fb], cx, cy, rx_px, ry_px)
    _blend(img[fb], _cover(face_sd + 1.0), params.ink)      # 1 px outline
    _blend(img[fb], _cover(face_sd), params.skin)


def _draw_eyes_and_brows(img: np.ndarray, params: FaceParams, xx, yy, cx, cy, rx_px, ry_px, eye_open, blink,
                         brow_h, brow_tilt, thick) -> None:
    # Eyes: white ellipse, ink outline, pupil; a blink collapses them to a line.
    ew, eh = 0.23 * rx_px, 0.15 * ry_px * max(eye_open, 0.05) * blink
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


def _draw_mouth(img: np.ndarray, params: FaceParams, xx, yy, cx, cy, rx_px, ry_px, curve, mopen, mwidth,
                thick) -> None:
    # Centre line y = my + k*curve*(0.5 - u^2); y grows downward, so
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


def render_face_frames(params: FaceParams, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Renders a video as a (F, H, W, 3) uint8 RGB array. ``rng`` only drives
    the per-pixel sensor noise; all content comes from ``params``."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    base = _background(params, size, xx, yy)
    t = (np.arange(num_frames) + 0.5) / num_frames
    intensity = expression_intensity(params.window, t)
    blink_open = _blink_open(params, num_frames)

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
        _draw_distractor(img, params, xx, yy, t[f], s)
        cx, cy = face_center(params, t[f], size)
        _draw_head(img, params, xx, yy, cx, cy, rx_px, ry_px)
        e = NEUTRAL_EXPRESSION + intensity[f] * (params.expression - NEUTRAL_EXPRESSION)
        curve, mopen, mwidth, brow_h, brow_tilt, eye_open = e
        _draw_eyes_and_brows(img, params, xx, yy, cx, cy, rx_px, ry_px, eye_open, blink_open[f], brow_h, brow_tilt,
                             thick)
        _draw_mouth(img, params, xx, yy, cx, cy, rx_px, ry_px, curve, mopen, mwidth, thick)
        frames[f] = img

    if params.noise_sigma > 0:
        frames += params.noise_sigma * rng.standard_normal(frames.shape, dtype=np.float32)
    out = np.clip(frames + 0.5, 0, 255).astype(np.uint8)
    return out
