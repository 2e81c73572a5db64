"""Public benchmark releases, read as their authors distribute them.

``read_split(cfg, "train" | "val" | "test")`` turns ``data.root`` (an unpacked release, files
and folder names untouched) into the same ``Manifest`` a hand-written JSONL manifest gives, so
nothing downstream knows where the samples came from. ``data.format`` picks the reader:

- ``manifest``: the JSONL/CSV files named by data.{train,val,test}_manifest (manifest.py)
- ``meld``: MELD.Raw (Poria et al., 2019): {train,dev,test}_sent_emo.csv + the clip folders
- ``mosi`` / ``mosei`` / ``sims``: the MMSA "Raw" layout: label.csv + Raw/<video_id>/<clip_id>.mp4
- ``daisee``: DAiSEE: DataSet/<Split>/<subject>/<clip>/<clip>.avi + Labels/<Split>Labels.csv
- ``fer2013``: the Kaggle fer2013.csv (48x48 grey pixels inside the CSV)
- ``image_folder``: <split>/<class>/<image>
- ``coco``: COCO 2017 captions (pretraining pairs, no labels)
- ``visual_genome``: Visual Genome region descriptions (pretraining pairs, no labels)

What the readers promise: a sample that cannot be used (missing clip, label outside
``data.labels``, malformed row) is left out and listed in ``Manifest.skipped`` as
("file:line", reason), with one warning that counts the reasons; ``data.strict`` turns the
first such sample into a ManifestError. A missing release folder or annotation file is a
ManifestError that shows the layout expected. Whether a clip that exists actually decodes is
the loader's business (it skips and reports those at decode time), so a corrupt file costs a
sample there, not a full scan of the dataset here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..config import ConfigError, DataConfig
from .manifest import Manifest, ManifestError, Sample, read_manifest

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")

MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
MELD_SENTIMENTS = ("neutral", "positive", "negative")
SENTIMENT_2 = ("negative", "positive")
SENTIMENT_7 = ("-3", "-2", "-1", "0", "1", "2", "3")
MOSEI_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
DAISEE_STATES = ("boredom", "engagement", "confusion", "frustration")
DAISEE_LEVELS = ("0", "1", "2", "3")
FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013's 0..6
FER_SIDE = 48

LAYOUTS = {
    "meld": """\
    <root>/train_sent_emo.csv
    <root>/dev_sent_emo.csv
    <root>/test_sent_emo.csv
    <root>/train_splits/dia0_utt0.mp4 ...                 (from train.tar.gz)
    <root>/dev_splits_complete/dia0_utt0.mp4 ...          (from dev.tar.gz)
    <root>/output_repeated_splits_test/dia0_utt0.mp4 ...  (from test.tar.gz)""",
    "mosi": """\
    <root>/label.csv          (video_id, clip_id, text, label, ..., mode)
    <root>/Raw/<video_id>/<clip_id>.mp4""",
    "daisee": """\
    <root>/Labels/TrainLabels.csv, ValidationLabels.csv, TestLabels.csv
    <root>/DataSet/Train/<subject>/<clip>/<clip>.avi
    <root>/DataSet/Validation/... and <root>/DataSet/Test/... alike""",
    "fer2013": """\
    <root>/fer2013.csv        (emotion, pixels, Usage)""",
    "image_folder": """\
    <root>/train/<class name>/<image>.jpg|.jpeg|.png|.bmp|.webp
    <root>/val/<class name>/...
    <root>/test/<class name>/...""",
    "coco": """\
    <root>/annotations/captions_train2017.json, captions_val2017.json
    <root>/train2017/<file_name>.jpg
    <root>/val2017/<file_name>.jpg""",
    "visual_genome": """\
    <root>/region_descriptions.json
    <root>/VG_100K/<image_id>.jpg and/or <root>/VG_100K_2/<image_id>.jpg""",
}
LAYOUTS["mosei"] = LAYOUTS["sims"] = LAYOUTS["mosi"]
RELEASE_NAMES = {"meld": "MELD", "mosi": "CMU-MOSI", "mosei": "CMU-MOSEI", "sims": "CH-SIMS", "daisee": "DAiSEE",
                 "fer2013": "FER2013", "image_folder": "image folder", "coco": "COCO captions",
                 "visual_genome": "Visual Genome"}


# ---------------------------------------------------------------------------------------------
# shared plumbing


class _Skips:
    """Samples left out, as (where, "kind: detail"); the kind before the colon is what gets counted."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, reason: str) -> None:
        if self.strict:
            raise ManifestError(f"{where}: {reason} (data.strict=true)")
        self.items.append((where, reason))


