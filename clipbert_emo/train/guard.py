"""Non-finite losses: stop every rank before anything is written, or count the steps fp16 loss scaling skips."""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator

from .accelerator import uses_deepspeed

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    pass


def loss_scaling(accelerator: Accelerator) -> bool:
    """True when a dynamic loss scaler is active (fp16): it skips steps whose gradients overflow."""
    if accelerator.scaler is not None:
        return True
    if uses_deepspeed(accelerator):
        return bool(str(accelerator.state.deepspeed_plugin.get_value("fp16.enabled", False)).lower() == "true")
    return False


class NonFiniteGuard:
    """Stops a run on a non-finite loss, or lets the fp16 loss scaler skip the step and counts it.

    Without a loss scaler a NaN/inf loss is raised before backward, so no weight, optimizer state or
    checkpoint is touched: output_dir/last keeps the state of the last save. With fp16 loss scaling an
    overflow is routine (the scaler lowers its scale and skips that optimizer step); each skip is
    logged with its step and counted (``overflow_skipped_steps`` in metrics.json).

    Under several processes the ranks agree on the verdict (one tiny all-gather per micro-step), so
    either all of them stop or none does: a rank that stopped alone would leave the others waiting in
    the next collective until the process group times out.
    """

    def __init__(self, accelerator: Accelerator, scaling: bool | None = None):
        self.accelerator = accelerator
        self.scaling = loss_scaling(accelerator) if scaling is None else scaling
        self.skipped_steps: list[int] = []

    def bad_ranks(self, loss: torch.Tensor) -> list[int]:
        """Ranks whose loss is NaN/inf at this micro-step (a collective under several processes)."""
        ok = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.accelerator.num_processes > 1:
            ok = self.accelerator.gather(ok.to(self.accelerator.device))
        return [rank for rank, flag in enumerate(ok.cpu().tolist()) if flag == 0]

    def check_loss(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Call before backward on every rank. ``step`` is the number of optimizer steps done so far."""
        if self.scaling:
            return  # the scaler sees the inf/NaN gradients and skips the step; after_step reports it
        bad = self.bad_ranks(loss)
        if not bad:
            return
        value = loss.detach().float().item()
        where = f" ({value})" if self.accelerator.num_processes == 1 else f" on rank(s) {bad} (this rank: {value})"
        raise NonFiniteLossError(
            f"non-finite loss{where} at epoch {epoch}, optimizer step "
            f"{step + 1}: the step was not taken and nothing was saved, so output_dir/last still holds the last "
            "saved state. Lower optim.lr_transformer / optim.lr_cnn (or raise optim.warmup_ratio), keep "
            "optim.grad_clip > 0, or use train.mixed_precision=no instead of bf16; with fp16 on a GPU the loss "
            "scaler skips such steps instead. Then rerun (train.resume=true continues from output_dir/last).")

    def after_step(self, optimizer, step: int) -> bool:
        """Call after the optimizer step at a gradient-sync boundary; True when the scaler skipped it."""
        if not getattr(optimizer, "step_was_skipped", False):
            return False
        self.skipped_steps.append(step)
        if self.accelerator.is_main_process:
            logger.warning("fp16 gradient overflow at optimizer step %d: the loss scaler skipped this step and "
                           "lowered its scale (%d step(s) skipped so far)", step, len(self.skipped_steps))
        return True
