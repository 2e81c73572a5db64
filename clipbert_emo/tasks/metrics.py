"""Classification metrics for emotion recognition, in plain numpy.

Conventions (chosen so that every metric is always a finite number, which
keeps logged histories and JSON reports free of NaN):

* precision of a class that is never predicted is 0;
* recall of a class with zero support (never present in ``y_true``) is 0;
* F1 is 0 whenever precision + recall == 0;
* macro-F1 is the unweighted mean over ALL ``K`` classes, including classes
  with zero support in the evaluated split. A zero-support class therefore
  pulls macro-F1 down; this is deliberate, because silently dropping classes
  would make scores on different splits incomparable.
* weighted-F1 weights each class's F1 by its support (0 when there are no
  samples at all).
* unweighted accuracy (UA, what IEMOCAP papers report next to the overall
  accuracy, WA) is the mean recall over the classes that HAVE support: a
  class absent from the split has no recall to average, and counting it as
  0 would make UA unreachable on such a split. This matches sklearn's
  ``balanced_accuracy_score``; 0 when there are no samples at all.

Beyond single-label classification the module also covers the other task
types: :func:`multilabel_report` (independent sigmoid heads, with the
CMU-MOSEI weighted accuracy), :func:`multitask_report` (one softmax per head,
e.g. DAiSEE) and :func:`regression_report` (sentiment intensity as reported
in the CMU-MOSI / MOSEI / CH-SIMS literature). They follow the same
conventions: a ratio whose denominator is 0 is 0, never NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "ClassificationReport",
    "classification_report",
    "multilabel_report",
    "multitask_report",
    "regression_report",
]


def _as_label_array(y, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.size == 0:
        # np.asarray([]) is float64; treat an empty input as zero samples.
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        # Whole-number floats (e.g. from tensor.tolist()) are fine; anything
        # fractional is almost certainly probabilities passed by mistake.
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name} must contain integer class ids; found {arr[i]!r} at index {i}"
            )
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name} must contain integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_range(arr: np.ndarray, num_classes: int, name: str) -> None:
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} has label {int(arr[i])} at index {i}, outside [0, {num_classes})"
        )


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Return a ``(K, K)`` int64 matrix; rows are true classes, columns predicted."""
    if int(num_classes) != num_classes or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = int(num_classes)
    t = _as_label_array(y_true, "y_true")
    p = _as_label_array(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"length mismatch: y_true has {t.shape[0]} items, y_pred has {p.shape[0]}")
    _check_range(t, num_classes, "y_true")
    _check_range(p, num_classes, "y_pred")
    # A single bincount over flattened (row, col) ids avoids a Python loop.
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray):
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1


