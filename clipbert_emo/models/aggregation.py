"""Clip-to-video aggregation of logits (the task's loss is then taken on the aggregate).

ClipBERT scores each sparsely sampled clip on its own and combines the *logits*:
``mean``, ``max`` or ``lse`` (LogSumExp). With ``lse`` the cross-entropy on the
aggregated logits lets the clips that are confident about the label dominate, so a
clip that missed the expressive moment costs little.
"""

from __future__ import annotations

import torch

from ..config.choices import AGGREGATIONS  # noqa: F401  (the names: config/choices.py, the one list of them)


def aggregate_clip_logits(clip_logits: torch.Tensor, how: str) -> torch.Tensor:
    """(B, N, K) -> (B, K)."""
    if how == "mean":
        return clip_logits.mean(dim=1)
    if how == "max":
        return clip_logits.max(dim=1).values
    if how == "lse":
        return torch.logsumexp(clip_logits, dim=1)
    raise ValueError(f"unknown aggregation {how!r}; expected one of {', '.join(AGGREGATIONS)}")
