"""Non-finite losses: stop every rank before anything is written, or count the steps fp16 loss scaling skips."""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator

from ..config.errors import UserError
from .accelerator import uses_deepspeed

logger = logging.getLogger(__name__)

# Targets this far from zero overflow a squared or scaled loss long before they overflow float32 themselves.
HUGE_TARGET = 1e6


class NonFiniteLossError(UserError, FloatingPointError):
    """The loss went NaN/inf: a user's data or settings, reported as one line (the CLI's UserError path)."""


def target_hint(batch) -> str:
    """The likely cause of a non-finite loss that the batch itself shows: targets out of range. "" if none."""
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if not torch.is_tensor(labels) or not labels.is_floating_point() or labels.numel() == 0:
        return ""
    labels = labels.detach().float()
    finite = torch.isfinite(labels)
    if not finite.all():
        bad = labels[~finite][0].item()
        return (f"Likely cause: a target value out of range: this batch holds a target of {bad} (a value beyond "
                "float32's +-3.4e38, e.g. 1e308 in the manifest, becomes inf when read); fix that manifest line. ")
    top = labels.abs().max().item()
    if top > HUGE_TARGET:
        return (f"Likely cause: a target value out of range: this batch holds a target of magnitude {top:g}, and "
                "its loss overflows; check the manifest's targets (units, a typo) or rescale them. ")
    return ""


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

    def check_loss(self, loss: torch.Tensor, epoch: int, step: int, batch=None) -> None:
        """Call before backward on every rank. ``step`` is the number of optimizer steps done so far; ``batch``
        (optional) lets the message name a cause the batch shows (targets out of range)."""
        if self.scaling:
            return  # the scaler sees the inf/NaN gradients and skips the step; after_step reports it
        bad = self.bad_ranks(loss)
        if not bad:
            return
        value = loss.detach().float().item()
        where = f" ({value})" if self.accelerator.num_processes == 1 else f" on rank(s) {bad} (this rank: {value})"
        hint = target_hint(batch)
        raise NonFiniteLossError(
            f"non-finite loss{where} at epoch {epoch}, optimizer step "
            f"{step + 1}: the step was not taken and nothing was saved (output_dir/last, if any, holds the last "
            f"saved state). {hint}"
            + ("Otherwise: " if hint else "Check the targets for values out of range, then: ")
            + "lower optim.lr_transformer / optim.lr_cnn (or raise optim.warmup_ratio), keep "
            "optim.grad_clip > 0, or use train.mixed_precision=no instead of bf16; with fp16 on a GPU the loss "
            "scaler skips such steps instead. Then rerun.")

    def after_step(self, optimizer, step: int) -> bool:
        """Call after the optimizer step at a gradient-sync boundary; True when the scaler skipped it."""
        if not getattr(optimizer, "step_was_skipped", False):
            return False
        self.skipped_steps.append(step)
        if self.accelerator.is_main_process:
            logger.warning("fp16 gradient overflow at optimizer step %d: the loss scaler skipped this step and "
                           "lowered its scale (%d step(s) skipped so far)", step, len(self.skipped_steps))
        return True
