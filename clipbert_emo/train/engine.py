"""The training engine: one loop for every recipe (fine-tuning, pretraining, and the task kinds to come).

It owns what every run needs to stay correct under any process layout: the accelerator, seeding,
the step loop (gradient accumulation, clipping, the schedule stepped once per optimizer step, fp16
overflow skips), the non-finite guard, the periodic and per-epoch resumable state in
``output_dir/last``, exact resume, best-checkpoint selection and teardown.

A recipe says what is specific to it, in four parts (as torchtune's recipes do):

- ``setup(engine, resuming)``: tokenizer, model (with its loss), loaders -> :class:`RecipeSetup`;
- ``train_step(model, batch)``: one forward pass, returning an output with ``.loss``;
- ``evaluate(engine, epoch)``: validation numbers for the epoch's history entry;
- ``finish(engine, metrics)``: the metrics of the finished run (a test pass, say).

Plus a few small declarations: ``kind`` (the progress bar's name), ``select_metric`` and ``score``
(which epoch is best), ``step_logs`` (the per-step numbers averaged into the history),
``checkpoint_meta``/``best_meta`` (what a saved folder's meta.json says) and ``plot``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..checkpoint import (TOKENIZER, TRAINING_STATE, WEIGHTS, CheckpointSaveError, check_tokenizer_folder,
                          load_weights, save_checkpoint)
from ..config import ExperimentConfig, UserError, check_output_folder, save_config
from ..config.atomic import recover_folder
from ..data.text import build_wordpiece_tokenizer, load_tokenizer
from ..eval.report import write_json
from .accelerator import make_accelerator
from .guard import NonFiniteGuard
from .observers import RunObserver
from .optim import optimizer_and_schedule
from .replicas import model_for_saving, param_checksum, sync_buffers
from .resume import DEEPSPEED_STATE, restore_training_state, save_training_state
from .tracking import RUN_IDS, tracking_observers

logger = logging.getLogger(__name__)


def _after_step(step: int) -> None:
    """Called after every optimizer step; tests replace it to simulate a run killed mid-training."""


# --overwrite moves the old run's parts here (inside output_dir, so every move is a rename) and puts them back
# if the new run stops before it has saved both its checkpoint/ and last/; only then is the old run deleted.
REPLACED = ".replaced-run"
# What a run writes at the top of output_dir and a replaced run keeps until the new one is saved.
RUN_PARTS = ("checkpoint", "last", DEEPSPEED_STATE, "metrics.json", "config.yaml", "learning_curves.png", RUN_IDS)


@dataclass
class RecipeSetup:
    """What a recipe's ``setup`` hands the engine."""

    model: torch.nn.Module
    tokenizer: Any
    train_loader: torch.utils.data.DataLoader
    # (epoch, batches already trained this epoch): points the replayable sampler at the next batch
    set_train_position: Callable[[int, int], None]
    val_loader: torch.utils.data.DataLoader | None = None
    skipped: list = field(default_factory=list)  # (source, reason) of samples the splits left out


@dataclass
class RunState:
    """Where a run stands: the counters last/ saves and a resumed run starts from."""

    best: dict  # {"epoch", "metric", "score", "value"} of the best epoch so far
    step: int = 0  # optimizer steps taken
    micro_step: int = 0  # batches trained (the per-step dropout seed)
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch
    step_losses: list[float] = field(default_factory=list)
    first_epoch: int = 1  # where this process starts: 1, or the epoch a killed run stopped in
    batches_done: int = 0  # batches of first_epoch the killed run had trained
    epoch_logs: dict = field(default_factory=dict)  # their per-step numbers (the epoch's history entry averages them)


def tokenizer_for(cfg: ExperimentConfig, train_texts: list[str], out_dir: Path, accelerator):
    """The run's tokenizer: the init checkpoint's, a named one, or a WordPiece vocabulary built from the
    training texts (by the main process, read by all)."""
    if cfg.train.init_checkpoint:
        check_tokenizer_folder(Path(cfg.train.init_checkpoint) / TOKENIZER)  # never runs a checkpoint's code
        return load_tokenizer(Path(cfg.train.init_checkpoint) / TOKENIZER)
    if cfg.model.tokenizer or cfg.model.text_init:
        name = cfg.model.tokenizer or cfg.model.text_init
        if os.path.isdir(name):
            check_tokenizer_folder(name, strict=False)
        return load_tokenizer(name)
    tok_dir = out_dir / "tokenizer"
    if accelerator.is_main_process:
        build_wordpiece_tokenizer(train_texts, cfg.model.vocab_size, tok_dir)
    accelerator.wait_for_everyone()
    return load_tokenizer(tok_dir)


