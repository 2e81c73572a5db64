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

Each is a :class:`~clipbert_emo.models.scorer.ClipScorer` that writes only how it scores a batch of clips
(``_score_clips``) and what it supports; the base does the rest, and models/registry.py names them. Every strategy
reads a subset of modalities and honours ``<name>_present`` masks (a missing or dropped modality contributes
nothing: its tokens are masked out of attention, its logits get weight 0, its pooled vector is zero). Every task
kind's output reaches them the same way: the task's head (``Task.build_head``) wherever a pooled vector becomes the
task's outputs, and P texts per video (input_ids (B, P, L): retrieval pairs, multiple-choice candidates) scored
against the same clips, which go through their encoders once. No strategy has a parameter that a batch with all its
modalities leaves without a gradient.

Parameter names shared with a ClipBERT checkpoint (what ``train.init_checkpoint`` / ``model.text_init`` can
fill): ``cnn.*`` and ``audio_encoder.*`` in every strategy; ``transformer.bert.{embeddings,encoder}`` (and
``pooler`` except in ``cross_attention``) for the text side of ``late`` and ``cross_attention`` (so a BERT
checkpoint, ``model.text_init``, starts it); all of ``early`` in ``hybrid``. Everything else starts fresh.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange, repeat

from ..config import ModelConfig
from .aggregation import aggregate_clip_logits
from .clipbert import ClipBertForEmotion
from .fusion import FusionTransformer, HeadBuilder, init_like_bert, make_bert_config, output_head
from .modalities import Modality
from .scorer import ClipScorer, Refusal, ScoredClips, pair_logits, per_text, split_pairs

# transformers' BertEncoder is imported where a strategy is built: the registry imports this module, and a process
# that only predicts with an early model never pays for transformers' modelling code.


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


class UnimodalEncoder(nn.Module):
    """One modality's own transformer: (B', D, ...) features of one clip -> its tokens (the modality's token
    embeddings) -> ``model.num_layers`` BERT layers -> (B', n, D). An absent modality is not masked here (its
    tokens only see each other); the strategies drop its contribution downstream."""

    def __init__(self, modality: Modality, cfg: ModelConfig, bert_config):
        from transformers.models.bert.modeling_bert import BertEncoder

        super().__init__()
        self.config = bert_config
        self.embeddings = modality.build_embeddings(cfg, bert_config)
        self.encoder = BertEncoder(bert_config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.embeddings(features)  # e.g. (B', D, h, w) -> (B', h*w, D)
        return self.encoder(tokens).last_hidden_state  # -> (B', n, D)


class LateBranches(nn.Module):
    """Late fusion's per-modality side: a transformer of its own over each per-clip modality's tokens, mean-pooled,
    a head per modality (text too, from a text BERT's pooled [CLS]; the task kind's head where it has one), and the
    learned weights of the decision-level combination. ``extra`` names logits computed elsewhere that join the
    combination (hybrid's early-fusion logits)."""

    def __init__(self, cfg: ModelConfig, bert_config, modalities: list[Modality], use_text: bool, num_labels: int,
                 extra: tuple[str, ...] = (), build_head: HeadBuilder | None = None):
        super().__init__()
        self.unimodal = nn.ModuleDict({m.name: UnimodalEncoder(m, cfg, bert_config) for m in modalities})
        names = (["text"] if use_text else []) + [m.name for m in modalities]
        self.heads = nn.ModuleDict({name: output_head(cfg, num_labels, build_head) for name in names})
        init_like_bert(self, cfg.initializer_range)
        # Softmax over these is each branch's weight; zeros = an even vote to start with.
        self.mix_names = list(extra) + names
        self.mix = nn.Parameter(torch.zeros(len(self.mix_names)))

    def forward(self, text: FusionTransformer | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: dict, present: dict, n: int, extra: dict | None = None) -> ScoredClips:
        """``text``: the BERT the text head reads (None without text); texts (B, L) or (B, P, L); ``features``
        (B, N, D, ...) and ``present`` (B,) once per video; ``extra`` (R, N, K), one row per text (R = B, or B*P).
        -> the combined per-clip logits (B, N, K) or (B, N, P*K), each modality's own likewise, the weights (B, M)."""
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L): R rows
        branch = {}
        if text is not None:
            pooled = text(ids, mask)[1]  # (R, D)
            branch["text"] = repeat(self.heads["text"](pooled), "r k -> r n k", n=n)  # (R, K) -> (R, N, K)
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
        return ScoredClips(pair_logits(combined, pairs), features, present,  # (B*P, N, K) -> (B, N, P*K)
                           {name: pair_logits(lg, pairs) for name, lg in branch.items()}, weights, pairs)


