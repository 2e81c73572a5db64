"""Reading frames from a video file with decord, touching only the sampled frames (exactly, or moved to the
nearest keyframes: ``SEEK_MODES``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config.choices import SEEK_MODES  # noqa: F401  (re-exported: the seek modes described below)
from ..config.errors import UserError

DEFAULT_FPS = 25.0
# Still images are read as one-frame videos (FER2013, image folders, COCO / Visual Genome pretraining).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def is_image_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; VideoDecodeError naming the file if it cannot be read."""
    from PIL import Image

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError for broken files
        raise VideoDecodeError(f"{path}: cannot read image ({_short(e)})") from None


class VideoDecodeError(UserError, RuntimeError):
    """A video that cannot be opened or decoded; the message names the file."""


@dataclass
class VideoInfo:
    path: str
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def scaled_size(path: str | os.PathLike, max_side: int) -> tuple[int, int] | None:
    """(width, height) that brings the video's longer side down to ``max_side`` (aspect kept, even sizes, as the
    scalers want), read from the container header; None when the video is no larger or the header says nothing."""
    import av

    if not os.path.isfile(path):  # a FIFO would block av.open forever; open_video reports what it is
        return None
    try:
        with av.open(os.fspath(path)) as container:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    except Exception:  # unreadable header, no video stream: open_video reports it
        return None
    if min(width, height) <= 0 or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def open_video(path: str | os.PathLike, num_threads: int = 1, size: tuple[int, int] | None = None):
    """Open ``path`` with decord; raise VideoDecodeError naming the file on any failure. ``size`` (width, height):
    frames come out scaled to it by the decoder (:func:`scaled_size`)."""
    import decord

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(f"{path}: file not found")
    if not os.path.isfile(path):  # opening a FIFO blocks until a writer comes, a device may never end
        raise VideoDecodeError(f"{path}: not a regular file (a folder, FIFO, socket or device); not opened")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"{path}: file is empty (0 bytes)")
    _refuse_playlist(path)
    scaled = {"width": size[0], "height": size[1]} if size else {}
    try:
        reader = _decord_reader(path, ctx=decord.cpu(0), num_threads=num_threads, **scaled)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError variants
        # decord's messages ("Check failed: st_nb >= 0") do not say what is wrong; PyAV can: no video stream
        # at all, or a damaged file whose first part still decodes (then those frames are used).
        return decode_what_decodes(path, reason=_short(e))
    if len(reader) == 0:
        raise VideoDecodeError(f"{path}: video has no frames")
    return reader


# Text formats FFmpeg would follow to other files (an HLS playlist, a concat list, an SDP): decord's FFmpeg reads
# the files such a "video" names, whatever its file name says, so a file of the wrong kind could make the loader
# read other local files. No video file starts with these.
_PLAYLIST_MAGIC = (b"#EXTM3U", b"ffconcat", b"v=0")


def _refuse_playlist(path: str) -> None:
    with open(path, "rb") as f:
        head = f.read(16).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(_PLAYLIST_MAGIC):
        raise VideoDecodeError(f"{path}: a playlist or list of other files, not a video; not opened")


def _decord_reader(path: str, **kwargs):
    """decord.VideoReader on ``path``, including a name that is not UTF-8 (Linux file names are bytes; Python
    keeps the undecodable ones as lone surrogates, which decord cannot encode and refuses): such a file is
    opened through a plain-named link to it, removed once open (the reader keeps the file open, not the name).
    Without it the file would fall to the PyAV fallback: other frames, a false "damaged video" warning."""
    import decord

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        import tempfile

        suffix = os.path.splitext(path)[1]
        suffix = suffix if suffix.isascii() and suffix.isprintable() else ""  # FFmpeg guesses some formats by it
        folder = tempfile.mkdtemp(prefix="clipbert-emo-")
        link = os.path.join(folder, "video" + suffix)
        try:
            os.symlink(os.path.abspath(path), link)
            return decord.VideoReader(link, **kwargs)
        finally:
            if os.path.lexists(link):
                os.unlink(link)
            os.rmdir(folder)
    return decord.VideoReader(path, **kwargs)


