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
    from clipbert_emo.synthemo import SynthEmoConfig, generate_synthemo

    out = tmp_path_factory.mktemp("synthemo")
    generate_synthemo(out, SynthEmoConfig(num_train=16, num_val=6, num_test=6, size=32, duration=2.0, fps=8.0,
                                          workers=1), progress=False)
    return out


@pytest.fixture
def make_video(tmp_path):
    """Write a small mp4 with a moving bar; returns its path. Frames encode their index in brightness."""
    from clipbert_emo.synthemo import write_mp4

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


def write_av(path, seconds=2.0, fps=8, size=32, rate=44100, tone=None, video=True, audio=True):
    """An mp4 with a moving-brightness video and a stereo AAC track; ``tone(t)`` gives the sound per second t."""
    import av

    tone = tone or (lambda t: 0.3 * np.sin(2 * np.pi * 440 * t))
    with av.open(str(path), "w", format="mp4") as out:
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
        if audio:
            aus = out.add_stream("aac", rate=rate, layout="stereo")
        if video:
            for i in range(int(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 + 5 * i, np.uint8), format="rgb24")
                for p in vs.encode(frame):
                    out.mux(p)
        if audio:
            t = np.arange(int(seconds * rate)) / rate
            wave = np.stack([tone(t), tone(t)]).astype(np.float32)  # (2, n) planar stereo
            for start in range(0, wave.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="fltp",
                                                   layout="stereo")
                frame.sample_rate = rate
                for p in aus.encode(frame):
                    out.mux(p)
            for p in aus.encode(None):
                out.mux(p)
        if video:
            for p in vs.encode(None):
                out.mux(p)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(synthemo_dir, tmp_path_factory):
    """A checkpoint folder of a tiny video+text model trained one epoch on ``synthemo_dir`` (for predict/serve)."""
    from clipbert_emo.cli import main

    out = tmp_path_factory.mktemp("tiny_run")
    assert main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}"]) == 0
    return out / "checkpoint"
@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """`clipbert-emo predict/evaluate` set the process's torch threads (runtime.set_threads); a test that runs them
    in-process must not change the thread count, hence the float sums, of the tests after it."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
