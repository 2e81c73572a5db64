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
from transformers.models.bert.modeling_bert import BertPreTrainingHeads

from ..config import ModelConfig
from .clipbert import ClipBertModel
from .outputs import ClipBertPretrainingOutput


class ClipBertForPretraining(ClipBertModel):
    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                 visual_words_weight: float = 0.0):
        super().__init__()
        self.visual_words_weight = visual_words_weight
        self.visual_words = nn.Linear(cfg.hidden_size, vocab_size) if visual_words_weight > 0 else None
        self._build_trunk(cfg, vocab_size, pad_token_id, pretrained, ("video",))
        self.transformer.cls = BertPreTrainingHeads(self.transformer.config)
        self.transformer.cls.apply(self.transformer._init_weights)
        # BERT ties the MLM decoder to the input word embeddings: a word is predicted by the same
        # vector that represents it, which also keeps a small pretraining vocabulary cheap.
        self.transformer.cls.predictions.decoder.weight = self.transformer.bert.embeddings.word_embeddings.weight
        # The output bias is one tensor under two names (``predictions.bias``, ``predictions.decoder.bias``), as
        # in BERT and ClipBERT's checkpoint; left untied, one copy would never get a gradient.
        self.transformer.cls.predictions.decoder.bias = self.transformer.cls.predictions.bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor,
                mlm_labels: torch.Tensor | None = None, itm_labels: torch.Tensor | None = None
                ) -> ClipBertPretrainingOutput:
        """input_ids/attention_mask (B, L) with the MLM masking already applied (the collator does it);
        video (B, 1, T, 3, H, W): one clip per pair; mlm_labels (B, L) with -100 where no loss;
        itm_labels (B,) 1 = the caption belongs to the image, 0 = it was swapped for another's."""
        if video.shape[1] != 1:
            raise ValueError(f"pretraining takes one clip per image-text pair, got video of shape {tuple(video.shape)}")
        enc = self.encode_clips(input_ids, attention_mask, {"video": video})  # (B, L + h*w, D), (B, D)
        sequence, pooled, grids = enc.sequence, enc.pooled, enc.features["video"]  # grids (B, 1, D, h, w)
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
        loss_words = None
        if self.visual_words is not None and mlm_labels is not None and itm_labels is not None:
            loss_words = self._visual_words_loss(grids, input_ids, attention_mask, mlm_labels, itm_labels)
        if loss_mlm is not None or loss_itm is not None:
            loss = sum(x for x in (loss_mlm, loss_itm) if x is not None)
            if loss_words is not None:
                loss = loss + self.visual_words_weight * loss_words
        return ClipBertPretrainingOutput(loss=loss, loss_mlm=loss_mlm, loss_itm=loss_itm, mlm_logits=mlm_logits,
                                         itm_logits=itm_logits, loss_visual_words=loss_words)

    def _visual_words_loss(self, grids, input_ids, attention_mask, mlm_labels, itm_labels) -> torch.Tensor:
        """Cross-entropy between the words predicted from the mean visual token and the caption's
        bag of words (uniform over its tokens), on the pairs whose caption is the image's own."""
        original = torch.where(mlm_labels != -100, mlm_labels, input_ids)  # undo the MLM masking, (B, L)
        bag = torch.zeros(original.shape[0], self.visual_words.out_features, device=original.device)
        bag.scatter_add_(1, original, attention_mask.float())  # (B, L) -> (B, V) token counts
        target = bag / bag.sum(-1, keepdim=True).clamp_min(1.0)
        logits = self.visual_words(grids.mean(dim=(1, 3, 4)))  # (B, 1, D, h, w) -> (B, D) -> (B, V)
        per_pair = -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)  # (B,)
        matched = (itm_labels == 1).float()
        return (per_pair * matched).sum() / matched.sum().clamp_min(1.0)
