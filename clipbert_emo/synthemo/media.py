"""Media writers: H.264 mp4 from frames, 8-bit PNG from an image. Both write atomically."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..config.atomic import atomic_path, atomic_write_bytes


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


def write_mp4(path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None, sample_rate: int = 16000) -> None:
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
    ``audio`` (mono float32 in [-1, 1] at ``sample_rate``) adds an AAC sound track.
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

    with atomic_path(path) as tmp:
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
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=sample_rate, layout="mono")
                sound.codec_context.thread_count = 1
            for i, arr in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
                frame.pts = i
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
            if sound is not None:
                wave = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)[None]  # (1, n) planar mono
                for start in range(0, wave.shape[1], 1024):
                    chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]),
                                                       format="fltp", layout="mono")
                    chunk.sample_rate = sample_rate
                    chunk.pts = start
                    container.mux(sound.encode(chunk))
                container.mux(sound.encode(None))


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
    atomic_write_bytes(path, data)
