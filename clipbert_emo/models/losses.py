"""Losses for class imbalance, multitask heads and sentiment regression.

Emotion data sets are skewed (MELD: about half the utterances are neutral;
CMU-MOSEI: "happy" dominates; DAiSEE: almost no "very bored"). Plain
cross-entropy then learns the majority classes and macro-F1 suffers. This
module offers the two usual remedies:

* ``weighted_ce``: cross-entropy with per-class weights from the training
  split's counts (:func:`class_weights_from_counts`, inverse frequency);
* ``focal``: the focal loss of Lin et al. 2017 ("Focal Loss for Dense Object
  Detection"), which down-weights samples the model already gets right, so
  the rare, hard ones dominate the gradient.

All losses are computed in float32 (float64 inputs stay float64, which lets
``torch.autograd.gradcheck`` run on them): under fp16/bf16 mixed precision a
softmax over low-precision logits loses too much to be trusted.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "LOSS_KINDS",
    "video_text_contrastive_loss",
    "class_weights_from_counts",
    "focal_loss",
    "single_label_loss",
    "multitask_loss",
    "multilabel_loss",
    "regression_loss",
]

LOSS_KINDS: tuple[str, ...] = ("ce", "weighted_ce", "focal")


def _promote(x: torch.Tensor) -> torch.Tensor:
    # At least float32; float64 is kept (gradcheck needs it).
    return x if x.dtype == torch.float64 else x.float()


def class_weights_from_counts(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency class weights, float32 of shape ``(K,)``.

    ``w_k = (1 / n_k) / mean_{j: n_j > 0}(1 / n_j)``, i.e. inverse frequency
    normalised so the weights of the classes that occur average exactly 1.
    The normalisation keeps the loss on the same scale as unweighted
    cross-entropy, so the learning rate tuned for ``ce`` still fits.

    A class with count 0 gets weight 0: the split has no sample of it, so no
    weight can make it learnable, and an infinite or arbitrary weight would
    only matter if such a label appeared later (it would then be ignored
    rather than blow up the loss). Example: counts ``[1, 3, 0, 2]`` ->
    inverse ``[1, 1/3, 0, 1/2]``, mean over present classes 11/18 ->
    ``[18/11, 6/11, 0, 9/11]``.

    Raises ValueError for negative counts or when no class has a sample.
    """
    c = torch.as_tensor(list(counts), dtype=torch.float64)
    if c.ndim != 1 or c.numel() == 0:
        raise ValueError("counts must be a non-empty 1-D sequence")
    if (c < 0).any():
        raise ValueError(f"counts must be >= 0, got {list(counts)}")
    present = c > 0
    if not present.any():
        raise ValueError("every class has count 0; class weights are undefined")
    inv = torch.where(present, 1.0 / c.clamp_min(1.0), torch.zeros_like(c))
    w = inv / inv[present].mean()
    return w.float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None = None,
               ignore_index: int = -100) -> torch.Tensor:
    """Focal loss ``-(1 - p_t)^gamma * log p_t`` (Lin et al. 2017), a scalar.

    ``logits`` is ``(B, K)``, ``target`` is ``(B,)`` class ids; samples whose
    target is ``ignore_index`` do not count. ``p_t`` is the softmax
    probability of the true class. ``weight`` (``(K,)``, optional) is the
    per-class alpha: each sample's term is multiplied by ``weight[t]``.

    Reduction is the one ``F.cross_entropy`` uses: the sum of the sample
    terms divided by the number of non-ignored samples, or, with ``weight``,
    by the sum of their weights. Hence ``gamma == 0`` gives exactly
    ``F.cross_entropy(logits, target, weight=weight, ignore_index=...)``
    (same ops, bit for bit). One deliberate difference: when every sample is
    ignored the result is 0 (still attached to the graph), not NaN.

    Numerics: ``log p`` comes from ``log_softmax`` and ``1 - p`` from
    ``-expm1(log p)``, which stays accurate when p is near 1; the base of
    the power is clamped at the smallest positive float so that a confident
    sample (``1 - p == 0``) cannot produce an infinite gradient for
    ``gamma < 1`` (its loss term is 0 anyway).
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, K), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must be (B,) = ({logits.shape[0]},), got shape {tuple(target.shape)}")
    x = _promote(logits)
    target = target.long()
    if weight is not None:
        weight = weight.to(device=x.device, dtype=x.dtype)
    if not bool((target != ignore_index).any()):
        return x.sum() * 0.0
    logp = F.log_softmax(x, dim=-1)  # (B, K)
    if gamma != 0:
        # Modulate every entry; nll_loss then picks the target's entry, so
        # the picked value is -(1 - p_t)^gamma * log p_t, and it applies the
        # weights, ignore_index and the mean exactly as cross_entropy does.
        one_minus_p = (-torch.expm1(logp)).clamp_min(torch.finfo(x.dtype).tiny)  # (B, K)
        logp = one_minus_p.pow(gamma) * logp
    return F.nll_loss(logp, target, weight=weight, ignore_index=ignore_index)


def single_label_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce",
                      class_weights: torch.Tensor | None = None, gamma: float = 2.0,
                      ignore_index: int = -100) -> torch.Tensor:
    """Softmax loss over ``(B, K)`` logits for ``(B,)`` targets, chosen by ``kind``.

    * ``"ce"``: plain cross-entropy (``class_weights`` must be None: passing
      weights with ``ce`` is almost certainly a configuration mix-up);
    * ``"weighted_ce"``: cross-entropy weighted by ``class_weights`` (``(K,)``,
      required; see :func:`class_weights_from_counts`);
    * ``"focal"``: :func:`focal_loss` with ``gamma``; ``class_weights``, if
      given, are its per-class alpha (the training loop passes none).

    Samples with ``target == ignore_index`` are skipped.
    """
    if kind == "ce":
        if class_weights is not None:
            raise ValueError("kind='ce' takes no class_weights; use kind='weighted_ce'")
        return focal_loss(logits, target, 0.0, None, ignore_index)
    if kind == "weighted_ce":
        if class_weights is None:
            raise ValueError("kind='weighted_ce' needs class_weights")
        if class_weights.shape != logits.shape[-1:]:
            raise ValueError(f"class_weights must be ({logits.shape[-1]},), got {tuple(class_weights.shape)}")
        return focal_loss(logits, target, 0.0, class_weights, ignore_index)
    if kind == "focal":
        return focal_loss(logits, target, gamma, class_weights, ignore_index)
    raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")


def multitask_loss(logits: torch.Tensor, target: torch.Tensor, num_heads: int, kind: str = "ce",
                   class_weights: torch.Tensor | None = None, gamma: float = 2.0) -> torch.Tensor:
    """Mean over heads of one softmax loss per head.

    ``logits`` is ``(B, H*K)``: head ``h`` owns columns ``h*K .. h*K+K-1``
    (the classifier is one Linear of width H*K). ``target`` is ``(B, H)``
    with ``-1`` where a sample is not annotated for that head.
    ``class_weights`` is ``(H, K)`` (one row per head) or None.

    Each head's loss is the :func:`single_label_loss` mean over that head's
    annotated samples; the result is the unweighted mean over the heads that
    have at least one annotated sample in this batch, so a batch in which a
    head happens to be unannotated neither counts it as 0 nor rescales the
    others. A batch with no annotation at all gives 0 (attached to the graph).
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, H*K), got shape {tuple(logits.shape)}")
    b, hk = logits.shape
    if num_heads <= 0 or hk % num_heads:
        raise ValueError(f"logits width {hk} is not a multiple of num_heads={num_heads}")
    k = hk // num_heads
    if target.shape != (b, num_heads):
        raise ValueError(f"target must be (B, H) = ({b}, {num_heads}), got {tuple(target.shape)}")
    if class_weights is not None and class_weights.shape != (num_heads, k):
        raise ValueError(f"class_weights must be (H, K) = ({num_heads}, {k}), got {tuple(class_weights.shape)}")
    per_head = logits.view(b, num_heads, k)  # (B, H*K) -> (B, H, K); row-major, so head h = columns h*K..h*K+K-1
    target = target.long()
    losses = []
    for h in range(num_heads):
        if not bool((target[:, h] != -1).any()):
            continue  # no annotation for this head in the batch
        w = None if class_weights is None else class_weights[h]
        # per_head[:, h]: (B, K); target[:, h]: (B,)
        losses.append(single_label_loss(per_head[:, h], target[:, h], kind, w, gamma, ignore_index=-1))
    if not losses:
        return _promote(logits).sum() * 0.0
    return torch.stack(losses).mean()


