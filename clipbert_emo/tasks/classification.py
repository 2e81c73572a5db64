"""Classification over ``data.labels``: one class per video (softmax) or any subset of them (sigmoid)."""

from __future__ import annotations

import torch

from ..data.manifest import ManifestError, parse_label
from .base import Task, TaskLoss, softmax_probabilities
from .metrics import classification_report, multilabel_report


def _label_index(data) -> dict:
    return {name: i for i, name in enumerate(data.labels)}


def _class_prediction(labels, probs, clip_probs, spans) -> dict:
    top = int(probs.argmax())
    return {
        "prediction": labels[top],
        "probabilities": {lab: float(p) for lab, p in zip(labels, probs)},
        "clips": [{"start": s, "end": e, "prediction": labels[int(cp.argmax())],
                   "probabilities": {lab: float(p) for lab, p in zip(labels, cp)}}
                  for (s, e), cp in zip(spans, clip_probs)],
    }


class SingleLabelTask(Task):
    """``label``: one of data.labels; softmax cross-entropy (ce | weighted_ce | focal)."""

    name = "single_label"
    description = "one emotion per video (softmax over the labels)"
    select_metric = "macro_f1"
    summary_metrics = ("accuracy", "unweighted_accuracy", "macro_f1", "weighted_f1")
    history_metrics = ("macro_f1", "weighted_f1", "accuracy")
    card_metrics = ("accuracy", "unweighted_accuracy", "macro_f1", "weighted_f1")
    clip_probabilities = True

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("label",)

    def read_target(self, row, where, is_csv, data, required) -> dict:
        raw = row.get("label")
        if raw in (None, ""):
            if required:
                raise ManifestError(f"{where}: missing field 'label'")
            return {}
        return {"label": parse_label(raw, _label_index(data), where)}

    def target(self, sample):
        return sample.label

    def collate(self, targets, data) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B,)

    def stratify_key(self, sample):
        return sample.label

    def class_counts(self, manifest, data) -> torch.Tensor:
        counts = torch.zeros(len(data.labels), dtype=torch.long)
        for s in manifest.samples:
            counts[s.label] += 1
        return counts

    def balance_labels(self, manifest, data, balance_head: str) -> list:
        return [s.label for s in manifest.samples]

    def num_outputs(self, data) -> int:
        return len(data.labels)

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        from ..models.losses import single_label_loss

        kind, gamma = train.loss, train.focal_gamma

        def loss(logits, labels, weights):
            return single_label_loss(logits.float(), labels, kind, weights if kind == "weighted_ce" else None, gamma)

        return TaskLoss(loss, class_weights)

    def report(self, logits, labels, data) -> dict:
        return classification_report(labels.numpy(), logits.argmax(-1).numpy(), list(data.labels)).to_dict()

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        return _class_prediction(list(data.labels), softmax_probabilities(logits), softmax_probabilities(clip_logits),
                                 spans)


class MultiLabelTask(Task):
    """``labels``: any subset of data.labels (a list, or "a;b" in a CSV); one sigmoid BCE per class."""

    name = "multilabel"
    description = "any subset of the labels per video (one sigmoid per label)"
    select_metric = "macro_f1"
    summary_metrics = ("macro_f1", "micro_f1", "subset_accuracy", "mean_weighted_accuracy")
    history_metrics = ("macro_f1", "micro_f1")
    card_metrics = ("macro_f1", "micro_f1", "subset_accuracy")
    clip_probabilities = True

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("labels",)

    def read_target(self, row, where, is_csv, data, required) -> dict:
        raw = row.get("labels")
        if raw is None:
            if required:
                raise ManifestError(f"{where}: missing field 'labels' (a list of class names)")
            return {}
        if isinstance(raw, str):  # CSV: "happy;sad"
            raw = [x for x in raw.replace(",", ";").split(";") if x.strip()]
        index = _label_index(data)
        return {"labels": [parse_label(x, index, where) for x in raw]}

    def target(self, sample):
        return sample.labels

    def collate(self, targets, data) -> torch.Tensor:
        multi_hot = torch.zeros(len(targets), len(data.labels))
        for row, idx in enumerate(targets):
            multi_hot[row, idx] = 1.0
        return multi_hot  # (B, K)

    def num_outputs(self, data) -> int:
        return len(data.labels)

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        from ..models.losses import multilabel_loss

        return TaskLoss(lambda logits, labels, weights: multilabel_loss(logits, labels), class_weights)

    def report(self, logits, labels, data) -> dict:
        return multilabel_report(labels.numpy(), torch.sigmoid(logits).numpy(), list(data.labels))

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        return _class_prediction(list(data.labels), torch.sigmoid(logits).numpy(), torch.sigmoid(clip_logits).numpy(),
                                 spans)
