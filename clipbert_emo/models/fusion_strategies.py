"""Where the modalities meet: the fusion strategies beside ClipBERT's early fusion (``model.fusion``).

- ``early`` (``ClipBertForEmotion``, models/clipbert.py): one transformer over [text ; visual ; audio] tokens.
- ``late`` (:class:`LateFusionForEmotion`): one encoder per modality (the same CNN / audio encoders, then a
  transformer of the modality's own; the text a BERT of its own), each pooled into its own classifier; the
  per-clip logits are combined by a learned weighted sum (decision-level fusion).
- ``cross_attention`` (:class:`CrossAttentionForEmotion`): the per-modality encoders of ``late``, then for
  every ordered pair of modalities cross-modal transformer layers in which the target's tokens attend to the
  source's (as in MulT), pooled per target and concatenated for one head.
- ``hybrid`` (:class:`HybridFusionForEmotion`): the early model plus late's per-modality heads (on the same
  CNN / audio features, the text through a BERT of its own); all their logits are combined by a learned weighted
  sum, and each per-modality head also trains with its own auxiliary loss (``model.fusion_aux_weight``).

Every strategy reads a subset of modalities, honours ``<name>_present`` masks (a missing or dropped modality
contributes nothing: its tokens are masked out of attention, its logits get weight 0, its pooled vector is
zero) and is a :class:`~clipbert_emo.models.clipbert.ClipScorer` like ``ClipBertForEmotion`` (``clip_logits``,
``clip_logits_from_features``, ``forward`` -> ``ClipBertOutput``, ``loss``, ``parameter_groups``), so training,
evaluation, prediction, retrieval ranking, DDP/DeepSpeed and resume are the same code. Every task kind's output
reaches them the same way: the task's head (``Task.build_head``) wherever a pooled vector becomes the task's
outputs, and P texts per video (input_ids (B, P, L): retrieval pairs, multiple-choice candidates) scored against
the same clips, which go through their encoders once. ``late`` has no text-video interaction, so config
validation refuses it where texts of one video are compared (retrieval; qa_mc with clips). No strategy has a
parameter that a batch with all its modalities leaves without a gradient.

Parameter names shared with a ClipBERT checkpoint (what ``train.init_checkpoint`` / ``model.text_init`` can
fill): ``cnn.*`` and ``audio_encoder.*`` in every strategy; ``transformer.bert.{embeddings,encoder}`` (and
``pooler`` except in ``cross_attention``) for the text side of ``late`` and ``cross_attention`` (so a BERT
checkpoint, ``model.text_init``, starts it); all of ``early`` in ``hybrid``. Everything else starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from einops import rearrange, repeat
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertEncoder

from ..config import ModelConfig
from .aggregation import aggregate_clip_logits
from .clipbert import ClipBertForEmotion, ClipScorer, pair_logits, per_text, split_pairs
from .fusion import FusionTransformer, HeadBuilder, make_bert_config, output_head
from .modalities import Modality
from .outputs import ClipBertOutput

FUSION_STRATEGIES = ("early", "late", "cross_attention", "hybrid")


def _bert_config(cfg: ModelConfig, vocab_size: int, pad_token_id: int):
    return make_bert_config(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, vocab_size,
                            cfg.dropout, cfg.max_text_positions, pad_token_id, cfg.initializer_range)


def text_transformer(cfg: ModelConfig, vocab_size: int, pad_token_id: int, pretrained: bool,
                     pooler: bool = True) -> FusionTransformer:
    """A BERT over the text alone (no other modality's embeddings), started from ``model.text_init`` when set."""
    transformer = FusionTransformer(_bert_config(cfg, vocab_size, pad_token_id), {})
    if not pooler:  # cross_attention pools its cross-modal outputs instead; an unused pooler would stall DDP
        transformer.bert.pooler = None
    if cfg.text_init and pretrained:
        transformer.load_bert(cfg.text_init)
    return transformer


def text_sequence(transformer: FusionTransformer, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(B, L) ids -> (B, L, D) the text BERT's output, without the pooler."""
    hidden = transformer.bert.embeddings(input_ids=input_ids)  # (B, L) -> (B, L, D)
    mask4d = create_bidirectional_mask(config=transformer.config, inputs_embeds=hidden, attention_mask=attention_mask)
    return transformer.bert.encoder(hidden, attention_mask=mask4d).last_hidden_state


class UnimodalEncoder(nn.Module):
    """One modality's own transformer: (B', D, ...) features of one clip -> its tokens (the modality's token
    embeddings) -> ``model.num_layers`` BERT layers -> (B', n, D). An absent modality is not masked here (its
    tokens only see each other); the strategies drop its contribution downstream."""

    def __init__(self, modality: Modality, cfg: ModelConfig, bert_config):
        super().__init__()
        self.config = bert_config
        self.embeddings = modality.build_embeddings(cfg, bert_config)
        self.encoder = BertEncoder(bert_config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(features)  # e.g. (B', D, h, w) -> (B', h*w, D)
        return self.encoder(tokens).last_hidden_state  # -> (B', n, D)


def _init_like_bert(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _presence(inputs: dict, name: str, batch: int, device) -> torch.Tensor:
    """(B,) bool: which samples have modality ``name`` (all, when the batch does not say)."""
    has = inputs.get(f"{name}_present")
    return torch.ones(batch, dtype=torch.bool, device=device) if has is None else has.to(device=device,
                                                                                          dtype=torch.bool)


@dataclass
class ScoredClips:
    clip_logits: torch.Tensor  # (B, N, K) the strategy's combined per-clip logits; (B, N, P*K) for P texts each
    features: dict  # modality name -> its encoder's output (B, N, D, ...), once per video
    present: dict  # modality name (text included) -> (B,) bool
    branch_logits: dict | None = None  # modality name -> (B, N, K) or (B, N, P*K) its own head's (late, hybrid)
    weights: torch.Tensor | None = None  # (B, M) each branch's weight in the combination (late, hybrid)
    pairs: int = 0  # P texts scored against each video's clips; 0 = one text per video


class _PerModalityBase(ClipScorer):
    """What late, cross_attention and hybrid add to every clip scorer: text as a modality of its own beside the
    per-clip ones (``branch_names``), their presence, and a ``forward`` that reports each modality's own logits
    and adds the strategy's auxiliary losses."""

    def _build_common(self, cfg: ModelConfig, num_labels: int, vocab_size: int, criterion, modalities,
                      use_text: bool, pretrained: bool) -> None:
        if not modalities and not use_text:
            raise ValueError("a fusion model needs at least one modality (text, or a per-clip one)")
        self.cfg = cfg
        self.num_labels = num_labels
        self.vocab_size = vocab_size
        self.criterion = criterion
        self.use_text = use_text
        self._build_encoders(cfg, modalities, pretrained)

    @property
    def branch_names(self) -> list[str]:
        """Text first, then the per-clip modalities in the table's order."""
        return (["text"] if self.use_text else []) + self.modality_names

    def _encode_features(self, inputs: dict, input_ids: torch.Tensor, features: dict | None = None
                         ) -> tuple[dict, dict, int, int]:
        """Each per-clip modality's features (B, N, D, ...) (``features`` when given), every modality's presence
        (B,), B and N. Texts (B, P, L) count once per video here."""
        if features is None:
            features = self.encode_features(inputs)
        b = input_ids.shape[0]
        n = next(iter(features.values())).shape[1] if features else 1  # a text-only model scores one "clip"
        present = {name: _presence(inputs, name, b, input_ids.device) for name in self.branch_names}
        return features, present, b, n

    def _branch_aux_loss(self, scored: ScoredClips, labels, how):
        return None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, aggregation: str | None = None, **modalities) -> ClipBertOutput:
        """Texts (B, L), or (B, P, L) for P texts per video: the logits are then (B, P*K), as ClipScorer's."""
        how = aggregation or self.cfg.aggregation
        clip_logits, scored = self._score_clips(input_ids, attention_mask, {"video": video, **modalities})
        logits = aggregate_clip_logits(clip_logits, how)
        per_modality = ({name: aggregate_clip_logits(lg, how) for name, lg in scored.branch_logits.items()}
                        if scored.branch_logits else None)
        loss = loss_aux = loss_branches = None
        if labels is not None:
            loss = self.loss(logits, labels)
            loss_aux = self._visual_aux_loss(scored.features, scored.pairs, labels, how)
            if loss_aux is not None:
                loss = loss + self.cfg.visual_aux_weight * loss_aux
            loss_branches = self._branch_aux_loss(scored, labels, how)
            if loss_branches is not None:
                loss = loss + self.cfg.fusion_aux_weight * loss_branches
        return ClipBertOutput(loss=loss, logits=logits, clip_logits=clip_logits, loss_visual_aux=loss_aux,
                              modality_logits=per_modality, modality_weights=scored.weights,
                              loss_modality_aux=loss_branches)

    def _text_on_clips(self, text: torch.Tensor, n: int) -> torch.Tensor:
        """Every clip reads the full text of its video: (B, ...) -> (B*N, ...)."""
        return repeat(text, "b ... -> (b n) ...", n=n)

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory: recompute the encoders' stages and the text BERT's layers in the backward pass."""
        if self.transformer is not None:
            self.transformer.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self._gradient_checkpointing_encoders()


class LateBranches(nn.Module):
    """Late fusion's per-modality side: a transformer of its own over each per-clip modality's tokens, mean-pooled,
    a head per modality (text too, from a pooled text vector given by the model; the task kind's head where it has
    one), and the learned weights of the decision-level combination. ``extra`` names logits computed elsewhere that
    join the combination (hybrid's early-fusion logits)."""

    def __init__(self, cfg: ModelConfig, bert_config, modalities: list[Modality], use_text: bool, num_labels: int,
                 extra: tuple[str, ...] = (), build_head: HeadBuilder | None = None):
        super().__init__()
        self.unimodal = nn.ModuleDict({m.name: UnimodalEncoder(m, cfg, bert_config) for m in modalities})
        names = (["text"] if use_text else []) + [m.name for m in modalities]
        self.heads = nn.ModuleDict({name: output_head(cfg, num_labels, build_head) for name in names})
        _init_like_bert(self, cfg.initializer_range)
        # Softmax over these is each branch's weight; zeros = an even vote to start with.
        self.mix_names = list(extra) + names
        self.mix = nn.Parameter(torch.zeros(len(self.mix_names)))

    def forward(self, text_pooled: torch.Tensor | None, features: dict, present: dict, n: int, pairs: int = 0,
                extra: dict | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """``text_pooled`` (R, D) one row per text: R = B, or B*P for P texts per video; ``features`` (B, N, D, ...)
        and ``present`` (B,) once per video; ``extra`` (R, N, K). -> combined per-clip logits (R, N, K), each
        modality's own (R, N, K), the weights used (B, M)."""
        branch = {}
        if text_pooled is not None:
            branch["text"] = self._text_on_clips(self.heads["text"](text_pooled), n)  # (R, K) -> (R, N, K)
        for name, f in features.items():
            seq = self.unimodal[name](f.flatten(0, 1))  # (B, N, D, ...) -> (B*N, D, ...) -> (B*N, n_tok, D)
            logits = self.heads[name](seq.mean(dim=1))  # (B*N, D) -> (B*N, K)
            # A per-clip modality does not read the text: scored once per video, the same for each of its texts.
            branch[name] = per_text(rearrange(logits, "(b n) k -> b n k", n=n), pairs)  # -> (B, N, K) -> (R, N, K)
        every = {**(extra or {}), **branch}
        stacked = torch.stack([every[name] for name in self.mix_names], dim=2)  # M x (R, N, K) -> (R, N, M, K)
        has = torch.stack([present[name] for name in self.mix_names], dim=1).to(stacked.dtype)  # (B, M)
        # A softmax restricted to the modalities each sample has: a missing one's logits weigh nothing.
        weights = self.mix.softmax(dim=0).to(stacked.dtype)[None] * has  # (B, M)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        combined = torch.einsum("bnmk,bm->bnk", stacked, per_text(weights, pairs))  # (B, M) -> (R, M); -> (R, N, K)
        return combined, branch, weights

    @staticmethod
    def _text_on_clips(logits: torch.Tensor, n: int) -> torch.Tensor:
        return repeat(logits, "b k -> b n k", n=n)


class LateFusionForEmotion(_PerModalityBase):
    """Decision-level fusion: each modality classified on its own, the per-clip logits combined by learned weights."""

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None):
        super().__init__()
        self._build_common(cfg, num_labels, vocab_size, criterion, modalities, use_text, pretrained)
        self.transformer = text_transformer(cfg, vocab_size, pad_token_id, pretrained) if use_text else None
        self.branches = LateBranches(cfg, _bert_config(cfg, vocab_size, pad_token_id), self.modalities, use_text,
                                     num_labels, build_head=build_head)
        self.visual_aux = nn.Linear(cfg.hidden_size, num_labels) if self.uses_video and cfg.visual_aux_weight > 0 else None

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> tuple[torch.Tensor, ScoredClips]:
        features, present, _, n = self._encode_features(inputs, input_ids, features)
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        text_pooled = self.transformer(ids, mask)[1] if self.use_text else None  # (R, D)
        combined, branch, weights = self.branches(text_pooled, features, present, n, pairs)
        combined = pair_logits(combined, pairs)  # (B*P, N, K) -> (B, N, P*K)
        branch = {name: pair_logits(lg, pairs) for name, lg in branch.items()}  # (B*P, N, K) -> (B, N, P*K)
        return combined, ScoredClips(combined, features, present, branch, weights, pairs)


class CrossModalLayer(nn.Module):
    """One cross-modal transformer layer (pre-LayerNorm, as MulT's): the target's tokens attend to the source's,
    then a feed-forward block; both with residuals, so the target stream carries its own content on."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float):
        super().__init__()
        self.norm_target = nn.LayerNorm(hidden_size)
        self.norm_source = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(hidden_size)
        self.ff = nn.Sequential(nn.Linear(hidden_size, intermediate_size), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(intermediate_size, hidden_size))
        self.dropout = nn.Dropout(dropout)

    def forward(self, target: torch.Tensor, source: torch.Tensor, source_padding: torch.Tensor | None) -> torch.Tensor:
        """target (B', n, D), source (B', m, D), source_padding (B', m) True = not a token -> (B', n, D)."""
        kv = self.norm_source(source)
        attended, _ = self.attention(self.norm_target(target), kv, kv, key_padding_mask=source_padding,
                                     need_weights=False)
        target = target + self.dropout(attended)
        return target + self.dropout(self.ff(self.norm_ff(target)))


def _masked_mean(seq: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B', n, D) -> (B', D), over the tokens ``valid`` (B', n) marks (all when None)."""
    if valid is None:
        return seq.mean(dim=1)
    w = valid.to(seq.dtype)[..., None]  # (B', n) -> (B', n, 1)
    return (seq * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class CrossAttentionForEmotion(_PerModalityBase):
    """Per-modality encoders, then MulT-style pairwise cross-modal layers (``model.cross_layers`` per ordered pair).

    Each target modality's representation is the mean over the sources a sample has of its mean-pooled
    source-attended tokens (its own mean-pooled tokens in a one-modality model), zero when the sample lacks
    the target; the targets' representations are concatenated, projected to the hidden width and classified."""

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None):
        super().__init__()
        self._build_common(cfg, num_labels, vocab_size, criterion, modalities, use_text, pretrained)
        self.transformer = (text_transformer(cfg, vocab_size, pad_token_id, pretrained, pooler=False)
                            if use_text else None)
        bert_config = _bert_config(cfg, vocab_size, pad_token_id)
        self.unimodal = nn.ModuleDict({m.name: UnimodalEncoder(m, cfg, bert_config) for m in self.modalities})
        names = self.branch_names
        self.cross = nn.ModuleDict({
            f"{s}_to_{t}": nn.ModuleList([CrossModalLayer(cfg.hidden_size, cfg.num_heads, cfg.intermediate_size,
                                                          cfg.dropout) for _ in range(cfg.cross_layers)])
            for t in names for s in names if s != t})
        self.project = nn.Linear(len(names) * cfg.hidden_size, cfg.hidden_size)
        self.head = output_head(cfg, num_labels, build_head)
        for module in (self.unimodal, self.cross, self.project, self.head):
            _init_like_bert(module, cfg.initializer_range)
        self.visual_aux = nn.Linear(cfg.hidden_size, num_labels) if self.uses_video and cfg.visual_aux_weight > 0 else None

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> tuple[torch.Tensor, ScoredClips]:
        """Rows: R = B videos, or B*P (video, text) pairs for P texts per video; every row's N clips meet its text."""
        features, present, b, n = self._encode_features(inputs, input_ids, features)
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        seqs, valid = {}, {}
        if self.use_text:
            seqs["text"] = self._text_on_clips(text_sequence(self.transformer, ids, mask), n)  # -> (R*N, L, D)
            valid["text"] = self._text_on_clips(mask.bool(), n)  # (R, L) -> (R*N, L)
        for name, f in features.items():
            seq = self.unimodal[name](f.flatten(0, 1))  # (B, N, D, ...) -> (B*N, n_tok, D)
            # Encoded once per video, then met by each of its texts.
            seq = per_text(seq.unflatten(0, (b, n)), pairs)  # -> (B, N, n_tok, D) -> (R, N, n_tok, D)
            seqs[name] = seq.flatten(0, 1)  # -> (R*N, n_tok, D)
            valid[name] = None
        has = {name: repeat(per_text(p, pairs), "r -> (r n)", n=n).to(seqs[name].dtype)
               for name, p in present.items()}  # (B,) -> (R,) -> (R*N,)
        pooled = []
        for t in self.branch_names:
            sources = [s for s in self.branch_names if s != t]
            if not sources:  # one modality: nothing to attend to
                rep = _masked_mean(seqs[t], valid[t])
            else:
                total = torch.zeros_like(seqs[t][:, 0])  # (R*N, D)
                count = torch.zeros_like(has[t])
                for s in sources:
                    x = seqs[t]
                    padding = None if valid[s] is None else ~valid[s]
                    for layer in self.cross[f"{s}_to_{t}"]:
                        x = layer(x, seqs[s], padding)  # (R*N, n_t, D)
                    total = total + has[s][:, None] * _masked_mean(x, valid[t])
                    count = count + has[s]
                rep = total / count.clamp_min(1.0)[:, None]
            pooled.append(rep * has[t][:, None])  # a sample without the target: a zero block
        joint = torch.tanh(self.project(torch.cat(pooled, dim=1)))  # M x (R*N, D) -> (R*N, M*D) -> (R*N, D)
        logits = rearrange(self.head(joint), "(r n) k -> r n k", n=n)  # (R*N, K) -> (R, N, K)
        logits = pair_logits(logits, pairs)  # (B*P, N, K) -> (B, N, P*K)
        return logits, ScoredClips(logits, features, present, pairs=pairs)


class HybridFusionForEmotion(_PerModalityBase, ClipBertForEmotion):
    """ClipBERT's early fusion plus late fusion's per-modality heads: the early model's logits and each modality
    head's are combined by learned weights, and every modality head also trains on its own (an auxiliary loss
    weighted by ``model.fusion_aux_weight``, over the samples that have that modality).

    The early part (``ClipBertForEmotion``: its parameters, ``encode_clips``) and the per-modality reporting
    (``_PerModalityBase``: ``forward``, ``branch_names``) are inherited; both are ``ClipScorer``s. With P texts per
    video the early part reads every (video, text) pair; the per-clip heads score each video once, the same for
    each of its texts."""

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None):
        # _PerModalityBase has no __init__: this is ClipBertForEmotion's, which builds the early model.
        super().__init__(cfg, num_labels, vocab_size, pad_token_id=pad_token_id, pretrained=pretrained,
                         criterion=criterion, modalities=tuple(modalities),
                         head=build_head(cfg, num_labels) if build_head is not None else None)
        self.vocab_size = vocab_size
        self.use_text = use_text
        # The text head reads a BERT of its own: the early transformer's [CLS] has already seen every modality.
        self.text_transformer = text_transformer(cfg, vocab_size, pad_token_id, pretrained) if use_text else None
        self.branches = LateBranches(cfg, _bert_config(cfg, vocab_size, pad_token_id), self.modalities, use_text,
                                     num_labels, extra=("fused",), build_head=build_head)

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> tuple[torch.Tensor, ScoredClips]:
        if features is None:
            features = self.encode_features(inputs)  # (B, N, D, ...), kept once per video for the branches
        enc = self.encode_clips(input_ids, attention_mask, inputs, features)
        fused = rearrange(self.head(enc.pooled), "(r n) k -> r n k", n=enc.clips)  # (R*N, K) -> (R, N, K)
        present = {name: _presence(inputs, name, enc.batch, input_ids.device) for name in self.branch_names}
        present["fused"] = torch.ones(enc.batch, dtype=torch.bool, device=input_ids.device)
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        text_pooled = self.text_transformer(ids, mask)[1] if self.use_text else None  # (R, D)
        combined, branch, weights = self.branches(text_pooled, features, present, enc.clips, pairs,
                                                  extra={"fused": fused})
        combined = pair_logits(combined, pairs)  # (B*P, N, K) -> (B, N, P*K)
        branch = {name: pair_logits(lg, pairs) for name, lg in branch.items()}  # (B*P, N, K) -> (B, N, P*K)
        return combined, ScoredClips(combined, features, present, branch, weights, pairs)

    def _branch_aux_loss(self, scored: ScoredClips, labels, how):
        """The mean over modality heads of each one's loss on the samples that have that modality."""
        losses = []
        for name, clip_logits in scored.branch_logits.items():
            has = scored.present[name]
            if bool(has.all()):
                losses.append(self.loss(aggregate_clip_logits(clip_logits, how), labels))
            elif bool(has.any()):
                losses.append(self.loss(aggregate_clip_logits(clip_logits[has], how), labels[has]))
            else:  # no sample has it: a zero that keeps the head in the graph (DDP waits for every gradient)
                losses.append(clip_logits.sum() * 0.0)
        return torch.stack(losses).mean() if losses else None

    def enable_gradient_checkpointing(self) -> None:
        super().enable_gradient_checkpointing()
        if self.text_transformer is not None:
            self.text_transformer.bert.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})


FUSION_MODELS = {"late": LateFusionForEmotion, "cross_attention": CrossAttentionForEmotion,
                 "hybrid": HybridFusionForEmotion}


def fusion_model(cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                 criterion: nn.Module | None = None, modalities=("video",), use_text: bool = True,
                 build_head: HeadBuilder | None = None) -> ClipScorer:
    """The model of ``cfg.fusion`` (``early`` is ``ClipBertForEmotion`` itself). ``build_head``: the task kind's
    (``Task.build_head``), used wherever a pooled vector becomes the task's ``num_labels`` outputs."""
    if cfg.fusion == "early":
        return ClipBertForEmotion(cfg, num_labels, vocab_size, pad_token_id=pad_token_id, pretrained=pretrained,
                                  criterion=criterion, modalities=tuple(modalities),
                                  head=build_head(cfg, num_labels) if build_head is not None else None)
    if cfg.fusion not in FUSION_MODELS:
        raise ValueError(f"model.fusion={cfg.fusion!r}: expected one of {', '.join(FUSION_STRATEGIES)}")
    return FUSION_MODELS[cfg.fusion](cfg, num_labels, vocab_size, pad_token_id=pad_token_id, pretrained=pretrained,
                                     criterion=criterion, modalities=tuple(modalities), use_text=use_text,
                                     build_head=build_head)
