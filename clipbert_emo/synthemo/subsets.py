"""Stratified subsets of a JSONL manifest, for the low-label experiments (e.g. 10% of the train labels)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config.atomic import atomic_write_text


def _allocate_stratified(sizes: list[int], fraction: float) -> list[int]:
    """How many to keep from each group: about ``fraction`` of the total, at least one per
    non-empty group. Largest-remainder rounding makes the total exactly
    ``round(fraction * N)`` unless the one-per-group floor forces more."""
    n = sum(sizes)
    target = int(round(fraction * n))
    quotas = [fraction * s for s in sizes]
    alloc = [min(s, max(1, int(np.floor(q)))) if s else 0 for s, q in zip(sizes, quotas)]
    while sum(alloc) < target:
        # Give the next one to the group furthest below its quota (lowest index on ties).
        gaps = [(q - a) if a < s else -np.inf for a, s, q in zip(alloc, sizes, quotas)]
        alloc[int(np.argmax(gaps))] += 1
    return alloc


def subset_manifest(manifest_path: str | os.PathLike, out_path: str | os.PathLike, fraction: float,
                    seed: int = 0) -> dict:
    """Writes a stratified random subset of a JSONL manifest (e.g. 10% of the SynthEmo train labels).

    Lines are grouped by ``label`` (a list label, as in multi-label manifests, is grouped by its
    sorted tuple; a line without a label forms its own group). Each group keeps a random
    ``~fraction`` of its lines, at least one, with the total exactly ``round(fraction * N)``
    unless keeping one per group needs more (see :func:`_allocate_stratified`). Kept lines stay in
    their original order, otherwise unchanged, except ``video``: a relative path is rewritten
    relative to ``out_path``'s folder (absolute if that is impossible, e.g. another drive), so
    the subset works wherever it is written. Randomness comes from ``seed`` only.

    Returns ``{"source", "fraction", "seed", "num_lines", "num_source_lines", "counts"}``
    (``counts``: kept lines per label, labels as strings).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    src = Path(manifest_path)
    out = Path(out_path)
    raw_lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not raw_lines:
        raise ValueError(f"{src} has no lines")
    records = [json.loads(ln) for ln in raw_lines]

    def key(rec):
        lab = rec.get("label")
        return tuple(sorted(lab)) if isinstance(lab, list) else lab

    groups: dict = {}
    for i, rec in enumerate(records):
        groups.setdefault(key(rec), []).append(i)
    names = sorted(groups, key=lambda k: (k is None, json.dumps(k, sort_keys=True)))   # a stable order
    alloc = _allocate_stratified([len(groups[k]) for k in names], float(fraction))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    keep: list[int] = []
    counts: dict[str, int] = {}
    for name, k in zip(names, alloc):
        idx = groups[name]
        keep.extend(idx[j] for j in rng.permutation(len(idx))[:k])
        counts[name if isinstance(name, str) else json.dumps(name)] = int(k)
    keep.sort()

    src_dir = src.resolve().parent
    out_dir = out.resolve().parent
    lines = []
    for i in keep:
        rec = records[i]
        video = rec.get("video")
        if isinstance(video, str) and video and not os.path.isabs(video) and src_dir != out_dir:
            target = src_dir / video
            try:
                rec = {**rec, "video": Path(os.path.relpath(target, out_dir)).as_posix()}
            except ValueError:   # no relative path between them (Windows drives)
                rec = {**rec, "video": str(target)}
            lines.append(json.dumps(rec))
        else:
            lines.append(raw_lines[i])   # untouched lines are copied byte for byte
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {
        "source": str(src),
        "fraction": float(fraction),
        "seed": int(seed),
        "num_lines": len(lines),
        "num_source_lines": len(records),
        "counts": counts,
    }
