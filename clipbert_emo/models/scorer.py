"""The one base of every fine-tuning model, whatever its fusion strategy (``model.fusion``): :class:`ClipScorer`.

A strategy (early: models/clipbert.py; late, cross_attention, hybrid: models/fusion_strategies.py; any other
registered in models/registry.py) says only how it scores the clips of a batch (``_score_clips``) and what it
supports (class attributes, read by ``registry.check_fusion`` before a model is built). The base owns the rest:
the modality encoders, chunked clip scoring, inference autocast, ``forward`` with the aggregation over clips and the
auxiliary losses, the task kind's loss, parameter groups and gradient checkpointing. Training, evaluation,
prediction, retrieval ranking, export and serving call only these, so every strategy reaches all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from einops import rearrange, repeat

from ..config import ModelConfig
from .aggregation import aggregate_clip_logits
from .fusion import FusionTransformer
from .modalities import MODALITIES, modalities_named
from .outputs import ClipBertOutput


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


@dataclass
class ScoredClips:
    """What a strategy's ``_score_clips`` returns: the logits, and what ``forward``'s auxiliary losses read."""

    clip_logits: torch.Tensor  # (B, N, K) the strategy's per-clip logits; (B, N, P*K) for P texts each
    features: dict  # modality name -> its encoder's output (B, N, D, ...); (B*P, N, D, ...) where repeated per text
    present: dict = field(default_factory=dict)  # modality name (text included) -> (B,) bool, where it is asked
    branch_logits: dict | None = None  # modality name -> (B, N, K) or (B, N, P*K) its own head's (late, hybrid)
    weights: torch.Tensor | None = None  # (B, M) each branch's weight in the combination (late, hybrid)
    pairs: int = 0  # P texts scored against each video's clips; 0 = one text per video


@dataclass(frozen=True)
class Refusal:
    """A task kind a strategy cannot serve: ``why`` (the refusal's message), and whether only a model that reads
    clips is refused (a text-only model may still run it)."""

    why: str
    clips_only: bool = False


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
        fusion, which do not depend on the text. With ``clip_rows`` (B,) (data.group_by_video: samples that
        share a video) the clips are (U, N, ...), one row per distinct video, each encoded once and then handed
        to every sample that reads it."""
        missing = [m.name for m in self.modalities if inputs.get(m.name) is None]
        if missing:
            raise ValueError(f"this model was trained with {' and '.join(missing)}; pass "
                             + ", ".join(f"{name}=(B, N, ...)" for name in missing))
        features = {m.name: getattr(self, m.encoder_attr)(inputs[m.name]) for m in self.modalities}
        rows = inputs.get("clip_rows")
        if rows is None:
            return features
        return {name: f.index_select(0, rows) for name, f in features.items()}  # (U, N, D, ...) -> (B, N, D, ...)

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory: recompute the encoders' stages and every BERT's layers in the backward pass."""
        for module in self.modules():
            if isinstance(module, FusionTransformer):
                module.enable_gradient_checkpointing()
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


class ClipScorer(ModalityEncoders):
    """Text (B, L) and each modality's clips (B, N, ...) -> per-clip logits (B, N, K) -> aggregated (B, K), and the
    task kind's loss: the interface of every fusion strategy.

    Text given as (B, P, L) scores P texts against each video (retrieval pairs, multiple-choice candidates): the
    per-clip logits are then (B, N, P*K), each text's K outputs side by side (:func:`pair_logits`).

    A strategy subclasses it, registers itself (models/registry.py) and writes two things:

    - ``__init__(cfg, num_labels, vocab_size, *, pad_token_id, pretrained, criterion, modalities, use_text,
      build_head, inference)`` (what ``build_model`` passes): :meth:`_setup` first, then its modules;
      ``build_head`` (the task kind's ``Task.build_head``, None unless ``task_head``) makes the module from a
      pooled vector to the ``num_labels`` outputs (``fusion.output_head``);
    - ``_score_clips(input_ids, attention_mask, inputs, features) -> ScoredClips``: the clips of a batch scored.
    """

    # ---- what a strategy declares (registry.check_fusion refuses the rest before a model is built) ----
    reads: tuple[str, ...] | None = None  # the modalities it can read ("text" and per-clip ones); None = any
    # Scores texts (B, P, L) itself, each video's clips encoded once; False: the base repeats each video per text.
    text_pairs: bool = True
    task_head: bool = True  # places the task kind's head (Task.build_head); False: ClipBERT's classifier MLP
    contrastive: bool = False  # has model.contrastive_weight's video-text loss (``_auxiliary_losses``)
    refused_tasks: dict[str, Refusal] = {}  # task kinds it cannot serve, and why

    def _setup(self, cfg: ModelConfig, num_labels: int, vocab_size: int, criterion: nn.Module | None,
               use_text: bool = True, modalities=None, pretrained: bool = True) -> None:
        """What every strategy keeps: its config, output width, vocabulary size, the task kind's loss and whether
        it reads text. ``criterion``: the loss of aggregated logits (None: softmax cross-entropy). With
        ``modalities`` (the per-clip ones it reads) also their encoders, built first (the order of random draws)."""
        self.cfg = cfg
        self.num_labels = num_labels
        self.vocab_size = vocab_size
        self.criterion = criterion
        self.use_text = use_text
        if modalities is not None:
            if not modalities and not use_text:
                raise ValueError("a fusion model needs at least one modality (text, or a per-clip one)")
            self._build_encoders(cfg, modalities, pretrained)

    def _build_visual_aux(self) -> None:
        """model.visual_aux_weight's classifier on each clip's mean visual token (None when off or without video)."""
        self.visual_aux = (nn.Linear(self.cfg.hidden_size, self.num_labels)
                           if self.uses_video and self.cfg.visual_aux_weight > 0 else None)

    @property
    def branch_names(self) -> list[str]:
        """Every modality this model reads: text first, then the per-clip ones in the table's order."""
        return (["text"] if self.use_text else []) + self.modality_names

    def presence(self, inputs: dict, batch: int, device) -> dict:
        """Modality name (text included) -> (B,) bool, which samples have it (all, when the batch does not say)."""
        out = {}
        for name in self.branch_names:
            has = inputs.get(f"{name}_present")
            out[name] = (torch.ones(batch, dtype=torch.bool, device=device) if has is None
                         else has.to(device=device, dtype=torch.bool))
        return out

    def encode_inputs(self, input_ids: torch.Tensor, inputs: dict, features: dict | None = None
                      ) -> tuple[dict, dict, int]:
        """Each per-clip modality's encoder output (B, N, D, ...) (``features`` when given), every modality's
        presence (B,) and N (1 for a model without clips). Texts (B, P, L) count once per video."""
        if features is None:
            features = self.encode_features(inputs)
        n = next(iter(features.values())).shape[1] if features else 1  # a text-only model scores one "clip"
        return features, self.presence(inputs, input_ids.shape[0], input_ids.device), n

    # ---- scoring ----------------------------------------------------------------------------------------------
    def _score_clips(self, input_ids, attention_mask, inputs: dict, features: dict | None = None) -> ScoredClips:
        """The strategy's own: texts (B, L) (or (B, P, L) with ``text_pairs``), ``inputs`` each modality's clips
        (B, N, ...) and ``<name>_present`` masks (B,) -> per-clip logits (B, N, K). ``features``: the encoders'
        outputs (:meth:`encode_features`) computed earlier, else from ``inputs``."""
        raise NotImplementedError

    def _score(self, input_ids, attention_mask, inputs: dict, features: dict | None = None) -> ScoredClips:
        """:meth:`_score_clips`, with P texts per video for a strategy that scores one text at a time (``text_pairs``
        False): each video's encoder outputs and masks repeated for each of its texts (its ``present`` and
        ``weights`` then have one row per text)."""
        if self.text_pairs or input_ids.ndim != 3:
            return self._score_clips(input_ids, attention_mask, inputs, features)
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        if features is None:
            features = self.encode_features(inputs)  # once per video
        features = {k: per_text(f, pairs) for k, f in features.items()}  # (B, N, ...) -> (B*P, N, ...)
        masks = {k: per_text(v, pairs) for k, v in inputs.items() if k.endswith("_present") and v is not None}
        scored = self._score_clips(ids, mask, masks, features)
        branches = scored.branch_logits and {k: pair_logits(v, pairs) for k, v in scored.branch_logits.items()}
        return dataclasses.replace(scored, clip_logits=pair_logits(scored.clip_logits, pairs),  # -> (B, N, P*K)
                                   branch_logits=branches, pairs=pairs)

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
        clips = {k: v for k, v in inputs.items() if not k.endswith("_present") and k != "clip_rows"}  # (B, N, ...)
        n = next(iter(clips.values())).shape[1] if clips else 1
        if clips_per_pass <= 0 or n <= clips_per_pass:
            return self._score(input_ids, attention_mask, inputs).clip_logits
        parts = [self._score(input_ids, attention_mask,
                             {**inputs, **{k: v[:, i:i + clips_per_pass] for k, v in clips.items()}}).clip_logits
                 for i in range(0, n, clips_per_pass)]  # each (B, n_i, K)
        return torch.cat(parts, dim=1)  # -> (B, N, K)

    def clip_logits_from_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: dict,
                                  present: dict | None = None) -> torch.Tensor:
        """Per-clip logits from encoder outputs computed earlier (:meth:`encode_features`): only what reads the
        text runs (retrieval ranking, cached search). Shapes as :meth:`clip_logits`."""
        return self._score(input_ids, attention_mask, {k + "_present": v for k, v in (present or {}).items()},
                           features).clip_logits

    # ---- training ---------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, aggregation: str | None = None, positive: torch.Tensor | None = None,
                group: torch.Tensor | None = None, **modalities) -> ClipBertOutput:
        """Per-clip logits aggregated over the clips (model.aggregation unless ``aggregation``), and with ``labels``
        the task kind's loss plus the strategy's auxiliary losses. Texts (B, P, L): the logits are (B, P*K).
        For model.contrastive_weight: ``positive`` (B,), which of each video's P texts describes it (the task kind's
        ``contrastive_targets``); ``group`` (B,), the video each row comes from."""
        how = aggregation or self.cfg.aggregation
        scored = self._score(input_ids, attention_mask, {"video": video, **modalities})
        logits = aggregate_clip_logits(scored.clip_logits, how)
        per_modality = ({name: aggregate_clip_logits(lg, how) for name, lg in scored.branch_logits.items()}
                        if scored.branch_logits else None)
        loss, parts = None, {}
        if labels is not None:
            loss = self.loss(logits, labels)
            texts = {"input_ids": input_ids, "attention_mask": attention_mask, "positive": positive, "group": group}
            parts = self._auxiliary_losses(scored, labels, how, texts)
            for key, (weight, value) in parts.items():  # in the order the hooks add them
                loss = loss + weight * value
        return ClipBertOutput(loss=loss, logits=logits, clip_logits=scored.clip_logits, modality_logits=per_modality,
                              modality_weights=scored.weights, **{key: value for key, (_, value) in parts.items()})

    def _auxiliary_losses(self, scored: ScoredClips, labels: torch.Tensor, how: str, texts: dict) -> dict:
        """The losses added to the task's in training: ``ClipBertOutput`` field -> (weight, loss). The base adds
        model.visual_aux_weight's; a strategy extends the dict (``super()`` first: the order of the sum)."""
        aux = self._visual_aux_loss(scored.features, scored.pairs, labels, how)
        return {"loss_visual_aux": (self.cfg.visual_aux_weight, aux)} if aux is not None else {}

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