class DecodedFrames:
    """Every frame of a file that PyAV could decode, held in memory, with decord's reader interface."""

    def __init__(self, frames: np.ndarray, fps: float):
        self.frames, self.fps = frames, fps  # (F, H, W, 3) uint8

    def __len__(self) -> int:
        return len(self.frames)

    def get_avg_fps(self) -> float:
        return self.fps

    def get_batch(self, indices):
        picked = self.frames[np.asarray(indices, dtype=np.int64)]  # (U, H, W, 3)
        return type("Batch", (), {"asnumpy": lambda _self: picked})()


def decode_what_decodes(path: str, reason: str) -> DecodedFrames:
    """A file decord refused or could not finish: decode with PyAV up to the first error. No video stream,
    or not one frame, is a VideoDecodeError saying so; a partial decode is used, with a warning."""
    import logging

    import av

    frames, fps, broke = [], 0.0, False
    try:
        with av.open(path) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["no streams"]
                raise VideoDecodeError(f"{path}: no video stream (the file holds {', '.join(kinds)})")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            to_rgb = _rgb_converter()
            try:
                for frame in container.decode(stream):
                    frames.append(to_rgb(frame))
            except av.error.FFmpegError:
                broke = True  # damaged from here on: what decoded so far is kept
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{path}: cannot open video ({reason}; {_short(e)})") from None
    if not frames:
        raise VideoDecodeError(f"{path}: no frame of the video decodes ({reason})")
    if broke or not path.lower().endswith(".gif"):  # decord never reads a GIF's length: PyAV decoding it is normal
        logging.getLogger(__name__).warning("%s: damaged video, only its first %d frame(s) decode (%s); using those",
                                            path, len(frames), reason)
    return DecodedFrames(np.stack(frames), fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS)


class ClipSpanError(UserError, ValueError):
    """A start/end span that does not lie inside its video."""


# A span may end this far past the last frame: container durations and annotation timestamps are rounded.
SPAN_END_TOLERANCE_S = 0.5


def check_span(start: float | None, end: float | None, duration: float, where: str) -> None:
    """Refuse a span that is negative, reversed, or outside a video of ``duration`` seconds; ``where`` names the
    manifest line or the video."""
    problem = None
    if (start is not None and start < 0) or (end is not None and end < 0):
        problem = f"a negative time (start {start}, end {end})"
    elif start is not None and end is not None and end <= start:
        problem = f"end {end} s is not after start {start} s"
    elif start is not None and start >= duration:
        problem = f"start {start} s is at or past the end of the video ({duration:.2f} s)"
    elif end is not None and end > duration + SPAN_END_TOLERANCE_S:
        problem = f"end {end} s is past the end of the video ({duration:.2f} s)"
    if problem:
        raise ClipSpanError(f"{where}: {problem}; fix the start/end seconds")