def _finish(path: Path, split: str, samples: list[Sample], skips: _Skips) -> Manifest:
    counts = Counter(reason.split(":", 1)[0] for _, reason in skips.items)
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    if skips.items:
        shown = "\n".join(f"  {w}: {r}" for w, r in skips.items[:5])
        more = f"\n  ... and {len(skips.items) - 5} more" if len(skips.items) > 5 else ""
        logger.warning("%s (%s split): skipped %d sample(s): %s\n%s%s", path, split, len(skips.items), summary,
                       shown, more)
    if not samples:
        raise ManifestError(f"{path}: no usable samples in the {split} split"
                            + (f" (skipped: {summary}; first: {skips.items[0][0]}: {skips.items[0][1]})"
                               if skips.items else ""))
    return Manifest(path=str(path), samples=samples, skipped=skips.items)


def _release_root(cfg: DataConfig) -> Path:
    if not cfg.root:
        raise ConfigError(f"data.format={cfg.format} reads the release from data.root; set data.root=PATH")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ManifestError(f"{RELEASE_NAMES[cfg.format]} release not found: {root} is not a folder. "
                            f"data.root must hold the release as distributed:\n{LAYOUTS[cfg.format]}")
    return root


def _need(path: Path, cfg: DataConfig, is_dir: bool = False) -> Path:
    if (path.is_dir() if is_dir else path.is_file()):
        return path
    kind = "folder" if is_dir else "file"
    raise ManifestError(f"{RELEASE_NAMES[cfg.format]} release incomplete: {kind} not found: {path}. "
                        f"data.root must hold the release as distributed:\n{LAYOUTS[cfg.format]}")


def _need_task(cfg: DataConfig, allowed: Sequence[str], why: str) -> None:
    if cfg.task not in allowed:
        raise ConfigError(f"data.format={cfg.format} ({why}) needs data.task={' or '.join(allowed)}, "
                          f"got data.task={cfg.task}")


def _need_labels(cfg: DataConfig, vocabulary: Sequence[str], what: str) -> None:
    # A subset is fine (the other classes are skipped and counted); a name the release never uses
    # is a typo or the wrong target, and would silently train a class with no examples.
    unknown = [x for x in cfg.labels if x not in vocabulary]
    if unknown:
        raise ConfigError(f"data.labels has {', '.join(map(repr, unknown))}, which {what} never uses; "
                          f"its labels are: [{', '.join(vocabulary)}]")


def _csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", row) with keys and values stripped; bytes that are not UTF-8 survive as
    surrogates instead of stopping the read (MELD's CSVs carry stray cp1252 bytes)."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)}; the header has: "
                                f"{', '.join(header)}")
        line = reader.line_num + 1
        for row in reader:
            where, line = f"{path}:{line}", reader.line_num + 1
            if not row or not any(x.strip() for x in row):
                continue
            if len(row) < len(header):
                yield where, {"__malformed__": f"{len(row)} fields, expected {len(header)}"}
                continue
            yield where, {k: (v if v.isascii() else v.translate(_STRAY_BYTES)).strip() for k, v in zip(header, row)}


