"""MSR-VTT (Xu et al., 2016) for text-to-video retrieval, as distributed.

Layout (data.root)::

    <root>/train_val_videodatainfo.json   {"videos": [{"video_id": "video0", "split": "train" | "validate", ...}],
                                           "sentences": [{"video_id": "video0", "caption": "...", "sen_id": 0}]}
    <root>/test_videodatainfo.json        the same for the official test split (split "test")
    <root>/MSRVTT_JSFUSION_test.csv       the 1k-A test split (Yu et al., 2018): key,vid_key,video_id,sentence
    <root>/**/video0.mp4 ...              the clips (TrainValVideo/, TestVideo/ as unpacked), found by name

Splits: train = the official "train" videos (6,513) with all their captions (20 each), val = "validate"
(497), test = the official test split (2,990 videos x 20 captions), or with data.target=1k-A the 1,000
test videos of the 1k-A split with one caption each (the protocol ClipBERT reports). A caption whose video
is missing is skipped and reported.
"""

from __future__ import annotations

import csv
import json

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, ManifestError, Sample
from .common import VIDEO_SUFFIXES, Release, Skips, finish, need_task, stem_index

MSRVTT = Release("MSR-VTT", """\
    <root>/train_val_videodatainfo.json
    <root>/test_videodatainfo.json      (official test split)
    <root>/MSRVTT_JSFUSION_test.csv     (data.target=1k-A)
    <root>/TrainValVideo/video0.mp4 ... and <root>/TestVideo/video7010.mp4 ... (any folder under <root>)""")
SPLIT_NAMES = {"train": "train", "val": "validate", "test": "test"}
TARGETS = ("", "official", "1k-A")


def load_json(path, release: Release):
    try:
        return json.loads(release.need(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None


def load_json_list(path, release: Release, what: str) -> list:
    """A JSON file holding a list (of annotations, of questions); a ManifestError naming the file otherwise."""
    entries = load_json(path, release)
    if not isinstance(entries, list):
        raise ManifestError(f"{path}: expected a list of {what}")
    return entries


def read_msrvtt(cfg: DataConfig, split: str) -> Manifest:
    need_task(cfg, ("retrieval",), "MSR-VTT's captions")
    if cfg.target not in TARGETS:
        raise ConfigError(f"data.target={cfg.target!r}: MSR-VTT's test split is 'official' (default) or '1k-A'")
    root = MSRVTT.root(cfg)
    videos = stem_index(root, VIDEO_SUFFIXES)
    skips = Skips(cfg.strict)
    samples: list[Sample] = []
    if split == "test" and cfg.target == "1k-A":
        path = MSRVTT.need(root / "MSRVTT_JSFUSION_test.csv")
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"video_id", "sentence"} - set(reader.fieldnames or ())
            if missing:
                raise ManifestError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                _add(samples, skips, videos, f"{path}:{line}", row["video_id"], row["sentence"],
                     {"sen_key": row.get("key")})
        return finish(path, split, samples, skips)
    path = root / ("test_videodatainfo.json" if split == "test" else "train_val_videodatainfo.json")
    info = load_json(path, MSRVTT)
    if not isinstance(info, dict) or "videos" not in info or "sentences" not in info:
        raise ManifestError(f"{path}: expected an object with 'videos' and 'sentences'")
    wanted = {v.get("video_id") for v in info["videos"] if v.get("split") == SPLIT_NAMES[split]}
    for i, sent in enumerate(info["sentences"]):
        if sent.get("video_id") in wanted:
            _add(samples, skips, videos, f"{path}:sentences[{i}]", sent["video_id"], sent.get("caption"),
                 {"sen_id": sent.get("sen_id")})
    return finish(path, split, samples, skips)


def _add(samples, skips, videos, where, video_id, caption, extra) -> None:
    if not isinstance(caption, str) or not caption.strip():
        skips.add(where, "malformed row: no caption")
        return
    path = videos.get(str(video_id))
    if path is None:
        skips.add(where, f"video file not found: {video_id}")
        return
    samples.append(Sample(video=str(path), text=" ".join(caption.split()), source=where,
                          extra={"video_id": video_id, **extra}))
