"""ClipBERT for emotion recognition: clips of each modality + text -> per-clip logits -> video logits.

The whole path, in order: uint8 frames (B, N, T, 3, H, W) -> ResNet per frame -> grid
encoder -> temporal fusion per clip (B, N, D, h, w) -> visual tokens, concatenated with
the text tokens of the same sample (and the tokens of any other modality, models/modalities.py)
-> BERT encoder -> pooled [CLS] -> classifier, per clip (B, N, K) -> aggregation over clips
(B, K). Tokenization happens in the data pipeline, never here; the loss is the task kind's
(``clipbert_emo.tasks``), handed in as ``criterion``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
from einops import rearrange, repeat

from ..config import ModelConfig
from .aggregation import aggregate_clip_logits
from .fusion import ClassifierHead, fusion_transformer_from_config
from .modalities import MODALITIES, modalities_named
from .outputs import ClipBertOutput


@dataclass
class EncodedClips:
    sequence: torch.Tensor  # (B*N, L + tokens, D) the fusion transformer's output of every clip
    pooled: torch.Tensor  # (B*N, D) the pooled [CLS] of every clip
    features: dict  # modality name -> its encoder's output (B, N, D, ...); (B*P, N, D, ...) for P texts each
    batch: int  # B
    clips: int  # N (1 for a text-only model)
    pairs: int = 0  # P texts scored against each video's clips (input_ids (B, P, L)); 0 = one text per video


def split_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Texts (B, P, L), P per video (retrieval pairs, multiple-choice candidates) -> one row per text (B*P, L)
    and P; texts (B, L) as they are and 0."""
    if input_ids.ndim != 3:
        return input_ids, attention_mask, 0
    # (B, P, L) -> (B*P, L)
    return input_ids.flatten(0, 1), attention_mask.flatten(0, 1), input_ids.shape[1]


def per_text(x: torch.Tensor, pairs: int) -> torch.Tensor:
    """A video's tensor once for each of its ``pairs`` texts: (B, ...) -> (B*P, ...); as it is when ``pairs`` is 0."""
    return repeat(x, "b ... -> (b p) ...", p=pairs) if pairs else x


def pair_logits(clip_logits: torch.Tensor, pairs: int) -> torch.Tensor:
    """Per-clip logits of every text (B*P, N, K) -> per video (B, N, P*K), each text's K outputs side by side, as
    the task kinds read them; as they are when ``pairs`` is 0."""
    return rearrange(clip_logits, "(b p) n k -> b n (p k)", p=pairs) if pairs else clip_logits


class ModalityEncoders(nn.Module):
    """What every model of the library has, whatever it fuses: one feature encoder per per-clip modality it was
    built with (``cnn`` for video, ``audio_encoder``; None for a modality it does not read)."""

    def _build_encoders(self, cfg: ModelConfig, modalities, pretrained: bool) -> None:
        self.modalities = modalities_named(modalities)
        names = [m.name for m in self.modalities]
        for m in MODALITIES:  # an encoder attribute is None when the model does not use that modality
            setattr(self, m.encoder_attr, m.build_encoder(cfg, pretrained) if m.name in names else None)

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    @property
    def uses_video(self) -> bool:
        return "video" in self.modality_names

    def encode_features(self, inputs: dict) -> dict:
        """Each modality's clips (B, N, ...) -> its encoder's output (B, N, D, ...): the visual tokens before
        fusion, which do not depend on the text."""
        missing = [m.name for m in self.modalities if inputs.get(m.name) is None]
        if missing:
            raise ValueError(f"this model was trained with {' and '.join(missing)}; pass "
                             + ", ".join(f"{name}=(B, N, ...)" for name in missing))
        return {m.name: getattr(self, m.encoder_attr)(inputs[m.name]) for m in self.modalities}

    def _gradient_checkpointing_encoders(self) -> None:
        for m in self.modalities:
            getattr(self, m.encoder_attr).enable_gradient_checkpointing()

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named parameters split into the modality encoders ("cnn") and the transformer side, for separate
        learning rates (optim.lr_cnn, optim.lr_transformer)."""
        encoders = tuple(f"{m.encoder_attr}." for m in self.modalities)
        groups: dict[str, list] = {"cnn": [], "transformer": []}
        for name, p in self.named_parameters():  # named_parameters lists a tied tensor once
            if p.requires_grad:
                groups["cnn" if name.startswith(encoders) else "transformer"].append((name, p))
        return groups


class ClipBertModel(ModalityEncoders):
    """The shared trunk of the fine-tuning and pretraining models: the modality encoders and the fusion
    transformer over [text ; modality tokens]."""

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

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory: recompute the encoders' stages and BERT layers in the backward pass."""
        self.transformer.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._gradient_checkpointing_encoders()


