"""FER2013, the Kaggle fer2013.csv (emotion, pixels, Usage): the 48x48 grey faces are pixel values
inside the CSV, and Usage says the split (Training, PublicTest = val, PrivateTest = test).

Each face becomes an in-memory (48, 48, 3) uint8 RGB image (``Sample.image``), labelled with its
emotion code 0..6 (FER_EMOTIONS, in that order). Skipped and reported: malformed rows (too few
fields, an unknown Usage, an emotion outside 0..6), emotions outside data.labels, and bad pixels
(not 48x48 integers in 0..255).
"""

from __future__ import annotations

import numpy as np

from ...config import DataConfig
from ..manifest import Manifest, Sample
from .common import Release, Skips, csv_rows, finish, label_indices, need_labels, need_task

FER_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013's 0..6
FER_SIDE = 48

FER2013 = Release("FER2013", """\
    <root>/fer2013.csv        (emotion, pixels, Usage)""")

_FER_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_FER_CODES = tuple(str(i) for i in range(len(FER_EMOTIONS)))


def read_fer2013(cfg: DataConfig, split: str) -> Manifest:
    need_task(cfg, ("single_label",), "one emotion per face")
    need_labels(cfg, FER_EMOTIONS, "FER2013")
    root = FER2013.root(cfg)
    csv_path = FER2013.need(root / "fer2013.csv")
    label_index = label_indices(cfg)
    wanted = _FER_USAGE[split]
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for where, row in csv_rows(csv_path, ("emotion", "pixels", "Usage"), skips):
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
    return finish(csv_path, split, samples, skips)
