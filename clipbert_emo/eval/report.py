"""Plain-text and JSON rendering of evaluation results."""

from __future__ import annotations

import json
import math
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from ..config.atomic import atomic_write_text
from ..tasks.metrics import ClassificationReport

__all__ = ["format_table", "format_classification_report", "format_report", "write_json"]


def _fmt_cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    # bool is an Integral; print it as a word rather than 1/0.
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return format(v, floatfmt)
    return str(value)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def format_table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> str:
    """Aligned text table: header, dashed separator, one line per row.

    Missing keys render as empty cells. Numeric columns are right-aligned so
    decimal points line up; everything else is left-aligned.
    """
    columns = list(columns)
    cells = [[_fmt_cell(r.get(c), floatfmt) for c in columns] for r in rows]
    numeric = [
        any(_is_numeric(r.get(c)) for r in rows)
        and all(r.get(c) is None or _is_numeric(r.get(c)) for r in rows)
        for c in columns
    ]
    widths = [
        max([len(str(c))] + [len(row[j]) for row in cells]) for j, c in enumerate(columns)
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    out = [line([str(c) for c in columns]), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _format_confusion(confusion: list[list[int]], labels: list[str]) -> str:
    header = "true \\ pred"
    rows = []
    for name, counts in zip(labels, confusion):
        row = {header: name}
        row.update({lab: int(c) for lab, c in zip(labels, counts)})
        rows.append(row)
    return format_table(rows, [header] + list(labels))


def format_classification_report(rep: ClassificationReport) -> str:
    """Human-readable report: per-class table, summary lines, confusion matrix."""
    columns = ["label", "precision", "recall", "f1", "support"]
    total = sum(int(r["support"]) for r in rep.per_class)
    parts = [
        format_table(rep.per_class, columns),
        "",
        f"accuracy     {rep.accuracy:.3f}  (n={total})",
        f"macro-F1     {rep.macro_f1:.3f}  (mean over all {len(rep.labels)} classes)",
        f"weighted-F1  {rep.weighted_f1:.3f}",
        "",
        "confusion matrix (rows = true, cols = predicted):",
        _format_confusion(rep.confusion, rep.labels),
    ]
    return "\n".join(parts)


def format_report(report: dict) -> str | None:
    """The terminal rendering of a task's report beyond the summary table: per-class precision/recall/F1 and
    the confusion matrix of a class report (None for reports without classes)."""
    if {"per_class", "confusion", "labels"} <= report.keys():
        return format_classification_report(ClassificationReport(**report))
    return None


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and dataclass reports commonly end up in metric
    # dicts; converting here spares callers a manual pass.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, ClassificationReport):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically: readers see the old file or the complete new one."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def summary_rows(result: dict, task) -> list[dict]:
    """One table row per aggregation of an evaluation ``result`` (eval/evaluate.py, eval/retrieval.py): N_test,
    the aggregation, and the headline numbers the task kind picks from its report (``Task.summary``)."""
    return [{"n_test": result["n_test"], "aggregation": how, **task.summary(rep)}
            for how, rep in result["reports"].items()]
