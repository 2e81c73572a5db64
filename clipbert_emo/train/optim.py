"""AdamW with ClipBERT's parameter groups and a per-step linear warmup/decay schedule."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import OptimConfig


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    # Biases and normalisation scales are not regularised toward zero (as in BERT/ClipBERT).
    return param.ndim <= 1 or name.endswith(".bias") or "LayerNorm" in name or ".norm" in name or ".bn" in name


def build_optimizer(model, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = []
    for side, named in model.parameter_groups().items():
        lr = cfg.lr_cnn if side == "cnn" else cfg.lr_transformer
        named = [(n, p) for n, p in named if p.requires_grad]  # frozen layers (model.cnn_frozen_stride) stay out
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        for params, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": wd, "name": f"{side}/{'decay' if wd else 'no_decay'}"})
    if cfg.optimizer == "apex_fused_adam":
        try:
            from apex.optimizers import FusedAdam
        except ImportError:
            raise ImportError(
                "optim.optimizer=apex_fused_adam needs NVIDIA apex, built from NVIDIA's sources (it is not on "
                "PyPI, and the PyPI package named 'apex' is unrelated); or use optim.optimizer=adamw"
            ) from None
        return FusedAdam(groups, betas=tuple(cfg.betas), eps=cfg.eps, adam_w_mode=True)
    return torch.optim.AdamW(groups, betas=tuple(cfg.betas), eps=cfg.eps, **adamw_kernel_kwargs(cfg.adamw_kernel))


def adamw_kernel_kwargs(kernel: str) -> dict:
    """torch.optim.AdamW's arguments for optim.adamw_kernel. Every kernel computes the same update up to float
    rounding (tests/test_train_fast_paths.py); they differ in how many tensor ops a step launches."""
    if kernel == "auto":
        # On a GPU the fused kernel saves a launch per parameter tensor; on a CPU torch's own default (the
        # per-parameter loop) is kept: neither foreach nor fused was faster there on the demo model (bench train
        # --fast-paths), and the loop is what the golden losses were recorded with.
        return {"fused": True} if torch.cuda.is_available() else {}
    if kernel == "for_loop":
        return {"foreach": False, "fused": False}
    if kernel == "foreach":
        return {"foreach": True}
    if kernel == "fused":
        return {"fused": True}
    raise ValueError(f"optim.adamw_kernel={kernel!r}: expected auto, for_loop, foreach or fused")


def warmup_linear_decay(optimizer, total_steps: int, warmup_ratio: float) -> LambdaLR:
    """lr factor rises linearly from 0 to 1 over the warmup steps, then falls linearly to 0."""
    total_steps = max(1, total_steps)
    warmup = int(round(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return LambdaLR(optimizer, factor)


def optimizer_and_schedule(model, cfg, batches_per_epoch: int, num_processes: int):
    """AdamW and its per-step schedule over the run's optimizer steps: batches per epoch are shared out
    over the processes and accumulated ``grad_accum_steps`` at a time; ``train.max_steps`` caps the total.
    The caller steps the schedule once per optimizer step taken (see the loops)."""
    import math

    steps_per_epoch = math.ceil(batches_per_epoch / (cfg.train.grad_accum_steps * num_processes))
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    optimizer = build_optimizer(model, cfg.optim)
    return optimizer, warmup_linear_decay(optimizer, total_steps, cfg.optim.warmup_ratio), total_steps
