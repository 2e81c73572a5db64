"""clipbert-emo tune (train/tune.py, tune_space.py, tune_report.py): a study of tiny fine-tuning runs writes its
table, plots and best.yaml; pruned trials are marked PRUNED; a killed or interrupted worker's trial is queued again
and continues its run; two worker processes share one SQLite study; best.yaml trains the best trial again to the
same validation value; a bad space file is refused naming the key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from clipbert_emo.cli import main
from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.train import engine as engine_module
from clipbert_emo.train.finetune import finetune
from clipbert_emo.train.tune import PruningObserver, TuneSettings, run_tune
from clipbert_emo.train.tune_space import load_space
from support import TINY_OVERRIDES, data_overrides

ROOT = Path(__file__).resolve().parents[1]
# The tiny model (its searched learning rate left out: a setting both searched and fixed is refused), scored by its
# validation loss: unlike macro-F1 on six videos it differs between two learning rates, so "the same value again"
# is a real check.
FIXED = [*(o for o in TINY_OVERRIDES if not o.startswith("optim.lr_transformer=")), "train.select_metric=loss",
         "train.threads=1"]
SPACE = {"optim.lr_transformer": {"type": "float", "low": 1.0e-3, "high": 3.0e-2, "log": True},
         "model.aggregation": {"type": "categorical", "choices": ["mean", "max", "lse"]}}


def _space(folder: Path, space: dict | str = SPACE) -> Path:
    path = folder / "space.yaml"
    path.write_text(space if isinstance(space, str) else yaml.safe_dump(space, sort_keys=False))
    return path


def _settings(folder: Path, synthemo_dir, trials: int, *more: str, **kw) -> TuneSettings:
    kw.setdefault("pruner", "none")
    overrides = [*FIXED, *data_overrides(synthemo_dir), *more]
    return TuneSettings(space=str(_space(folder)), study="s", trials=trials, out=str(folder / "out"),
                        storage=f"sqlite:///{folder / 'study.db'}", overrides=overrides, progress=False,
                        heartbeat_seconds=1, poll_seconds=0.5, seed=0, **kw)


def _trials(folder: Path) -> list:
    return optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}").get_trials()


class PruneTrials(optuna.pruners.BasePruner):
    """Prunes the trials it names at their first report: a pruner whose answer the test knows."""

    def __init__(self, numbers):
        self.numbers = set(numbers)

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers


@pytest.fixture(scope="module")
def study(synthemo_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    settings = _settings(folder, synthemo_dir, 4, "train.epochs=2")
    report = run_tune(settings, pruner=PruneTrials({1}))
    return folder, settings, report


def test_a_study_writes_the_table_the_plots_and_best_yaml(study):
    folder, settings, report = study
    out = folder / "out"
    states = [r["state"] for r in report["trials"]]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"]  # --trials counts complete + pruned
    pruned = report["trials"][1]
    assert pruned["epochs"] == 1 and "pruned after epoch 1" in pruned["note"]
    assert pruned["value"] is not None  # its last reported value, which the history plot shows
    for row in report["trials"]:
        assert Path(row["folder"]) == out / f"trial_{row['number']:04d}"
        assert (Path(row["folder"]) / "checkpoint").is_dir()
        assert not (Path(row["folder"]) / "last").exists()  # a finished trial is never resumed
        assert set(SPACE) <= set(row) and row["optim.lr_transformer"] is not None
    done = [r for r in report["trials"] if r["state"] == "COMPLETE"]
    for row in done:  # the value is the run's own best validation loss
        metrics = json.loads((Path(row["folder"]) / "metrics.json").read_text())
        assert row["value"] == metrics["best_val_score"] == min(h["val_loss"] for h in metrics["history"])
        assert "test" not in metrics  # the search never looks at the test split
    best = min(done, key=lambda r: r["value"])
    assert report["best"]["number"] == best["number"] and report["direction"] == "minimize"

    csv_lines = (out / "trials.csv").read_text().splitlines()
    assert csv_lines[0].startswith("number,state,value,optim.lr_transformer,model.aggregation")
    assert len(csv_lines) == 5
    saved = json.loads((out / "trials.json").read_text())
    assert saved["trials"] == json.loads(json.dumps(report["trials"])) and saved["metric"] == "loss"
    for name in ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "PRUNED" in report["table"] and "optim.lr_transformer" in report["table"]

    data = yaml.safe_load((out / "best.yaml").read_text())
    assert "base" not in data  # tuned from the built-in defaults: nothing to base it on
    assert data["optim"]["lr_transformer"] == best["optim.lr_transformer"]
    assert data["model"]["aggregation"] == best["model.aggregation"]
    assert data["train"]["output_dir"] == str((out / "best").resolve())


def test_best_yaml_trains_the_best_trial_again_to_the_same_value(study):
    folder, settings, report = study
    again = finetune(load_config(report["best"]["config"]), progress=False)
    assert again["best_val_score"] == report["best"]["value"]
    assert "test" in again  # the test split, which the trials left out, is scored now


def test_best_yaml_has_the_tuned_config_as_base_and_runs_from_the_command_line(tmp_path, synthemo_dir):
    # A shipped config with a base of its own (synthemo_10pct -> synthemo_cpu): best.yaml takes that base, since a
    # base may not have one, and the tuned config's own keys come along.
    from clipbert_emo.config import CONFIG_DIR
    from clipbert_emo.train.tune_report import best_config_data

    overrides = [*FIXED, *data_overrides(synthemo_dir), "train.epochs=1"]
    data, base = best_config_data("synthemo_10pct", overrides, None, {"model.aggregation": "max"}, tmp_path / "b")
    assert base == (CONFIG_DIR / "synthemo_cpu.yaml").resolve()
    assert data["data"]["train_fraction"] == 0.1 and data["model"]["aggregation"] == "max"
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({"base": str(base), **data}))
    expected = load_config("synthemo_10pct", [*overrides, "model.aggregation=max",
                                              f"train.output_dir={tmp_path / 'b'}"])
    assert load_config(path) == expected


def test_an_interrupted_trial_is_queued_again_and_continues_its_run(synthemo_dir, tmp_path, monkeypatch):
    settings = _settings(tmp_path, synthemo_dir, 1, "train.epochs=1", "train.save_every_steps=1")

    def interrupt(step):
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine_module, "_after_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_tune(settings)
    monkeypatch.undo()
    first, queued = _trials(tmp_path)
    assert first.state == TrialState.FAIL and first.user_attrs["note"] == "interrupted"
    assert queued.state == TrialState.WAITING and queued.params == first.params
    run_dir = Path(first.user_attrs["run_dir"])
    assert (run_dir / "last").is_dir()  # saved at step 2

    report = run_tune(settings)
    assert [r["state"] for r in report["trials"]] == ["FAIL", "COMPLETE"]
    assert report["trials"][1]["folder"] == str(run_dir)  # the retry ran in the interrupted trial's folder ...
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["resume"] is True  # ... continuing it
    assert "retried as trial 1" in report["trials"][0]["note"] and "retry of trial 0" in report["trials"][1]["note"]
    straight = finetune(load_config(None, [*settings.overrides, *[f"{k}={json.dumps(v)}" for k, v in
                                                                   first.params.items()],
                                           "data.test_manifest=", f"train.output_dir={tmp_path / 'straight'}"]),
                        progress=False)
    assert report["trials"][1]["value"] == straight["best_val_score"]


def _worker(folder: Path, synthemo_dir, trials: int, *more: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "clipbert_emo.cli", "tune", "-q", "--space", str(_space(folder)), "--study", "s",
           "--trials", str(trials), "--storage", f"sqlite:///{folder / 'study.db'}", "--out", str(folder / "out"),
           "--pruner", "none", "--heartbeat", "1", *FIXED, *data_overrides(synthemo_dir), *more]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_worker_s_trial_is_failed_queued_and_resumed(synthemo_dir, tmp_path):
    proc = _worker(tmp_path, synthemo_dir, 2, "train.epochs=2")
    state = tmp_path / "out" / "trial_0000" / "last" / "training_state.pt"
    deadline = time.time() + 900
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert state.exists(), proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGKILL)  # after epoch 1 of trial 0: it stays RUNNING in the database
    proc.wait()
    assert [t.state for t in _trials(tmp_path)] == [TrialState.RUNNING]

    report = run_tune(_settings(tmp_path, synthemo_dir, 2, "train.epochs=2"))
    rows = report["trials"]
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert rows[0]["note"] == "worker stopped; retried as trial 1"
    assert rows[1]["folder"] == rows[0]["folder"] and rows[1]["optim.lr_transformer"] == rows[0]["optim.lr_transformer"]
    run_dir = Path(rows[1]["folder"])
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["resume"] is True
    assert [h["epoch"] for h in json.loads((run_dir / "metrics.json").read_text())["history"]] == [1, 2]
    assert _trials(tmp_path)[1].intermediate_values.keys() == {1, 2}  # epoch 1 from the killed run, 2 its own


def test_two_workers_share_one_sqlite_study(synthemo_dir, tmp_path):
    workers = [_worker(tmp_path, synthemo_dir, 4, "train.epochs=1") for _ in range(2)]
    outputs = [w.communicate(timeout=1800) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    trials = _trials(tmp_path)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    # Two workers that count at the same instant may each start the last trial: never fewer, at most one more.
    assert 4 <= len(done) <= 5 and len(done) == len(trials)
    folders = [t.user_attrs["run_dir"] for t in done]
    assert len(set(folders)) == len(folders)
    assert all((Path(f) / "metrics.json").exists() for f in folders)
    assert {t.user_attrs["worker_pid"] for t in done} == {w.pid for w in workers}
    for stdout, _ in outputs:  # each worker's table is the whole study's
        assert stdout.count("COMPLETE") >= 4


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask here plays a worker, which runs the heartbeat
def test_running_trials_of_dead_or_silent_workers_are_failed_and_queued_again(tmp_path, monkeypatch):
    from clipbert_emo.train import tune

    storage = tune.open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_seconds=1)
    study = optuna.create_study(storage=storage, study_name="s")
    dist = {"model.aggregation": optuna.distributions.CategoricalDistribution(["mean", "max"])}
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = study.ask(dist)  # a worker of this machine whose process has ended
    for key, value in {**tune._worker_attrs(), "worker_pid": int(gone.stdout), "worker_started": ""}.items():
        dead.set_user_attr(key, value)
    alive = study.ask(dist)  # a live process of this machine (pytest's parent), heartbeat fresh
    for key, value in {**tune._worker_attrs(), "worker_pid": os.getppid(), "worker_started": ""}.items():
        alive.set_user_attr(key, value)
    storage.record_heartbeat(alive._trial_id)
    unclaimed = study.ask(dist)  # taken by a worker that died before it said who it was
    tune._recover_dead_workers(study, storage, heartbeat_seconds=1)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING,
                                                     TrialState.WAITING]
    assert study.get_trials()[3].params == dead.params and study.get_trials()[3].user_attrs["retried_from"] == 0

    class Later(tune.datetime):  # the unclaimed trial, seen long after it was taken
        @classmethod
        def now(cls, tz=None):
            return tune.datetime.fromtimestamp(time.time() + 3600)

    monkeypatch.setattr(tune, "datetime", Later)
    tune._recover_dead_workers(study, storage, heartbeat_seconds=1)
    states = [t.state for t in study.get_trials()]
    assert states[:3] == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]  # the live worker's trial stays
    assert study.get_trials()[-1].params == unclaimed.params and states[-1] == TrialState.WAITING


def test_a_trial_taken_over_after_a_missed_heartbeat_is_left_to_its_retry(synthemo_dir, tmp_path):
    from clipbert_emo.train import tune
    from clipbert_emo.train.observers import RunObserver

    class TakeOver(RunObserver):
        """What another worker does when this one's heartbeat looks stale: fail its trial and queue it again."""

        def on_epoch(self, engine, epoch, entry):
            study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
            running = [t for t in study.get_trials() if t.state == TrialState.RUNNING]
            if epoch == 1 and running and running[0].number == 0:
                study._storage.set_trial_state_values(running[0]._trial_id, TrialState.FAIL)
                tune._retry(study, study._storage.get_trial(running[0]._trial_id))

    report = run_tune(_settings(tmp_path, synthemo_dir, 1, "train.epochs=2"), observers=[TakeOver()])
    rows = report["trials"]
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]  # this worker told nothing about trial 0 after that
    assert rows[1]["folder"] == rows[0]["folder"]
    # The old worker stopped at its next report (after epoch 2, saved); the retry continued from there.
    run_dir = Path(rows[1]["folder"])
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["resume"] is True
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and rows[1]["value"] == metrics["best_val_score"]