class Engine:
    def __init__(self, cfg: ExperimentConfig, progress: bool = True, observers: Sequence[RunObserver] = ()):
        self.cfg = cfg
        self.progress = progress
        # Tracking first: it logs an epoch before a pruner may stop the run on it. A tracker that is not installed
        # is refused here, before the run folder is touched.
        self.observers = [*tracking_observers(cfg), *observers]  # see observers.py
        self.out_dir = Path(cfg.train.output_dir)
        self.last_dir = self.out_dir / "last"
        self.replaced = self.out_dir / REPLACED  # the old run, while an --overwrite run has not saved yet

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def _check_run_folder(self) -> tuple[bool, list[str]]:
        """Whether this run resumes, and which of the folder's run parts --overwrite replaces. Refuses to start over a finished or killed run unless asked to
        (train.overwrite), and to resume what is not there; repairs what a killed save left behind."""
        cfg, accelerator = self.cfg, self.accelerator
        check_output_folder(self.out_dir, "train.output_dir")
        if self.main and self.out_dir.is_dir():
            for folder in (self.last_dir, self.out_dir / "checkpoint"):
                for line in recover_folder(folder):
                    logger.warning("%s", line)
            if self.replaced.is_dir():  # an --overwrite run killed before its first save: the old run comes back
                self._restore_replaced()
                logger.warning("restored the run that an --overwrite run stopped before its first save had "
                               "replaced in %s", self.out_dir)
            shutil.rmtree(self.out_dir / f"{REPLACED}.done", ignore_errors=True)
        accelerator.wait_for_everyone()
        held = [p.name for p in (self.out_dir / "checkpoint", self.last_dir, self.out_dir / DEEPSPEED_STATE)
                if p.exists()]
        if cfg.train.resume:
            if not (self.last_dir / TRAINING_STATE).exists():
                raise UserError(f"train.resume: {self.last_dir} holds no resumable state, so there is nothing to "
                                "continue; start the run without --resume (train.resume=false)")
            return True, []
        if held and not cfg.train.overwrite:
            raise UserError(f"train.output_dir {self.out_dir} already holds a run ({', '.join(h + '/' for h in held)}): continue it "
                            "with --resume (train.resume=true), replace it with --overwrite (train.overwrite=true), "
                            "or choose another train.output_dir")
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        return False, held

    def _set_aside(self) -> None:
        """--overwrite: move the old run's parts into output_dir/.replaced-run (renames, nothing copied)."""
        self.replaced.mkdir()
        for name in RUN_PARTS:
            if (self.out_dir / name).exists():
                os.replace(self.out_dir / name, self.replaced / name)

    def _restore_replaced(self) -> None:
        """Put the old run back in place of whatever the new run wrote of the same parts."""
        for name in RUN_PARTS:
            old, new = self.replaced / name, self.out_dir / name
            if not old.exists():
                continue
            if new.is_dir():
                shutil.rmtree(new)
            elif new.exists():
                new.unlink()
            os.replace(old, new)
        shutil.rmtree(self.replaced, ignore_errors=True)

    def _drop_replaced(self) -> None:
        """The new run has saved: the old run goes (renamed first, so a kill mid-delete is not mistaken for
        an old run to restore)."""
        if self.main and self.replaced.is_dir():
            done = self.out_dir / f"{REPLACED}.done"
            os.replace(self.replaced, done)
            shutil.rmtree(done, ignore_errors=True)

    def run(self, recipe) -> dict:
        """Set up, train every epoch (validating and saving), finish; returns the metrics (metrics.json)."""
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.accelerator = accelerator = make_accelerator(cfg)
        set_seed(cfg.train.seed)
        resuming, replaced = self._check_run_folder()
        setup = recipe.setup(self, resuming)
        if not (self.main and replaced):
            return self._run(recipe, setup, resuming)
        # --overwrite, once the data and the model are known to be usable (nothing is lost to a bad input): the
        # old run is set aside, not deleted, and comes back if this run stops before it has saved.
        self._set_aside()
        try:
            return self._run(recipe, setup, resuming)
        except BaseException as e:
            if not self.replaced.is_dir():
                raise  # the new run had saved: it is what output_dir holds now (resumable from last/)
            self._restore_replaced()
            if isinstance(e, CheckpointSaveError):
                raise e.replace_outcome(f"the previous run in {self.out_dir} (checkpoint/, last/, metrics.json) "
                                        "is intact") from e
            raise

    def _run(self, recipe, setup: RecipeSetup, resuming: bool) -> dict:
        """The recipe's run in torchtune's shape: set up, train each epoch (train steps, then evaluate and
        save), clean up."""
        cfg = self.cfg
        if self.main:
            save_config(cfg, self.out_dir / "config.yaml")
        train_loader, total_steps = self._prepare(setup, resuming)
        self.state = state = self._starting_state(recipe, setup, resuming)  # observers read where the run starts
        for observer in self.observers:
            observer.on_start(self)
        start = time.time()
        bar = tqdm(total=total_steps, initial=state.step, desc=f"{recipe.kind} {cfg.name}",
                   disable=not (self.progress and self.main))
        for epoch in range(state.first_epoch, cfg.train.epochs + 1):
            logged = self._train_epoch(recipe, setup, train_loader, state, epoch, bar)
            self._end_epoch(recipe, state, epoch, logged)
            if self._max_steps_reached(state):
                break
        bar.close()
        self._drop_replaced()
        return self._clean_up(recipe, state, start)

    def _prepare(self, setup: RecipeSetup, resuming: bool) -> tuple[torch.utils.data.DataLoader, int]:
        """The model (resumed weights, gradient checkpointing), optimizer and schedule, handed to the accelerator.
        Returns the prepared train loader and the run's number of optimizer steps."""
        cfg, accelerator = self.cfg, self.accelerator
        model, self.tokenizer = setup.model, setup.tokenizer
        if resuming:
            load_weights(model, self.last_dir / WEIGHTS, strict=True)
        if cfg.train.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        optimizer, scheduler, total_steps = optimizer_and_schedule(model, cfg, len(setup.train_loader),
                                                                   accelerator.num_processes)
        # The scheduler counts optimizer steps and is stepped here, not by accelerate: accelerate's wrapper steps
        # it num_processes times per optimizer step, which under N ranks ran the schedule N times too fast.
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, setup.train_loader)
        self.val_loader = accelerator.prepare(setup.val_loader) if setup.val_loader is not None else None
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        return train_loader, total_steps

    def _starting_state(self, recipe, setup: RecipeSetup, resuming: bool) -> RunState:
        """Counters at zero, or where the resumable state in last/ left them."""
        self.skipped = list(setup.skipped)
        state = RunState(best={"epoch": 0, "metric": recipe.select_metric, "score": -math.inf, "value": None})
        # stops on a NaN/inf loss; counts fp16 overflow steps the scaler skipped
        self.guard = NonFiniteGuard(self.accelerator)
        if not resuming:
            return state
        saved = restore_training_state(self.last_dir, self.out_dir, self.accelerator, self.model, self.optimizer,
                                       self.scheduler, self.guard)
        state.step, state.micro_step = saved["step"], saved["micro_step"]
        state.first_epoch, state.batches_done = saved["epoch"], saved["batches_done"]
        state.history, state.step_losses = saved["history"], saved["step_losses"]
        state.epoch_logs = saved.get("epoch_logs", {})
        state.best = saved.get("best", state.best)
        if self.main:
            logger.warning("resuming %s from step %d (epoch %d, batch %d)", self.last_dir, state.step,
                           state.first_epoch, state.batches_done)
        return state

    def _save_last(self, recipe, state: RunState, epoch: int, batches: int, to_save=..., logged=None) -> None:
        """The resumable state in last/, positioned at (epoch, batches already trained in it, and what they logged)."""
        counters = {"step": state.step, "micro_step": state.micro_step, "epoch": epoch, "batches_done": batches,
                    "history": state.history, "step_losses": state.step_losses, "best": state.best,
                    "epoch_logs": logged or {}}
        save_training_state(self.last_dir, self.out_dir, self.accelerator, self.model, self.optimizer,
                            self.scheduler, self.guard, self.cfg, self.tokenizer, counters,
                            recipe.checkpoint_meta(epoch, state.step), to_save)

    def _max_steps_reached(self, state: RunState) -> bool:
        return bool(self.cfg.train.max_steps) and state.step >= self.cfg.train.max_steps

    def _train_epoch(self, recipe, setup: RecipeSetup, train_loader, state: RunState, epoch: int, bar) -> dict:
        """One epoch's batches (from where a killed run stopped, on resume); returns the per-step numbers
        ``recipe.step_logs`` reported, by name."""
        self.model.train()
        # The sampler's order and each sample's clips and crops are functions of (seed, epoch[, index]).
        # On resume, the sampler drops the batches the killed run had already trained on
        # (accelerate's skip_first_batches rebuilds the loader with another sampler, losing the order).
        skip = state.batches_done if epoch == state.first_epoch else 0
        setup.set_train_position(epoch, skip)
        train_loader.set_epoch(epoch)  # accelerate passes it on to the dataset when it iterates
        batches = skip
        # a resumed epoch's history entry averages the batches trained before the kill too
        logged: dict[str, list[float]] = {k: list(v) for k, v in state.epoch_logs.items()} if skip else {}
        # Throughput and the share of time spent waiting for the loader, since the last optimizer step (observers).
        self._pace = {"since": time.perf_counter(), "wait": 0.0, "samples": 0}
        waiting_since = time.perf_counter()
        for batch in train_loader:
            self._pace["wait"] += time.perf_counter() - waiting_since
            batches += 1
            self.skipped.extend(batch["skipped"])
            if "input_ids" not in batch:
                waiting_since = time.perf_counter()
                continue
            self._pace["samples"] += int(batch["input_ids"].shape[0])
            out = self._train_step(recipe, state, epoch, batch)
            for key, value in recipe.step_logs(out).items():
                logged.setdefault(key, []).append(value)
            if self.accelerator.sync_gradients:
                self._after_optimizer_step(recipe, state, epoch, batches, out, logged, bar)
            if self._max_steps_reached(state):
                break
            waiting_since = time.perf_counter()
        return logged

    def _step_logs(self, out, logged: dict) -> dict[str, float]:
        """What observers get after an optimizer step (the pace counters restart)."""
        now, pace = time.perf_counter(), self._pace
        elapsed = max(now - pace["since"], 1e-9)
        logs = {"loss": out.loss.item(), "lr": self.scheduler.get_last_lr()[-1],
                **{k: v[-1] for k, v in logged.items() if k != "loss"},
                # every rank trains as many samples per step (the loaders are sharded evenly)
                "samples_per_second": pace["samples"] * self.accelerator.num_processes / elapsed,
                "data_wait_share": min(pace["wait"] / elapsed, 1.0)}
        self._pace = {"since": now, "wait": 0.0, "samples": 0}
        return logs

    def _train_step(self, recipe, state: RunState, epoch: int, batch: dict):
        """One micro-step: forward, loss check, backward; the optimizer steps when the accumulation is complete."""
        cfg, accelerator, model, optimizer = self.cfg, self.accelerator, self.model, self.optimizer
        # Dropout draws from the global generator; reseeding it per micro-step makes the masks a
        # function of (seed, step), so a resumed run reproduces them exactly.
        state.micro_step += 1
        torch.manual_seed(cfg.train.seed * 1_000_003 + state.micro_step)
        with accelerator.accumulate(model):
            out = recipe.train_step(model, batch)
            # raises before backward unless fp16 scaling skips
            self.guard.check_loss(out.loss, epoch, state.step, batch)
            accelerator.backward(out.loss)
            if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                self.scheduler.step()  # once per optimizer step actually taken
            optimizer.zero_grad(set_to_none=True)
        return out

    def _after_optimizer_step(self, recipe, state: RunState, epoch: int, batches: int, out, logged: dict,
                              bar) -> None:
        """Count the step, show it, and save last/ every train.save_every_steps."""
        cfg = self.cfg
        state.step += 1
        self.guard.after_step(self.optimizer, state.step)  # fp16: warn and count when the scaler skipped this step
        state.step_losses.append(out.loss.item())
        bar.update(1)
        recent = logged["loss"][-20:]
        bar.set_postfix(epoch=epoch, loss=f"{sum(recent) / len(recent):.3f}",
                        **{k.removeprefix("loss_"): f"{v[-1]:.3f}" for k, v in logged.items() if k != "loss"})
        if self.observers:
            logs = self._step_logs(out, logged)
            for observer in self.observers:
                observer.on_step(self, state.step, logs)
        if cfg.train.save_every_steps and state.step % cfg.train.save_every_steps == 0:
            self._save_last(recipe, state, epoch, batches, logged=logged)  # every rank: DeepSpeed shards, ZeRO-3 gather
        _after_step(state.step)

    def _end_epoch(self, recipe, state: RunState, epoch: int, logged: dict) -> None:
        """The epoch's history entry (validation included), the best checkpoint if it improved, last/ saved."""
        accelerator, model = self.accelerator, self.model
        entry = {"epoch": epoch, "step": state.step, "lr": self.scheduler.get_last_lr()[-1],
                 **{f"train_{k}": sum(v) / len(v) for k, v in logged.items()}}
        entry.setdefault("train_loss", 0.0)  # an epoch whose batches were all skipped
        sync_buffers(accelerator, model)  # every rank validates with the BatchNorm statistics that get saved
        if self.val_loader is not None:
            entry.update(recipe.evaluate(self, epoch))
        state.history.append(entry)
        value, score = recipe.score(entry, self.val_loader is not None)
        to_save = model_for_saving(accelerator, model)  # every rank: ZeRO-3 gathers the full weights here
        # Every rank tracks the best epoch (the gathered metrics are the same everywhere); main saves it.
        improved = score is None or score > state.best["score"]
        if improved:
            state.best = {"epoch": epoch, "metric": recipe.select_metric, "score": score, "value": value}
        if self.main:
            logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v
                                                for k, v in entry.items()})
            if improved:
                save_checkpoint(self.out_dir / "checkpoint", to_save, self.cfg, self.tokenizer,
                                {**recipe.checkpoint_meta(epoch, state.step), **recipe.best_meta(value)})
            recipe.plot(state.history, self.out_dir)
        self._save_last(recipe, state, epoch + 1, 0, to_save)
        if (self.out_dir / "checkpoint").is_dir():
            self._drop_replaced()  # this run has a checkpoint and a resumable state: the old run is not needed
        accelerator.wait_for_everyone()
        for observer in self.observers:  # after last/ is saved: a pruned or stopped run stays resumable
            observer.on_epoch(self, epoch, entry)

    def _clean_up(self, recipe, state: RunState, start: float) -> dict:
        """The run's metrics (the recipe's finish adds its own), metrics.json, and every rank's exit together."""
        cfg, accelerator, guard = self.cfg, self.accelerator, self.guard
        # One number per rank: DDP keeps replicas identical, and this makes that checkable after the fact.
        checksum = param_checksum(accelerator, self.model)  # every rank (ZeRO-3 gathers the slices first)
        metrics = {"name": cfg.name, "history": state.history, "steps": state.step,
                   "step_losses": state.step_losses, "best_epoch": state.best["epoch"],
                   "num_processes": accelerator.num_processes,
                   "rank_param_checksums": accelerator.gather(checksum.reshape(1).to(accelerator.device)).cpu().tolist(),
                   "train_seconds": time.time() - start, "checkpoint": str(self.out_dir / "checkpoint"),
                   "overflow_skipped_steps": len(guard.skipped_steps), "overflow_skipped_step_ids": guard.skipped_steps}
        self.best = state.best
        metrics = recipe.finish(self, metrics)
        # Each epoch meets the same unreadable files again; they are reported once.
        metrics["skipped"] = [list(s) for s in dict.fromkeys(tuple(s) for s in self.skipped)]
        if self.main:
            write_json(self.out_dir / "metrics.json", metrics)
        for observer in self.observers:
            observer.on_finish(self, metrics)
        # All ranks leave together: a rank that tears down the process group while another still uses it
        # aborts the launch ("terminate called without an active exception").
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return metrics
