"""DiDeMo (Hendricks et al., 2017) as paragraph-to-video retrieval, the way ClipBERT evaluates it.

Layout (data.root)::

    <root>/train_data.json, val_data.json, test_data.json   (LocalizingMoments' data/ folder: a list of
        {"annotation_id", "description", "video": "<file name>", "times": [[start, end], ...], ...})
    <root>/videos/<file>                                      the clips, matched by name without suffix

All descriptions of one video, ordered by where their moment starts (the earliest annotated start, in
5-second segments; then annotation_id), are joined into one paragraph: one query per video. A video
missing from videos/ is skipped and reported.
"""

from __future__ import annotations

import os

from ...config import DataConfig
from ..manifest import Manifest, Sample
from .common import VIDEO_SUFFIXES, Release, Skips, finish, need_task, stem_index
from .msrvtt import load_json_list

DIDEMO = Release("DiDeMo", """\
    <root>/train_data.json  val_data.json  test_data.json
    <root>/videos/<video file>""")
VIDEO_SUFFIXES_DIDEMO = (*VIDEO_SUFFIXES, ".3gp", ".mpg", ".mpeg", ".wmv", ".flv", ".mts", ".m2ts")


def _start(entry) -> float:
    times = entry.get("times") or [[0, 0]]
    return min(float(t[0]) for t in times if t)


def read_didemo(cfg: DataConfig, split: str) -> Manifest:
    need_task(cfg, ("retrieval",), "DiDeMo's paragraphs")
    root = DIDEMO.root(cfg)
    path = root / f"{split}_data.json"
    entries = load_json_list(path, DIDEMO, "annotations")
    videos = stem_index(DIDEMO.need(root / "videos", is_dir=True), VIDEO_SUFFIXES_DIDEMO)
    skips = Skips(cfg.strict)
    by_video: dict[str, list] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("video"), str) or not str(e.get("description", "")).strip():
            skips.add(f"{path}[{i}]", "malformed annotation: no video or description")
            continue
        by_video.setdefault(e["video"], []).append(e)
    samples = []
    for name, items in by_video.items():
        where = f"{path}:{name}"
        file = videos.get(os.path.splitext(name)[0]) or videos.get(name)
        if file is None:
            skips.add(where, f"video file not found: {root / 'videos' / name}")
            continue
        items.sort(key=lambda e: (_start(e), e.get("annotation_id", 0)))
        paragraph = " ".join(" ".join(str(e["description"]).split()) for e in items)
        samples.append(Sample(video=str(file), text=paragraph, source=where,
                              extra={"video_id": name, "annotation_ids": [e.get("annotation_id") for e in items]}))
    return finish(path, split, samples, skips)