def _stem_index(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """file stem -> path for every file with one of ``suffixes`` under ``folder``."""
    index: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in suffixes and not name.startswith("."):
                index.setdefault(stem, Path(dirpath) / name)
    return index


_STRAY_BYTES = {0xDC80 + i: 0x80 + i for i in range(128)}  # surrogateescape'd byte -> that latin-1 char


def _label_index(cfg: DataConfig) -> dict[str, int]:
    return {name: i for i, name in enumerate(cfg.labels)}


# ---------------------------------------------------------------------------------------------
# manifest


def _read_manifest(cfg: DataConfig, split: str, require_label: bool = True) -> Manifest:
    path = getattr(cfg, f"{split}_manifest")
    if not path:
        raise ManifestError(f"data.{split}_manifest is not set")
    return read_manifest(path, cfg.labels, require_video=cfg.use_video, require_label=require_label,
                         strict=cfg.strict, task=cfg.task, heads=cfg.heads)


# ---------------------------------------------------------------------------------------------
# MELD

_MELD_SPLITS = {"train": ("train_sent_emo.csv", "train_splits"),
                "val": ("dev_sent_emo.csv", "dev_splits_complete"),
                "test": ("test_sent_emo.csv", "output_repeated_splits_test")}

# MELD's utterances went through cp1252 <-> UTF-8 round trips: apostrophes appear as the C1 control
# "\x92", as "â€™" (UTF-8 read as cp1252) or "â\x80\x99" (UTF-8 read as latin-1). Longest first.
def _as_cp1252(data: bytes) -> str:
    # cp1252 leaves five bytes (0x81, 0x8d, 0x8f, 0x90, 0x9d) undefined; lenient decoders pass them through.
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data)


_MOJIBAKE = {}
for _char, _ascii in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2014", "-"),
                      ("\u2013", "-"), ("\u2026", "..."), ("\u00a0", " ")):
    _utf8 = _char.encode("utf-8")
    _MOJIBAKE[_as_cp1252(_utf8)] = _ascii
    _MOJIBAKE[_utf8.decode("latin-1")] = _ascii
    _MOJIBAKE[_char] = _ascii
    _MOJIBAKE[_char.encode("cp1252").decode("latin-1")] = _ascii  # the C1 control, e.g. "\x92"
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(_MOJIBAKE, key=len, reverse=True)))


def clean_meld_text(text: str) -> str:
    text = text.translate(_STRAY_BYTES)
    return " ".join(_MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text).split())


def _read_meld(cfg: DataConfig, split: str) -> Manifest:
    target = cfg.target or "emotion"
    if target not in ("emotion", "sentiment"):
        raise ConfigError(f"data.target={target!r}: MELD has targets emotion (7 classes) and sentiment (3 classes)")
    _need_task(cfg, ("single_label",), f"data.target={target}")
    column, vocabulary = ("Emotion", MELD_EMOTIONS) if target == "emotion" else ("Sentiment", MELD_SENTIMENTS)
    _need_labels(cfg, vocabulary, f"MELD's {target} annotation")
    root = _release_root(cfg)
    csv_name, clip_dir = _MELD_SPLITS[split]
    csv_path = _need(root / csv_name, cfg)
    clips = _need(root / clip_dir, cfg, is_dir=True) if cfg.use_video else None
    label_index = _label_index(cfg)
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for where, row in _csv_rows(csv_path, ("Utterance", column, "Dialogue_ID", "Utterance_ID")):
        if "__malformed__" in row:
            skips.add(where, f"malformed row: {row['__malformed__']}")
            continue
        try:
            dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except ValueError:
            skips.add(where, f"malformed row: Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID "
                             f"{row['Utterance_ID']!r} are not integers")
            continue
        name = row[column].lower()
        if name not in label_index:
            skips.add(where, f"label not in data.labels: {row[column]!r}")
            continue
        video = None
        if clips is not None:
            video = clips / f"dia{dia}_utt{utt}.mp4"
            if not video.is_file():
                skips.add(where, f"video file not found: {video}")
                continue
        extra = {"dialogue_id": dia, "utterance_id": utt}
        extra.update({k.lower(): row[k] for k in ("Speaker", "Emotion", "Sentiment", "Season", "Episode",
                                                  "StartTime", "EndTime") if k in row})
        samples.append(Sample(video=str(video) if video else None, text=clean_meld_text(row["Utterance"]),
                              label=label_index[name], source=where, extra=extra))
    return _finish(csv_path, split, samples, skips)


# ---------------------------------------------------------------------------------------------
# CMU-MOSI / CMU-MOSEI / CH-SIMS (MMSA raw layout)

_MMSA_MODES = {"train": "train", "val": "valid", "test": "test"}


