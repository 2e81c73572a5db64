"""Multitask heads: one softmax over data.labels for each of data.heads (e.g. DAiSEE's four states x four levels)."""

from __future__ import annotations

import torch

from ..config import ConfigError
from ..data.manifest import parse_task_labels
from .base import Task, TaskLoss
from .metrics import multitask_report


class MultitaskTask(Task):
    """``task_labels``: {head: class name} (a CSV has one column per head); a head left out = -1, not annotated."""

    name = "multitask"
    description = "several labelled heads per video, each a softmax over its own classes"
    select_metric = "mean_macro_f1"
    summary_metrics = ("mean_accuracy", "mean_macro_f1")
    history_metrics = ("mean_macro_f1", "mean_accuracy")
    card_metrics = ("mean_accuracy", "mean_macro_f1")

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("task_labels", *data.heads)

    def read_target(self, row, where, is_csv, data, required) -> dict:
        index = {name: i for i, name in enumerate(data.labels)}
        task_labels = parse_task_labels(row, data.heads, index, where, is_csv, required)
        return {} if task_labels is None else {"task_labels": task_labels}

    def target(self, sample):
        return sample.task_labels

    def collate(self, targets, data) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B, H)

    def class_counts(self, manifest, data) -> torch.Tensor:
        """(H, K): per head, how many training samples carry each class (-1 = unannotated, not counted)."""
        counts = torch.zeros(len(data.heads), len(data.labels), dtype=torch.long)
        for s in manifest.samples:
            for h, c in enumerate(s.task_labels or []):
                if c >= 0:
                    counts[h, c] += 1
        return counts

    def class_weights(self, manifest, data) -> torch.Tensor:
        from ..models.losses import class_weights_from_counts

        counts = self.class_counts(manifest, data)
        empty = [h for h, c in zip(data.heads, counts) if int(c.sum()) == 0]
        if empty:
            raise ValueError(f"train.loss=weighted_ce: head(s) {', '.join(empty)} have no annotated sample in "
                             "the training split; drop them from data.heads or use train.loss=ce")
        return torch.stack([class_weights_from_counts(c.tolist()) for c in counts])  # (H, K)

    def balance_labels(self, manifest, data, balance_head: str) -> list:
        if balance_head not in data.heads:
            raise ConfigError(f"train.sampler=class_balanced with a multitask model needs train.balance_head, one "
                              f"of {', '.join(data.heads)} (got {balance_head!r})")
        h = data.heads.index(balance_head)
        return [s.task_labels[h] for s in manifest.samples]

    def num_outputs(self, data) -> int:
        return len(data.labels) * len(data.heads)

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        from ..models.losses import multitask_loss

        kind, gamma, num_heads = train.loss, train.focal_gamma, len(data.heads)

        def loss(logits, labels, weights):
            return multitask_loss(logits.float(), labels, num_heads, kind, weights if kind == "weighted_ce" else None,
                                  gamma)

        return TaskLoss(loss, class_weights)

    def _per_head(self, logits: torch.Tensor, data) -> torch.Tensor:
        return logits.reshape(*logits.shape[:-1], len(data.heads), len(data.labels))  # (..., H*K) -> (..., H, K)

    def report(self, logits, labels, data) -> dict:
        pred = self._per_head(logits, data).argmax(-1)  # (S, H*K) -> (S, H, K) -> (S, H)
        return multitask_report(labels.numpy(), pred.numpy(), list(data.heads), list(data.labels))

    def summary(self, report: dict) -> dict:
        """The means over heads, then each head's accuracy and macro-F1 (DAiSEE's four states)."""
        row = super().summary(report)
        for head, head_rep in report.get("heads", {}).items():
            row[f"{head}_acc"] = head_rep["accuracy"]
            row[f"{head}_f1"] = head_rep["macro_f1"]
        return row

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        labels = list(data.labels)
        per_head = self._per_head(logits, data).softmax(-1)  # (H*K,) -> (H, K)
        return {"prediction": {h: labels[int(p.argmax())] for h, p in zip(data.heads, per_head)},
                "probabilities": {h: {lab: float(v) for lab, v in zip(labels, p)} for h, p in zip(data.heads, per_head)},
                "clips": [{"start": s, "end": e} for s, e in spans]}
