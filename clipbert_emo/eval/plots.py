"""Training / evaluation / inference plots, rendered headlessly to PNG.

Figures are built with ``matplotlib.figure.Figure`` and an explicit Agg
canvas instead of ``pyplot``: that needs no display, never switches the
process-wide backend, and leaves no figures registered in pyplot's global
manager (so nothing leaks when called many times during training).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..config.atomic import atomic_path

__all__ = ["plot_report", "plot_learning_curves", "plot_pretraining_curves", "plot_confusion_matrix", "plot_clip_timeline",
           "plot_modality_summary"]

_LOSS_KEYS_ORDER = ("train_loss", "val_loss")
_X_KEYS = ("epoch", "step")


def _new_figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    # Figures created without pyplot are not tracked globally; clearing
    # drops artist references promptly for callers that keep `fig` alive.
    fig.clear()


def _finite_number(v) -> bool:
    if isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _series(history: list[dict], key: str, xkey: str | None):
    xs, ys = [], []
    for i, entry in enumerate(history):
        v = entry.get(key)
        if not _finite_number(v):
            continue
        x = entry.get(xkey) if xkey else None
        xs.append(float(x) if _finite_number(x) else float(i + 1))
        ys.append(float(v))
    return xs, ys


def _pick_x_key(history: list[dict]) -> str | None:
    # Prefer the axis most entries carry; epoch wins ties because per-epoch
    # summaries are the common case.
    counts = {k: sum(1 for e in history if _finite_number(e.get(k))) for k in _X_KEYS}
    best = max(_X_KEYS, key=lambda k: counts[k])
    return best if counts[best] else None


def plot_learning_curves(history: list[dict], path) -> None:
    """Loss panel (every ``*loss*`` key) and metrics panel (everything else).

    Entries may be per-epoch (``"epoch"``) or per-step (``"step"``); keys
    missing from some entries simply leave gaps in that series. The learning
    rate, when present, goes on a log-scaled twin axis of the metrics panel
    since it lives on a very different scale from accuracy/F1.
    """
    history = [dict(e) for e in (history or []) if isinstance(e, dict)]
    xkey = _pick_x_key(history)
    keys: list[str] = []
    for e in history:
        for k, v in e.items():
            if k in _X_KEYS or k in keys or not _finite_number(v):
                continue
            keys.append(k)
    loss_keys = sorted(
        (k for k in keys if "loss" in k),
        key=lambda k: (_LOSS_KEYS_ORDER.index(k) if k in _LOSS_KEYS_ORDER else 99, k),
    )
    lr_keys = [k for k in keys if k == "lr" or k.startswith("lr_") or k.endswith("_lr")]
    metric_keys = [k for k in keys if k not in loss_keys and k not in lr_keys]

    fig = _new_figure((12, 4.5))
    ax_loss, ax_met = fig.subplots(1, 2)
    xlabel = xkey or "entry"

    # Lines only for dense per-step logs; markers make sparse epoch logs and
    # single-point series visible.
    # Series that coincide (accuracy and F1 on a balanced set, say) stay visible: each gets its own dash pattern.
    styles = ["-", "--", ":", "-."]

    def draw(ax, key, label=None):
        xs, ys = _series(history, key, xkey)
        if xs:
            ax.plot(xs, ys, marker="o" if len(xs) <= 50 else None, ms=3, label=label or key,
                    ls=styles[len(ax.lines) % len(styles)])

    components = [k for k in loss_keys if k.startswith("train_loss_")]
    for k in loss_keys:
        # train_loss is what was minimised: the task's loss plus any weighted auxiliary terms drawn beside it.
        draw(ax_loss, k, f"train_loss (total, with {', '.join(c[len('train_loss_'):] for c in components)})"
             if k == "train_loss" and components else None)
    ax_loss.set_title("Loss")
    ax_loss.set_xlabel(xlabel)
    ax_loss.set_ylabel("loss")
    ax_loss.grid(True, alpha=0.3)
    if loss_keys:
        ax_loss.legend(loc="best", fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no loss values", ha="center", va="center",
                     transform=ax_loss.transAxes, color="gray")

    for k in metric_keys:
        draw(ax_met, k)
    ax_met.set_title("Metrics")
    ax_met.set_xlabel(xlabel)
    ax_met.grid(True, alpha=0.3)
    handles, names = ax_met.get_legend_handles_labels()
    if lr_keys:
        ax_lr = ax_met.twinx()
        for k in lr_keys:
            xs, ys = _series(history, k, xkey)
            if xs:
                ax_lr.plot(xs, ys, color="gray", ls="--", lw=1, label=k)
        lr_vals = [y for k in lr_keys for y in _series(history, k, xkey)[1]]
        if lr_vals and all(y > 0 for y in lr_vals):
            ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate", color="gray")
        ax_lr.tick_params(axis="y", colors="gray", labelsize=8)
        h2, n2 = ax_lr.get_legend_handles_labels()
        handles += h2
        names += n2
    if handles:
        ax_met.legend(handles, names, loc="best", fontsize=8)
    else:
        ax_met.text(0.5, 0.5, "no metric values", ha="center", va="center",
                    transform=ax_met.transAxes, color="gray")
    fig.tight_layout()
    _save(fig, path)


def plot_confusion_matrix(confusion, labels: Sequence[str], path, normalize: bool = True,
                          title: str | None = None) -> None:
    """Heatmap of a (K, K) confusion matrix (rows = true, cols = predicted).

    With ``normalize`` the colours show row-normalised recall so that rare
    classes are as readable as frequent ones; each cell is annotated with the
    raw count and the row percentage either way.
    """
    cm = np.asarray(confusion, dtype=np.int64)
    labels = [str(x) for x in labels]
    k = len(labels)
    if cm.shape != (k, k):
        raise ValueError(f"confusion must be ({k}, {k}) to match labels, got {cm.shape}")
    row_sums = cm.sum(axis=1, keepdims=True)
    pct = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64),
                    where=row_sums > 0)
    values = pct if normalize else cm.astype(np.float64)
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)

    side = max(4.0, 0.7 * k + 2.5)
    fig = _new_figure((side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of true class" if normalize else "count")

    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix"))

    fontsize = 9 if k <= 8 else 7 if k <= 15 else 5
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]}"
            if row_sums[i, 0] > 0:
                text += f"\n{100 * pct[i, j]:.0f}%"
            # Dark text on light cells, white on dark ones.
            dark = values[i, j] / vmax > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    fig.tight_layout()
    _save(fig, path)


def plot_clip_timeline(clip_times: list[float], clip_probs, labels: Sequence[str], path,
                       title: str | None = None) -> None:
    """Per-clip class probabilities over video time.

    Stacked areas show how probability mass is split at each clip; the
    argmax class per clip is drawn as a strip underneath so the dominant
    emotion can be read off at a glance.
    """
    times = np.asarray(clip_times, dtype=np.float64).reshape(-1)
    probs = np.asarray(clip_probs, dtype=np.float64)
    labels = [str(x) for x in labels]
    k = len(labels)
    if probs.ndim == 1 and k and probs.size == times.size * k:
        probs = probs.reshape(times.size, k)
    if probs.ndim != 2 or probs.shape != (times.size, k):
        raise ValueError(
            f"clip_probs must have shape ({times.size}, {k}) to match clip_times and labels, "
            f"got {probs.shape}"
        )
    order = np.argsort(times, kind="stable")
    times, probs = times[order], probs[order]

    cmap = _class_colors(k)
    fig = _new_figure((10, 4.5))
    gs = fig.add_gridspec(2, 1, height_ratios=[6, 1], hspace=0.08)
    ax = fig.add_subplot(gs[0])
    strip = fig.add_subplot(gs[1], sharex=ax)

    if times.size == 0:
        ax.text(0.5, 0.5, "no clips", ha="center", va="center", transform=ax.transAxes)
    elif times.size == 1:
        # stackplot needs two x positions to draw an area; a single clip is
        # shown as one stacked bar instead.
        bottom = 0.0
        for c in range(k):
            ax.bar(times[0], probs[0, c], bottom=bottom, width=1.0, color=cmap[c], label=labels[c])
            bottom += probs[0, c]
    else:
        ax.stackplot(times, probs.T, labels=labels, colors=cmap, alpha=0.85)

    # Probabilities from softmax heads sum to 1; sigmoid heads may not, so
    # let the axis grow in that case rather than clipping the stack.
    top = float(probs.sum(axis=1).max()) if probs.size else 1.0
    ax.set_ylim(0.0, max(1.0, top * 1.02))
    ax.set_ylabel("probability")
    ax.set_title(title or "Emotion probabilities over time")
    ax.grid(True, alpha=0.3)
    # Reverse so the legend reads top-to-bottom in the same order as the stack.
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, frameon=False)
    ax.tick_params(labelbottom=False)

    if times.size:
        top_cls = probs.argmax(axis=1)
        # Each clip's strip segment spans halfway to its neighbours.
        if times.size > 1:
            mids = (times[:-1] + times[1:]) / 2
            edges = np.concatenate([[times[0] - (mids[0] - times[0])], mids,
                                    [times[-1] + (times[-1] - mids[-1])]])
        else:
            edges = np.array([times[0] - 0.5, times[0] + 0.5])
        for i, c in enumerate(top_cls):
            strip.axvspan(edges[i], edges[i + 1], color=cmap[c], lw=0)
        ax.set_xlim(edges[0], edges[-1])
    strip.set_yticks([])
    strip.set_ylabel("top", rotation=0, ha="right", va="center")
    strip.set_xlabel("time (s)")
    _save(fig, path)


def _class_colors(k: int) -> list:
    from matplotlib import colormaps

    name = "tab10" if k <= 10 else "tab20"
    cmap = colormaps[name]
    return [cmap(i % cmap.N) for i in range(k)]


def plot_pretraining_curves(history: list[dict], path) -> None:
    """Pretraining: the MLM and ITM losses (train solid, held-out dashed) and the held-out accuracies."""
    epochs = [h["epoch"] for h in history]
    fig = _new_figure((9, 3.4))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, style in (("train_loss_mlm", "-"), ("train_loss_itm", "-"), ("val_loss_mlm", "--"), ("val_loss_itm", "--")):
        if key in history[0]:
            loss_ax.plot(epochs, [h[key] for h in history], style, marker="o", label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="pretraining losses")
    loss_ax.legend(fontsize=8)
    for key in ("val_itm_accuracy", "val_mlm_accuracy"):
        if key in history[0]:
            acc_ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="held-out pairs", ylim=(0, 1))
    if acc_ax.lines:
        acc_ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_modality_summary(rows: list[dict], path, target: float = 0.9, title: str | None = None) -> None:
    """Bars of held-out macro-F1 per (modalities, N_test, aggregation) row, coloured by modalities."""
    fig = _new_figure((9, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['modalities']}\nN={r['n_test']} {r['aggregation']}" for r in rows]
    kinds = list(dict.fromkeys(r["modalities"] for r in rows))
    colors = dict(zip(kinds, _class_colors(len(kinds))))
    ax.bar(range(len(rows)), [r["macro_f1"] for r in rows], color=[colors[r["modalities"]] for r in rows])
    ax.set_xticks(range(len(rows)), names, fontsize=7, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out macro-F1")
    ax.axhline(target, color="gray", lw=0.8, ls="--")
    ax.set_title(title or "SynthEmo: fusion vs single modality, dense vs single-clip inference")
    fig.tight_layout()
    _save(fig, path)


def plot_report(report: dict, out_dir, title: str, truth=None, pred=None) -> list[Path]:
    """The figures a task's report calls for, written into ``out_dir``: the confusion matrix of a class
    report, one per head of a multitask report, and predicted against true values of a regression (given
    ``truth`` and ``pred``). Returns the paths written."""
    written = []
    if "confusion" in report and "labels" in report:
        path = Path(out_dir) / "confusion_matrix.png"
        plot_confusion_matrix(report["confusion"], report["labels"], path, title=title)
        written.append(path)
    for head, rep in report.get("heads", {}).items():
        path = Path(out_dir) / f"confusion_matrix_{head}.png"
        plot_confusion_matrix(rep["confusion"], rep["labels"], path, title=f"{head}: {title}")
        written.append(path)
    if "mae" in report and truth is not None and pred is not None:
        path = Path(out_dir) / "predicted_vs_true.png"
        plot_predicted_vs_true(truth, pred, path, title=f"{title}: MAE {report['mae']:.3f}, r {report['corr']:.3f}")
        written.append(path)
    return written


def plot_predicted_vs_true(truth, pred, path, title: str = "") -> None:
    """Regression: each sample's prediction against its target, with the line where they are equal."""
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    fig = _new_figure((5, 5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(truth, pred, s=10, alpha=0.6)
    lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--", label="prediction = target")
    ax.set(xlabel="target", ylabel="prediction", title=title)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def plot_fusion_comparison(rows: list[dict], path, metric: str = "macro_f1", removed: Sequence[str] = (),
                           title: str | None = None) -> None:
    """Grouped bars per fusion strategy (and single-modality baseline): the held-out ``metric`` with every modality
    (mean over seeds, the spread as an error bar) and with each of ``removed`` taken away at test time."""
    fig = _new_figure((max(7.0, 1.3 * len(rows) + 3), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    series = [("all modalities", metric)] + [(f"without {m}", f"{metric}_without_{m}") for m in removed]
    width = 0.8 / len(series)
    colors = _class_colors(len(series))
    x = np.arange(len(rows))
    for j, (label, key) in enumerate(series):
        means = [r.get(key, float("nan")) if r.get(key) is not None else float("nan") for r in rows]
        spreads = [r.get(f"{key}_std") or 0.0 for r in rows]
        ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=spreads, capsize=2, label=label,
               color=colors[j])
    ax.set_xticks(x, [r["fusion"] for r in rows], fontsize=8, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"held-out {metric.replace('_', '-')}")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "Fusion strategies: held-out score, and with one modality removed at test time")
    fig.tight_layout()
    _save(fig, path)
