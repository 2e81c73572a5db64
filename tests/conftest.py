"""Shared fixtures: tiny SynthEmo data, tiny model configs and batches (hidden 32, 2 layers, 32 px), test videos
and checkpoints. Tests take them as arguments; a factory fixture returns a function to call with the test's
arguments. Constants and helpers that module-level code needs at import time are in tests/support/ (imported as
``support``); no test imports from this file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest.register_assert_rewrite("support")  # the checks in support/ (golden, launch) report like a test's asserts

from support import CAPTIONS, TINY_OVERRIDES, data_overrides  # noqa: E402


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


@pytest.fixture(scope="session")
def write_av():
    """``write_av(path, seconds=2.0, fps=8, size=32, rate=44100, tone=None, video=True, audio=True)`` writes an mp4
    with a moving-brightness video and a stereo AAC track (``tone(t)`` gives the sound per second t); returns path."""

    def _write(path, seconds=2.0, fps=8, size=32, rate=44100, tone=None, video=True, audio=True):
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
                    frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 + 5 * i, np.uint8),
                                                       format="rgb24")
                    for p in vs.encode(frame):
                        out.mux(p)
            if audio:
                t = np.arange(int(seconds * rate)) / rate
                wave = np.stack([tone(t), tone(t)]).astype(np.float32)  # (2, n) planar stereo
                for start in range(0, wave.shape[1], 1024):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]),
                                                       format="fltp", layout="stereo")
                    frame.sample_rate = rate
                    for p in aus.encode(frame):
                        out.mux(p)
                for p in aus.encode(None):
                    out.mux(p)
            if video:
                for p in vs.encode(None):
                    out.mux(p)
        return path

    return _write


@pytest.fixture(scope="session")
def write_gop_video():
    """``write_gop_video(path, num_frames=60, gop=10, size=32, fps=10)``: an H.264 file with keyframes at a fixed
    spacing (x264 with keyint=10 puts them 9 frames apart); frame i has brightness 10 + 4 i (``support.frame_numbers``
    reads it back); returns path."""

    def _write(path, num_frames=60, gop=10, size=32, fps=10):
        import av

        with av.open(str(path), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
            vs.codec_context.gop_size = gop
            vs.options = {"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0", "bframes": "0"}
            for i in range(num_frames):
                frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 + 4 * i, np.uint8), format="rgb24")
                for p in vs.encode(frame):
                    out.mux(p)
            for p in vs.encode(None):
                out.mux(p)
        return path

    return _write


@pytest.fixture(scope="session")
def tiny_checkpoint(synthemo_dir, tmp_path_factory):
    """A checkpoint folder of a tiny video+text model trained one epoch on ``synthemo_dir`` (for predict/serve)."""
    from clipbert_emo.cli import main

    out = tmp_path_factory.mktemp("tiny_run")
    assert main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}"]) == 0
    return out / "checkpoint"


@pytest.fixture(scope="session")
def make_random_checkpoint():
    """``make_random_checkpoint(path, overrides=())``: a randomly initialised tiny model (``TINY_OVERRIDES`` +
    ``overrides``, seed 0, weights spread) saved as a checkpoint folder at ``path``, with a WordPiece tokenizer of
    120 words built beside it; returns ``path``. For export, which does not care how a model was trained."""
    texts = ["i am so happy today", "what a sad face", "no way that is incredible", "calm and quiet"]

    def _make(path, overrides=()):
        import torch

        from clipbert_emo.build import build_model
        from clipbert_emo.checkpoint import save_checkpoint
        from clipbert_emo.config import load_config
        from clipbert_emo.data.text import build_wordpiece_tokenizer

        cfg = load_config(None, [*TINY_OVERRIDES, *overrides])
        tok = build_wordpiece_tokenizer(texts, 120, path.parent / f"{path.name}_tok")
        torch.manual_seed(0)
        model = build_model(cfg, len(tok), tok.pad_token_id or 0, pretrained=False).eval()
        with torch.no_grad():  # a fresh model's logits are ~1e-3 and nearly input-blind: spread its weights
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.2)
        save_checkpoint(path, model, cfg, tok, {"epoch": 1})
        return path

    return _make


# ---- tiny models and their inputs, built in-process ------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_model_config():
    """``tiny_model_config(**kw)``: the tiny ``ModelConfig`` of the model tests (resnet18 to res4, hidden 32, 2
    layers, 2 heads, intermediate 64, dropout 0), with ``kw`` overriding any field."""
    from clipbert_emo.config import ModelConfig

    def _make(**kw) -> ModelConfig:
        base = dict(backbone="resnet18", backbone_stages=3, hidden_size=32, num_layers=2, num_heads=2,
                    intermediate_size=64, dropout=0.0)
        base.update(kw)
        return ModelConfig(**base)

    return _make


@pytest.fixture(scope="session")
def make_batch():
    """``make_batch(b=2, n=3, t=2, size=32, length=6, seed=0, vocab=50, pad=2)``: a fixed random batch ``(video
    (B, N, T, 3, S, S) uint8, ids (B, L) from [5, vocab) starting with [CLS] id 2, mask (B, L))``; the first text's
    last ``pad`` tokens are padding, the others none (both mask paths of the encoder)."""
    import torch

    def _make(b=2, n=3, t=2, size=32, length=6, seed=0, vocab=50, pad=2):
        g = torch.Generator().manual_seed(seed)
        video = torch.randint(0, 256, (b, n, t, 3, size, size), dtype=torch.uint8, generator=g)
        ids = torch.randint(5, vocab, (b, length), generator=g)
        ids[:, 0] = 2
        mask = torch.ones(b, length, dtype=torch.long)
        mask[0, length - pad:] = 0
        return video, ids, mask

    return _make


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """`clipbert-emo predict/evaluate` set the process's torch threads (runtime.set_threads); a test that runs them
    in-process must not change the thread count, hence the float sums, of the tests after it."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
