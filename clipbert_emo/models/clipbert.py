"""ClipBERT for emotion recognition: clips of each modality + text -> per-clip logits -> video logits.

The whole path, in order: uint8 frames (B, N, T, 3, H, W) -> ResNet per frame -> grid
encoder -> temporal fusion per clip (B, N, D, h, w) -> visual tokens, concatenated with
the text tokens of the same sample (and the tokens of any other modality, models/modalities.py)
-> BERT encoder -> pooled [CLS] -> classifier, per clip (B, N, K) -> aggregation over clips
(B, K). Tokenization happens in the data pipeline, never here; the loss is the task kind's
(``clipbert_emo.tasks``), handed in as ``criterion``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from ..config import ModelConfig
from .fusion import ClassifierHead, HeadBuilder, fusion_transformer_from_config
from .scorer import ClipScorer, ModalityEncoders, ScoredClips, pair_logits, per_text, split_pairs


@dataclass
class EncodedClips:
    sequence: torch.Tensor  # (B*N, L + tokens, D) the fusion transformer's output of every clip
    pooled: torch.Tensor  # (B*N, D) the pooled [CLS] of every clip
    features: dict  # modality name -> its encoder's output (B, N, D, ...); (B*P, N, D, ...) for P texts each
    batch: int  # B
    clips: int  # N (1 for a text-only model)
    pairs: int = 0  # P texts scored against each video's clips (input_ids (B, P, L)); 0 = one text per video


class ClipBertModel(ModalityEncoders):
    """The shared trunk of the fine-tuning and pretraining models: the modality encoders and the fusion
    transformer over [text ; modality tokens]. Its parameters sit on the model itself (``cnn.*``,
    ``transformer.*``), ClipBERT's checkpoint names, so a model built on it loads those checkpoints key for key."""

    def _build_trunk(self, cfg: ModelConfig, vocab_size: int, pad_token_id: int, pretrained: bool,
                     modalities, inference: bool = False) -> None:
        self.cfg = cfg
        self._build_encoders(cfg, modalities, pretrained)
        self.transformer = fusion_transformer_from_config(cfg, vocab_size, pad_token_id, pretrained,
                                                          self.modality_names, inference)
        if cfg.compile:  # in place (nn.Module.compile): parameter names, hence checkpoints, stay as they are
            for m in self.modalities:
                getattr(self, m.encoder_attr).compile()
            self.transformer.compile()

    def encode_clips(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs: dict,
                     features: dict | None = None) -> EncodedClips:
        """Text (B, L) and, per modality this model uses, its clips (B, N, ...) -> every clip fused with the text.

        Text (B, P, L): P texts per video (retrieval pairs, multiple-choice candidates), each fused with every
        clip of its video; the clips go through their encoders once. ``features``: the encoders' outputs
        (:meth:`encode_features`) computed earlier, so only the fusion runs (retrieval ranking, cached search)."""
        present = {m.name: inputs[f"{m.name}_present"] for m in self.modalities
                   if inputs.get(f"{m.name}_present") is not None}
        text_present = inputs.get("text_present")
        if text_present is not None:  # a dropped transcript: only [CLS], the pooled position, stays visible
            keep = torch.ones_like(attention_mask)
            shape = (-1,) + (1,) * (attention_mask.ndim - 1)
            keep[..., 1:] = text_present.to(attention_mask.dtype).view(shape)  # (B,) -> (B, [P,] 1) over L-1
            attention_mask = attention_mask * keep
        if features is None:
            features = self.encode_features(inputs)
        return self.fuse(input_ids, attention_mask, features, present)

    def fuse(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: dict,
             present: dict | None = None) -> EncodedClips:
        """The fusion transformer over [text ; modality tokens] of every clip (see :meth:`encode_clips`)."""
        present = present or {}
        input_ids, attention_mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        # Each of the P texts meets the same clips: the features are repeated, never recomputed.
        features = {name: per_text(f, pairs) for name, f in features.items()}  # (B, N, ...) -> (B*P, N, ...)
        present = {name: per_text(p, pairs) for name, p in present.items()}  # (B,) -> (B*P,)
        if not self.modalities:
            sequence, pooled = self.transformer(input_ids, attention_mask)  # (B, D)
            rows = input_ids.shape[0]
            return EncodedClips(sequence, pooled, {}, rows // pairs if pairs else rows, 1, pairs)
        b, n = next(iter(features.values())).shape[:2]
        flat = {name: f.flatten(0, 1) for name, f in features.items()}  # (B, N, D, ...) -> (B*N, D, ...)
        # Every clip is fused with the full text of its video.
        ids = repeat(input_ids, "b l -> (b n) l", n=n)  # (B, L) -> (B*N, L)
        mask = repeat(attention_mask, "b l -> (b n) l", n=n)  # (B, L) -> (B*N, L)
        has = {name: repeat(p, "b -> (b n)", n=n) for name, p in present.items()}  # (B,) -> (B*N,)
        sequence, pooled = self.transformer(ids, mask, flat, has)  # -> (B*N, L + tokens, D), (B*N, D)
        return EncodedClips(sequence, pooled, features, b // pairs if pairs else b, n, pairs)


class ClipBertForEmotion(ClipBertModel, ClipScorer):
    """``model.fusion=early``, ClipBERT's single stream: the trunk's pooled [CLS] of every clip -> the head."""

    contrastive = True

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, use_video: bool = True,
                 pad_token_id: int = 0, pretrained: bool = True, criterion: nn.Module | None = None,
                 modalities=None, inference: bool = False, head: nn.Module | None = None, use_text: bool = True,
                 build_head: HeadBuilder | None = None):
        """``num_labels`` is the classifier's output width (the task kind's ``num_outputs``). ``modalities``:
        the per-clip modalities it reads (default: video, or none with ``use_video=False``). ``criterion``:
        the task kind's loss of aggregated logits (default: softmax cross-entropy). ``pretrained=False``
        skips loading pretrained weights, for when a checkpoint is loaded next anyway; ``inference=True`` also
        builds the fusion transformer without transformers' modelling code (models/bert_inference.py: same
        names and logits, a second or more less to import) for a model that will only be evaluated. ``head``, or
        the one ``build_head(cfg, num_labels)`` makes (the task kind's ``build_head``): the module from the pooled
        [CLS] (D,) to the ``num_labels`` outputs (default ClipBERT's classifier MLP; retrieval uses the image-text
        matching head). The text always enters the fusion transformer (``use_text=False``: the data gives it
        empty). Texts (B, P, L): see :class:`ClipScorer`."""
        super().__init__()
        # The task's head is made before the trunk, the default one after it: the order of their random draws.
        if build_head is not None:
            head = build_head(cfg, num_labels)
        self._setup(cfg, num_labels, vocab_size, criterion, use_text)
        self._build_trunk(cfg, vocab_size, pad_token_id, pretrained,
                          ("video",) if modalities is None and use_video else (modalities or ()), inference)
        self.head = head if head is not None else ClassifierHead(cfg.hidden_size, num_labels, cfg.dropout)
        self.head.apply(self.transformer._init_weights)
        self._build_visual_aux()

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        enc = self.encode_clips(input_ids, attention_mask, inputs, features)
        logits = self._head_logits(enc)  # (B*P, N, K)
        if self.cfg.contrastive_score_weight > 0 and enc.pairs and "video" in enc.features:
            logits = logits + self.cfg.contrastive_score_weight * self._clip_text_similarity(
                enc.features["video"], input_ids.flatten(0, 1), attention_mask.flatten(0, 1)).unsqueeze(-1)
        logits = pair_logits(logits, enc.pairs)  # (B*P, N, K) -> (B, N, P*K)
        return ScoredClips(logits, enc.features, pairs=enc.pairs)

    def _clip_text_similarity(self, grids: torch.Tensor, input_ids: torch.Tensor,
                              attention_mask: torch.Tensor) -> torch.Tensor:
        """model.contrastive_score_weight's term: every clip against its row's text in the contrastive loss's
        embedding space, cosine / temperature. grids (R, N, D, h, w), texts (R, L) -> (R, N)."""
        from .losses import CONTRASTIVE_TEMPERATURE

        clips = F.normalize(grids.float().mean(dim=(-2, -1)), dim=-1)  # (R, N, D, h, w) -> (R, N, D)
        text = F.normalize(self.contrastive_text_embedding(input_ids, attention_mask).float(), dim=-1)  # (R, D)
        return torch.einsum("rnd,rd->rn", clips, text) / CONTRASTIVE_TEMPERATURE  # -> (R, N)

    def _head_logits(self, enc: EncodedClips) -> torch.Tensor:
        """The head on every clip's pooled [CLS] -> per-clip logits (R, N, K), one row per text: R = B, or B*P."""
        logits = self.head(enc.pooled)  # (B*N, D) -> (B*N, K), or (B*P*N, D) -> (B*P*N, K) for P texts each
        return rearrange(logits, "(r n) k -> r n k", n=enc.clips)  # -> (B, N, K) or (B*P, N, K)

    def _auxiliary_losses(self, scored: ScoredClips, labels, how, texts) -> dict:
        parts = super()._auxiliary_losses(scored, labels, how, texts)
        grids = scored.features.get("video")
        if (self.contrastive and self.cfg.contrastive_weight > 0 and self.training and grids is not None
                and scored.pairs and texts["positive"] is not None):
            parts["loss_contrastive"] = (self.cfg.contrastive_weight, self._contrastive_loss(
                grids, texts["input_ids"], texts["attention_mask"], texts["positive"], texts["group"]))
        return parts

    @staticmethod
    def contrastive_video_embedding(grids: torch.Tensor) -> torch.Tensor:
        """What the contrastive loss compares of a video: its mean visual token, (V, N, D, h, w) -> (V, D)."""
        return grids.mean(dim=(1, 3, 4))

    def contrastive_text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """... and of a text: the mean of its word embeddings, padding left out, (Q, L) -> (Q, D)."""
        words = self.transformer.bert.embeddings.word_embeddings(input_ids)  # (Q, L) -> (Q, L, D)
        mask = attention_mask.unsqueeze(-1).to(words.dtype)  # (Q, L) -> (Q, L, 1)
        return (words * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (Q, L, D) -> (Q, D)

    def _contrastive_loss(self, grids, input_ids, attention_mask, positive, group) -> torch.Tensor:
        """model.contrastive_weight's loss: each video's mean visual token against the mean word embedding of the
        text that describes it (``positive``), the other rows' texts as negatives, except those of the same video
        (``group``) and those worded exactly alike (a shared "[SEP] square" is no negative of another square)."""
        from .losses import video_text_contrastive_loss

        b, p = input_ids.shape[:2]
        grids = grids.unflatten(0, (b, p))[:, 0]  # fuse repeated them per text: (B*P, N, ...) -> (B, N, ...)
        video = self.contrastive_video_embedding(grids)  # (B, N, D, h, w) -> (B, D)
        rows = torch.arange(b, device=input_ids.device)
        ids = input_ids[rows, positive]  # (B, P, L) -> (B, L)
        text = self.contrastive_text_embedding(ids, attention_mask[rows, positive])  # (B, L) -> (B, D)
        kept = ids * attention_mask[rows, positive]  # padding zeroed, so equal texts compare equal
        same = (kept[:, None, :] == kept[None, :, :]).all(-1)  # (B, B)
        return video_text_contrastive_loss(video, text, group, same=same)
