"""Helpers the tests import (tests/ is on sys.path: pytest's default rootdir-relative import mode).

Fixtures live in tests/conftest.py and are taken as test arguments; this package holds what module-level code
needs at import time (parametrize lists, module-scoped fixtures, helper functions of a test file) and what has
no per-test state:

- here: ``TINY_OVERRIDES`` (the tiny model and data settings every end-to-end test trains with), ``CAPTIONS``,
  ``data_overrides`` and ``rewrite_manifest`` (pointing a config at SynthEmo manifests, or at rewritten copies),
  ``frame_numbers`` (the frame index a test video's brightness encodes, as the ``write_gop_video`` fixture's do);
- ``support.launch``: two gloo ranks through ``accelerate launch`` (DDP, DeepSpeed ZeRO) and the checks of a run;
- ``support.golden``: the golden-loss runs and their comparison with tests/golden_losses.json;
- ``support.benchmarks``: tiny public benchmark releases in their real on-disk layouts;
- one module per area whose helpers several test files share (``support.browser``, ``support.fer_reference``).

No test imports from conftest.py or from another test_*.py file.
"""

from __future__ import annotations

import json

import numpy as np

TINY_OVERRIDES = [
    "data.frame_size=32",
    "data.clip_fps=4",
    "data.num_clips_train=2",
    "data.n_test=3",
    "data.num_workers=0",
    "model.backbone=resnet18",
    "model.backbone_stages=3",
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "model.vocab_size=200",
    "optim.lr_cnn=1e-3",
    "optim.lr_transformer=1e-3",
    "train.epochs=1",
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.val_n_test=2",
]

CAPTIONS = ["a face with a wide open mouth", "a frowning face with lowered brows", "someone smiling broadly",
            "a calm face with a closed mouth", "raised brows and round eyes", "a tight mouth and narrowed eyes"]


def data_overrides(d):
    """The overrides that point a config at the train/val/test manifests of a SynthEmo folder."""
    return [f"data.train_manifest={d / 'train.jsonl'}", f"data.val_manifest={d / 'val.jsonl'}",
            f"data.test_manifest={d / 'test.jsonl'}"]


def rewrite_manifest(src, dst, fn):
    """Copy a SynthEmo manifest with absolute video paths, replacing each line's annotation with fn(index, row)."""
    rows = [json.loads(line) for line in open(src)]
    with open(dst, "w") as f:
        for i, row in enumerate(rows):
            row["video"] = str((src.parent / row["video"]).resolve())
            f.write(json.dumps(fn(i, row)) + "\n")
    return dst


def frame_numbers(frames: np.ndarray, step: int = 4) -> np.ndarray:
    """The index each decoded frame shows (its brightness), (...) from (..., H, W, 3)."""
    return np.rint((frames.reshape(*frames.shape[:-3], -1).mean(-1) - 10) / step).astype(int)
