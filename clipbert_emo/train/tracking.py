"""Experiment tracking (train.log_with): accelerate's own trackers (TensorBoard, W&B, MLflow, ...), fed by a run
observer.

The engine adds a :class:`TrackingObserver` when ``train.log_with`` names trackers, and ``make_accelerator`` hands
accelerate the names and the tracking folder. What is logged, under which names (docs/scaling.md lists it too):

- at the start: the resolved config, flattened to ``section.key`` values (hyperparameters; lists as JSON text);
- after each optimizer step ``step``: ``train/loss``, ``train/lr``, ``train/<name>`` for each of the recipe's per-step
  numbers (``loss_visual_aux``, ``loss_itc``, ``loss_mlm``, ...), ``train/samples_per_second`` and
  ``train/data_wait_share``;
- after each epoch's validation, at the optimizer step the epoch ended on: ``val/<metric>`` for each ``val_<metric>``
  of the history entry, ``epoch/<key>`` for its other numbers (``epoch``, ``lr``, the epoch's mean ``train_loss``);
- at the end, at the last step: ``test/<aggregation>/<metric>`` for every number of the test reports.

accelerate starts the trackers and logs on the main process only. A resumed run (train.resume) logs to the same
place at the same steps: TensorBoard's folder does not depend on the attempt, and the events the killed run wrote
after its last save are purged (SummaryWriter's ``purge_step``), so the resumed run's numbers replace them; W&B and
MLflow reopen the run whose id the first attempt kept in ``output_dir/tracking.json``.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from ..config import ConfigError, ExperimentConfig, UserError, to_dict, tracker_names
from ..eval.report import write_json
from .observers import RunObserver

logger = logging.getLogger(__name__)

# The pip package each tracker needs; accelerate skips a tracker whose package is missing without an error, so a run
# would train without the tracking it was asked for.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet-ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
                    "trackio": "trackio"}
# In output_dir: the run ids of the trackers that can reopen a run (W&B, MLflow), for train.resume.
RUN_IDS = "tracking.json"


def tracking_dir(cfg: ExperimentConfig) -> Path:
    """Where file-writing trackers keep their logs: train.tracking_dir, else the run's output_dir."""
    return Path(cfg.train.tracking_dir or cfg.train.output_dir)


def tracking_project(cfg: ExperimentConfig) -> str:
    return cfg.train.tracking_project or cfg.name


def check_trackers_installed(names: list[str]) -> None:
    """UserError naming the package to install for each tracker accelerate cannot start here."""
    from accelerate.tracking import get_available_trackers

    unknown = [n for n in names if n not in TRACKER_PACKAGES]  # a config built in code, never validated
    if unknown:
        raise ConfigError(f"train.log_with: {', '.join(map(repr, unknown))} is not a tracker accelerate has; "
                          f"expected names from {', '.join(TRACKER_PACKAGES)}")
    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n not in available]
    if missing:
        packages = " ".join(TRACKER_PACKAGES.get(n, n) for n in missing)
        one = len(missing) == 1
        raise UserError(f"train.log_with={','.join(names)}: {', '.join(missing)} {'is' if one else 'are'} not "
                        f"installed in this environment; install {'it' if one else 'them'} (pip install {packages}) "
                        f"or leave {'it' if one else 'them'} out of train.log_with (--log-with)")


def tracking_observers(cfg: ExperimentConfig) -> list[RunObserver]:
    """The tracking observer when train.log_with names trackers (checked to be installed: before any training),
    else none."""
    names = tracker_names(cfg.train.log_with)
    if not names:
        return []
    check_trackers_installed(names)
    return [TrackingObserver(names)]


def flat_config(cfg: ExperimentConfig) -> dict[str, bool | int | float | str]:
    """The config as ``section.key`` -> value: trackers take scalars and strings as hyperparameters, not nested
    mappings or lists (those become JSON text)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        else:
            out[prefix] = json.dumps(value)

    walk("", to_dict(cfg))
    return out


def numbers(prefix: str, value: Any) -> dict[str, float]:
    """Every number inside ``value`` (nested mappings joined with ``/``), under ``prefix``; lists, text and
    true/false are left out (a confusion matrix, label names)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: value}
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in numbers(f"{prefix}/{key}", sub).items()}
    return {}


def epoch_values(entry: dict) -> dict[str, float]:
    """A history entry's numbers: ``val_<metric>`` as ``val/<metric>``, the others as ``epoch/<key>`` (but its step,
    which they are logged at)."""
    out: dict[str, float] = {}
    for key, value in entry.items():
        if key == "step":
            continue
        name = "val/" + key.removeprefix("val_") if key.startswith("val_") else f"epoch/{key}"
        out.update(numbers(name, value))
    return out


def init_kwargs(names: list[str], start_step: int, saved_ids: dict) -> dict[str, dict]:
    """accelerate's per-tracker start arguments: where a resumed run (``start_step`` > 0) continues."""
    kwargs: dict[str, dict] = {}
    if "tensorboard" in names and start_step > 0:
        # TensorBoard hides what the killed attempt logged from this step on: the resumed run logs it again.
        kwargs["tensorboard"] = {"purge_step": start_step + 1}
    if "wandb" in names:
        # Our id, not W&B's, so that it is known (and kept) before the run starts; "allow" reopens it on resume.
        # W&B ignores steps below the last one it recorded, which a resumed run logs again with the same values
        # (the resume is exact), so nothing is lost.
        kwargs["wandb"] = {"id": saved_ids.get("wandb") or uuid.uuid4().hex[:16], "resume": "allow"}
    if "mlflow" in names and saved_ids.get("mlflow"):
        kwargs["mlflow"] = {"run_id": saved_ids["mlflow"]}
    return kwargs


class TrackingObserver(RunObserver):
    """Logs a run to accelerate's trackers (``engine.accelerator`` was made with ``log_with``, see the module
    docstring for the names). Every call is safe on every rank: accelerate acts on the main process only."""

    def __init__(self, names: list[str]):
        self.names = list(names)

    def on_start(self, engine) -> None:
        cfg, accelerator = engine.cfg, engine.accelerator
        saved = engine.out_dir / RUN_IDS
        ids = json.loads(saved.read_text()) if cfg.train.resume and saved.is_file() else {}
        kwargs = init_kwargs(self.names, engine.state.step, ids)
        accelerator.init_trackers(tracking_project(cfg), config=flat_config(cfg), init_kwargs=kwargs)
        if not accelerator.is_main_process:
            return
        ids = {}
        if "wandb" in kwargs:
            ids["wandb"] = kwargs["wandb"]["id"]
        if "mlflow" in self.names:
            ids["mlflow"] = accelerator.get_tracker("mlflow", unwrap=True).info.run_id
        if ids:
            write_json(saved, ids)
        if "tensorboard" in self.names:
            logger.info("TensorBoard logs: %s", tracking_dir(cfg) / tracking_project(cfg))

    def on_step(self, engine, step: int, logs: dict[str, float]) -> None:
        engine.accelerator.log({f"train/{key}": value for key, value in logs.items()}, step=step)

    def on_epoch(self, engine, epoch: int, entry: dict[str, Any]) -> None:
        engine.accelerator.log(epoch_values(entry), step=entry["step"])

    def on_finish(self, engine, metrics: dict[str, Any]) -> None:
        # The engine's end_training (after every observer) closes the trackers.
        if "test" in metrics:
            engine.accelerator.log(numbers("test", metrics["test"]["reports"]), step=metrics["steps"])
