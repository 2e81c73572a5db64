"""Writing and restoring the resumable state (``<output_dir>/last``) shared by fine-tuning and pretraining.

Besides the weights it holds everything that decides the next steps: optimizer (per-rank shards
under DeepSpeed), scheduler, grad scaler, the fp16 overflow record, and the loop's own counters
(step, micro-step, epoch, batches done, histories), which the caller passes as ``counters``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..checkpoint import load_training_state, save_checkpoint
from .accelerator import uses_deepspeed
from .replicas import model_for_saving

DEEPSPEED_STATE = "deepspeed_state"  # folder beside output_dir/last with DeepSpeed's per-rank shards


def save_training_state(last_dir: Path, out_dir: Path, accelerator, model, optimizer, scheduler, guard, cfg, tokenizer,
                        counters: dict, meta: dict, to_save=...) -> None:
    """Every rank calls this (DeepSpeed optimizer shards, the ZeRO-3 weight gather); the main process
    writes ``last_dir`` atomically. ``to_save``: what ``model_for_saving`` returned this epoch, if it was
    called already (``...`` = not yet; None is a real answer on non-main ranks under ZeRO-3)."""
    to_save = model_for_saving(accelerator, model) if to_save is ... else to_save
    opt_state = optimizer_state_for_resume(accelerator, model, optimizer, out_dir, counters["step"])
    if not accelerator.is_main_process:
        return
    state = {
        **opt_state, "scheduler": scheduler.state_dict(),
        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
        "overflow_skipped_steps": guard.skipped_steps, **counters,
    }
    save_checkpoint(last_dir, to_save, cfg, tokenizer, meta, state)
    prune_deepspeed_states(accelerator, out_dir, opt_state.get("deepspeed_state"))


def restore_training_state(last_dir: Path, out_dir: Path, accelerator, model, optimizer, scheduler, guard) -> dict:
    """Load optimizer, scheduler, scaler and overflow record in place; return the saved counters."""
    state = load_training_state(last_dir)
    load_optimizer_for_resume(accelerator, model, optimizer, state, out_dir)
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    guard.skipped_steps = list(state.get("overflow_skipped_steps", []))
    return state


# Resumable state. Without DeepSpeed the optimizer's state_dict is complete on every rank and goes into
# output_dir/last/training_state.pt. Under DeepSpeed each rank holds a shard of the optimizer state (and
# under ZeRO-3 of the weights), so each rank writes its shard with DeepSpeed's own checkpointing into
# output_dir/deepspeed_state/step_<N>; last/training_state.pt names the folder it belongs to.


def optimizer_state_for_resume(accelerator: Accelerator, model, optimizer, out_dir: Path, step: int) -> dict:
    """The optimizer part of training_state (``{"optimizer": ...}`` or ``{"deepspeed_state": name}``).

    Every rank must call it (under DeepSpeed every rank writes its shard). The folder is written under
    a temporary name and renamed once every rank has finished, so a folder named step_<N> is complete.
    """
    if not uses_deepspeed(accelerator):
        return {"optimizer": optimizer.state_dict()}
    root = Path(out_dir) / DEEPSPEED_STATE
    name = f"step_{step}"
    tmp = root / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    # The LambdaLR schedule stays in training_state.pt (DeepSpeed does not own it), so only the engine's
    # module and optimizer shards are written here.
    model.save_checkpoint(str(tmp), tag="state", save_latest=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return {"optimizer": None, "deepspeed_state": name}


def prune_deepspeed_states(accelerator: Accelerator, out_dir: Path, keep: str | None) -> None:
    """After last/ names ``keep``, drop older DeepSpeed shard folders (main process only)."""
    if not uses_deepspeed(accelerator) or not accelerator.is_main_process or not keep:
        return
    root = Path(out_dir) / DEEPSPEED_STATE
    for d in root.glob("step_*"):
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)


def load_optimizer_for_resume(accelerator: Accelerator, model, optimizer, state: dict, out_dir: Path) -> None:
    """Restore what ``optimizer_state_for_resume`` saved, in the same layout it was saved in."""
    ds_name = state.get("deepspeed_state")
    if uses_deepspeed(accelerator):
        if not ds_name:
            raise RuntimeError(
                f"{out_dir}/last was written without DeepSpeed; its optimizer state cannot be split into ZeRO "
                "shards. Resume it with the launcher it was started with, or start a new run from its weights "
                f"with train.init_checkpoint={out_dir}/last")
        folder = Path(out_dir) / DEEPSPEED_STATE / ds_name
        if not folder.exists():
            raise RuntimeError(f"{folder} is missing: last/ belongs to DeepSpeed shards that are not there")
        load_path, _ = model.load_checkpoint(str(folder), tag="state", load_optimizer_states=True,
                                             load_lr_scheduler_states=False)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load {folder} (was it written with another ZeRO stage "
                               "or number of processes?)")
        return
    if ds_name or state.get("optimizer") is None:
        raise RuntimeError(
            f"{out_dir}/last was written under DeepSpeed (optimizer shards in {DEEPSPEED_STATE}/); resume it "
            "under the same DeepSpeed launch, or start a new run from its weights with "
            f"train.init_checkpoint={out_dir}/last")
    optimizer.load_state_dict(state["optimizer"])
