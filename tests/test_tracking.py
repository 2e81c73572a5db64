"""Experiment tracking (train.log_with, train/tracking.py): what accelerate's TensorBoard tracker writes is what
metrics.json holds, at the optimizer steps it happened at, also across a resume; tracking is off by default; a
tracker that is unknown or not installed is refused before anything trains.

W&B (offline) and MLflow (file store) are not installed in the test environment, so only their refusal is tested
here; docs/training.md says so."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from clipbert_emo.cli import build_parser, main
from clipbert_emo.cli.training import _run_overrides
from clipbert_emo.config import ConfigError, UserError, load_config
from clipbert_emo.config.choices import TRACKERS
from clipbert_emo.train import engine as loop
from clipbert_emo.train.finetune import finetune
from clipbert_emo.train.tracking import RUN_IDS, TRACKER_PACKAGES, flat_config, init_kwargs
from support import TINY_OVERRIDES, data_overrides


def _overrides(synthemo_dir, out, *more):
    return [*TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}", *more]


def _cfg(synthemo_dir, out, *more):
    return load_config(None, _overrides(synthemo_dir, out, *more))


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the run in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _approx(values):
    return pytest.approx(values, rel=1e-6)  # TensorBoard stores float32


def _check_logged_as_metrics_json(scalars, metrics):
    steps = list(range(1, metrics["steps"] + 1))
    assert [s for s, _ in scalars["train/loss"]] == steps  # each optimizer step once
    assert [v for _, v in scalars["train/loss"]] == _approx(metrics["step_losses"])
    for tag in ("train/lr", "train/samples_per_second", "train/data_wait_share"):
        assert [s for s, _ in scalars[tag]] == steps
    assert all(v > 0 for _, v in scalars["train/samples_per_second"])
    assert all(0 <= v <= 1 for _, v in scalars["train/data_wait_share"])
    for entry in metrics["history"]:
        val = {k.removeprefix("val_"): v for k, v in entry.items() if k.startswith("val_")}
        assert val  # the run validated
        for name, value in val.items():
            assert (entry["step"], _approx(value)) in scalars[f"val/{name}"], name
        assert (entry["step"], _approx(entry["train_loss"])) in scalars["epoch/train_loss"]
        assert (entry["step"], entry["epoch"]) in scalars["epoch/epoch"]
    assert len(scalars["val/loss"]) == len(metrics["history"])
    test = {f"test/{how}/{k}": v for how, rep in metrics["test"]["reports"].items() for k, v in rep.items()
            if isinstance(v, float)}
    assert test and {k for k in scalars if k.startswith("test/")} == set(test)
    for tag, value in test.items():
        assert scalars[tag] == [(metrics["steps"], _approx(value))]


def test_tracker_names_are_accelerates():
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    assert set(TRACKERS) == set(LOGGER_TYPE_TO_CLASS) == set(TRACKER_PACKAGES)


def test_log_with_is_off_by_default_and_takes_a_list_or_a_comma_string(tmp_path):
    assert load_config(None, []).train.log_with == []
    assert load_config(None, ["train.log_with=tensorboard, wandb"]).train.log_with == ["tensorboard", "wandb"]
    assert load_config(None, ["train.log_with=[tensorboard]"]).train.log_with == ["tensorboard"]
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  log_with: mlflow,tensorboard\n")
    assert load_config(str(config), []).train.log_with == ["mlflow", "tensorboard"]
    # --log-with of finetune and pretrain is that override, over a positional one
    for command in ("finetune", "pretrain"):
        args = build_parser().parse_args([command, "train.log_with=wandb", "--log-with", "tensorboard,mlflow"])
        assert load_config(None, _run_overrides(args)).train.log_with == ["tensorboard", "mlflow"]


@pytest.mark.parametrize("value, message", [
    ("tensorbord", "'tensorbord' is not a tracker accelerate has; expected names from tensorboard, wandb"),
    ("tensorboard,neptune", "'neptune' is not a tracker"),
    ("5", "expected tracker names, as a list or a comma string"),
    ("{a: 1}", "expected tracker names"),
])
def test_an_unknown_tracker_is_refused_at_config_time_naming_the_field(value, message):
    with pytest.raises(ConfigError, match="train.log_with") as e:
        load_config(None, [f"train.log_with={value}"])
    assert message in str(e.value)


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_is_refused_before_training(name, synthemo_dir, tmp_path, capsys):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    with pytest.raises(UserError, match=f"{name} is not installed.*pip install {name}"):
        finetune(_cfg(synthemo_dir, tmp_path / "lib", f"train.log_with=tensorboard,{name}"), progress=False)
    assert not (tmp_path / "lib").exists()  # refused before the run folder was made
    rc = main(["finetune", "-q", *_overrides(synthemo_dir, tmp_path / "cli"), "--log-with", name])
    assert rc == 2 and not (tmp_path / "cli").exists()
    assert f"error: train.log_with={name}: {name} is not installed" in capsys.readouterr().err


def test_tensorboard_logs_the_config_steps_validations_and_test_as_metrics_json_has_them(synthemo_dir, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(synthemo_dir, out, "train.epochs=2", "train.log_with=tensorboard")
    metrics = finetune(cfg, progress=False)
    run = out / cfg.name  # tracking_dir (default: output_dir) / tracking_project (default: the config's name)
    assert list(run.glob("events.out.tfevents.*"))
    _check_logged_as_metrics_json(_scalars(run), metrics)
    (hparams,) = run.glob("*/hparams.yml")  # the resolved config, one value per key
    logged = yaml.safe_load(hparams.read_text())
    assert logged == flat_config(cfg)
    assert logged["model.hidden_size"] == 32 and logged["train.log_with"] == '["tensorboard"]'
    assert not (out / RUN_IDS).exists()  # TensorBoard needs no run id to resume


def test_tracking_is_off_by_default(synthemo_dir, tmp_path):
    finetune(_cfg(synthemo_dir, tmp_path / "run", "train.max_steps=1"), progress=False)
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not list(tmp_path.rglob("*tfevents*")) and not list(tmp_path.rglob("hparams.yml"))


class Killed(Exception):
    pass


def test_a_resumed_run_logs_to_the_same_place_at_the_right_steps(synthemo_dir, tmp_path, monkeypatch):
    out, project = tmp_path / "run", tmp_path / "tb"
    more = ["train.save_every_steps=2", f"train.tracking_dir={project}", "train.tracking_project=emo"]

    def kill_at_3(step):
        if step == 3:  # logged, but last/ holds step 2: the resumed run trains and logs step 3 again
            raise Killed

    monkeypatch.setattr(loop, "_after_step", kill_at_3)
    with pytest.raises(Killed):
        finetune(_cfg(synthemo_dir, out, "train.log_with=tensorboard", *more), progress=False)
    assert [s for s, _ in _scalars(project / "emo")["train/loss"]] == [1, 2, 3]
    monkeypatch.setattr(loop, "_after_step", lambda step: None)
    assert main(["finetune", "-q", "--resume", "--log-with", "tensorboard", *_overrides(synthemo_dir, out, *more)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and len(list((project / "emo").glob("events.out.tfevents.*"))) == 2
    _check_logged_as_metrics_json(_scalars(project / "emo"), metrics)
    assert not list(out.glob("**/*tfevents*"))  # train.tracking_dir moved the logs out of the run folder


def test_wandb_and_mlflow_reopen_the_first_attempts_run():
    fresh = init_kwargs(["tensorboard", "wandb", "mlflow"], 0, {})
    assert set(fresh) == {"wandb"} and fresh["wandb"]["resume"] == "allow" and fresh["wandb"]["id"]
    assert init_kwargs(["wandb"], 0, {})["wandb"]["id"] != fresh["wandb"]["id"]  # a new run, a new id
    resumed = init_kwargs(["tensorboard", "wandb", "mlflow"], 6, {"wandb": "abc", "mlflow": "r1"})
    assert resumed == {"tensorboard": {"purge_step": 7}, "wandb": {"id": "abc", "resume": "allow"},
                       "mlflow": {"run_id": "r1"}}


def test_the_flat_config_holds_only_what_trackers_take():
    flat = flat_config(load_config(None, ["train.log_with=tensorboard"]))
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert flat["data.labels"] == json.dumps(load_config(None, []).data.labels)
    assert flat["optim.lr_cnn"] == 5e-5 and flat["data.use_video"] is True and flat["train.tracking_dir"] == ""


def test_under_two_processes_only_the_main_one_logs(synthemo_dir, tmp_path):
    from support.launch import run_ddp

    out = tmp_path / "ddp"
    proc = run_ddp(out, synthemo_dir, "--log-with", "tensorboard")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert len(list((out / "experiment").glob("events.out.tfevents.*"))) == 1  # one writer: rank 0's
    assert len(list(out.rglob("hparams.yml"))) == 1
    scalars = _scalars(out / "experiment")
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, metrics["steps"] + 1))
    assert [v for _, v in scalars["train/loss"]] == _approx(metrics["step_losses"])


def test_pretraining_logs_its_own_losses_and_held_out_accuracy(pairs_dir, tmp_path):
    out = tmp_path / "pre"
    assert main(["pretrain", "-q", "--log-with", "tensorboard", *TINY_OVERRIDES, "data.num_frames=1",
                 f"data.train_manifest={pairs_dir / 'train.jsonl'}", f"data.val_manifest={pairs_dir / 'val.jsonl'}",
                 f"train.output_dir={out}", "name=pre"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scalars = _scalars(out / "pre")
    assert [v for _, v in scalars["train/loss"]] == _approx(metrics["step_losses"])
    assert {"train/loss_mlm", "train/loss_itm"} <= set(scalars)
    (entry,) = metrics["history"]
    assert scalars["val/itm_accuracy"] == [(entry["step"], _approx(entry["val_itm_accuracy"]))]
    assert not any(tag.startswith("test/") for tag in scalars)  # pretraining has no test split


def test_a_config_built_in_code_is_checked_too(synthemo_dir, tmp_path):
    cfg = _cfg(synthemo_dir, tmp_path / "run")
    cfg.train.log_with = "tensorboard,neptune"  # set after loading: validation never saw it
    with pytest.raises(ConfigError, match="train.log_with: 'neptune' is not a tracker"):
        finetune(cfg, progress=False)
    assert not (tmp_path / "run").exists()
