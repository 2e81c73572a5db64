"""The training loop: determinism, best-checkpoint selection, atomic checkpoints, text-only runs."""

import json

import pytest
import torch

from clipbert_emo.config import load_config
from clipbert_emo.checkpoint import load_checkpoint
from clipbert_emo.train.finetune import finetune
from support import TINY_OVERRIDES


def _cfg(d, out, *extra):
    return load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={d / 'train.jsonl'}",
                              f"data.val_manifest={d / 'val.jsonl'}", f"train.output_dir={out}", *extra])


def test_same_seed_same_run(synthemo_dir, tmp_path):
    a = finetune(_cfg(synthemo_dir, tmp_path / "a", "train.max_steps=3"), progress=False)
    b = finetune(_cfg(synthemo_dir, tmp_path / "b", "train.max_steps=3"), progress=False)
    c = finetune(_cfg(synthemo_dir, tmp_path / "c", "train.max_steps=3", "train.seed=1"), progress=False)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["val_loss"] == b["history"][0]["val_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]
    wa = load_checkpoint(tmp_path / "a" / "checkpoint")[0].state_dict()
    wb = load_checkpoint(tmp_path / "b" / "checkpoint")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_reloads_to_identical_outputs(synthemo_dir, tmp_path):
    from clipbert_emo.predict import Predictor

    finetune(_cfg(synthemo_dir, tmp_path / "r", "train.max_steps=2"), progress=False)
    video = synthemo_dir / "videos" / "val" / "000000.mp4"
    p1 = Predictor(tmp_path / "r" / "checkpoint")(video, text="hello", num_clips=2)
    p2 = Predictor(tmp_path / "r" / "checkpoint")(video, text="hello", num_clips=2)
    assert p1 == p2
    leftovers = [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "atomic save leaves no temporary folders behind"


def test_text_only_run_never_decodes_video(synthemo_dir, tmp_path, monkeypatch):
    import clipbert_emo.data.dataset as dataset

    def boom(*a, **k):
        raise AssertionError("text-only training must not decode video")

    monkeypatch.setattr(dataset, "load_clips", boom)
    m = finetune(_cfg(synthemo_dir, tmp_path / "t", "data.use_video=false", "train.epochs=2"), progress=False)
    assert len(m["history"]) == 2
    meta = json.loads((tmp_path / "t" / "checkpoint" / "meta.json").read_text())
    assert meta["uses_video"] is False


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, tiny_model_config):
    from clipbert_emo.config import ExperimentConfig
    from clipbert_emo.data.text import build_wordpiece_tokenizer
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from clipbert_emo import checkpoint as ckpt

    cfg = ExperimentConfig(model=tiny_model_config(num_layers=1, dropout=0.1))
    tok = build_wordpiece_tokenizer(["hello world"], 50, tmp_path / "tok")
    model = ClipBertForEmotion(cfg.model, 6, len(tok))
    ckpt.save_checkpoint(tmp_path / "checkpoint", model, cfg, tok, {"epoch": 1})
    before = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()

    def broken(state, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(ckpt, "save_file", broken)
    try:
        ckpt.save_checkpoint(tmp_path / "checkpoint", model, cfg, tok, {"epoch": 2})
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "checkpoint" / "meta.json").read_text())["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    loaded, _, _ = ckpt.load_checkpoint(tmp_path / "checkpoint")
    assert loaded.num_labels == 6


def test_killed_run_resumes_with_the_same_loss_trajectory(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.cli import main
    from clipbert_emo.train import engine as loop

    extra = ["train.epochs=2", "train.save_every_steps=3", "data.val_manifest="]
    full = finetune(_cfg(synthemo_dir, tmp_path / "full", *extra), progress=False)
    assert len(full["step_losses"]) == 8  # 16 samples / batch 4 x 2 epochs

    class Killed(Exception):
        pass

    def kill_at_7(step):
        if step == 7:
            raise Killed

    monkeypatch.setattr(loop, "_after_step", kill_at_7)
    try:
        finetune(_cfg(synthemo_dir, tmp_path / "killed", *extra), progress=False)
    except Killed:
        pass
    monkeypatch.setattr(loop, "_after_step", lambda step: None)
    state = torch.load(tmp_path / "killed" / "last" / "training_state.pt", weights_only=True)
    # saved at step 6: epoch 2, two batches in, so the resume skips into the middle of an epoch
    assert state["step"] == 6 and state["epoch"] == 2 and state["batches_done"] == 2
    rc = main(["finetune", "-q", "--resume", *[o for o in _cfg_overrides(synthemo_dir, tmp_path / "killed")], *extra])
    assert rc == 0
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["steps"] == 8
    assert resumed["step_losses"] == pytest.approx(full["step_losses"], rel=0, abs=1e-6)
    a = load_checkpoint(tmp_path / "full" / "last")[0].state_dict()
    b = load_checkpoint(tmp_path / "killed" / "last")[0].state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def _cfg_overrides(d, out):
    return [*TINY_OVERRIDES, f"data.train_manifest={d / 'train.jsonl'}", f"train.output_dir={out}"]
