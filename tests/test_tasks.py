"""Fine-tuning beyond one softmax: regression, multitask heads, class imbalance, label fractions."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.config import load_config
from clipbert_emo.train.finetune import finetune
from support import TINY_OVERRIDES, rewrite_manifest

LEVELS = ["0", "1", "2", "3"]
HEADS = ["boredom", "engagement"]


def _regression_row(i, row):
    row.pop("label")
    row["target"] = round(-3 + 6 * ((i * 7) % 13) / 12, 2)  # spread over [-3, 3]
    return row


def _multitask_row(i, row):
    row.pop("label")
    row["task_labels"] = {"boredom": LEVELS[i % 4], "engagement": LEVELS[(i // 2) % 4]}
    if i == 1:
        del row["task_labels"]["engagement"]  # not annotated for one head
    return row


def _cfg(train, val, out, *extra):
    return load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={train}", f"data.val_manifest={val}",
                              f"train.output_dir={out}", *extra])


def test_regression_finetune_reports_mosi_metrics(synthemo_dir, tmp_path):
    tr = rewrite_manifest(synthemo_dir / "train.jsonl", tmp_path / "train.jsonl", _regression_row)
    va = rewrite_manifest(synthemo_dir / "val.jsonl", tmp_path / "val.jsonl", _regression_row)
    m = finetune(_cfg(tr, va, tmp_path / "run", "data.task=regression", "model.aggregation=mean",
                      f"data.test_manifest={va}", "train.epochs=2"), progress=False)
    assert m["select_metric"] == "mae"
    maes = [h["val_mae"] for h in m["history"]]
    assert m["best_val_score"] == min(maes), "mae is minimised"
    assert m["best_epoch"] == 1 + int(np.argmin(maes))
    rep = m["test"]["reports"]["mean"]
    for key in ("mae", "corr", "acc2", "f1", "acc7", "acc2_has0"):
        assert np.isfinite(rep[key])
    # Every test metric comes from the one checkpoint chosen on validation MAE.
    assert (tmp_path / "run" / "predicted_vs_true.png").stat().st_size > 0
    meta = json.loads((tmp_path / "run" / "checkpoint" / "meta.json").read_text())
    assert meta["epoch"] == m["best_epoch"] and meta["val_mae"] == m["best_val_score"]


def test_multitask_heads_and_unannotated_heads(synthemo_dir, tmp_path):
    tr = rewrite_manifest(synthemo_dir / "train.jsonl", tmp_path / "train.jsonl", _multitask_row)
    va = rewrite_manifest(synthemo_dir / "val.jsonl", tmp_path / "val.jsonl", _multitask_row)
    cfg = _cfg(tr, va, tmp_path / "run", "data.task=multitask", f"data.labels={LEVELS}", f"data.heads={HEADS}",
               "train.loss=weighted_ce", f"data.test_manifest={va}")
    m = finetune(cfg, progress=False)
    rep = m["test"]["reports"]["lse"]
    assert set(rep["heads"]) == set(HEADS)
    assert rep["heads"]["engagement"]["confusion"] and sum(map(sum, rep["heads"]["engagement"]["confusion"])) == 5
    assert sum(map(sum, rep["heads"]["boredom"]["confusion"])) == 6, "the unannotated head is left out per head"
    assert np.isfinite(m["history"][0]["val_mean_macro_f1"])
    for head in HEADS:  # one confusion matrix per head, none for the (absent) single softmax
        assert (tmp_path / "run" / f"confusion_matrix_{head}.png").stat().st_size > 0
    assert not (tmp_path / "run" / "confusion_matrix.png").exists()
    from clipbert_emo.predict import Predictor

    out = Predictor(tmp_path / "run" / "checkpoint")(synthemo_dir / "videos" / "val" / "000000.mp4", num_clips=2)
    assert set(out["prediction"]) == set(HEADS) and all(v in LEVELS for v in out["prediction"].values())


def test_weighted_ce_uses_training_split_counts(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.models.losses import class_weights_from_counts
    from clipbert_emo.tasks import SingleLabelTask

    seen = {}
    real = SingleLabelTask.criterion

    def spy(self, data, train, class_weights=None):
        seen.update(kind=train.loss, weights=class_weights)
        return real(self, data, train, class_weights)

    monkeypatch.setattr(SingleLabelTask, "criterion", spy)
    cfg = _cfg(synthemo_dir / "train.jsonl", synthemo_dir / "val.jsonl", tmp_path / "run",
               "train.loss=weighted_ce", "train.sampler=class_balanced", "train.max_steps=2")
    finetune(cfg, progress=False)
    labels = [json.loads(line)["label"] for line in open(synthemo_dir / "train.jsonl")]
    counts = [labels.count(name) for name in cfg.data.labels]
    assert seen["kind"] == "weighted_ce"
    assert torch.allclose(seen["weights"], class_weights_from_counts(counts))


def test_train_fraction_is_stratified_and_fixed_by_seed(synthemo_dir):
    from clipbert_emo.data.loading import stratified_subset
    from clipbert_emo.tasks import get_task, load_split

    cfg = load_config(None, [f"data.train_manifest={synthemo_dir / 'train.jsonl'}"])
    task = get_task("single_label")
    full = load_split(cfg.data, "train")
    a = stratified_subset(full, 0.5, seed=1, key=task.stratify_key)
    b = stratified_subset(full, 0.5, seed=1, key=task.stratify_key)
    c = stratified_subset(full, 0.5, seed=2, key=task.stratify_key)
    assert [s.source for s in a.samples] == [s.source for s in b.samples]
    assert [s.source for s in a.samples] != [s.source for s in c.samples]
    for k in range(6):
        n_full = sum(s.label == k for s in full.samples)
        n_sub = sum(s.label == k for s in a.samples)
        assert n_sub == max(1, round(n_full * 0.5))


def test_unknown_select_metric_is_a_clear_error(synthemo_dir, tmp_path):
    cfg = _cfg(synthemo_dir / "train.jsonl", synthemo_dir / "val.jsonl", tmp_path / "run",
               "train.select_metric=auroc", "train.max_steps=1")
    with pytest.raises(ValueError, match="select_metric=auroc"):
        finetune(cfg, progress=False)