def video_duration(path: str) -> float | None:
    """Seconds of video in ``path`` (its frames over its frame rate); None when it cannot be read (the loader
    skips and reports it when it gets there). Measured once per file version: many manifest lines cut spans
    from the same long video."""
    st = os.stat(path)
    return _duration(os.fspath(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1024)
def _duration(path: str, mtime_ns: int, size: int) -> float | None:
    try:
        return video_info(open_video(path), path).duration
    except VideoDecodeError:
        return None


def video_info(reader, path: str) -> VideoInfo:
    fps = float(reader.get_avg_fps() or 0.0)
    if not np.isfinite(fps) or fps <= 0:
        # Some containers carry no frame rate; a fixed guess keeps clip spans sane.
        fps = DEFAULT_FPS
    return VideoInfo(path=path, num_frames=len(reader), fps=fps)


# How test clips are placed on the decoder's timeline. accurate: exactly the sampled frames (reproducible
# benchmark numbers); keyframe: a clip whose sampled start has a keyframe within a quarter of the clip spacing
# starts on that keyframe (one seek and its own frames, instead of a decode from the previous keyframe), every
# other clip is read exactly: the N clips stay at N distinct positions near the accurate ones whatever the
# keyframe interval (data/sampling.py:snap_clips_to_keyframes). The saving is where keyframes are dense (a
# keyframe every 1-2 s, as social-media encodes have); a file with one keyframe is read as accurate reads it.
# SEEK_MODES (config/choices.py) names them: the one list data.seek, --seek and Predictor(seek=) accept.
# Reads decode the file front to back, converting only the wanted frames, when that decodes fewer frames than
# seeking to each wanted frame's keyframe and decoding forward (read_plan). Where the keyframes are not known,
# the wanted frames' density decides: at least one in every 8 between the first and the last.
SEQUENTIAL_DENSITY = 1 / 8
# What one seek costs beyond the frames it decodes, in frames: a decoder flush and a demuxer seek (measured with
# clipbert-emo bench decode: it moves 16-clip reads of a 1 s GOP file by a few percent either way).
SEEK_COST_FRAMES = 4
# Which reader does that pass. PyAV ("pyav"): decode every packet, convert only the wanted frames to RGB;
# decord ("decord"): skip_frames + next, which on a short GOP turns each skip across a keyframe into a seek
# (0.5-0.8x of a full decode on 1 s GOPs, against 1.4-1.6x for PyAV: clipbert-emo bench decode).
SEQUENTIAL_READER = "pyav"


def keyframe_indices(reader) -> np.ndarray | None:
    """Sorted indices of the video's keyframes; None when the reader holds every frame in memory already
    (PyAV's fallback) or cannot tell."""
    get = getattr(reader, "get_key_indices", None)
    if get is None:
        return None
    try:
        keys = np.asarray(get(), dtype=np.int64)
    except Exception:  # decord raises DECORDError on some containers without an index
        return None
    return np.unique(keys) if keys.size else None


def read_frames(reader, indices: np.ndarray, path: str) -> np.ndarray:
    """Decode exactly the frames at ``indices`` (any shape). Returns indices.shape + (H, W, 3) uint8 RGB."""
    frames, inverse = read_unique_frames(reader, indices, path)
    frames = frames[inverse]  # (U, H, W, 3) -> (N*T, H, W, 3)
    return frames.reshape(*np.shape(indices), *frames.shape[1:])  # (N*T, H, W, 3) -> (N, T, H, W, 3)


def read_unique_frames(reader, indices: np.ndarray, path: str, size: tuple[int, int] | None = None,
                       threads: int = 1, keyframes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct frame of ``indices`` decoded once: (U, H, W, 3) uint8 RGB in frame order, and for every entry
    of the flattened ``indices`` its row there. Clips that share frames (dense clips) then cost no copies of
    full-size frames. ``size``: the (width, height) ``reader`` was opened with, if scaled; ``threads``: the decoder
    threads of a pass that does not go through ``reader`` (0 = FFmpeg's choice), as it was opened with;
    ``keyframes``: the file's keyframe indices, to pick the cheaper of seeking and one pass (:func:`read_plan`)."""
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    try:
        if read_plan(unique, keyframes) == "pass" and hasattr(reader, "skip_frames"):
            frames = _read_dense(reader, unique, path, size, threads)  # (U, H, W, 3)
        else:
            frames = reader.get_batch(unique.tolist()).asnumpy()  # (U, H, W, 3)
    except Exception as e:
        if "DECORDArrayCopyFromTo" not in str(e) and not isinstance(e, _PaddedRows):
            raise VideoDecodeError(f"{path}: decoding frames {unique.tolist()[:8]} failed ({_short(e)})") from None
        # decord 0.6 fails to copy out frames of some widths (24, 48, ... px) whose row padding it
        # mis-sizes (get_batch raises, next() returns a wrongly shaped array); PyAV decodes those files
        # correctly, up to the last frame needed.
        frames = _read_frames_pyav(path, unique, size=size, threads=threads)
    return frames, inverse.reshape(-1)


def read_plan(unique: np.ndarray, keyframes: np.ndarray | None = None) -> str:
    """"seek" or "pass": how to read the sorted, distinct frames ``unique`` for the fewest decoded frames.

    Seeking costs, per wanted frame, the frames from its keyframe up to it, unless the decoder already stands in
    that keyframe's group before it (then it decodes forward), plus SEEK_COST_FRAMES per seek. One pass costs the
    frames from the first wanted frame's keyframe to the last wanted frame. Without ``keyframes``, frames at least
    SEQUENTIAL_DENSITY dense are read in one pass."""
    if len(unique) < 2:
        return "seek"
    if keyframes is None or len(keyframes) == 0:
        span = int(unique[-1] - unique[0]) + 1
        return "pass" if len(unique) >= span * SEQUENTIAL_DENSITY else "seek"
    keys = np.asarray(keyframes, dtype=np.int64)
    group = keys[np.maximum(np.searchsorted(keys, unique, side="right") - 1, 0)]  # each frame's keyframe
    seek_cost, position = 0, -1  # position: the last frame decoded
    for frame, key in zip(unique.tolist(), group.tolist()):
        if key <= position < frame:
            seek_cost += frame - position
        else:
            seek_cost += frame - key + 1 + SEEK_COST_FRAMES
        position = frame
    pass_cost = int(unique[-1]) - int(group[0]) + 1 + SEEK_COST_FRAMES
    return "pass" if pass_cost < seek_cost else "seek"


class _PaddedRows(RuntimeError):
    """decord handed out a frame that is not (H, W, 3): its row padding bug (see read_frames)."""


def _read_dense(reader, unique: np.ndarray, path: str, size: tuple[int, int] | None = None,
                threads: int = 1) -> np.ndarray:
    """One forward pass for dense frames: PyAV from the file's start when the frames before the first wanted one
    cost no more than the span itself and PyAV counts the same frames as decord (then frame i of its decode
    order is decord's frame i: same pixels, tests/test_seek.py); otherwise decord's seek + skip."""
    lead_in_is_short = int(unique[0]) <= int(unique[-1] - unique[0])
    if SEQUENTIAL_READER == "pyav" and lead_in_is_short:
        frames = _read_frames_pyav(path, unique, expected_frames=len(reader), size=size, threads=threads)
        if frames is not None:
            return frames
    return _read_sequential(reader, unique)


def _read_sequential(reader, unique: np.ndarray) -> np.ndarray:
    """The frames at sorted ``unique`` by one forward pass from the first: frames in between are decoded
    but never converted to RGB or copied out."""
    reader.seek_accurate(int(unique[0]))
    out, position = None, int(unique[0])  # position: the frame next() returns
    for j, i in enumerate(unique.tolist()):
        if i > position:
            reader.skip_frames(i - position)
        frame = reader.next().asnumpy()
        if out is None:  # one output array, filled in place: no second copy of hundreds of MB by a stack
            out = np.empty((len(unique), *frame.shape), dtype=frame.dtype)  # (U, H, W, 3)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape != out.shape[1:]:
            raise _PaddedRows(f"frame {i} came out {frame.shape}")
        out[j] = frame
        position = i + 1
    return out


def _read_frames_pyav(path: str, wanted: np.ndarray, expected_frames: int | None = None,
                      size: tuple[int, int] | None = None, threads: int = 1) -> np.ndarray | None:
    """The frames at sorted, distinct ``wanted`` (U, H, W, 3), decoding from the start and converting only those.
    ``expected_frames``: return None (the caller reads another way) unless the container's frame count is this.
    ``size`` (width, height): scaled with swscale's bilinear filter, the nearest to decord's scaler (1-2 levels apart on average).
    ``threads``: the codec's threads (0 = FFmpeg's choice: PyAV's default, which takes every core)."""
    import av

    to_rgb = _rgb_converter(size)
    row = {int(i): j for j, i in enumerate(wanted)}
    last = int(wanted[-1])
    out, filled = None, 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if expected_frames is not None and stream.frames != expected_frames:
                return None
            stream.codec_context.thread_count = threads
            for i, frame in enumerate(container.decode(stream)):
                j = row.get(i)
                if j is not None:
                    rgb = to_rgb(frame)  # (H, W, 3)
                    if out is None:  # filled in place: no second copy of hundreds of MB by a stack
                        out = np.empty((len(wanted), *rgb.shape), dtype=np.uint8)  # (U, H, W, 3)
                    out[j] = rgb
                    filled += 1
                if i >= last:
                    break
    except Exception as e:
        raise VideoDecodeError(f"{path}: decoding failed ({_short(e)})") from None
    if out is None or filled < len(wanted):
        got = 0 if out is None else filled
        raise VideoDecodeError(f"{path}: {len(wanted) - got} of the frames {wanted.tolist()[:8]}... could not be "
                               "decoded (truncated file?)")
    return out


def _rgb_converter(size: tuple[int, int] | None = None):
    """frame -> (H, W, 3) uint8 RGB through one swscale context for the whole read: VideoFrame.to_ndarray builds
    a new one (and its thread pool) per frame, which doubles the cost of converting a 360p frame."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    scaled = {"width": size[0], "height": size[1]} if size else {}
    return lambda frame: reformatter.reformat(frame, format="rgb24", interpolation="BILINEAR", **scaled).to_ndarray()


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