class LateFusionForEmotion(ClipScorer):
    """Decision-level fusion: each modality classified on its own, the per-clip logits combined by learned weights."""

    # A (video, text) pair's score is a video-only score plus a text-only one: the video's share is the same for each
    # of its texts, so it cannot tell a query's videos apart, nor a video's candidate answers.
    refused_tasks = {
        "retrieval": Refusal("late fusion scores the clips apart from the text (a pair's score is a video-only score "
                             "plus a text-only one), so every query would rank the videos in the same order"),
        "qa_mc": Refusal("late fusion scores the clips apart from the text (a pair's score is a video-only score "
                         "plus a text-only one), so the clips cannot change which candidate answer wins (a text-only "
                         "model, data.use_video=false data.use_audio=false, may use it)", clips_only=True),
    }

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None, inference: bool = False):
        super().__init__()
        self._setup(cfg, num_labels, vocab_size, criterion, use_text, modalities, pretrained)
        self.transformer = text_transformer(cfg, vocab_size, pad_token_id, pretrained) if use_text else None
        self.branches = LateBranches(cfg, _bert_config(cfg, vocab_size, pad_token_id), self.modalities, use_text,
                                     num_labels, build_head=build_head)
        self._build_visual_aux()

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        features, present, n = self.encode_inputs(input_ids, inputs, features)
        return self.branches(self.transformer, input_ids, attention_mask, features, present, n)


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


class CrossAttentionForEmotion(ClipScorer):
    """Per-modality encoders, then MulT-style pairwise cross-modal layers (``model.cross_layers`` per ordered pair).

    Each target modality's representation is the mean over the sources a sample has of its mean-pooled
    source-attended tokens (its own mean-pooled tokens in a one-modality model), zero when the sample lacks
    the target; the targets' representations are concatenated, projected to the hidden width and classified."""

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None, inference: bool = False):
        super().__init__()
        self._setup(cfg, num_labels, vocab_size, criterion, use_text, modalities, pretrained)
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
            init_like_bert(module, cfg.initializer_range)
        self._build_visual_aux()

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        """Rows: R = B videos, or B*P (video, text) pairs for P texts per video; every row's N clips meet its text."""
        features, present, n = self.encode_inputs(input_ids, inputs, features)
        b = input_ids.shape[0]
        ids, mask, pairs = split_pairs(input_ids, attention_mask)  # (B, P, L) -> (B*P, L)
        seqs, valid = {}, {}
        if self.use_text:
            seqs["text"] = self._on_clips(self.transformer.sequence(ids, mask), n)  # (R, L, D) -> (R*N, L, D)
            valid["text"] = self._on_clips(mask.bool(), n)  # (R, L) -> (R*N, L)
        for name, f in features.items():
            seq = self.unimodal[name](f.flatten(0, 1))  # (B, N, D, ...) -> (B*N, n_tok, D)
            # Encoded once per video, then met by each of its texts.
            seq = per_text(seq.unflatten(0, (b, n)), pairs)  # -> (B, N, n_tok, D) -> (R, N, n_tok, D)
            seqs[name] = seq.flatten(0, 1)  # -> (R*N, n_tok, D)
            valid[name] = None
        has = {name: repeat(per_text(p, pairs), "r -> (r n)", n=n).to(seqs[name].dtype)
               for name, p in present.items()}  # (B,) -> (R,) -> (R*N,)
        pooled = self._attend(seqs, valid, has)
        joint = torch.tanh(self.project(torch.cat(pooled, dim=1)))  # M x (R*N, D) -> (R*N, M*D) -> (R*N, D)
        logits = rearrange(self.head(joint), "(r n) k -> r n k", n=n)  # (R*N, K) -> (R, N, K)
        return ScoredClips(pair_logits(logits, pairs), features, present, pairs=pairs)  # -> (B, N, P*K)

    @staticmethod
    def _on_clips(text: torch.Tensor, n: int) -> torch.Tensor:
        """Every clip reads the full text of its video: (R, ...) -> (R*N, ...)."""
        return repeat(text, "r ... -> (r n) ...", n=n)

    def _attend(self, seqs: dict, valid: dict, has: dict) -> list[torch.Tensor]:
        """Each target modality's tokens (R*N, n_t, D) attending to every source's -> its pooled vector (R*N, D)."""
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
        return pooled


