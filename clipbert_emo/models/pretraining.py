"""ClipBERT stage 1: image-text pretraining with image-text matching (ITM) and masked language modeling (MLM).

An image is a one-frame clip, so the visual path is the fine-tuning model's own: the CNN,
grid encoder and 2-D visual embeddings learn here what the emotion model later starts from.
Module names match ClipBERT's checkpoint (``cnn.*``, ``transformer.bert.*``,
``transformer.cls.predictions.*``, ``transformer.cls.seq_relationship.*``), so a checkpoint
saved here loads into :class:`~clipbert_emo.models.clipbert.ClipBertForEmotion` key for key
(the pretraining heads are reported as unused there).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from transformers.models.bert.modeling_bert import BertPreTrainingHeads

from ..config import ModelConfig
from .fusion import fusion_transformer_from_config
from .outputs import ClipBertPretrainingOutput
from .visual import visual_encoder_from_config


class ClipBertForPretraining(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True):
        super().__init__()
        self.cfg = cfg
        self.cnn = visual_encoder_from_config(cfg, pretrained)
        self.transformer = fusion_transformer_from_config(cfg, vocab_size, pad_token_id, pretrained)
        self.transformer.cls = BertPreTrainingHeads(self.transformer.config)
        self.transformer.cls.apply(self.transformer._init_weights)
        # BERT ties the MLM decoder to the input word embeddings: a word is predicted by the same
        # vector that represents it, which also keeps a small pretraining vocabulary cheap.
        self.transformer.cls.predictions.decoder.weight = self.transformer.bert.embeddings.word_embeddings.weight

    @property
    def uses_video(self) -> bool:
        return True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor,
                mlm_labels: torch.Tensor | None = None, itm_labels: torch.Tensor | None = None
                ) -> ClipBertPretrainingOutput:
        """input_ids/attention_mask (B, L) with the MLM masking already applied (the collator does it);
        video (B, 1, T, 3, H, W): one clip per pair; mlm_labels (B, L) with -100 where no loss;
        itm_labels (B,) 1 = the caption belongs to the image, 0 = it was swapped for another's."""
        b, n = video.shape[:2]
        if n != 1:
            raise ValueError(f"pretraining takes one clip per image-text pair, got video of shape {tuple(video.shape)}")
        grids = self.cnn(video)  # (B, 1, T, 3, H, W) -> (B, 1, D, h, w)
        grid = rearrange(grids, "b n d h w -> (b n) d h w")  # -> (B, D, h, w)
        sequence, pooled = self.transformer(input_ids, attention_mask, grid)  # (B, L + h*w, D), (B, D)
        text_len = input_ids.shape[1]
        mlm_logits, itm_logits = self.transformer.cls(sequence[:, :text_len], pooled)  # (B, L, V), (B, 2)
        loss = loss_mlm = loss_itm = None
        if mlm_labels is not None:
            # A batch in which no token was masked has no MLM term, rather than a NaN one.
            if (mlm_labels != -100).any():
                loss_mlm = F.cross_entropy(mlm_logits.float().flatten(0, 1), mlm_labels.flatten(),
                                           ignore_index=-100)  # (B*L, V) vs (B*L,)
            else:
                loss_mlm = mlm_logits.sum() * 0.0
        if itm_labels is not None:
            loss_itm = F.cross_entropy(itm_logits.float(), itm_labels)
        if loss_mlm is not None or loss_itm is not None:
            loss = sum(x for x in (loss_mlm, loss_itm) if x is not None)
        return ClipBertPretrainingOutput(loss=loss, loss_mlm=loss_mlm, loss_itm=loss_itm, mlm_logits=mlm_logits,
                                         itm_logits=itm_logits)

    def enable_gradient_checkpointing(self) -> None:
        self.transformer.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(self.cnn.backbone, "gradient_checkpointing"):
            self.cnn.backbone.gradient_checkpointing = True

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        groups: dict[str, list] = {"cnn": [], "transformer": []}
        for name, p in self.named_parameters():  # named_parameters lists a tied tensor once
            if p.requires_grad:
                groups["cnn" if name.startswith("cnn.") else "transformer"].append((name, p))
        return groups