def multilabel_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Independent sigmoid binary cross-entropy per class for ``(B, K)`` multi-hot targets."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (L1), the training loss of most CMU-MOSI/MOSEI
    and CH-SIMS works (they also report MAE, so train and eval agree).

    ``pred`` is ``(B, 1)`` (a one-unit head) or ``(B,)``; ``target`` is ``(B,)``.
    """
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred.squeeze(1)  # (B, 1) -> (B,)
    if pred.ndim != 1 or pred.shape != target.shape:
        raise ValueError(f"pred must be (B,) or (B, 1) matching target (B,); got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    p = _promote(pred)
    return F.l1_loss(p, target.to(p.dtype))


CONTRASTIVE_TEMPERATURE = 0.07  # ALBEF's initial value; also what model.contrastive_score_weight divides by


def video_text_contrastive_loss(video: torch.Tensor, text: torch.Tensor, group: torch.Tensor | None = None,
                                temperature: float = CONTRASTIVE_TEMPERATURE,
                                same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE between B videos and their B captions (row i of each belongs together).

    ``video`` (B, D) and ``text`` (B, D) are compared by cosine similarity / ``temperature``; each video's own
    caption must win over the other captions of the batch and each caption's video over the other videos.
    ``group`` (B,): the video each row comes from; another row of the same video (a second caption of it) is
    left out of the candidates rather than counted as a wrong answer. ``same`` (B, B) bool, symmetric: further
    pairs that are not negatives either (e.g. two rows with the same text).
    """
    v = F.normalize(video.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    sim = v @ t.T / temperature  # (B, D) x (D, B) -> (B, B): video i against caption j
    skip = torch.zeros_like(sim, dtype=torch.bool)
    if group is not None:
        skip |= group[:, None] == group[None, :]
    if same is not None:
        skip |= same
    skip.fill_diagonal_(False)
    sim = sim.masked_fill(skip, float("-inf"))  # symmetric, so it serves both directions
    target = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
