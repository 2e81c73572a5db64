"""DeepSpeed ZeRO on CPU: two gloo ranks through `accelerate launch --use_deepspeed`, with the shipped
configs/deepspeed/zeroN.json, on tiny SynthEmo.

The first DeepSpeed run on a machine compiles a C++ op (shared-memory comm, 25-60 s); it is cached
in TORCH_EXTENSIONS_DIR (here ~/.cache/clipbert_emo/torch_extensions unless already set), so later
runs start in seconds. The optimizer is our torch AdamW, so DeepSpeed never builds fused_adam.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES

pytest.importorskip("deepspeed")

ROOT = Path(__file__).resolve().parent.parent


def _env():
    ext = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "clipbert_emo" / "torch_extensions")
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TORCH_EXTENSIONS_DIR": ext}


def _launch(stage, out, synthemo_dir, *extra, script=("-m", "clipbert_emo.cli"), env=None, ds_config=None):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed",
           "--deepspeed_config_file", str(ds_config or ROOT / "configs" / "deepspeed" / f"zero{stage}.json"),
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           *script, "finetune", "-q", *TINY_OVERRIDES,
           f"data.train_manifest={synthemo_dir / 'train.jsonl'}", f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
           f"train.output_dir={out}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**_env(), **(env or {})}, cwd=ROOT)
    return proc


def _check_run(out, precision="no"):
    from safetensors.torch import load_file

    from clipbert_emo.checkpoint import load_checkpoint

    m = json.loads((out / "metrics.json").read_text())
    assert m["num_processes"] == 2
    a, b = m["rank_param_checksums"]
    assert a == b, "the ranks ended with different weights"
    assert m["steps"] == 4  # 16 samples / (batch 4 x 2 ranks) x 2 epochs
    assert all(torch.isfinite(torch.tensor(m["step_losses"])))
    lrs = [h["lr"] for h in m["history"]]
    assert lrs[0] > 0 and lrs[-1] == pytest.approx(0.0, abs=1e-12)  # one schedule step per optimizer step
    # The saved weights are the complete model (ZeRO-3 gathers them on rank 0), loadable strictly, and
    # they are the weights the ranks ended with (checksum over parameters and floating buffers).
    for sub in ("checkpoint", "last"):
        model, _, _ = load_checkpoint(out / sub)
        assert all(v.numel() > 0 for v in model.state_dict().values())
    saved = load_file(str(out / "last" / "model.safetensors"))
    total = sum(v.double().sum().item() for v in saved.values() if v.is_floating_point())
    assert total == pytest.approx(a, rel=1e-9)
    dtypes = {v.dtype for v in saved.values() if v.is_floating_point()}
    # DeepSpeed's bf16/fp16 modes keep 16-bit weights in the module (fp32 master copies in the optimizer)
    assert dtypes == ({torch.float32} if precision == "no" else {torch.bfloat16 if precision == "bf16" else torch.float16})
    # DeepSpeed's own shards of the last save (for an exact resume), one optimizer file per rank
    shard_dirs = list((out / "deepspeed_state").iterdir())
    assert [d.name for d in shard_dirs] == [f"step_{m['steps']}"]
    assert len(list((shard_dirs[0] / "state").glob("*optim_states.pt"))) == 2
    return m


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_finetune_on_cpu(stage, synthemo_dir, tmp_path):
    out = tmp_path / f"zero{stage}"
    proc = _launch(stage, out, synthemo_dir, "train.epochs=2", f"data.test_manifest={synthemo_dir / 'test.jsonl'}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = _check_run(out)
    assert m["test"]["num_samples"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("stage,precision", [(1, "no"), (2, "bf16"), (3, "bf16")])
def test_more_zero_stages_and_bf16_on_cpu(stage, precision, synthemo_dir, tmp_path):
    out = tmp_path / f"zero{stage}_{precision}"
    # (precision "no" is the default; an override "=no" would be read by YAML as false)
    extra = [f"train.mixed_precision={precision}"] if precision != "no" else []
    proc = _launch(stage, out, synthemo_dir, "train.epochs=2", *extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _check_run(out, precision)


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
    full = _launch(3, tmp_path / "full", synthemo_dir, *extra, script=(str(driver),), env={"KILL_AT": "0"})
    assert full.returncode == 0, full.stderr[-4000:]
    killed = _launch(3, tmp_path / "killed", synthemo_dir, *extra, script=(str(driver),), env={"KILL_AT": "3"})
    assert killed.returncode != 0
    state = torch.load(tmp_path / "killed" / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 3 and state["deepspeed_state"] == "step_3" and state["optimizer"] is None
    resumed = _launch(3, tmp_path / "killed", synthemo_dir, *extra, "train.resume=true")
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
    proc = _launch(2, out, synthemo_dir, "train.mixed_precision=fp16", "train.max_steps=2", "data.val_manifest=",
                   ds_config=tmp_path / "ds.json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["overflow_skipped_steps"] == 2 and m["overflow_skipped_step_ids"] == [1, 2]
    assert "fp16 gradient overflow at optimizer step 1" in proc.stderr
