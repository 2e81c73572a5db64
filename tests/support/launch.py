"""Two real gloo ranks on CPU through `accelerate launch`: plain DDP (tests/test_accelerator.py) and DeepSpeed ZeRO
with the shipped configs/deepspeed/zeroN.json (tests/test_deepspeed.py), and the checks of a finished ZeRO run.

The first DeepSpeed run on a machine compiles a C++ op (shared-memory comm, 25-60 s); it is cached in
TORCH_EXTENSIONS_DIR (here ~/.cache/clipbert_emo/torch_extensions unless already set), so later runs start in
seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support import TINY_OVERRIDES, data_overrides

ROOT = Path(__file__).resolve().parent.parent.parent

LAUNCH_DDP = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def ddp_env():
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def run_ddp(out, synthemo_dir, *extra, script=("-m", "clipbert_emo.cli"), env=None):
    """`finetune` of the tiny model on ``synthemo_dir`` under 2 DDP ranks; the finished process."""
    cmd = [*LAUNCH_DDP, *script, "finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
           f"train.output_dir={out}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env or ddp_env())


def deepspeed_env():
    ext = os.environ.get("TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache" / "clipbert_emo" / "torch_extensions")
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TORCH_EXTENSIONS_DIR": ext}


def launch_deepspeed(stage, out, synthemo_dir, *extra, script=("-m", "clipbert_emo.cli"), env=None, ds_config=None):
    """`finetune` of the tiny model on ``synthemo_dir`` (train and val) under 2 DeepSpeed ZeRO-``stage`` ranks."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed",
           "--deepspeed_config_file", str(ds_config or ROOT / "configs" / "deepspeed" / f"zero{stage}.json"),
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           *script, "finetune", "-q", *TINY_OVERRIDES,
           f"data.train_manifest={synthemo_dir / 'train.jsonl'}", f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
           f"train.output_dir={out}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**deepspeed_env(), **(env or {})},
                          cwd=ROOT)
    return proc


def check_deepspeed_run(out, precision="no"):
    """The checks every 2-rank ZeRO run of 16 samples x 2 epochs passes; its metrics.json."""
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
    assert dtypes == ({torch.float32} if precision == "no"
                      else {torch.bfloat16 if precision == "bf16" else torch.float16})
    # DeepSpeed's own shards of the last save (for an exact resume), one optimizer file per rank
    shard_dirs = list((out / "deepspeed_state").iterdir())
    assert [d.name for d in shard_dirs] == [f"step_{m['steps']}"]
    assert len(list((shard_dirs[0] / "state").glob("*optim_states.pt"))) == 2
    return m
