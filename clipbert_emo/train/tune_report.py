"""What a finished ``clipbert-emo tune`` worker writes into OUT, from the whole study (every worker's trials):

- ``trials.csv`` and ``trials.json``: one row per trial (number, state, value, parameters, epochs, folder, note);
- Optuna's figures as PNG (optimization history, parameter importances, parallel coordinates, the per-epoch
  values the pruner read), each where the study has what it needs;
- ``best.yaml``: the best trial as a config (``base:`` the tuned config, the fixed overrides and the trial's
  parameters as keys), which ``clipbert-emo finetune --config OUT/best.yaml`` runs as is. It is loaded back
  before it is kept and must give the trial's own config (but for the run folder and the test split).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..config import ConfigError, apply_overrides, load_config, resolve_config_path, resolve_preset_path, to_dict
from ..config.atomic import atomic_path, atomic_write_text
from ..config.renamed import upgrade_keys
from ..eval.report import format_table, write_json
from .tune_space import SearchParam, param_overrides

__all__ = ["trial_rows", "write_report", "write_best_config", "BEST_CONFIG"]

logger = logging.getLogger(__name__)

BEST_CONFIG = "best.yaml"
# Settings whose value is a file or folder: best.yaml pins them to the absolute paths the trials read, so it runs
# the same from any folder (the tuned config's relative paths are relative to where tune was started).
_PATH_KEYS = (("data", "root"), ("data", "train_manifest"), ("data", "val_manifest"), ("data", "test_manifest"),
              ("train", "init_checkpoint"), ("model", "backbone_weights"))


def trial_rows(study, params: Sequence[SearchParam]) -> list[dict]:
    """One row per trial, in trial order: number, state, value, each searched parameter (by key), best_epoch,
    epochs (validations reported), seconds, folder, note (why it was pruned or failed, what it retried)."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.user_attrs["retried_from"]: t.number for t in trials if "retried_from" in t.user_attrs}
    rows = []
    for t in trials:
        notes = [t.user_attrs["note"]] if t.user_attrs.get("note") else []
        if "retried_from" in t.user_attrs:
            notes.insert(0, f"retry of trial {t.user_attrs['retried_from']}")
        if t.number in retried_as:
            notes.append(f"{'' if notes else 'worker stopped; '}retried as trial {retried_as[t.number]}")
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     **{p.key: t.params.get(p.key) for p in params},
                     "best_epoch": t.user_attrs.get("best_epoch"), "epochs": len(t.intermediate_values),
                     "seconds": t.user_attrs.get("seconds"), "folder": t.user_attrs.get("run_dir"),
                     "note": "; ".join(notes)})
    return rows


def _shown(value: Any) -> Any:
    """A cell of the printed table: floats with four significant digits (a learning rate of 3e-5 is not 0.000)."""
    return f"{value:.4g}" if isinstance(value, float) else value


