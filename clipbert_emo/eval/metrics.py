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
    return {
        "threshold": float(threshold),
        "per_label": [
            {
                "label": labels[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(truth[:, i].sum()),
            }
            for i in range(len(labels))
        ],
        "micro_precision": float(mp),
        "micro_recall": float(mr),
        "micro_f1": float(mf),
        "macro_f1": float(f1.mean()) if len(labels) else 0.0,
        "subset_accuracy": subset,
        "labels": labels,
    }
