"""Two real gloo ranks on CPU through `accelerate launch` (the layout a multi-GPU run uses), compared with
one process at the same global batch; mixed precision on CPU; non-finite losses."""

import json
import logging
import subprocess
import time

import pytest
import torch

from support import TINY_OVERRIDES, data_overrides
from support.launch import LAUNCH_DDP, ddp_env, run_ddp


def _run_one(out, synthemo_dir, *extra):
    from clipbert_emo.config import load_config
    from clipbert_emo.train.finetune import finetune

    return finetune(load_config(None, [*TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}",
                                       *extra]), progress=False)


@pytest.fixture(scope="module")
def ddp_run(synthemo_dir, tmp_path_factory):
    """2 ranks x batch 4, 2 epochs, with validation and test."""
    out = tmp_path_factory.mktemp("ddp")
    proc = run_ddp(out, synthemo_dir, "train.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def test_two_process_finetune_keeps_replicas_identical_and_scores_each_sample_once(ddp_run):
    metrics = ddp_run
    assert metrics["num_processes"] == 2
    a, b = metrics["rank_param_checksums"]
    assert a == b, "the two ranks ended with different weights"
    # 16 samples / (batch 4 x 2 ranks) = 2 optimizer steps per epoch
    assert metrics["steps"] == 4
    # 6 test videos over 2 ranks with batch 4 pads the last batch; each sample is still scored once
    assert metrics["test"]["num_samples"] == 6
    assert sum(map(sum, metrics["test"]["reports"]["lse"]["confusion"])) == 6


def test_two_processes_match_one_process_with_the_same_global_batch(ddp_run, synthemo_dir, tmp_path):
    """2 ranks x batch 4 against 1 process x batch 8: same samples per optimizer step, same schedule.

    Exact equality is not expected with video: BatchNorm in the CNN normalises each rank's 4 videos with
    their own batch statistics (8 in one process), the dropout masks are drawn per rank for a batch of 4,
    and the gradient all-reduce sums in another order. The learning rate must match exactly (accelerate
    would otherwise step the schedule once per rank), and validation and test metrics within a tolerance
    that allows for that noise: 0.02 in loss, at most one of the 6 test videos scored differently.
    """
    one = _run_one(tmp_path / "one", synthemo_dir, "train.epochs=2", "train.batch_size=8")
    two = ddp_run
    assert one["steps"] == two["steps"] == 4
    assert [h["lr"] for h in one["history"]] == pytest.approx([h["lr"] for h in two["history"]], rel=1e-12)
    assert one["history"][0]["lr"] > 0  # the schedule did not run out after half the run
    for h1, h2 in zip(one["history"], two["history"]):
        assert h1["val_loss"] == pytest.approx(h2["val_loss"], abs=0.02)
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], abs=0.02)
    for how, rep in one["test"]["reports"].items():
        other = two["test"]["reports"][how]
        assert rep["accuracy"] == pytest.approx(other["accuracy"], abs=1 / 6 + 1e-9)
        assert rep["macro_f1"] == pytest.approx(other["macro_f1"], abs=1 / 6 + 1e-9)


def test_two_processes_equal_one_process_without_batchnorm_and_dropout(synthemo_dir, tmp_path):
    """Text-only and dropout 0 remove both sources of per-rank difference: the weights must then agree
    to float rounding. (Text-only also needs DDP's unused-parameter search: the visual embeddings get
    no gradient.)"""
    from safetensors.torch import load_file

    extra = ["train.epochs=2", "data.use_video=false", "model.dropout=0", "data.test_manifest="]
    one = _run_one(tmp_path / "one", synthemo_dir, *extra, "train.batch_size=8")
    proc = run_ddp(tmp_path / "two", synthemo_dir, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["rank_param_checksums"][0] == two["rank_param_checksums"][1]
    w1 = load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "last" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1) < 1e-5
    for h1, h2 in zip(one["history"], two["history"]):
        assert h1["val_loss"] == pytest.approx(h2["val_loss"], abs=1e-5)


# --- mixed precision on CPU ------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_fp16_on_cpu_is_refused_with_a_clear_message():
    from clipbert_emo.config import load_config
    from clipbert_emo.train.accelerator import make_accelerator

    with pytest.raises(ValueError, match=r"fp16 needs a GPU.*silently train in fp32.*bf16"):
        make_accelerator(load_config(None, ["train.mixed_precision=fp16"]))


def test_bf16_autocast_finetune_runs_on_cpu(synthemo_dir, tmp_path):
    m = _run_one(tmp_path / "bf16", synthemo_dir, "train.mixed_precision=bf16", "train.max_steps=2",
                 "data.test_manifest=")
    assert m["steps"] == 2 and all(map(torch.isfinite, torch.tensor(m["step_losses"])))
    # bf16 autocast computes in bf16 but keeps fp32 weights: the checkpoint is fp32
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "bf16" / "checkpoint" / "model.safetensors"))
    assert {v.dtype for v in w.values() if v.is_floating_point()} == {torch.float32}