def _read_mmsa(cfg: DataConfig, split: str) -> Manifest:
    fmt = cfg.format
    target = cfg.target or "sentiment"
    vocabulary: Sequence[str] = ()
    if target == "sentiment":
        _need_task(cfg, ("regression",), "data.target=sentiment (a score in [-3, 3], [-1, 1] for CH-SIMS)")
    elif target in ("sentiment_2", "sentiment_7"):
        if target == "sentiment_7" and fmt == "sims":
            raise ConfigError("data.target=sentiment_7 rounds scores in [-3, 3]; CH-SIMS scores lie in [-1, 1] and "
                              "would fill 3 of the 7 classes. Use sentiment (regression) or sentiment_2")
        _need_task(cfg, ("single_label",), f"data.target={target}")
        vocabulary = SENTIMENT_2 if target == "sentiment_2" else SENTIMENT_7
    elif target == "emotions":
        if fmt != "mosei":
            raise ConfigError(f"data.target=emotions: only CMU-MOSEI has emotion annotations, not {fmt}")
        _need_task(cfg, ("multilabel",), "data.target=emotions (any subset of six emotions)")
        vocabulary = MOSEI_EMOTIONS
    else:
        raise ConfigError(f"data.target={target!r}: {fmt} has targets sentiment (regression), sentiment_2, "
                          "sentiment_7" + (", emotions" if fmt == "mosei" else ""))
    if vocabulary:
        _need_labels(cfg, vocabulary, f"{RELEASE_NAMES[fmt]}'s {target} target")
    root = _release_root(cfg)
    csv_path = _need(root / "label.csv", cfg)
    raw_dir = _need(root / "Raw", cfg, is_dir=True) if cfg.use_video else None
    if target == "emotions":
        with csv_path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
        absent = [c for c in MOSEI_EMOTIONS if c not in header]
        if absent:
            raise ConfigError(f"data.target=emotions needs the emotion columns {', '.join(MOSEI_EMOTIONS)} in "
                              f"{csv_path} (absent: {', '.join(absent)}); the MMSA label.csv has sentiment only, "
                              "so add the CMU-MOSEI emotion intensities as those columns (value > 0 = present)")
    label_index = _label_index(cfg)
    wanted = _MMSA_MODES[split]
    listings: dict[str, dict[str, Path]] = {}
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for where, row in _csv_rows(csv_path, ("video_id", "clip_id", "label", "mode")):
        if "__malformed__" in row:
            skips.add(where, f"malformed row: {row['__malformed__']}")
            continue
        mode = row["mode"].lower()
        if mode not in _MMSA_MODES.values():
            skips.add(where, f"malformed row: mode {row['mode']!r} is not train, valid or test")
            continue
        if mode != wanted:
            continue
        video_id, clip_id = row["video_id"], row["clip_id"]
        try:
            score = float(row["label"])
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            skips.add(where, f"malformed row: label {row['label']!r} is not a number")
            continue
        if not video_id or not clip_id:
            skips.add(where, "malformed row: empty video_id or clip_id")
            continue
        sample = Sample(video=None, text=row.get("text", ""), source=where,
                        extra={k: row[k] for k in ("video_id", "clip_id", "label", "label_T", "label_A", "label_V",
                                                   "annotation") if k in row})
        if target == "sentiment":
            sample.target = score
        elif target == "emotions":
            try:
                present = [name for name in MOSEI_EMOTIONS if float(row[name] or 0) > 0]
            except ValueError:
                skips.add(where, "malformed row: an emotion column is not a number")
                continue
            sample.labels = [label_index[name] for name in present if name in label_index]
        else:
            # sentiment_2: 0 counts as positive (MMSA's "non-negative vs negative" Acc-2);
            # sentiment_7: np.round rounds halves to even, as MMSA's Acc-7 does.
            name = (("negative" if score < 0 else "positive") if target == "sentiment_2"
                    else str(int(np.round(np.clip(score, -3.0, 3.0)))))
            if name not in label_index:
                skips.add(where, f"label not in data.labels: {name!r} (score {score})")
                continue
            sample.label = label_index[name]
        if raw_dir is not None:
            video = _mmsa_clip(raw_dir, video_id, clip_id, listings)
            if video is None:
                skips.add(where, f"video file not found: {raw_dir / video_id / (clip_id + '.mp4')}")
                continue
            sample.video = str(video)
        samples.append(sample)
    return _finish(csv_path, split, samples, skips)


