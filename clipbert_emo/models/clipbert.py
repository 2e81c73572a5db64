"""ClipBERT for emotion recognition: video clips + text -> per-clip logits -> video logits.

The whole path, in order: uint8 frames (B, N, T, 3, H, W) -> ResNet per frame -> grid
encoder -> temporal fusion per clip (B, N, D, h, w) -> visual tokens, concatenated with
the text tokens of the same sample -> BERT encoder -> pooled [CLS] -> classifier, per clip
(B, N, K) -> aggregation over clips (B, K). Tokenization happens in the data pipeline,
never here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange, repeat

from ..config import ModelConfig
from .aggregation import aggregate_clip_logits, task_loss
from .fusion import ClassifierHead, fusion_transformer_from_config
from .outputs import ClipBertOutput
from .visual import visual_encoder_from_config


class ClipBertForEmotion(nn.Module):
    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, use_video: bool = True,
                 task: str = "single_label", num_heads: int = 1, pad_token_id: int = 0, pretrained: bool = True):
        """``num_labels`` is the classifier's output width (``DataConfig.num_outputs``: K, heads x K for
        multitask, 1 for regression). ``pretrained=False`` skips loading the backbone's pretrained
        weights, for when a checkpoint is loaded next anyway."""
        super().__init__()
        self.cfg = cfg
        self.num_labels = num_labels
        self.task = task
        self.num_heads = num_heads
        self.loss_kind = "ce"
        self.focal_gamma = 2.0
        # Derived from the training split at the start of each run, so not part of the checkpoint.
        self.register_buffer("class_weights", None, persistent=False)
        self.cnn = visual_encoder_from_config(cfg, pretrained) if use_video else None
        self.transformer = fusion_transformer_from_config(cfg, vocab_size, pad_token_id, pretrained)
        self.head = ClassifierHead(cfg.hidden_size, num_labels, cfg.dropout)
        self.head.apply(self.transformer._init_weights)
        self.visual_aux = (nn.Linear(cfg.hidden_size, num_labels)
                           if use_video and cfg.visual_aux_weight > 0 else None)

    @property
    def uses_video(self) -> bool:
        return self.cnn is not None

    def clip_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    video: torch.Tensor | None = None) -> torch.Tensor:
        """Per-clip logits (B, N, K); N = 1 for a text-only model."""
        return self._score_clips(input_ids, attention_mask, video)[0]

    def _score_clips(self, input_ids, attention_mask, video):
        """(clip logits (B, N, K), clip grids (B, N, D, h, w) or None)."""
        if self.cnn is None or video is None:
            if self.cnn is not None:
                raise ValueError("this model was trained with video; pass video=(B, N, T, 3, H, W)")
            _, pooled = self.transformer(input_ids, attention_mask)  # (B, D)
            return self.head(pooled)[:, None, :], None  # (B, K) -> (B, 1, K)
        b, n = video.shape[:2]
        grids = self.cnn(video)  # (B, N, T, 3, H, W) -> (B, N, D, h, w)
        flat = rearrange(grids, "b n d h w -> (b n) d h w")  # -> (B*N, D, h, w)
        # Every clip is fused with the full text of its video.
        ids = repeat(input_ids, "b l -> (b n) l", n=n)  # (B, L) -> (B*N, L)
        mask = repeat(attention_mask, "b l -> (b n) l", n=n)  # (B, L) -> (B*N, L)
        _, pooled = self.transformer(ids, mask, flat)  # -> (B*N, D)
        return rearrange(self.head(pooled), "(b n) k -> b n k", b=b, n=n), grids  # (B*N, K) -> (B, N, K)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, aggregation: str | None = None) -> ClipBertOutput:
        how = aggregation or self.cfg.aggregation
        clip_logits, grids = self._score_clips(input_ids, attention_mask, video)
        logits = aggregate_clip_logits(clip_logits, how)
        loss = loss_aux = None
        if labels is not None:
            loss = self.loss(logits, labels)
            if self.visual_aux is not None and self.training and grids is not None:
                aux_clip = self.visual_aux(grids.mean(dim=(-2, -1)))  # (B, N, D, h, w) -> (B, N, K)
                loss_aux = self.loss(aggregate_clip_logits(aux_clip, how), labels)
                loss = loss + self.cfg.visual_aux_weight * loss_aux
        return ClipBertOutput(loss=loss, logits=logits, clip_logits=clip_logits, loss_visual_aux=loss_aux)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def set_loss(self, kind: str = "ce", class_weights: torch.Tensor | None = None, gamma: float = 2.0) -> None:
        """Choose the class-imbalance treatment (TrainConfig.loss); weights are (K,) or (H, K) for multitask."""
        self.loss_kind = kind
        self.focal_gamma = gamma
        self.class_weights = class_weights

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss of aggregated logits (B, K_out) for this model's task."""
        return task_loss(logits, labels, self.task, self.num_heads, self.loss_kind, self.class_weights,
                         self.focal_gamma)

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory: recompute ResNet stages and BERT layers in the backward pass."""
        self.transformer.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.cnn is not None and hasattr(self.cnn.backbone, "gradient_checkpointing"):
            self.cnn.backbone.gradient_checkpointing = True

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters split into the CNN and the transformer side, for separate learning rates."""
        groups: dict[str, list] = {"cnn": [], "transformer": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                groups["cnn" if name.startswith("cnn.") else "transformer"].append((name, p))
        return groups
