"""Writing and restoring the resumable state (``<output_dir>/last``) shared by fine-tuning and pretraining.

Besides the weights it holds everything that decides the next steps: optimizer (per-rank shards
under DeepSpeed), scheduler, grad scaler, the fp16 overflow record, and the loop's own counters
(step, micro-step, epoch, batches done, histories), which the caller passes as ``counters``.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import load_training_state, save_checkpoint
from .distributed import (load_optimizer_for_resume, model_for_saving, optimizer_state_for_resume,
                          prune_deepspeed_states)


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
