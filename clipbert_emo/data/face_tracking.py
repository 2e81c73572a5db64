"""Face boxes across a video's sampled frames: a frame where the detector missed takes a box from its neighbours.

A detector looks at each frame alone, so on real video it blinks: a turned head, motion blur, a compression
artefact, and the face is gone for a frame or two while it is plainly still there. The boxes of the frames
around a miss say where it is:

1. detections are linked into tracks, in time order: a box joins the track whose predicted box (its last box
   moved at the track's velocity, from its last two boxes) it overlaps by IoU >= ``min_iou``, else starts one;
2. a lone detection inside another track's run (a one-frame false alarm, or another face that was the largest
   for one frame) is dropped, so the crop does not jump away and back;
3. a miss bracketed by two boxes of one track gets the box interpolated between them (constant velocity); any
   other miss takes the nearest box. Never further than ``max_carry`` frames from the box it comes from: past
   that the face may really have left, and the frame stays without one.
"""

from __future__ import annotations

from typing import Sequence

Box = tuple[float, float, float, float]  # (x, y, w, h)

MAX_CARRY_FRAMES = 15  # about half a second of 25-30 fps video
MIN_IOU = 0.1


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _between(a: Box, b: Box, f: float) -> Box:
    """The box a fraction ``f`` of the way from ``a`` to ``b`` (f may pass 1: extrapolation)."""
    return tuple(u + (v - u) * f for u, v in zip(a, b))  # type: ignore[return-value]


def _link(boxes: Sequence[Box | None], positions: Sequence[float], max_carry: float, min_iou: float) -> list[int]:
    """The track number of each frame's detection (-1 for a miss)."""
    track_of = [-1] * len(boxes)
    tracks: list[list[int]] = []  # frame rows of each track's detections
    for i, box in enumerate(boxes):
        if box is None:
            continue
        best, best_iou = -1, min_iou
        for k, rows in enumerate(tracks):
            last = rows[-1]
            if positions[i] - positions[last] > 2 * max_carry:
                continue  # lost long ago
            guess = boxes[last]
            if len(rows) > 1:
                prev = rows[-2]
                guess = _between(boxes[prev], boxes[last], (positions[i] - positions[prev]) /
                                 max(positions[last] - positions[prev], 1e-9))
            overlap = max(iou(guess, box), iou(boxes[last], box))
            if overlap >= best_iou:
                best, best_iou = k, overlap
        if best < 0:
            tracks.append([])
            best = len(tracks) - 1
        tracks[best].append(i)
        track_of[i] = best
    return track_of


def _drop_lone(boxes: list[Box | None], track_of: list[int]) -> None:
    """A one-detection track whose neighbouring detections both belong to one other track is a blink, dropped."""
    found = [i for i, t in enumerate(track_of) if t >= 0]
    sizes: dict[int, int] = {}
    for i in found:
        sizes[track_of[i]] = sizes.get(track_of[i], 0) + 1
    for j in range(1, len(found) - 1):
        prev, here, nxt = found[j - 1], found[j], found[j + 1]
        if sizes[track_of[here]] == 1 and track_of[prev] == track_of[nxt] != track_of[here]:
            boxes[here], track_of[here] = None, -1


def track_boxes(boxes: Sequence[Box | None], positions: Sequence[float] | None = None,
                max_carry: float = MAX_CARRY_FRAMES, min_iou: float = MIN_IOU) -> tuple[list[Box | None], list[bool]]:
    """The detected boxes of a video's sampled frames, in time order (``positions``: their frame indices, strictly
    increasing; default 0, 1, 2, ...) -> each frame's box (detected, or carried to a miss from its neighbours
    within ``max_carry`` frames; None where none is near) and whether it was carried."""
    positions = list(range(len(boxes))) if positions is None else list(positions)
    out = list(boxes)
    track_of = _link(out, positions, max_carry, min_iou)
    _drop_lone(out, track_of)
    found = [i for i, b in enumerate(out) if b is not None]
    carried = [False] * len(out)
    prev = -1
    for i in found + [len(out)]:  # each run of misses between detections prev and i
        for m in range(prev + 1, i):
            near = [r for r in (prev, i if i < len(out) else -1) if r >= 0 and abs(positions[m] - positions[r])
                    <= max_carry]
            if not near:
                continue
            if prev >= 0 and i < len(out) and track_of[prev] == track_of[i]:
                f = (positions[m] - positions[prev]) / (positions[i] - positions[prev])
                out[m] = _between(out[prev], out[i], f)
            else:
                out[m] = out[min(near, key=lambda r: abs(positions[m] - positions[r]))]
            carried[m] = True
        prev = i
    return out, carried