def format_trials(rows: list[dict], params: Sequence[SearchParam], metric: str) -> str:
    columns = ["number", "state", metric, *(p.key for p in params), "epochs", "note"]
    return format_table([{**{k: _shown(v) for k, v in r.items()}, metric: _shown(r["value"])} for r in rows],
                        columns)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["number", "state", "value"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_plots(study, out: Path) -> tuple[list[Path], dict[str, str]]:
    """Optuna's matplotlib figures as PNG in ``out``: (written files, {figure: why it was not drawn})."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as vm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = [k for k in {k for t in complete for k in t.params}
               if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
    wanted = {"optimization_history": (vm.plot_optimization_history, None if complete else "no complete trial"),
              "param_importances": (vm.plot_param_importances,
                                    None if len(complete) >= 2 and varying and
                                    len({t.value for t in complete}) > 1 else
                                    "needs two complete trials with different parameters and values"),
              "parallel_coordinate": (vm.plot_parallel_coordinate, None if complete else "no complete trial"),
              "intermediate_values": (vm.plot_intermediate_values,
                                      None if any(t.intermediate_values for t in study.get_trials(deepcopy=False))
                                      else "no trial reported an epoch")}
    import matplotlib.pyplot as plt

    written, skipped = [], {}
    for name, (plot, why) in wanted.items():
        path = out / f"{name}.png"
        if why:
            skipped[name] = why
            continue
        try:
            with warnings.catch_warnings():
                # Optuna marks these plots experimental, and matplotlib warns of the flat axis a single trial
                # draws: neither is news to the reader of the figure.
                warnings.simplefilter("ignore", ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 5)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format="png", bbox_inches="tight", dpi=100)
            plt.close(fig)
            written.append(path)
        except Exception as e:  # a figure is a convenience: the table and best.yaml matter more than a plot
            logger.warning("%s not drawn: %s", path, e)
            skipped[name] = f"{type(e).__name__}: {e}"
    return written, skipped


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def best_config_data(config: str | None, overrides: list[str], preset: str | None, params: dict,
                     output_dir: Path) -> tuple[dict, Path | None]:
    """(best.yaml's keys, its base file): the tuned config's base (one level: a tuned config that has its own
    ``base:`` passes that base on and its keys come along), then presets, fixed overrides and the trial's
    parameters as keys, the run folder ``output_dir`` and the data paths pinned absolute."""
    data: dict = {}
    base_file = None
    if config:
        path = resolve_config_path(config).resolve()
        own = upgrade_keys(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))
        if own.get("base"):
            base_file = (path.parent / own.pop("base")).resolve()
            data = own
        else:
            base_file = path
    for name in (n.strip() for n in (preset.split(",") if isinstance(preset, str) else preset or []) if n.strip()):
        preset_path = resolve_preset_path(name)
        data = _merge(data, upgrade_keys(yaml.safe_load(preset_path.read_text(encoding="utf-8")) or {},
                                         str(preset_path)))
    data = apply_overrides(data, [*overrides, *param_overrides(params), f"train.output_dir={output_dir.resolve()}"])
    loaded = load_config(config, overrides, preset=preset)
    for section, key in _PATH_KEYS:
        value = getattr(getattr(loaded, section), key)
        if value:
            data.setdefault(section, {})[key] = value
    return data, base_file


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{where}.{k}".strip("."))]
    return [] if a == b else [where]


def write_best_config(study, settings, metric: str, trial_config) -> Path | None:
    """``OUT/best.yaml`` for the study's best trial (None when no trial completed). ``trial_config(run_dir,
    params)`` is the config tune ran that trial with: best.yaml must load as the same config, but for the run
    folder (OUT/best) and the test split (which the trials leave out unless settings.test_split)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    out = settings.out_dir()
    path = out / BEST_CONFIG
    data, base_file = best_config_data(settings.config, settings.overrides, settings.preset, best.params,
                                       out / "best")
    header = (f"# The best trial of study {settings.study}: trial {best.number}, validation {metric} {best.value:.6g}"
              f"\n# (its folder: {best.user_attrs.get('run_dir')}). Written by clipbert-emo tune: the tuned config as "
              "base,\n# the fixed overrides and the trial's parameters over it. The same run again (same seed, same "
              "validation\n# numbers), now with the test split:\n#\n"
              f"#   clipbert-emo finetune --config {path}\n\n")
    body = ({"base": str(base_file)} if base_file else {}) | data
    atomic_write_text(path, header + yaml.safe_dump(body, sort_keys=False))
    again = to_dict(load_config(path))
    trial = to_dict(trial_config(Path(best.user_attrs.get("run_dir") or out), best.params))
    ignored = {"train.output_dir"} | (set() if settings.test_split else {"data.test_manifest"})
    wrong = [d for d in _differences(again, trial) if d not in ignored]
    if wrong:  # a bug in how best.yaml is put together: never leave a file that trains something else
        os.unlink(path)
        raise ConfigError(f"{path}: would not reproduce trial {best.number} ({', '.join(wrong)} differ); not written")
    return path


def write_report(study, settings, params: Sequence[SearchParam], metric: str, trial_config, storage: str) -> dict:
    """The table (printed by the caller), trials.csv/json, the figures and best.yaml; returns what was written.
    ``trial_config(run_dir, params)``: the config a trial ran with; ``storage``: the study's URL as shown."""
    from optuna.trial import TrialState

    out = settings.out_dir()
    rows = trial_rows(study, params)
    counts = {s.name: sum(r["state"] == s.name for r in rows) for s in TrialState if any(r["state"] == s.name
                                                                                          for r in rows)}
    _write_csv(out / "trials.csv", rows)
    best_path = write_best_config(study, settings, metric, trial_config)
    best = None
    if best_path is not None:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "folder": b.user_attrs.get("run_dir"),
                "config": str(best_path)}
    plots, skipped = write_plots(study, out)
    report = {"study": settings.study, "storage": storage, "metric": metric,
              "direction": study.direction.name.lower(), "space": {p.key: p.as_dict() for p in params},
              "counts": counts, "best": best, "trials": rows, "plots": [str(p) for p in plots],
              "plots_skipped": skipped}
    write_json(out / "trials.json", report)
    report["table"] = format_trials(rows, params, metric)
    report["files"] = [str(out / "trials.csv"), str(out / "trials.json"), *report["plots"],
                       *([str(best_path)] if best_path else [])]
    return report
