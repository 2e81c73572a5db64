"""Two real gloo ranks on CPU through `accelerate launch` (the layout a multi-GPU run uses)."""

import json
import os
import subprocess
import sys

from conftest import TINY_OVERRIDES


def test_two_process_finetune_keeps_replicas_identical_and_scores_each_sample_once(synthemo_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "clipbert_emo.cli", "finetune", "-q", *TINY_OVERRIDES, "train.epochs=2",
           f"data.train_manifest={synthemo_dir / 'train.jsonl'}", f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
           f"data.test_manifest={synthemo_dir / 'test.jsonl'}", f"train.output_dir={out}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    a, b = metrics["rank_param_checksums"]
    assert a == b, "the two ranks ended with different weights"
    # 16 samples / (batch 4 x 2 ranks) = 2 optimizer steps per epoch
    assert metrics["steps"] == 4
    # 6 test videos over 2 ranks with batch 4 pads the last batch; each sample is still scored once
    assert metrics["test"]["num_samples"] == 6
    assert sum(map(sum, metrics["test"]["reports"]["lse"]["confusion"])) == 6
