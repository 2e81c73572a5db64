"""Clip-to-video aggregation of logits, and the training loss defined on the aggregate.

ClipBERT scores each sparsely sampled clip on its own and combines the *logits*:
``mean``, ``max`` or ``lse`` (LogSumExp). With ``lse`` the cross-entropy on the
aggregated logits lets the clips that are confident about the label dominate, so a
clip that missed the expressive moment costs little.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATIONS = ("mean", "max", "lse")


def aggregate_clip_logits(clip_logits: torch.Tensor, how: str) -> torch.Tensor:
    """(B, N, K) -> (B, K)."""
    if how == "mean":
        return clip_logits.mean(dim=1)
    if how == "max":
        return clip_logits.max(dim=1).values
    if how == "lse":
        return torch.logsumexp(clip_logits, dim=1)
    raise ValueError(f"unknown aggregation {how!r}; expected one of {', '.join(AGGREGATIONS)}")


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Softmax CE for (B,) class indices, sigmoid BCE for (B, K) multi-hot targets."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels)