def _mmsa_clip(raw_dir: Path, video_id: str, clip_id: str, listings: dict) -> Path | None:
    if video_id not in listings:
        folder = raw_dir / video_id
        listing = _stem_index(folder, VIDEO_SUFFIXES) if folder.is_dir() else {}
        # A label.csv saved through a spreadsheet turns CH-SIMS's clip "0001" into 1; match numerically too.
        listing.update({str(int(stem)): p for stem, p in list(listing.items()) if stem.isdigit()
                        and str(int(stem)) not in listing})
        listings[video_id] = listing
    listing = listings[video_id]
    if clip_id in listing:
        return listing[clip_id]
    return listing.get(str(int(clip_id))) if clip_id.isdigit() else None


# ---------------------------------------------------------------------------------------------
# DAiSEE

_DAISEE_SPLITS = {"train": "Train", "val": "Validation", "test": "Test"}


def _read_daisee(cfg: DataConfig, split: str) -> Manifest:
    if cfg.task == "multitask":
        states = list(cfg.heads)
        unknown = [h for h in states if h not in DAISEE_STATES]
        if unknown:
            raise ConfigError(f"data.heads has {', '.join(map(repr, unknown))}; DAiSEE's heads are "
                              f"[{', '.join(DAISEE_STATES)}]")
    elif cfg.task == "single_label":
        if cfg.target not in DAISEE_STATES:
            raise ConfigError(f"data.format=daisee with data.task=single_label needs data.target = one of "
                              f"{', '.join(DAISEE_STATES)} (got {cfg.target!r}), or data.task=multitask with "
                              f"data.heads=[{', '.join(DAISEE_STATES)}]")
        states = [cfg.target]
    else:
        raise ConfigError(f"data.format=daisee needs data.task=multitask or single_label, got {cfg.task}")
    _need_labels(cfg, DAISEE_LEVELS, "DAiSEE's levels")
    root = _release_root(cfg)
    folder = _DAISEE_SPLITS[split]
    csv_path = _need(root / "Labels" / f"{folder}Labels.csv", cfg)
    # Clips sit under DataSet/<Split>/<subject>/<clip>/; find them by name instead of trusting
    # that the subject id can be derived from the clip id.
    clips = _stem_index(_need(root / "DataSet" / folder, cfg, is_dir=True), VIDEO_SUFFIXES) if cfg.use_video else None
    label_index = _label_index(cfg)
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    # The release's header reads "ClipID,Boredom,Engagement,Confusion,Frustration " (trailing
    # space); _csv_rows strips it and the capitalised names are matched as distributed.
    columns = {s: s.capitalize() for s in DAISEE_STATES}
    for where, row in _csv_rows(csv_path, ["ClipID", *(columns[s] for s in states)]):
        if "__malformed__" in row:
            skips.add(where, f"malformed row: {row['__malformed__']}")
            continue
        clip_id = row["ClipID"]
        stem = os.path.splitext(clip_id)[0]  # "1100011002.avi" (a few real rows: ".mp4") -> "1100011002"
        levels = []
        for s in states:
            raw = row[columns[s]]
            try:
                level = int(float(raw))
            except ValueError:
                level = -1
            if str(level) not in DAISEE_LEVELS:
                break
            levels.append((s, str(level)))
        if len(levels) != len(states):
            skips.add(where, f"malformed row: {columns[states[len(levels)]]} "
                             f"{row[columns[states[len(levels)]]]!r} is not a level 0..3")
            continue
        outside = [f"{s}={lv}" for s, lv in levels if lv not in label_index]
        if outside:
            skips.add(where, f"label not in data.labels: {', '.join(outside)}")
            continue
        video = None
        if clips is not None:
            video = clips.get(stem)
            if video is None:
                skips.add(where, f"video file not found: no {clip_id} under {root / 'DataSet' / folder}")
                continue
        sample = Sample(video=str(video) if video else None, text="", source=where,
                        extra={"clip_id": clip_id, **{s: int(lv) for s, lv in levels}})
        if cfg.task == "multitask":
            sample.task_labels = [label_index[lv] for _, lv in levels]
        else:
            sample.label = label_index[levels[0][1]]
        samples.append(sample)
    return _finish(csv_path, split, samples, skips)


