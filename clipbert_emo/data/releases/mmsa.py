"""CMU-MOSI, CMU-MOSEI and CH-SIMS in the MMSA "Raw" layout they are distributed in: label.csv
(video_id, clip_id, text, label, ..., mode) + Raw/<video_id>/<clip_id>.mp4; label.csv holds every
split, its mode column saying which (train, valid = the val split, test).

The sentiment score in the label column is the target: a number for data.target=sentiment (the
default; in [-3, 3], [-1, 1] for CH-SIMS), or a class for sentiment_2 (negative / non-negative) and
sentiment_7 (the score rounded to -3..3). data.target=emotions reads CMU-MOSEI's six emotion
intensities (> 0 = present) as a multi-label set, from columns the user adds to label.csv (the MMSA
file has none); emotions outside data.labels are dropped from the set. Skipped and reported: malformed
rows (too few fields, an unknown mode, a score or an emotion that is not a number, an empty id),
sentiment classes outside data.labels, and, with data.use_video, rows whose clip is missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, Sample
from .common import (VIDEO_SUFFIXES, Release, Skips, csv_header, csv_rows, finish, label_indices, need_labels,
                     need_task, stem_index)

SENTIMENT_2 = ("negative", "positive")
SENTIMENT_7 = ("-3", "-2", "-1", "0", "1", "2", "3")
MOSEI_EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")

_LAYOUT = """\
    <root>/label.csv          (video_id, clip_id, text, label, ..., mode)
    <root>/Raw/<video_id>/<clip_id>.mp4"""
_RELEASES = {"mosi": Release("CMU-MOSI", _LAYOUT), "mosei": Release("CMU-MOSEI", _LAYOUT),
             "sims": Release("CH-SIMS", _LAYOUT)}

_MMSA_MODES = {"train": "train", "val": "valid", "test": "test"}


def _target_vocabulary(cfg: DataConfig, fmt: str, target: str) -> Sequence[str]:
    """The class names ``target`` predicts (none for the sentiment score), once the task kind and release are
    checked to fit it."""
    if target == "sentiment":
        need_task(cfg, ("regression",), "data.target=sentiment (a score in [-3, 3], [-1, 1] for CH-SIMS)")
        return ()
    if target in ("sentiment_2", "sentiment_7"):
        if target == "sentiment_7" and fmt == "sims":
            raise ConfigError("data.target=sentiment_7 rounds scores in [-3, 3]; CH-SIMS scores lie in [-1, 1] and "
                              "would fill 3 of the 7 classes. Use sentiment (regression) or sentiment_2")
        need_task(cfg, ("single_label",), f"data.target={target}")
        return SENTIMENT_2 if target == "sentiment_2" else SENTIMENT_7
    if target == "emotions":
        if fmt != "mosei":
            raise ConfigError(f"data.target=emotions: only CMU-MOSEI has emotion annotations, not {fmt}")
        need_task(cfg, ("multilabel",), "data.target=emotions (any subset of six emotions)")
        return MOSEI_EMOTIONS
    raise ConfigError(f"data.target={target!r}: {fmt} has targets sentiment (regression), sentiment_2, "
                      "sentiment_7" + (", emotions" if fmt == "mosei" else ""))


def _need_emotion_columns(csv_path: Path) -> None:
    header = csv_header(csv_path)
    absent = [c for c in MOSEI_EMOTIONS if c not in header]
    if absent:
        raise ConfigError(f"data.target=emotions needs the emotion columns {', '.join(MOSEI_EMOTIONS)} in "
                          f"{csv_path} (absent: {', '.join(absent)}); the MMSA label.csv has sentiment only, "
                          "so add the CMU-MOSEI emotion intensities as those columns (value > 0 = present)")


def _row_sample(where: str, row: dict, target: str, label_index: dict, skips: Skips) -> Sample | None:
    """One label.csv row of the wanted split as a sample with its target (no video yet), or None, skipped."""
    video_id, clip_id = row["video_id"], row["clip_id"]
    try:
        score = float(row["label"])
        if not math.isfinite(score):
            raise ValueError
    except ValueError:
        skips.add(where, f"malformed row: label {row['label']!r} is not a number")
        return None
    if not video_id or not clip_id:
        skips.add(where, "malformed row: empty video_id or clip_id")
        return None
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
            return None
        sample.labels = [label_index[name] for name in present if name in label_index]
    else:
        # sentiment_2: 0 counts as positive (MMSA's "non-negative vs negative" Acc-2);
        # sentiment_7: np.round rounds halves to even, as MMSA's Acc-7 does.
        name = (("negative" if score < 0 else "positive") if target == "sentiment_2"
                else str(int(np.round(np.clip(score, -3.0, 3.0)))))
        if name not in label_index:
            skips.add(where, f"label not in data.labels: {name!r} (score {score})")
            return None
        sample.label = label_index[name]
    return sample


def read_mmsa(cfg: DataConfig, split: str) -> Manifest:
    fmt = cfg.format
    release = _RELEASES[fmt]
    target = cfg.target or "sentiment"
    vocabulary = _target_vocabulary(cfg, fmt, target)
    if vocabulary:
        need_labels(cfg, vocabulary, f"{release.name}'s {target} target")
    root = release.root(cfg)
    csv_path = release.need(root / "label.csv")
    raw_dir = release.need(root / "Raw", is_dir=True) if cfg.use_video else None
    if target == "emotions":
        _need_emotion_columns(csv_path)
    label_index = label_indices(cfg)
    wanted = _MMSA_MODES[split]
    listings: dict[str, dict[str, Path]] = {}
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for where, row in csv_rows(csv_path, ("video_id", "clip_id", "label", "mode"), skips):
        mode = row["mode"].lower()
        if mode not in _MMSA_MODES.values():
            skips.add(where, f"malformed row: mode {row['mode']!r} is not train, valid or test")
            continue
        if mode != wanted:
            continue
        sample = _row_sample(where, row, target, label_index, skips)
        if sample is None:
            continue
        if raw_dir is not None:
            video_id, clip_id = row["video_id"], row["clip_id"]
            video = _mmsa_clip(raw_dir, video_id, clip_id, listings)
            if video is None:
                skips.add(where, f"video file not found: {raw_dir / video_id / (clip_id + '.mp4')}")
                continue
            sample.video = str(video)
        samples.append(sample)
    return finish(csv_path, split, samples, skips)


def _mmsa_clip(raw_dir: Path, video_id: str, clip_id: str, listings: dict) -> Path | None:
    if video_id not in listings:
        folder = raw_dir / video_id
        listing = stem_index(folder, VIDEO_SUFFIXES) if folder.is_dir() else {}
        # A label.csv saved through a spreadsheet turns CH-SIMS's clip "0001" into 1; match numerically too.
        listing.update({str(int(stem)): p for stem, p in list(listing.items()) if stem.isdigit()
                        and str(int(stem)) not in listing})
        listings[video_id] = listing
    listing = listings[video_id]
    if clip_id in listing:
        return listing[clip_id]
    return listing.get(str(int(clip_id))) if clip_id.isdigit() else None
