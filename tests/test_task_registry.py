"""A task kind defined here, outside the library, trains, evaluates and predicts end to end once registered:
the only branch on the task kind is the registry lookup (clipbert_emo/tasks/)."""

import json

import torch

from clipbert_emo.config import load_config
from clipbert_emo.data.manifest import ManifestError
from clipbert_emo.tasks import Task, TaskLoss, get_task, register_task
from support import TINY_OVERRIDES, rewrite_manifest

POSITIVE = {"happy", "surprised"}


class Valence(Task):
    """Toy kind: is the expression pleasant? Read from a manifest field ``pleasant`` (true/false); one logit,
    sigmoid BCE, reported as accuracy and a balanced accuracy to select on."""

    name = "toy_valence"
    select_metric = "balanced_accuracy"

    def manifest_fields(self, data):
        return ("pleasant",)

    def read_target(self, row, where, is_csv, data, required):
        value = row.get("pleasant")
        if not isinstance(value, bool):
            if required:
                raise ManifestError(f"{where}: field 'pleasant' must be true or false, got {value!r}")
            return {}
        return {"target": float(value)}

    def target(self, sample):
        return sample.target

    def collate(self, targets, data):
        return torch.tensor(targets, dtype=torch.float32)  # (B,)

    def num_outputs(self, data):
        return 1

    def criterion(self, data, train, class_weights=None):
        return TaskLoss(lambda logits, labels, w: torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, 0].float(), labels.float()))

    def report(self, logits, labels, data):
        pred = (logits[:, 0] > 0).float()
        tpr = float(((pred == 1) & (labels == 1)).sum() / (labels == 1).sum().clamp_min(1))
        tnr = float(((pred == 0) & (labels == 0)).sum() / (labels == 0).sum().clamp_min(1))
        return {"accuracy": float((pred == labels).float().mean()), "balanced_accuracy": (tpr + tnr) / 2}

    def prediction(self, logits, clip_logits, spans, data):
        return {"prediction": "pleasant" if float(logits[0]) > 0 else "unpleasant",
                "probabilities": {"pleasant": float(torch.sigmoid(logits[0]))},
                "clips": [{"start": s, "end": e} for s, e in spans]}


def _pleasant(i, row):
    row["pleasant"] = row.pop("label") in POSITIVE
    return row


def test_a_task_kind_defined_outside_the_library_runs_end_to_end(synthemo_dir, tmp_path):
    from clipbert_emo.eval.evaluate import evaluate
    from clipbert_emo.predict import Predictor
    from clipbert_emo.train.finetune import finetune

    register_task(Valence())
    assert isinstance(get_task("toy_valence"), Valence)
    splits = {s: rewrite_manifest(synthemo_dir / f"{s}.jsonl", tmp_path / f"{s}.jsonl", _pleasant) for s in ("train", "val", "test")}
    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=toy_valence", f"data.train_manifest={splits['train']}",
                             f"data.val_manifest={splits['val']}", f"data.test_manifest={splits['test']}",
                             f"train.output_dir={tmp_path / 'run'}", "train.epochs=2"])
    m = finetune(cfg, progress=False)

    assert m["select_metric"] == "balanced_accuracy"
    assert [h["epoch"] for h in m["history"]] == [1, 2] and all(torch.isfinite(torch.tensor(m["step_losses"])))
    assert set(m["test"]["reports"]) == {"mean", "max", "lse"}
    assert 0.0 <= m["test"]["reports"]["lse"]["balanced_accuracy"] <= 1.0
    meta = json.loads((tmp_path / "run" / "checkpoint" / "meta.json").read_text())
    assert meta["num_labels"] == 1 and meta["select_metric"] == "balanced_accuracy"

    # The checkpoint reloads through the same registry: evaluation and prediction use the task's own report.
    res = evaluate(tmp_path / "run" / "checkpoint", str(splits["test"]), num_clips=2, progress=False)
    assert res["num_samples"] == 6 and "balanced_accuracy" in res["reports"]["lse"]
    out = Predictor(tmp_path / "run" / "checkpoint")(synthemo_dir / "videos" / "test" / "000000.mp4", text="hi",
                                                     num_clips=2)
    assert out["prediction"] in ("pleasant", "unpleasant") and len(out["clips"]) == 2


def test_an_unregistered_task_kind_is_a_config_error():
    import pytest

    from clipbert_emo.config import ConfigError

    with pytest.raises(ConfigError, match="data.task=.nope."):
        load_config(None, ["data.task=nope"])
    with pytest.raises(ConfigError, match="data.task='nope'"):
        get_task("nope")
