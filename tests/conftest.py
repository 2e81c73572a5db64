"""Shared fixtures: tiny SynthEmo data and tiny model configs (hidden 32, 2 layers, 32 px)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_OVERRIDES = [
    "data.frame_size=32",
    "data.clip_fps=4",
    "data.num_clips_train=2",
    "data.num_clips_test=3",
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
    "train.val_num_clips=2",
]



def data_overrides(d):
    """The overrides that point a config at the train/val/test manifests of a SynthEmo folder."""
    return [f"data.train_manifest={d / 'train.jsonl'}", f"data.val_manifest={d / 'val.jsonl'}",
            f"data.test_manifest={d / 'test.jsonl'}"]


def rewrite_manifest(src, dst, fn):
    """Copy a SynthEmo manifest with absolute video paths, replacing each line's annotation with fn(index, row)."""
    import json

    rows = [json.loads(line) for line in open(src)]
    with open(dst, "w") as f:
        for i, row in enumerate(rows):
            row["video"] = str((src.parent / row["video"]).resolve())
            f.write(json.dumps(fn(i, row)) + "\n")
    return dst


@pytest.fixture(scope="session")
def synthemo_dir(tmp_path_factory):
    """16 train / 6 val / 6 test SynthEmo videos of 32 px, 2 s at 8 fps."""
    from clipbert_emo.data.synthemo import SynthEmoConfig, generate_synthemo

    out = tmp_path_factory.mktemp("synthemo")
    generate_synthemo(out, SynthEmoConfig(num_train=16, num_val=6, num_test=6, size=32, duration=2.0, fps=8.0,
                                          workers=1), progress=False)
    return out


@pytest.fixture
def make_video(tmp_path):
    """Write a small mp4 with a moving bar; returns its path. Frames encode their index in brightness."""
    from clipbert_emo.data.synthemo import write_mp4

    def _make(name="v.mp4", num_frames=20, height=36, width=48, fps=8.0):
        frames = np.zeros((num_frames, height, width, 3), dtype=np.uint8)
        for i in range(num_frames):
            frames[i, :, :, :] = int(10 + 240 * i / max(1, num_frames - 1))
        path = tmp_path / name
        write_mp4(path, frames, fps)
        return path

    return _make


CAPTIONS = ["a face with a wide open mouth", "a frowning face with lowered brows", "someone smiling broadly",
            "a calm face with a closed mouth", "raised brows and round eyes", "a tight mouth and narrowed eyes"]


@pytest.fixture
def pairs_dir(tmp_path):
    """Eight 32 px PNGs with captions as a pretraining JSONL manifest (train.jsonl), + 4 held out (val.jsonl)."""
    import json

    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for split, n in (("train", 8), ("val", 4)):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for i in range(n):
                name = f"images/{split}{i}.png"
                Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(tmp_path / name)
                f.write(json.dumps({"video": name, "text": CAPTIONS[i % len(CAPTIONS)]}) + "\n")
    return tmp_path