# ---------------------------------------------------------------------------------------------
# FER2013

_FER_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_FER_CODES = tuple(str(i) for i in range(len(FER_EMOTIONS)))


def _read_fer2013(cfg: DataConfig, split: str) -> Manifest:
    _need_task(cfg, ("single_label",), "one emotion per face")
    _need_labels(cfg, FER_EMOTIONS, "FER2013")
    root = _release_root(cfg)
    csv_path = _need(root / "fer2013.csv", cfg)
    label_index = _label_index(cfg)
    wanted = _FER_USAGE[split]
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for where, row in _csv_rows(csv_path, ("emotion", "pixels", "Usage")):
        if "__malformed__" in row:
            skips.add(where, f"malformed row: {row['__malformed__']}")
            continue
        if row["Usage"] not in _FER_USAGE.values():
            skips.add(where, f"malformed row: Usage {row['Usage']!r} is not Training, PublicTest or PrivateTest")
            continue
        if row["Usage"] != wanted:
            continue
        if row["emotion"] not in _FER_CODES:
            skips.add(where, f"malformed row: emotion {row['emotion']!r} is not 0..6")
            continue
        name = FER_EMOTIONS[int(row["emotion"])]
        if name not in label_index:
            skips.add(where, f"label not in data.labels: {name!r}")
            continue
        try:
            grey = np.array(row["pixels"].split(), dtype=np.int64)
        except ValueError:
            skips.add(where, "bad pixels: not all integers")
            continue
        if grey.size != FER_SIDE * FER_SIDE or grey.min() < 0 or grey.max() > 255:
            skips.add(where, f"bad pixels: {grey.size} values"
                             + (f", expected {FER_SIDE * FER_SIDE} (48x48)" if grey.size != FER_SIDE * FER_SIDE
                                else " outside 0..255"))
            continue
        grey = grey.astype(np.uint8).reshape(FER_SIDE, FER_SIDE)  # (2304,) -> (48, 48)
        image = np.repeat(grey[:, :, None], 3, axis=2)  # (48, 48) -> (48, 48, 3): the models take RGB
        samples.append(Sample(video=None, text="", label=label_index[name], image=image, source=where,
                              extra={"usage": row["Usage"]}))
    return _finish(csv_path, split, samples, skips)


# ---------------------------------------------------------------------------------------------
# image folders


