"""DeepSpeed ZeRO on CPU: two gloo ranks through `accelerate launch --use_deepspeed`, with the shipped
configs/deepspeed/zeroN.json, on tiny SynthEmo.

The first DeepSpeed run on a machine compiles a C++ op (shared-memory comm, 25-60 s); it is cached
in TORCH_EXTENSIONS_DIR (here ~/.cache/clipbert_emo/torch_extensions unless already set), so later
runs start in seconds. The optimizer is our torch AdamW, so DeepSpeed never builds fused_adam.
"""

import json

import pytest
import torch

from support import TINY_OVERRIDES
from support.launch import ROOT, check_deepspeed_run, launch_deepspeed

pytest.importorskip("deepspeed")


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_finetune_on_cpu(stage, synthemo_dir, tmp_path):
    out = tmp_path / f"zero{stage}"
    proc = launch_deepspeed(stage, out, synthemo_dir, "train.epochs=2",
                            f"data.test_manifest={synthemo_dir / 'test.jsonl'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = check_deepspeed_run(out)
    assert m["test"]["num_samples"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("stage,precision", [(1, "no"), (2, "bf16"), (3, "bf16")])
def test_more_zero_stages_and_bf16_on_cpu(stage, precision, synthemo_dir, tmp_path):
    out = tmp_path / f"zero{stage}_{precision}"
    # (precision "no" is the default; an override "=no" would be read by YAML as false)
    extra = [f"train.mixed_precision={precision}"] if precision != "no" else []
    proc = launch_deepspeed(stage, out, synthemo_dir, "train.epochs=2", *extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_deepspeed_run(out, precision)


KILL_DRIVER = """
import os, sys
from clipbert_emo.cli import main
from clipbert_emo.train import engine as loop

def stop(step):
    if step == int(os.environ["KILL_AT"]):
        os._exit(3)  # like a killed job: no cleanup, no end_training

loop._after_step = stop
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_zero3_killed_run_resumes_exactly(synthemo_dir, tmp_path):
    """Per-rank optimizer shards + last/ counters give the same losses and weights as an uninterrupted run."""
    driver = tmp_path / "kill.py"
    driver.write_text(KILL_DRIVER)
    extra = ["train.epochs=2", "train.save_every_steps=1"]
    full = launch_deepspeed(3, tmp_path / "full", synthemo_dir, *extra, script=(str(driver),), env={"KILL_AT": "0"})
    assert full.returncode == 0, full.stderr[-4000:]
    killed = launch_deepspeed(3, tmp_path / "killed", synthemo_dir, *extra, script=(str(driver),), env={"KILL_AT": "3"})
    assert killed.returncode != 0
    state = torch.load(tmp_path / "killed" / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 3 and state["deepspeed_state"] == "step_3" and state["optimizer"] is None
    resumed = launch_deepspeed(3, tmp_path / "killed", synthemo_dir, *extra, "train.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    a = json.loads((tmp_path / "full" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert b["step_losses"] == pytest.approx(a["step_losses"], rel=0, abs=1e-6)
    assert b["rank_param_checksums"] == pytest.approx(a["rank_param_checksums"], rel=1e-12)

    # Resuming a DeepSpeed run without DeepSpeed cannot rebuild the sharded optimizer: a clear error
    from clipbert_emo.config import load_config
    from clipbert_emo.train.finetune import finetune

    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={synthemo_dir / 'train.jsonl'}",
                             f"train.output_dir={tmp_path / 'killed'}", "train.resume=true", *extra])
    with pytest.raises(RuntimeError, match="written under DeepSpeed"):
        finetune(cfg, progress=False)


@pytest.mark.slow
def test_fp16_overflow_steps_are_skipped_under_deepspeed_on_cpu(synthemo_dir, tmp_path):
    """DeepSpeed's fp16 loss scaler on CPU (where oneDNN has fp16 kernels): a start scale of 2^60
    overflows, so the scaler skips steps; each is counted in metrics and leaves the weights alone."""
    from clipbert_emo.train.accelerator import _cpu_fp16_supported

    if not _cpu_fp16_supported():
        pytest.skip("this CPU has no fp16 kernels for DeepSpeed")
    cfg = json.loads((ROOT / "configs" / "deepspeed" / "zero2.json").read_text())
    cfg["fp16"].update(initial_scale_power=60, hysteresis=1)
    (tmp_path / "ds.json").write_text(json.dumps(cfg))
    out = tmp_path / "fp16"
    proc = launch_deepspeed(2, out, synthemo_dir, "train.mixed_precision=fp16", "train.max_steps=2",
                            "data.val_manifest=", ds_config=tmp_path / "ds.json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["overflow_skipped_steps"] == 2 and m["overflow_skipped_step_ids"] == [1, 2]
    assert "fp16 gradient overflow at optimizer step 1" in proc.stderr