class HybridFusionForEmotion(ClipBertForEmotion):
    """ClipBERT's early fusion plus late fusion's per-modality heads: the early model's logits and each modality
    head's are combined by learned weights, and every modality head also trains on its own (an auxiliary loss
    weighted by ``model.fusion_aux_weight``, over the samples that have that modality).

    The early model is inherited whole (its parameters keep their names, so an early checkpoint starts it); the
    per-modality side is :class:`LateBranches`. With P texts per video the early part reads every (video, text)
    pair; the per-clip heads score each video once, the same for each of its texts."""

    contrastive = False  # the early part's contrastive loss is early fusion's alone

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("video",),
                 use_text: bool = True, build_head: HeadBuilder | None = None, inference: bool = False):
        # ``inference`` is not passed on: the text branch is transformers' BERT in any case.
        super().__init__(cfg, num_labels, vocab_size, pad_token_id=pad_token_id, pretrained=pretrained,
                         criterion=criterion, modalities=tuple(modalities), use_text=use_text, build_head=build_head)
        # The text head reads a BERT of its own: the early transformer's [CLS] has already seen every modality.
        self.text_transformer = text_transformer(cfg, vocab_size, pad_token_id, pretrained) if use_text else None
        self.branches = LateBranches(cfg, _bert_config(cfg, vocab_size, pad_token_id), self.modalities, use_text,
                                     num_labels, extra=("fused",), build_head=build_head)

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        if features is None:
            features = self.encode_features(inputs)  # (B, N, D, ...), kept once per video for the branches
        enc = self.encode_clips(input_ids, attention_mask, inputs, features)
        fused = self._head_logits(enc)  # (R, N, K), one row per text
        present = self.presence(inputs, enc.batch, input_ids.device)
        present["fused"] = torch.ones(enc.batch, dtype=torch.bool, device=input_ids.device)
        return self.branches(self.text_transformer, input_ids, attention_mask, features, present, enc.clips,
                             extra={"fused": fused})

    def _auxiliary_losses(self, scored: ScoredClips, labels, how, texts) -> dict:
        parts = super()._auxiliary_losses(scored, labels, how, texts)
        losses = []  # the mean over modality heads of each one's loss on the samples that have that modality
        for name, clip_logits in scored.branch_logits.items():
            has = scored.present[name]
            if bool(has.all()):
                losses.append(self.loss(aggregate_clip_logits(clip_logits, how), labels))
            elif bool(has.any()):
                losses.append(self.loss(aggregate_clip_logits(clip_logits[has], how), labels[has]))
            else:  # no sample has it: a zero that keeps the head in the graph (DDP waits for every gradient)
                losses.append(clip_logits.sum() * 0.0)
        if losses:
            parts["loss_modality_aux"] = (self.cfg.fusion_aux_weight, torch.stack(losses).mean())
        return parts