@dataclass
class ClassificationReport:
    accuracy: float
    macro_f1: float
    weighted_f1: float
    # Defaults to 0 so that reports written before it existed still load (eval/report.py rebuilds them).
    unweighted_accuracy: float = 0.0
    per_class: list[dict] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (plain Python floats/ints only)."""
        return asdict(self)


def classification_report(y_true, y_pred, labels: Sequence[str]) -> ClassificationReport:
    """Single-label report; ``labels[k]`` names class id ``k``.

    See the module docstring for the zero-division and averaging conventions.
    """
    labels = [str(x) for x in labels]
    k = len(labels)
    if k == 0:
        raise ValueError("labels must not be empty")
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision, recall, f1 = _prf(tp, predicted - tp, support - tp)
    n = int(cm.sum())
    accuracy = float(tp.sum() / n) if n else 0.0
    macro_f1 = float(f1.mean())
    weighted_f1 = float((f1 * support).sum() / n) if n else 0.0
    present = support > 0
    unweighted_accuracy = float(recall[present].mean()) if present.any() else 0.0
    per_class = [
        {
            "label": labels[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    ]
    return ClassificationReport(
        accuracy=accuracy,
        macro_f1=macro_f1,
        weighted_f1=weighted_f1,
        unweighted_accuracy=unweighted_accuracy,
        per_class=per_class,
        confusion=cm.tolist(),
        labels=labels,
    )


def multilabel_report(y_true_bin, y_score, labels, threshold: float = 0.5) -> dict:
    """Report for multi-label (independent sigmoid) heads.

    ``y_true_bin`` is an ``(N, K)`` 0/1 matrix; ``y_score`` is ``(N, K)``
    probabilities (or already-binarised predictions). A label is predicted
    when ``score >= threshold``. Returns per-label precision/recall/F1/support,
    micro-F1 (pooled TP/FP/FN over all labels), macro-F1 (mean over all K
    labels, zero-support ones included) and subset accuracy (fraction of
    samples whose whole predicted label set is exactly right).

    Each per-label row also carries ``weighted_accuracy``, the metric the
    CMU-MOSEI emotion literature reports per emotion (Tong et al. 2017;
    Zadeh et al. 2018)::

        WA = (TP * N / P + TN) / (2 * N)

    with P = positives and N = negatives of that label in ``y_true``. It is
    the mean of recall on positives and specificity on negatives (the
    balanced accuracy), so always predicting "absent" scores 0.5 however
    rare the label is. Zero-division: if N == 0 the result is 0; if P == 0
    the TP * N / P term is 0 (so WA = TN / 2N, at most 0.5: a label with no
    positives cannot show that it is recognised). ``mean_weighted_accuracy``
    averages WA over all K labels (0 when K == 0).
    """
    labels = [str(x) for x in labels]
    t = np.asarray(y_true_bin)
    s = np.asarray(y_score, dtype=np.float64)
    if t.ndim == 1 and t.size == 0:
        t = t.reshape(0, len(labels))
    if s.ndim == 1 and s.size == 0:
        s = s.reshape(0, len(labels))
    if t.ndim != 2 or s.ndim != 2:
        raise ValueError(f"expected 2-D (N, K) arrays, got {t.shape} and {s.shape}")
    if t.shape != s.shape:
        raise ValueError(f"shape mismatch: y_true_bin {t.shape} vs y_score {s.shape}")
    if t.shape[1] != len(labels):
        raise ValueError(f"got {len(labels)} labels but arrays have {t.shape[1]} columns")
    bad = np.argwhere((t != 0) & (t != 1))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise ValueError(f"y_true_bin must be 0/1; found {t[i, j]!r} at index ({i}, {j})")
    if np.isnan(s).any():
        i, j = (int(v) for v in np.argwhere(np.isnan(s))[0])
        raise ValueError(f"y_score has NaN at index ({i}, {j})")

    truth = t.astype(bool)
    pred = s >= threshold
    tp = (truth & pred).sum(axis=0).astype(np.float64)
    fp = (~truth & pred).sum(axis=0).astype(np.float64)
    fn = (truth & ~pred).sum(axis=0).astype(np.float64)
    precision, recall, f1 = _prf(tp, fp, fn)
    mp, mr, mf = _prf(tp.sum(), fp.sum(), fn.sum())
    n = t.shape[0]
    subset = float((truth == pred).all(axis=1).mean()) if n else 0.0
    tn = (~truth & ~pred).sum(axis=0).astype(np.float64)
    pos = tp + fn
    neg = tn + fp
    # (TP * N / P + TN) / 2N, each zero-denominator term taken as 0.
    wa = _safe_div(_safe_div(tp * neg, pos) + tn, 2.0 * neg)
    return {
        "threshold": float(threshold),
        "per_label": [
            {
                "label": labels[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(truth[:, i].sum()),
                "weighted_accuracy": float(wa[i]),
            }
            for i in range(len(labels))
        ],
        "micro_precision": float(mp),
        "micro_recall": float(mr),
        "micro_f1": float(mf),
        "macro_f1": float(f1.mean()) if len(labels) else 0.0,
        "subset_accuracy": subset,
        "mean_weighted_accuracy": float(wa.mean()) if len(labels) else 0.0,
        "labels": labels,
    }


def multitask_report(y_true, y_pred, heads: Sequence[str], labels) -> dict:
    """Report for multitask heads: one softmax over the same K classes per head.

    ``y_true`` and ``y_pred`` are ``(S, H)`` integer arrays, column ``h``
    belonging to ``heads[h]`` (e.g. DAiSEE's boredom / engagement /
    confusion / frustration, each rated 0..3). ``y_true == -1`` marks a
    sample that is not annotated for that head; it is left out of that
    head's report only (its prediction there is ignored, whatever it is).

    ``labels`` names the classes: one list shared by every head (the usual
    case, ``data.labels``), or one list per head.

    Returns ``{"heads": {head: classification_report(...).to_dict()},
    "num_labelled": {head: n}, "mean_accuracy", "mean_macro_f1",
    "mean_weighted_f1", "heads_order": [...]}``. The means are unweighted
    over ALL heads, a head with no annotated sample included (it scores 0,
    like a zero-support class in macro-F1): dropping it would make numbers
    from different splits incomparable.
    """
    heads = [str(h) for h in heads]
    nh = len(heads)
    if nh == 0:
        raise ValueError("heads must not be empty")
    if len(labels) and not isinstance(labels[0], str) and isinstance(labels[0], Sequence):
        per_head = [list(x) for x in labels]
        if len(per_head) != nh:
            raise ValueError(f"got {len(per_head)} label lists for {nh} heads")
    else:
        per_head = [list(labels)] * nh
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.size == 0 and p.size == 0:
        t = np.zeros((0, nh), dtype=np.int64)
        p = np.zeros((0, nh), dtype=np.int64)
    if t.ndim != 2 or p.ndim != 2:
        raise ValueError(f"expected 2-D (S, H) arrays, got {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: y_true {t.shape} vs y_pred {p.shape}")
    if t.shape[1] != nh:
        raise ValueError(f"got {nh} heads but arrays have {t.shape[1]} columns")

    reports: dict[str, dict] = {}
    counts: dict[str, int] = {}
    acc, macro, weighted = [], [], []
    for h, name in enumerate(heads):
        col_t = _as_label_array(t[:, h], f"y_true[:, {h}]")
        keep = col_t != -1
        rep = classification_report(col_t[keep], np.asarray(p[:, h])[keep], per_head[h])
        reports[name] = rep.to_dict()
        counts[name] = int(keep.sum())
        acc.append(rep.accuracy)
        macro.append(rep.macro_f1)
        weighted.append(rep.weighted_f1)
    return {
        "heads": reports,
        "num_labelled": counts,
        "mean_accuracy": float(np.mean(acc)),
        "mean_macro_f1": float(np.mean(macro)),
        "mean_weighted_f1": float(np.mean(weighted)),
        "heads_order": heads,
    }


def _as_value_array(y, name: str) -> np.ndarray:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]   # a (B, 1) regression head output
    if arr.size == 0:
        return np.zeros(0, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or (N, 1)), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} has a non-finite value {arr[i]!r} at index {i}")
    return arr


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # Centred formula rather than np.corrcoef, which warns and returns NaN
    # when a side is constant; here that case is defined as 0.
    if a.size < 2:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    den = np.sqrt((da * da).sum() * (db * db).sum())
    if den <= 0 or not np.isfinite(den):
        return 0.0
    return float(np.clip((da * db).sum() / den, -1.0, 1.0))


def _binary_acc_f1(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    # Weighted F1 over the two classes (support-weighted, as sklearn's
    # f1_score(average="weighted") that MMSA calls), via the report above.
    rep = classification_report(truth.astype(np.int64), pred.astype(np.int64), ["negative", "positive"])
    return rep.accuracy, rep.weighted_f1


def _binned_acc(truth: np.ndarray, pred: np.ndarray, edges: Sequence[float]) -> float:
    # Bins are left-open, right-closed: (e[i], e[i+1]]. np.searchsorted with
    # side="left" returns i+1 for a value in (e[i], e[i+1]], and values at or
    # below the first edge land in bin 0 after the clip.
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    bt = np.searchsorted(inner, truth, side="left")
    bp = np.searchsorted(inner, pred, side="left")
    return float((bt == bp).mean()) if truth.size else 0.0


def regression_report(y_true, y_pred, scale: str = "mosi") -> dict:
    """Sentiment-regression metrics as the CMU-MOSI / MOSEI / CH-SIMS papers report them.

    ``y_true`` and ``y_pred`` are 1-D (or ``(N, 1)``) real arrays. The
    definitions follow the MMSA toolkit (thuiar/MMSA, ``metricsTop.py``), the
    code most of those papers' numbers come from.

    ``scale="mosi"`` (default; CMU-MOSI and CMU-MOSEI, labels in [-3, 3]):

    * ``mae``: mean |pred - true| on the raw values.
    * ``corr``: Pearson correlation of pred and true; 0 if either side is
      constant or there are fewer than 2 samples.
    * ``acc2_has0`` / ``f1_has0``: binary negative (< 0) vs non-negative
      (>= 0) on ALL samples; a true 0 counts as non-negative.
    * ``acc2_non0`` / ``f1_non0``: negative vs positive on the samples whose
      true value is not exactly 0 (they are excluded); a sample is positive
      when its value is > 0, so a prediction of exactly 0 counts as negative
      here (as in MMSA). 0 when every true value is 0.
    * ``acc2`` / ``f1``: aliases of the non0 versions (the convention most
      tables label "Acc-2" / "F1" without qualification).
    * The F1 values are the weighted F1 over the two classes (each class's F1
      weighted by its support in ``y_true``), which is what MMSA reports.
    * ``acc7``: accuracy after ``np.round(np.clip(x, -3, 3))`` of both sides
      (7 classes -3..3). ``acc5``: the same with ``clip(x, -2, 2)`` (5
      classes -2..2). ``np.round`` rounds halves to even (0.5 -> 0,
      1.5 -> 2), exactly as in MMSA. These assume the [-3, 3] scale; do not
      use them for [-1, 1] labels (use ``scale="sims"``).

    ``scale="sims"`` (CH-SIMS, labels in [-1, 1]). Predictions and targets
    are first clipped to [-1, 1] (as MMSA does; this only moves predictions,
    since the labels already lie there), then:

    * ``mae``, ``corr``, ``acc2_has0``, ``f1_has0``, ``acc2_non0``,
      ``f1_non0``, ``acc2``, ``f1``: as above, on the clipped values.
    * ``acc3``: 3 classes [-1, -0.1], (-0.1, 0.1], (0.1, 1] (negative,
      neutral, positive), as defined in the CH-SIMS paper (Yu et al. 2020).
    * ``acc5``: 5 classes [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7],
      (0.7, 1].
    * no ``acc7``: 7 classes are not defined on this scale.

    ``num_samples`` is N. With N == 0 every metric is 0.
    """
    if scale not in ("mosi", "sims"):
        raise ValueError(f"scale must be 'mosi' or 'sims', got {scale!r}")
    t = _as_value_array(y_true, "y_true")
    p = _as_value_array(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(f"length mismatch: y_true has {t.shape[0]} items, y_pred has {p.shape[0]}")
    n = int(t.shape[0])
    if scale == "sims":
        t = np.clip(t, -1.0, 1.0)
        p = np.clip(p, -1.0, 1.0)

    acc2_has0, f1_has0 = _binary_acc_f1(t >= 0, p >= 0)
    nz = t != 0
    acc2_non0, f1_non0 = _binary_acc_f1(t[nz] > 0, p[nz] > 0)
    out = {
        "mae": float(np.abs(p - t).mean()) if n else 0.0,
        "corr": _pearson(t, p),
        "acc2_has0": acc2_has0,
        "f1_has0": f1_has0,
        "acc2_non0": acc2_non0,
        "f1_non0": f1_non0,
        "acc2": acc2_non0,
        "f1": f1_non0,
    }
    if scale == "mosi":
        def rounded_acc(lim: float) -> float:
            if not n:
                return 0.0
            return float((np.round(np.clip(t, -lim, lim)) == np.round(np.clip(p, -lim, lim))).mean())

        out["acc5"] = rounded_acc(2.0)
        out["acc7"] = rounded_acc(3.0)
    else:
        out["acc3"] = _binned_acc(t, p, (-1.0, -0.1, 0.1, 1.0))
        out["acc5"] = _binned_acc(t, p, (-1.0, -0.7, -0.1, 0.1, 0.7, 1.0))
    out["num_samples"] = n
    return out
