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


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str, num_heads: int = 1, kind: str = "ce",
              class_weights: torch.Tensor | None = None, gamma: float = 2.0) -> torch.Tensor:
    """The training loss of aggregated logits (B, K_out) for each task kind (see DataConfig.task).

    single_label (B,) class ids: ce | weighted_ce | focal; multilabel (B, K) multi-hot: sigmoid BCE;
    multitask (B, H) ids with -1 = unlabelled: the single-label loss per head, averaged over heads;
    regression (B,) values: L1 on the one output.
    """
    from .losses import multitask_loss, regression_loss, single_label_loss

    if task == "multilabel":
        return classification_loss(logits, labels, multilabel=True)
    if task == "regression":
        return regression_loss(logits[:, 0].float(), labels.float())
    weights = class_weights if kind == "weighted_ce" else None
    if task == "multitask":
        return multitask_loss(logits.float(), labels, num_heads, kind, weights, gamma)
    return single_label_loss(logits.float(), labels, kind, weights, gamma)
