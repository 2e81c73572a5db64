"""What a task kind is: everything that differs between single-label, multi-label, multitask, regression, ...

One :class:`Task` object per kind knows how to read its annotation from a manifest record, how to
batch it, the classifier's width, the training loss, the metrics report, the default selection metric
and how to present a prediction. Everything else (data, model, engine, evaluation, prediction) asks
the task object and never branches on the kind's name; a new kind is a new subclass passed to
:func:`clipbert_emo.tasks.register_task`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..config import DataConfig, ModelConfig, TrainConfig
from ..data.manifest import Manifest, Sample

# Validation metrics where lower is better; every other metric is maximised when choosing the best epoch.
LOWER_IS_BETTER = frozenset({"mae", "loss"})


class Recipe(str, Enum):
    """How a task kind is trained and scored. A task names one; the layers above map each to their code
    (train/finetune.py: the recipe the engine runs; eval/evaluate.py: how a checkpoint is scored)."""

    FINETUNE = "finetune"  # each video scored on its own against its annotation (train/finetune_recipe.py)
    RETRIEVAL = "retrieval"  # every video ranked for every text (train/retrieval.py, eval/retrieval.py)


class TaskLoss(nn.Module):
    """The training loss of aggregated logits, as a module so that its class weights follow the model's
    device. ``class_weights`` is a non-persistent buffer: derived from the training split at the start of
    every run, never part of a checkpoint."""

    def __init__(self, fn, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.fn = fn
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, labels, self.class_weights)


class TargetReader:
    """A task's manifest-field reader bound to one data config (what ``data.manifest.read_manifest`` calls)."""

    def __init__(self, task: "Task", data: DataConfig):
        self.task, self.data = task, data
        self.fields = task.manifest_fields(data)

    def __call__(self, row: dict, where: str, is_csv: bool, required: bool) -> dict:
        return self.task.read_target(row, where, is_csv, self.data, required)


class Task:
    name: str = ""
    description: str = ""  # what a prediction is, in a few words (the model card's task line)
    select_metric: str = ""  # validation metric that picks the best checkpoint unless train.select_metric says
    recipe: Recipe = Recipe.FINETUNE
    # The report's numbers, by name, in the order they are shown, where a report has them (() = every number it has):
    summary_metrics: tuple[str, ...] = ()  # a row of the evaluation summary (clipbert-emo evaluate, finetune)
    history_metrics: tuple[str, ...] = ()  # each epoch's validation numbers kept in the history, as val_<name>
    card_metrics: tuple[str, ...] = ()  # the test numbers on a checkpoint's model card
    # Every clip of a prediction has a probability for each of data.labels: a timeline of them can be drawn.
    clip_probabilities: bool = False

    # ---- data ----------------------------------------------------------------------------------
    def manifest_fields(self, data: DataConfig) -> tuple[str, ...]:
        """Manifest fields this task reads (the rest of a record is carried along in ``Sample.extra``)."""
        raise NotImplementedError

    def read_target(self, row: dict, where: str, is_csv: bool, data: DataConfig, required: bool) -> dict:
        """The ``Sample`` fields this record's annotation sets; raise ``ManifestError`` naming ``where``."""
        raise NotImplementedError

    def target_reader(self, data: DataConfig) -> TargetReader:
        return TargetReader(self, data)

    def target(self, sample: Sample) -> Any:
        """The annotation a dataset item carries (None = not annotated)."""
        raise NotImplementedError

    def collate(self, targets: list, data: DataConfig) -> torch.Tensor:
        """Targets of one batch -> the tensor the loss and the metrics take."""
        raise NotImplementedError

    def texts(self, sample: Sample, data: DataConfig) -> str | list[str]:
        """The text fused with the sample's clips: one string, or a list of P strings each scored against the
        same clips (the model's logits are then (B, P*K)). Default: the sample's ``text``."""
        return sample.text

    def prepare(self, data: DataConfig, train: Manifest) -> DataConfig:
        """The data config with what the training split decides filled in, before the model is built (an answer
        vocabulary becomes ``labels``); the recipe makes it the run's, which config.yaml and the checkpoint keep.
        ``data`` itself is left as it is. Default: ``data`` unchanged."""
        return data

    def stratify_key(self, sample: Sample) -> Any:
        """Group of a sample for stratified label fractions (data.train_fraction); one group by default."""
        return 0

    def class_counts(self, manifest: Manifest, data: DataConfig) -> torch.Tensor:
        raise ValueError(f"class counts need a single_label or multitask task, not {self.name}")

    def balance_labels(self, manifest: Manifest, data: DataConfig, balance_head: str) -> list:
        """One class per training sample, for the class_balanced sampler."""
        raise ValueError(f"train.sampler=class_balanced needs single_label or multitask data, not {self.name}")

    def class_weights(self, manifest: Manifest, data: DataConfig) -> torch.Tensor:
        """train.loss=weighted_ce: inverse-frequency weights from the training split."""
        from ..models.losses import class_weights_from_counts

        return class_weights_from_counts(self.class_counts(manifest, data).tolist())

    # ---- model -----------------------------------------------------------------------------------
    def num_outputs(self, data: DataConfig) -> int:
        """Width of the classifier's output."""
        raise NotImplementedError

    def build_head(self, model: ModelConfig, width: int) -> nn.Module | None:
        """The module from the pooled [CLS] to the ``width`` outputs; None = ClipBERT's classifier MLP."""
        return None

    def criterion(self, data: DataConfig, train: TrainConfig, class_weights: torch.Tensor | None = None) -> TaskLoss:
        raise NotImplementedError

    # ---- evaluation and prediction -----------------------------------------------------------------
    def report(self, logits: torch.Tensor, labels: torch.Tensor, data: DataConfig) -> dict:
        """Metrics of aggregated logits (S, K_out) against the collated labels."""
        raise NotImplementedError

    def lower_is_better(self, metric: str) -> bool:
        return metric in LOWER_IS_BETTER

    def summary(self, report: dict) -> dict:
        """The headline numbers of one report ({name: value}): what a row of the evaluation summary shows."""
        return pick_metrics(report, self.summary_metrics)

    def history(self, report: dict) -> dict:
        """The validation numbers an epoch's history entry keeps, without their val_ prefix."""
        return pick_metrics(report, self.history_metrics)

    def contrastive_targets(self, batch: dict) -> dict | None:
        """For model.contrastive_weight: ``positive`` (B,), which of each video's texts describes it, and
        optionally ``group`` (B,), the video each row comes from; None where the task kind has no such text."""
        return None

    def prediction(self, logits: torch.Tensor, clip_logits: torch.Tensor, spans: Sequence, data: DataConfig) -> dict:
        """A video's prediction as plain data: ``prediction``, optionally ``probabilities``, and ``clips`` (one
        entry per clip span). ``logits`` (K_out,), ``clip_logits`` (N, K_out)."""
        raise NotImplementedError


def pick_metrics(report: dict, names: Sequence[str]) -> dict:
    """``report``'s values for ``names`` that it has, in that order; no names = every number it has."""
    if not names:
        return {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: report[k] for k in names if k in report}


def softmax_probabilities(logits: torch.Tensor) -> np.ndarray:
    return logits.softmax(-1).numpy()
