"""What the models return: dataclasses, so callers use names rather than tuple positions."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ClipBertOutput:
    loss: torch.Tensor | None  # scalar, when labels were given
    logits: torch.Tensor  # (B, K) video-level logits, aggregated over clips
    clip_logits: torch.Tensor  # (B, N, K) one row of logits per clip
    loss_visual_aux: torch.Tensor | None = None  # the auxiliary visual loss, when enabled and labels were given
    loss_contrastive: torch.Tensor | None = None  # retrieval's auxiliary video-text contrastive loss, when enabled
    # late / hybrid fusion (models/fusion_strategies.py), for analysis: each modality head's own aggregated logits
    # {name: (B, K)}, each branch's weight in the combination (B, M), and hybrid's auxiliary per-modality loss
    modality_logits: dict | None = None
    modality_weights: torch.Tensor | None = None
    loss_modality_aux: torch.Tensor | None = None


@dataclass
class ClipBertPretrainingOutput:
    loss: torch.Tensor | None
    loss_mlm: torch.Tensor | None
    loss_itm: torch.Tensor | None
    mlm_logits: torch.Tensor  # (B, L, V)
    itm_logits: torch.Tensor  # (B, 2)
    loss_visual_words: torch.Tensor | None = None  # the auxiliary caption-words loss, when enabled
