"""Run observers (train/observers.py): the engine calls each hook when it says, with the numbers it says, and an
observer changes nothing the run computes."""

from __future__ import annotations

import pytest

from clipbert_emo.config import load_config
from clipbert_emo.train.finetune import finetune
from clipbert_emo.train.observers import RunObserver
from support import TINY_OVERRIDES


class Recorder(RunObserver):
    def __init__(self):
        self.calls = []

    def on_start(self, engine):
        self.calls.append(("start", engine.accelerator.num_processes))

    def on_step(self, engine, step, logs):
        self.calls.append(("step", step, dict(logs)))

    def on_epoch(self, engine, epoch, entry):
        self.calls.append(("epoch", epoch, dict(entry)))

    def on_finish(self, engine, metrics):
        self.calls.append(("finish", metrics["steps"]))


class StopAfterFirstEpoch(RunObserver):
    def on_epoch(self, engine, epoch, entry):
        raise KeyboardInterrupt


def _cfg(synthemo_dir, out, *more):
    return load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={synthemo_dir / 'train.jsonl'}",
                              f"data.val_manifest={synthemo_dir / 'val.jsonl'}",
                              f"data.test_manifest={synthemo_dir / 'test.jsonl'}", f"train.output_dir={out}",
                              "train.epochs=2", *more])


def test_hooks_fire_in_order_with_the_runs_numbers_and_change_nothing(synthemo_dir, tmp_path):
    plain = finetune(_cfg(synthemo_dir, tmp_path / "plain"), progress=False)
    recorder = Recorder()
    observed = finetune(_cfg(synthemo_dir, tmp_path / "observed"), progress=False, observers=[recorder])
    assert observed["step_losses"] == plain["step_losses"]
    assert [h["val_loss"] for h in observed["history"]] == [h["val_loss"] for h in plain["history"]]

    kinds = [c[0] for c in recorder.calls]
    steps = [c for c in recorder.calls if c[0] == "step"]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("epoch") == 2
    assert [c[1] for c in steps] == list(range(1, observed["steps"] + 1))
    assert [c[2]["loss"] for c in steps] == pytest.approx(observed["step_losses"])
    for _, _, logs in steps:
        assert logs["samples_per_second"] > 0 and 0.0 <= logs["data_wait_share"] <= 1.0 and logs["lr"] >= 0
    epochs = [c for c in recorder.calls if c[0] == "epoch"]
    assert [c[2] for c in epochs] == observed["history"]  # each validation's entry, as metrics.json's history
    # the epoch hook comes after that epoch's last step
    assert kinds.index("epoch") == kinds.index("step") + observed["history"][0]["step"]


def test_an_observer_that_stops_the_run_leaves_it_resumable(synthemo_dir, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(synthemo_dir, tmp_path / "run"), progress=False, observers=[StopAfterFirstEpoch()])
    assert (tmp_path / "run" / "checkpoint").is_dir() and (tmp_path / "run" / "last").is_dir()
    resumed = finetune(_cfg(synthemo_dir, tmp_path / "run", "train.resume=true"), progress=False)
    straight = finetune(_cfg(synthemo_dir, tmp_path / "straight"), progress=False)
    assert resumed["step_losses"] == straight["step_losses"]
