"""The manifest: how a user describes a dataset.

A manifest is a JSONL file, one object per line::

    {"video": "clips/0001.mp4", "text": "i can't believe it", "label": "surprised"}

- ``video``: path of the video file, relative to the manifest's folder (or absolute).
  May be omitted only for a text-only experiment.
- ``text``: the transcript or caption; optional (missing or empty = no text, the model
  then sees only the visual tokens).
- ``label``: one class name from the experiment's ``data.labels``; for multi-label
  experiments ``labels``: a list of class names; for multitask experiments ``task_labels``:
  an object ``{head: class name}`` over ``data.heads`` (a head left out = not annotated);
  for regression ``target``: a number. Optional only for prediction and pretraining.
- ``start`` / ``end``: optional seconds, to use only that span of the video.
- ``audio``: optional path of a separate sound file (else, with ``data.use_audio``, the video's own track).
- any other key (for example ``meta``) is carried along and ignored by training.

A CSV file with the same column names is read the same way, except that a multitask
CSV has one column per head name instead of ``task_labels``. Every problem is reported
with the file and line number; missing video files are collected and reported, and the
samples skipped, unless ``strict`` asks for a hard error.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..config.errors import UserError
from .decode import check_span, is_image_path, video_duration

logger = logging.getLogger(__name__)


class ManifestError(UserError, ValueError):
    """A manifest line that cannot be used; the message names the file and the line."""


@dataclass
class Sample:
    video: str | None  # absolute path, or None for text-only samples
    text: str
    label: int | None = None  # single-label index
    labels: list[int] | None = None  # multi-label indices
    # multitask: one class index per head in data.heads order (-1 = not annotated for that head)
    task_labels: list[int] | None = None
    target: float | None = None  # regression target (e.g. sentiment in [-3, 3])
    # A still image held in memory, (H, W, 3) uint8 RGB (FER2013 stores pixels in its CSV); it is
    # used as a one-frame video. Image *files* go in ``video`` (decode.py tells them apart by suffix).
    image: object = None
    start: float | None = None
    end: float | None = None
    source: str = ""  # "file:line", for error messages
    audio: str | None = None  # a separate sound file; None = the video file's own sound track
    extra: dict = field(default_factory=dict)
    # Question answering: the answer as written (open-ended), or the candidates with ``label`` the index of
    # the right one (multiple choice); ``question_type`` groups the accuracy (TGIF-QA's task, MSRVTT-QA's
    # question word). The question itself is ``text``.
    answer: str | None = None
    candidates: list[str] | None = None
    question_type: str = ""


@dataclass
class Manifest:
    path: str
    samples: list[Sample]
    skipped: list[tuple[str, str]]  # (file:line, reason) of samples left out


def _text_lines(path: Path) -> list[str]:
    """The file's lines as UTF-8 (a leading byte-order mark is dropped, as spreadsheet exports add one); bytes
    that are not UTF-8 are a ManifestError naming the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{lineno}: not UTF-8 text (byte {data[e.start]:#04x}); save the manifest as "
                            "UTF-8") from None
    return text.splitlines(keepends=True)


def _rows(path: Path):
    lines = _text_lines(path)
    if path.suffix.lower() == ".csv":
        for lineno, row in enumerate(csv.DictReader(lines), start=2):
            yield lineno, {k.strip(): v for k, v in row.items() if k is not None}
        return
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def read_manifest(
    path: str | os.PathLike,
    read_target: Callable[[dict, str, bool, bool], dict] | None = None,
    require_video: bool = True,
    require_label: bool = True,
    strict: bool = False,
) -> Manifest:
    """Read a JSONL or CSV manifest.

    ``read_target(row, where, is_csv, required)`` turns a record's annotation into ``Sample`` fields
    (the task kind's reader, ``Task.target_reader``; its ``fields`` attribute names the record keys it
    reads); None reads no annotation (image-text pairs, prediction).
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    is_csv = path.suffix.lower() == ".csv"
    known = {"video", "text", "start", "end", "audio", *getattr(read_target, "fields", ())}
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}"
        video = row.get("video")
        if video in (None, ""):
            if require_video:
                raise ManifestError(f"{where}: missing field 'video'")
            video_path = None
        else:
            if not isinstance(video, str):
                raise ManifestError(f"{where}: field 'video' must be a string, got {video!r}")
            video_path = str(video if os.path.isabs(video) else (path.parent / video))
        text = row.get("text") or ""
        if not isinstance(text, str):
            raise ManifestError(f"{where}: field 'text' must be a string, got {text!r}")
        annotation = read_target(row, where, is_csv, require_label) if read_target is not None else {}
        start, end = _seconds(row.get("start"), where, "start"), _seconds(row.get("end"), where, "end")
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"{where}: end ({end}) must be after start ({start})")
        if video_path is not None and not os.path.exists(video_path):
            if strict:
                raise ManifestError(f"{where}: video file not found: {video_path}")
            skipped.append((where, f"video file not found: {video_path}"))
            continue
        if video_path is not None and (start is not None or end is not None) and not is_image_path(video_path):
            duration = video_duration(video_path)  # a span outside its video would read frames from elsewhere
            if duration is not None:
                check_span(start, end, duration, where)
        audio = row.get("audio") or None
        if audio is not None:
            if not isinstance(audio, str):
                raise ManifestError(f"{where}: field 'audio' must be a path, got {audio!r}")
            audio = str(audio if os.path.isabs(audio) else (path.parent / audio))
            if not os.path.exists(audio):
                raise ManifestError(f"{where}: audio file not found: {audio}")
        samples.append(Sample(video=video_path, text=text, start=start, end=end, source=where, audio=audio,
                              extra={k: v for k, v in row.items() if k not in known}, **annotation))
    if skipped:
        shown = "\n".join(f"  {w}: {r}" for w, r in skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        logger.warning("%s: skipped %d sample(s):\n%s%s", path, len(skipped), shown, more)
    if not samples:
        raise ManifestError(f"{path}: no usable samples")
    return Manifest(path=str(path), samples=samples, skipped=skipped)


# Field parsers the task kinds use to read their annotation (clipbert_emo/tasks/).


def parse_label(raw, label_index: dict, where: str) -> int:
    if isinstance(raw, str) and raw.strip() in label_index:
        return label_index[raw.strip()]
    raise ManifestError(f"{where}: unknown label {raw!r}; expected one of {', '.join(label_index)}")


def parse_target(raw, where: str, required: bool) -> float | None:
    if raw in (None, ""):
        if required:
            raise ManifestError(f"{where}: missing field 'target' (a number)")
        return None
    try:
        value = float(raw)  # CSV cells arrive as strings
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: field 'target' must be a number, got {raw!r}") from None
    if isinstance(raw, bool) or not math.isfinite(value):
        raise ManifestError(f"{where}: field 'target' must be a finite number, got {raw!r}")
    return value


def parse_task_labels(row: dict, heads: Sequence[str], label_index: dict, where: str, is_csv: bool,
                 required: bool) -> list[int] | None:
    if is_csv:
        # One column per head; an empty cell is a head this sample was not annotated for.
        raw = {h: row[h] for h in heads if row.get(h) not in (None, "")}
    else:
        raw = row.get("task_labels")
        if raw is None:
            if required:
                raise ManifestError(f"{where}: missing field 'task_labels' (an object {{head: class name}})")
            return None
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: field 'task_labels' must be an object {{head: class name}}, got {raw!r}")
        unknown = sorted(set(raw) - set(heads))
        if unknown:
            raise ManifestError(f"{where}: unknown head(s) {', '.join(map(repr, unknown))} in 'task_labels'; "
                                f"expected some of {', '.join(heads)}")
    raw = {h: v for h, v in raw.items() if v not in (None, "")}
    if not raw:
        if required:
            raise ManifestError(f"{where}: no task label: expected a class name for at least one of the heads "
                                f"{', '.join(heads)}")
        return None
    # Levels such as DAiSEE's 0..3 are natural to write as JSON numbers; class names are strings.
    raw = {h: str(v) if isinstance(v, int) and not isinstance(v, bool) else v for h, v in raw.items()}
    return [parse_label(raw[h], label_index, f"{where} ({h})") if h in raw else -1 for h in heads]


def _seconds(raw, where: str, name: str) -> float | None:
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: field '{name}' must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ManifestError(f"{where}: field '{name}' must be >= 0, got {value}")
    return value