class ClipScorer(ModalityEncoders):
    """What every fine-tuning model shares, whatever its ``model.fusion`` (early: :class:`ClipBertForEmotion`; late,
    cross_attention, hybrid: models/fusion_strategies.py): text (B, L) and each modality's clips (B, N, ...) ->
    per-clip logits (B, N, K), scored a bounded number of clips at a time at inference, and the task kind's loss.

    Text given as (B, P, L) scores P texts against each video (retrieval pairs, multiple-choice candidates): the
    per-clip logits are then (B, N, P*K), each text's K outputs side by side (:func:`pair_logits`), and the
    clips go through their encoders once (:func:`per_text`). A subclass says how clips are scored
    (``_score_clips``) and builds ``cfg``, ``criterion``, the encoders and ``visual_aux``."""

    def _score_clips(self, input_ids, attention_mask, inputs: dict, features: dict | None = None):
        """-> (per-clip logits (B, N, K) or (B, N, P*K), the record the subclass's ``forward`` reads).
        ``features``: the encoders' outputs (:meth:`encode_features`) computed earlier, else from ``inputs``."""
        raise NotImplementedError

    def clip_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor | None = None,
                    clips_per_pass: int = 0, **modalities) -> torch.Tensor:
        """Per-clip logits (B, N, K); N = 1 for a text-only model.

        ``clips_per_pass`` > 0 scores the N clips that many at a time (each clip is scored on its own, so the
        logits are the same): activation memory then stays bounded however large N_test is. Runs under
        ``torch.inference_mode`` and the autocast of model.inference_precision."""
        with torch.inference_mode(), self.inference_autocast():
            return self._clip_logits(input_ids, attention_mask, video, clips_per_pass, **modalities)

    def inference_autocast(self):
        """bf16 autocast on the model's device with model.inference_precision=bf16; a no-op context at fp32."""
        if self.cfg.inference_precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=next(self.parameters()).device.type, dtype=torch.bfloat16)

    def _clip_logits(self, input_ids, attention_mask, video, clips_per_pass, **modalities) -> torch.Tensor:
        inputs = {k: v for k, v in {"video": video, **modalities}.items() if v is not None}
        clips = {k: v for k, v in inputs.items() if not k.endswith("_present")}  # (B, N, ...) each
        n = next(iter(clips.values())).shape[1] if clips else 1
        if clips_per_pass <= 0 or n <= clips_per_pass:
            return self._score_clips(input_ids, attention_mask, inputs)[0]
        parts = [self._score_clips(input_ids, attention_mask,
                                   {**inputs, **{k: v[:, i:i + clips_per_pass] for k, v in clips.items()}})[0]
                 for i in range(0, n, clips_per_pass)]  # each (B, n_i, K)
        return torch.cat(parts, dim=1)  # -> (B, N, K)

    def clip_logits_from_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: dict,
                                  present: dict | None = None) -> torch.Tensor:
        """Per-clip logits from encoder outputs computed earlier (:meth:`encode_features`): only what reads the
        text runs (retrieval ranking, cached search). Shapes as :meth:`clip_logits`."""
        return self._score_clips(input_ids, attention_mask, {k + "_present": v for k, v in (present or {}).items()},
                                 features)[0]

    def _visual_aux_loss(self, features: dict, pairs: int, labels: torch.Tensor, how: str) -> torch.Tensor | None:
        """model.visual_aux_weight's loss in training: a classifier on each clip's mean visual token. None where a
        video's texts are scored (the visual tokens alone cannot tell its P texts apart) or it is off."""
        grids = features.get("video")
        if getattr(self, "visual_aux", None) is None or not self.training or grids is None or pairs:
            return None
        aux_clip = self.visual_aux(grids.mean(dim=(-2, -1)))  # (B, N, D, h, w) -> (B, N, K)
        return self.loss(aggregate_clip_logits(aux_clip, how), labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Training loss of aggregated logits (B, K_out)."""
        if self.criterion is None:  # ClipBERT's own: one softmax over the classes
            from .losses import single_label_loss

            return single_label_loss(logits.float(), labels)
        return self.criterion(logits, labels)


class ClipBertForEmotion(ClipBertModel, ClipScorer):
    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, use_video: bool = True,
                 pad_token_id: int = 0, pretrained: bool = True, criterion: nn.Module | None = None,
                 modalities=None, inference: bool = False, head: nn.Module | None = None):
        """``num_labels`` is the classifier's output width (the task kind's ``num_outputs``). ``modalities``:
        the per-clip modalities it reads (default: video, or none with ``use_video=False``). ``criterion``:
        the task kind's loss of aggregated logits (default: softmax cross-entropy). ``pretrained=False``
        skips loading pretrained weights, for when a checkpoint is loaded next anyway; ``inference=True`` also
        builds the fusion transformer without transformers' modelling code (models/bert_inference.py: same
        names and logits, a second or more less to import) for a model that will only be evaluated. ``head``:
        the module from the pooled [CLS] (D,) to the ``num_labels`` outputs (the task kind's ``build_head``;
        default ClipBERT's classifier MLP; retrieval uses the image-text matching head). Texts (B, P, L): see
        :class:`ClipScorer`."""
        super().__init__()
        self.num_labels = num_labels
        self.criterion = criterion
        self._build_trunk(cfg, vocab_size, pad_token_id, pretrained,
                          ("video",) if modalities is None and use_video else (modalities or ()), inference)
        self.head = head if head is not None else ClassifierHead(cfg.hidden_size, num_labels, cfg.dropout)
        self.head.apply(self.transformer._init_weights)
        self.visual_aux = (nn.Linear(cfg.hidden_size, num_labels)
                           if self.uses_video and cfg.visual_aux_weight > 0 else None)

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> tuple[torch.Tensor, EncodedClips]:
        enc = self.encode_clips(input_ids, attention_mask, inputs, features)
        logits = self.head(enc.pooled)  # (B*N, D) -> (B*N, K), or (B*P*N, D) -> (B*P*N, K) for P texts each
        logits = rearrange(logits, "(r n) k -> r n k", n=enc.clips)  # -> (B, N, K) or (B*P, N, K)
        return pair_logits(logits, enc.pairs), enc  # (B*P, N, K) -> (B, N, P*K)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, aggregation: str | None = None, positive: torch.Tensor | None = None,
                group: torch.Tensor | None = None, **modalities) -> ClipBertOutput:
        """For model.contrastive_weight (texts given as (B, P, L)): ``positive`` (B,), which of each video's P texts
        describes it (the task kind's ``contrastive_targets``); ``group`` (B,), the video each row comes from."""
        how = aggregation or self.cfg.aggregation
        clip_logits, enc = self._score_clips(input_ids, attention_mask, {"video": video, **modalities})
        logits = aggregate_clip_logits(clip_logits, how)
        loss = loss_aux = loss_itc = None
        if labels is not None:
            loss = self.loss(logits, labels)
            grids = enc.features.get("video")
            loss_aux = self._visual_aux_loss(enc.features, enc.pairs, labels, how)
            if loss_aux is not None:
                loss = loss + self.cfg.visual_aux_weight * loss_aux
            if (self.cfg.contrastive_weight > 0 and self.training and grids is not None and enc.pairs
                    and positive is not None):
                loss_itc = self._contrastive_loss(grids, input_ids, attention_mask, positive, group)
                loss = loss + self.cfg.contrastive_weight * loss_itc
        return ClipBertOutput(loss=loss, logits=logits, clip_logits=clip_logits, loss_visual_aux=loss_aux,
                              loss_contrastive=loss_itc)

    def _contrastive_loss(self, grids, input_ids, attention_mask, positive, group) -> torch.Tensor:
        """model.contrastive_weight's loss: each video's mean visual token against the mean word embedding of the
        text that describes it (``positive``), the other rows' texts as negatives, except those of the same video
        (``group``) and those worded exactly alike (a shared "[SEP] square" is no negative of another square)."""
        from .losses import video_text_contrastive_loss

        b, p = input_ids.shape[:2]
        grids = grids.unflatten(0, (b, p))[:, 0]  # fuse repeated them per text: (B*P, N, ...) -> (B, N, ...)
        video = grids.mean(dim=(1, 3, 4))  # (B, N, D, h, w) -> (B, D)
        rows = torch.arange(b, device=input_ids.device)
        ids = input_ids[rows, positive]  # (B, P, L) -> (B, L)
        mask = attention_mask[rows, positive].unsqueeze(-1).float()  # (B, P, L) -> (B, L, 1)
        words = self.transformer.bert.embeddings.word_embeddings(ids)  # (B, L) -> (B, L, D)
        text = (words * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, L, D) -> (B, D)
        kept = ids * attention_mask[rows, positive]  # padding zeroed, so equal texts compare equal
        same = (kept[:, None, :] == kept[None, :, :]).all(-1)  # (B, B)
        return video_text_contrastive_loss(video, text, group, same=same)
