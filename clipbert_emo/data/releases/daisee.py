"""DAiSEE, as distributed: DataSet/<Split>/<subject>/<clip>/<clip>.avi + Labels/<Split>Labels.csv,
<Split> being Train, Validation (the val split) and Test.

Each row of <Split>Labels.csv gives a clip's level 0..3 of four states (boredom, engagement,
confusion, frustration): data.task=multitask reads those named by data.heads, one head each;
data.task=single_label reads the one named by data.target. The clip is found by name anywhere under
DataSet/<Split>/. Skipped and reported: malformed rows (too few fields, a level outside 0..3 for a
state that is read), levels outside data.labels, and, with data.use_video, clips not found.
"""

from __future__ import annotations

import os

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, Sample
from .common import VIDEO_SUFFIXES, Release, Skips, csv_rows, finish, label_indices, need_labels, stem_index

DAISEE_STATES = ("boredom", "engagement", "confusion", "frustration")
DAISEE_LEVELS = ("0", "1", "2", "3")

DAISEE = Release("DAiSEE", """\
    <root>/Labels/TrainLabels.csv, ValidationLabels.csv, TestLabels.csv
    <root>/DataSet/Train/<subject>/<clip>/<clip>.avi
    <root>/DataSet/Validation/... and <root>/DataSet/Test/... alike""")

_DAISEE_SPLITS = {"train": "Train", "val": "Validation", "test": "Test"}


def read_daisee(cfg: DataConfig, split: str) -> Manifest:
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
    need_labels(cfg, DAISEE_LEVELS, "DAiSEE's levels")
    root = DAISEE.root(cfg)
    folder = _DAISEE_SPLITS[split]
    csv_path = DAISEE.need(root / "Labels" / f"{folder}Labels.csv")
    # Clips sit under DataSet/<Split>/<subject>/<clip>/; find them by name instead of trusting
    # that the subject id can be derived from the clip id.
    clips = stem_index(DAISEE.need(root / "DataSet" / folder, is_dir=True), VIDEO_SUFFIXES) if cfg.use_video else None
    label_index = label_indices(cfg)
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    # The release's header reads "ClipID,Boredom,Engagement,Confusion,Frustration " (trailing
    # space); csv_rows strips it and the capitalised names are matched as distributed.
    columns = {s: s.capitalize() for s in DAISEE_STATES}
    for where, row in csv_rows(csv_path, ["ClipID", *(columns[s] for s in states)], skips):
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
    return finish(csv_path, split, samples, skips)
