"""Regression: one real number per video (e.g. sentiment in [-3, 3]), an L1 loss, the MOSI/SIMS metrics."""

from __future__ import annotations

import torch

from ..data.manifest import parse_target
from .base import Task, TaskLoss
from .metrics import regression_report


class RegressionTask(Task):
    """``target``: a finite number; the classifier has one output."""

    name = "regression"
    description = "a real-valued score per video (for example sentiment intensity)"
    select_metric = "mae"
    # Each benchmark's headline numbers: both Acc-2 conventions (with and without zeros), MOSI's Acc-5/7, SIMS' Acc-3/5.
    summary_metrics = ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3", "acc5", "acc7")
    history_metrics = ("mae", "corr", "acc2", "acc7")
    card_metrics = ("mae", "corr", "acc2_has0", "acc2_non0", "acc7")

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("target",)

    def read_target(self, row, where, is_csv, data, required) -> dict:
        value = parse_target(row.get("target"), where, required)
        return {} if value is None else {"target": value}

    def target(self, sample):
        return sample.target

    def collate(self, targets, data) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.float32)  # (B,)

    def num_outputs(self, data) -> int:
        return 1

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        from ..models.losses import regression_loss

        return TaskLoss(lambda logits, labels, weights: regression_loss(logits[:, 0].float(), labels.float()))

    def report(self, logits, labels, data) -> dict:
        # CH-SIMS is annotated on [-1, 1] and reported with its own class intervals (acc3/acc5).
        return regression_report(labels.numpy(), logits[:, 0].numpy(), scale="sims" if data.format == "sims" else "mosi")

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        return {"prediction": float(logits[0]),
                "clips": [{"start": s, "end": e, "prediction": float(v)} for (s, e), v in zip(spans, clip_logits[:, 0])]}