def _read_image_folder(cfg: DataConfig, split: str) -> Manifest:
    _need_task(cfg, ("single_label",), "one class folder per image")
    root = _release_root(cfg)
    split_dir = _need(root / split, cfg, is_dir=True)
    label_index = _label_index(cfg)
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for path in sorted(split_dir.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        where = str(path)
        rel = path.relative_to(split_dir)
        if len(rel.parts) < 2:
            skips.add(where, f"not inside a class folder: expected {split_dir}/<class name>/{path.name}")
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skips.add(where, f"not an image file: suffix {path.suffix!r} is not one of {', '.join(IMAGE_SUFFIXES)}")
            continue
        name = rel.parts[0]
        if name not in label_index:
            skips.add(where, f"label not in data.labels: class folder {name!r}")
            continue
        samples.append(Sample(video=str(path), text="", label=label_index[name], source=where))
    return _finish(split_dir, split, samples, skips)


# ---------------------------------------------------------------------------------------------
# COCO captions and Visual Genome (image-text pairs for pretraining)


def _read_coco(cfg: DataConfig, split: str) -> Manifest:
    root = _release_root(cfg)
    subset = "train2017" if split == "train" else "val2017"  # COCO's test set has no captions
    ann_path = _need(root / "annotations" / f"captions_{subset}.json", cfg)
    image_dir = _need(root / subset, cfg, is_dir=True)
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("data.format=coco reads annotations with pycocotools: pip install pycocotools "
                          "(or pip install clipbert-emo[pretrain])") from None
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        coco = COCO(str(ann_path))
    present = set(os.listdir(image_dir))  # one listing instead of a stat per caption
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for ann_id in sorted(coco.anns):
        ann = coco.anns[ann_id]
        where = f"{ann_path}:annotation {ann_id}"
        image = coco.imgs.get(ann.get("image_id"))
        caption = ann.get("caption")
        if image is None or not isinstance(caption, str):
            skips.add(where, "malformed annotation: unknown image_id or no caption")
            continue
        if not caption.strip():
            skips.add(where, "malformed annotation: empty caption")
            continue
        if image["file_name"] not in present:
            skips.add(where, f"image file not found: {image_dir / image['file_name']}")
            continue
        samples.append(Sample(video=str(image_dir / image["file_name"]), text=" ".join(caption.split()),
                              source=where, extra={"image_id": image["id"], "caption_id": ann_id}))
    return _finish(ann_path, split, samples, skips)


def visual_genome_split(image_id: int) -> str:
    """Visual Genome has no official split: every 100th image id is held out, for val and test alike."""
    return "val" if image_id % 100 == 0 else "train"


def _read_visual_genome(cfg: DataConfig, split: str) -> Manifest:
    root = _release_root(cfg)
    ann_path = _need(root / "region_descriptions.json", cfg)
    folders = [root / "VG_100K", root / "VG_100K_2"]
    if not any(f.is_dir() for f in folders):
        _need(folders[0], cfg, is_dir=True)
    images: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            images.update({name: folder / name for name in os.listdir(folder)})
    wanted = "train" if split == "train" else "val"
    try:
        entries = json.loads(ann_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{ann_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(entries, list):
        raise ManifestError(f"{ann_path}: expected a list of {{'id', 'regions'}} objects")
    samples: list[Sample] = []
    skips = _Skips(cfg.strict)
    for i, entry in enumerate(entries):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or not isinstance(entry.get("regions"), list):
            skips.add(f"{ann_path}:entry {i}", "malformed entry: no integer 'id' or no 'regions' list")
            continue
        if visual_genome_split(image_id) != wanted:
            continue
        image = images.get(f"{image_id}.jpg")
        for region in entry["regions"]:
            region_id = region.get("region_id") if isinstance(region, dict) else None
            where = f"{ann_path}:image {image_id} region {region_id}"
            phrase = region.get("phrase") if isinstance(region, dict) else None
            if not isinstance(phrase, str) or not phrase.strip():
                skips.add(where, "malformed region: no phrase")
                continue
            if image is None:
                skips.add(where, f"image file not found: {image_id}.jpg in neither VG_100K nor VG_100K_2")
                continue
            # ClipBERT pairs the text with the whole image; the region box is kept for reference only.
            samples.append(Sample(video=str(image), text=" ".join(phrase.split()), source=where,
                                  extra={"image_id": image_id, "region_id": region_id,
                                         "box": [region.get(k) for k in ("x", "y", "width", "height")]}))
    return _finish(ann_path, split, samples, skips)


# ---------------------------------------------------------------------------------------------
# entry points

READERS: dict[str, Callable[[DataConfig, str], Manifest]] = {
    "manifest": _read_manifest,
    "meld": _read_meld,
    "mosi": _read_mmsa,
    "mosei": _read_mmsa,
    "sims": _read_mmsa,
    "daisee": _read_daisee,
    "fer2013": _read_fer2013,
    "image_folder": _read_image_folder,
    "coco": _read_coco,
    "visual_genome": _read_visual_genome,
}
IMAGE_TEXT_FORMATS = ("manifest", "coco", "visual_genome")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")


def read_split(cfg: DataConfig, split: str) -> Manifest:
    """The ``split`` ("train" | "val" | "test") of the dataset ``cfg`` describes, as a Manifest."""
    _check_split(split)
    reader = READERS.get(cfg.format)
    if reader is None:
        raise ConfigError(f"data.format={cfg.format!r}: expected one of {', '.join(READERS)}")
    return reader(cfg, split)


def read_image_text_pairs(cfg: DataConfig, split: str) -> Manifest:
    """Image (or video) + text pairs for pretraining; labels are read where present, never required."""
    _check_split(split)
    if cfg.format not in IMAGE_TEXT_FORMATS:
        raise ConfigError(f"data.format={cfg.format}: pretraining pairs come from "
                          f"{', '.join(IMAGE_TEXT_FORMATS)}")
    if cfg.format == "manifest":
        return _read_manifest(cfg, split, require_label=False)
    return READERS[cfg.format](cfg, split)