def test_the_pruning_observer_stops_a_clearly_worse_trial():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for value in (0.8, 0.9):
        trial = study.ask()
        PruningObserver(trial, "val_macro_f1").on_epoch(None, 1, {"val_macro_f1": value})
        study.tell(trial, value)
    good, bad, last = study.ask(), study.ask(), study.ask()
    PruningObserver(good, "val_macro_f1").on_epoch(None, 1, {"val_macro_f1": 0.95})
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        PruningObserver(bad, "val_macro_f1").on_epoch(None, 1, {"val_macro_f1": 0.1})
    # A run at its last epoch is done: it is reported, not pruned (it ends COMPLETE with its best epoch's value).
    engine = SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(epochs=1)))
    PruningObserver(last, "val_macro_f1").on_epoch(engine, 1, {"val_macro_f1": 0.1})
    assert last.should_prune() and study.get_trials()[-1].intermediate_values == {1: 0.1}


@pytest.mark.parametrize("space, message", [
    ({"optim.lr": {"type": "float", "low": 1e-5, "high": 1e-3}},
     "optim.lr is not a config setting: optim has no key 'lr'"),
    ({"train.warmup_ratio": {"type": "float", "low": 0, "high": 0.3}}, "train.warmup_ratio is not a config setting"),
    ({"model": {"dropout": {"type": "float", "low": 0, "high": 0.3}}}, "model: write each searched setting as one"),
    ({"optim.lr_cnn": {"type": "float", "low": 1e-3, "high": 1e-5}}, "optim.lr_cnn: low (0.001) must be below high"),
    ({"optim.lr_cnn": {"type": "float", "low": 0, "high": 1e-3, "log": True}},
     "optim.lr_cnn: a log scale needs low > 0"),
    ({"optim.lr_cnn": {"type": "float", "lo": 0, "high": 1}}, "optim.lr_cnn: unknown field(s) lo"),
    ({"train.epochs": {"type": "float", "low": 1, "high": 3}}, "train.epochs: type float, but the setting takes int"),
    ({"model.aggregation": {"type": "categorical", "choices": ["mean", "median"]}},
     "model.aggregation: the config refuses 'median'"),
    ({"model.fusion": ["early", "face_expression"]}, "model.fusion: the config refuses 'face_expression'"),
    ({"data.num_clips_train": {"type": "int", "low": 0, "high": 4}}, "data.num_clips_train: the config refuses 0"),
    ({"train.output_dir": ["a", "b"]}, "train.output_dir is set by tune for every trial"),
    ({"model.pixel_mean": [[0.5, 0.5, 0.5]]}, "model.pixel_mean: a list setting"),
])
def test_a_bad_space_is_refused_naming_the_file_and_key(tmp_path, synthemo_dir, space, message):
    path = _space(tmp_path, space)
    with pytest.raises(ConfigError) as e:
        run_tune(TuneSettings(space=str(path), study="s", trials=1, out=str(tmp_path / "out"),
                              overrides=data_overrides(synthemo_dir), progress=False))
    assert str(path) in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before any study or trial


def test_the_command_line_refuses_a_bad_space_in_one_line(tmp_path, capsys):
    path = _space(tmp_path, "optim.lr: {type: float, low: 1.0e-5, high: 1.0e-3}\n")
    rc = main(["tune", "--space", str(path), "--trials", "2", "--study", "s", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{path}: optim.lr is not a config setting" in err and "Traceback" not in err
    assert load_space(ROOT / "configs" / "tune" / "space_synthemo.yaml")  # the shipped example is a valid space