# --- non-finite losses ---------------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_leaves_the_last_save_untouched(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from clipbert_emo.train.guard import NonFiniteLossError

    out = tmp_path / "nan"
    original = ClipBertForEmotion.forward
    seen = {"train_calls": 0}

    def forward(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if self.training:
            seen["train_calls"] += 1
            if seen["train_calls"] == 3:  # the 3rd optimizer step (16 samples / batch 4: epoch 1)
                seen["last_before"] = {p.name: p.read_bytes() for p in (out / "last").iterdir() if p.is_file()}
                result.loss = result.loss * float("nan")
        return result

    monkeypatch.setattr(ClipBertForEmotion, "forward", forward)
    message = r"non-finite loss \(nan\) at epoch 1, optimizer step 3.*optim\.lr_transformer"
    with pytest.raises(NonFiniteLossError, match=message):
        _run_one(out, synthemo_dir, "train.save_every_steps=1", "data.val_manifest=",
                 "data.test_manifest=")
    after = {p.name: p.read_bytes() for p in (out / "last").iterdir() if p.is_file()}
    assert after == seen["last_before"], "last/ changed after the non-finite loss"
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 2
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_fp16_overflow_steps_are_skipped_counted_and_logged(caplog):
    """The grad-scaler path, with a real torch GradScaler on CPU (accelerate runs fp16 only on GPUs)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from clipbert_emo.train.guard import NonFiniteGuard

    try:
        acc = Accelerator(cpu=True)
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
        net = torch.nn.Linear(3, 1)
        net, opt = acc.prepare(net, torch.optim.SGD(net.parameters(), lr=0.1))
        guard = NonFiniteGuard(acc)
        assert guard.scaling
        before = net.weight.detach().clone()
        loss = net(torch.ones(1, 3)).sum() * float("inf")
        guard.check_loss(loss, epoch=1, step=0)  # no error: the scaler deals with it
        acc.backward(loss)
        opt.step()
        with caplog.at_level(logging.WARNING, logger="clipbert_emo.train.guard"):
            assert guard.after_step(opt, 1) is True
        assert torch.equal(net.weight, before), "a skipped step must not change the weights"
        assert acc.scaler.get_scale() == 2.0 ** 15
        assert "overflow at optimizer step 1" in caplog.text
        opt.zero_grad()
        acc.backward(net(torch.ones(1, 3)).sum())
        opt.step()
        assert guard.after_step(opt, 2) is False
        assert not torch.equal(net.weight, before)
        assert guard.skipped_steps == [1]
    finally:
        AcceleratorState._reset_state(True)


DRIVER = """
import os, sys
from clipbert_emo.cli import main
from clipbert_emo.models.clipbert import ClipBertForEmotion

original = ClipBertForEmotion.forward
calls = [0]


def forward(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    if self.training:
        calls[0] += 1
        if calls[0] == 2 and os.environ.get("RANK") == "1":
            out.loss = out.loss * float("nan")
    return out


ClipBertForEmotion.forward = forward
sys.exit(main(sys.argv[1:]))
"""


def test_a_nan_on_one_rank_stops_every_rank(synthemo_dir, tmp_path):
    """Rank 1 alone sees NaN: both ranks must stop with the message, not leave rank 0 waiting."""
    driver = tmp_path / "nan_on_rank1.py"
    driver.write_text(DRIVER)
    start = time.time()
    proc = run_ddp(tmp_path / "run", synthemo_dir, "data.test_manifest=", "data.val_manifest=",
                   script=(str(driver),))
    assert proc.returncode != 0
    assert time.time() - start < 300
    text = proc.stdout + proc.stderr
    assert "non-finite loss on rank(s) [1]" in text
    # Each rank reports it as one line (NonFiniteLossError is a UserError), not a traceback.
    assert text.count("clipbert-emo finetune: error: non-finite loss on rank(s) [1]") == 2, text[-3000:]


def test_two_process_pretraining(pairs_dir, tmp_path):
    """`clipbert-emo pretrain` under 2 gloo ranks: replicas stay identical and one summary is printed."""
    out = tmp_path / "pre"
    cmd = [*LAUNCH_DDP, "-m", "clipbert_emo.cli", "pretrain", "-q", *TINY_OVERRIDES, "data.num_frames=1",
           f"data.train_manifest={pairs_dir / 'train.jsonl'}", f"data.val_manifest={pairs_dir / 'val.jsonl'}",
           "train.batch_size=2", f"train.output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ddp_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["steps"] == 2  # 8 pairs / (2 per batch x 2 ranks)
    a, b = metrics["rank_param_checksums"]
    assert a == b
    assert proc.stdout.count("pretrained on") == 1
    assert (out / "checkpoint" / "model.safetensors").exists()
