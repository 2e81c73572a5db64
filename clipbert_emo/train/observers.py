"""Observers of a training run: what tracking (TensorBoard, W&B, MLflow through accelerate) and hyperparameter
search (an Optuna trial's pruner) need from the engine, without the engine knowing either.

The engine calls every observer's hooks on every rank, in this order: ``on_start`` once the accelerator and the
model are ready, ``on_step`` after each optimizer step, ``on_epoch`` after each epoch's validation, ``on_finish``
with the run's metrics. An observer that writes (a tracker) does so on the main process only; one that stops the run
(a pruner) must raise the same exception on every rank, which it can because the epoch entry it reads is the same
everywhere (the validation metrics are gathered). An exception raised by a hook stops the run as any error does:
last/ keeps the state saved at the end of the epoch, so the run can be resumed.
"""

from __future__ import annotations

from typing import Any


class RunObserver:
    """Base class: every hook does nothing; override the ones you need."""

    def on_start(self, engine: Any) -> None:
        """The accelerator, model, optimizer and schedule are ready (``engine.accelerator``, ``engine.cfg``)."""

    def on_step(self, engine: Any, step: int, logs: dict[str, float]) -> None:
        """After optimizer step ``step`` (counted from 1 over the run): ``logs`` has ``loss``, ``lr``, the recipe's
        per-step numbers, ``samples_per_second`` and ``data_wait_share`` (of the time since the previous step)."""

    def on_epoch(self, engine: Any, epoch: int, entry: dict[str, Any]) -> None:
        """After epoch ``epoch``'s validation; ``entry`` is its history entry (as metrics.json's ``history``)."""

    def on_finish(self, engine: Any, metrics: dict[str, Any]) -> None:
        """The finished run's metrics (as metrics.json: the test metrics included)."""
