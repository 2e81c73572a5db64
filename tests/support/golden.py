"""The golden-loss runs of tests/test_engine.py: short fixed-seed runs of every task kind and of pretraining, and
their comparison with the per-step losses recorded in tests/golden_losses.json (see test_engine.py for when to
re-record)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from clipbert_emo.config import load_config
from support import TINY_OVERRIDES, rewrite_manifest

GOLDEN = Path(__file__).resolve().parent.parent / "golden_losses.json"
# Recorded on one CPU, checked on others: oneDNN/MKL kernels differ between CPU families (AVX-512 against AVX2),
# so float sums round differently and eight steps of training drift apart by up to ~5e-4 relative (measured
# between an AMD EPYC and an Intel Xeon). A refactor that changes data order, clips, masks or the loss moves
# the losses by orders of magnitude more.
RTOL = 2e-3
# Test-split metrics of a 2-epoch tiny model on a few videos: its predictions are nearly constant, so a
# correlation or a near-tie in accuracy turns the same drift into a few hundredths (0.343 against 0.362 for a
# Pearson correlation between those two CPUs). The losses above are the sharp check; these catch gross changes.
METRIC_ATOL = 0.05
HEADS = ["boredom", "engagement"]
LEVELS = ["0", "1", "2", "3"]
EMOTIONS = ["neutral", "happy", "sad", "angry", "surprised", "fearful"]


def _multilabel(i, row):
    row["labels"] = sorted({row.pop("label"), EMOTIONS[(i * 5) % 6]})
    return row


def _multitask(i, row):
    row.pop("label")
    row["task_labels"] = {"boredom": LEVELS[i % 4], "engagement": LEVELS[(i // 2) % 4]}
    if i == 1:
        del row["task_labels"]["engagement"]
    return row


def _regression(i, row):
    row.pop("label")
    row["target"] = round(-3 + 6 * ((i * 7) % 13) / 12, 2)
    return row


FINETUNE_RUNS = {
    "single_label_video_text": (None, ["model.visual_aux_weight=0.5"]),
    "video_only": (None, ["data.use_text=false"]),
    "text_only": (None, ["data.use_video=false"]),
    "multilabel": (_multilabel, ["data.task=multilabel"]),
    "multitask": (_multitask, ["data.task=multitask", f"data.labels={LEVELS}",
                               f"data.heads={HEADS}", "train.loss=weighted_ce",
                               "train.sampler=class_balanced", "train.balance_head=boredom"]),
    "regression": (_regression, ["data.task=regression", "model.aggregation=mean"]),
    "single_label_focal_balanced_accum": (None, ["train.loss=focal", "train.sampler=class_balanced",
                                                 "train.grad_accum_steps=2", "model.temporal_fusion=attention"]),
}


def finetune_record(name, synthemo_dir, tmp_path, *more) -> dict:
    """The losses and test metrics of FINETUNE_RUNS[name] (``more``: overrides after the run's own)."""
    from clipbert_emo.train.finetune import finetune

    rewrite, extra = FINETUNE_RUNS[name]
    splits = {}
    for split in ("train", "val", "test"):
        src = synthemo_dir / f"{split}.jsonl"
        splits[split] = rewrite_manifest(src, tmp_path / f"{split}.jsonl", rewrite) if rewrite else src
    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={splits['train']}",
                             f"data.val_manifest={splits['val']}", f"data.test_manifest={splits['test']}",
                             f"train.output_dir={tmp_path / 'run'}", "train.epochs=2", *extra, *more])
    m = finetune(cfg, progress=False)
    return {"step_losses": m["step_losses"], "val_loss": [h["val_loss"] for h in m["history"]],
            "train_loss": [h["train_loss"] for h in m["history"]],
            "test": {how: {k: v for k, v in rep.items() if isinstance(v, float)}
                     for how, rep in m["test"]["reports"].items()}}


def pretrain_record(pairs_dir, tmp_path) -> dict:
    from clipbert_emo.train.pretrain import pretrain

    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={pairs_dir / 'train.jsonl'}",
                             f"data.val_manifest={pairs_dir / 'val.jsonl'}", f"train.output_dir={tmp_path / 'pre'}",
                             "train.epochs=2", "pretrain.visual_words_weight=1.0"])
    m = pretrain(cfg, progress=False)
    return {"step_losses": m["step_losses"],
            "history": [{k: v for k, v in h.items() if isinstance(v, float) and k != "lr"} for h in m["history"]]}


def _close(a, b, where: str) -> list[str]:
    if isinstance(a, dict):  # every recorded number must still be there and equal; new report keys may be added
        if not set(b) <= set(a):
            return [f"{where}: keys {sorted(set(b) - set(a))} are gone"]
        return [e for k in b for e in _close(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [e for i, (x, y) in enumerate(zip(a, b)) for e in _close(x, y, f"{where}[{i}]")]
    atol = METRIC_ATOL if where.split(".")[1:2] == ["test"] else 1e-7
    if not math.isclose(a, b, rel_tol=RTOL, abs_tol=atol):
        return [f"{where}: {a} (now) vs {b} (golden)"]
    return []


def check_golden(name: str, record: dict) -> None:
    """Compare a record with golden_losses.json[name] (GOLDEN_UPDATE=1: record it instead)."""
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("GOLDEN_UPDATE"):
        golden[name] = record
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert name in golden, f"no golden record for {name}; record with GOLDEN_UPDATE=1"
    errors = _close(record, golden[name], name)
    assert not errors, "\n".join(errors[:10])
