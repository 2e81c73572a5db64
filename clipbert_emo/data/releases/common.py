"""What the release readers share: the release folder and files checked against the layout as
distributed, CSV rows read the way the releases write them, and the report of skipped samples."""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, ManifestError, Sample

# The readers lived in data/benchmarks.py; the CLI's log lines and users' log filters name them so.
logger = logging.getLogger("clipbert_emo.data.benchmarks")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
STRAY_BYTES = {0xDC80 + i: 0x80 + i for i in range(128)}  # surrogateescape'd byte -> that latin-1 char


@dataclass(frozen=True)
class Release:
    """A release as messages name it, and its layout as distributed, shown when data.root does not match it."""

    name: str
    layout: str

    def root(self, cfg: DataConfig) -> Path:
        if not cfg.root:
            raise ConfigError(f"data.format={cfg.format} reads the release from data.root; set data.root=PATH")
        root = Path(cfg.root).expanduser()
        if not root.is_dir():
            raise ManifestError(f"{self.name} release not found: {root} is not a folder. "
                                f"data.root must hold the release as distributed:\n{self.layout}")
        return root

    def need(self, path: Path, is_dir: bool = False) -> Path:
        if (path.is_dir() if is_dir else path.is_file()):
            return path
        kind = "folder" if is_dir else "file"
        raise ManifestError(f"{self.name} release incomplete: {kind} not found: {path}. "
                            f"data.root must hold the release as distributed:\n{self.layout}")


class Skips:
    """Samples left out, as (where, "kind: detail"); the kind before the colon is what gets counted."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, reason: str) -> None:
        if self.strict:
            raise ManifestError(f"{where}: {reason} (data.strict=true)")
        self.items.append((where, reason))


def finish(path: Path, split: str, samples: list[Sample], skips: Skips) -> Manifest:
    counts = Counter(reason.split(":", 1)[0] for _, reason in skips.items)
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    if skips.items:
        shown = "\n".join(f"  {w}: {r}" for w, r in skips.items[:5])
        more = f"\n  ... and {len(skips.items) - 5} more" if len(skips.items) > 5 else ""
        logger.warning("%s (%s split): skipped %d sample(s): %s\n%s%s", path, split, len(skips.items), summary,
                       shown, more)
    if not samples:
        raise ManifestError(f"{path}: no usable samples in the {split} split"
                            + (f" (skipped: {summary}; first: {skips.items[0][0]}: {skips.items[0][1]})"
                               if skips.items else ""))
    return Manifest(path=str(path), samples=samples, skipped=skips.items)


def need_task(cfg: DataConfig, allowed: Sequence[str], why: str) -> None:
    if cfg.task not in allowed:
        raise ConfigError(f"data.format={cfg.format} ({why}) needs data.task={' or '.join(allowed)}, "
                          f"got data.task={cfg.task}")


def need_labels(cfg: DataConfig, vocabulary: Sequence[str], what: str) -> None:
    # A subset is fine (the other classes are skipped and counted); a name the release never uses
    # is a typo or the wrong target, and would silently train a class with no examples.
    unknown = [x for x in cfg.labels if x not in vocabulary]
    if unknown:
        raise ConfigError(f"data.labels has {', '.join(map(repr, unknown))}, which {what} never uses; "
                          f"its labels are: [{', '.join(vocabulary)}]")


def label_indices(cfg: DataConfig) -> dict[str, int]:
    return {name: i for i, name in enumerate(cfg.labels)}


def _open_csv(path: Path) -> IO[str]:
    # Bytes that are not UTF-8 survive as surrogates instead of stopping the read (MELD's CSVs carry
    # stray cp1252 bytes).
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def csv_header(path: Path) -> list[str]:
    with _open_csv(path) as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def csv_rows(path: Path, required: Sequence[str], skips: Skips) -> Iterator[tuple[str, dict]]:
    """Yield ("file:line", row) with keys and values stripped; a row with too few fields is skipped
    as malformed, and the stray bytes come back as the latin-1 characters they were."""
    with _open_csv(path) as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)}; the header has: "
                                f"{', '.join(header)}")
        line = reader.line_num + 1
        for row in reader:
            where, line = f"{path}:{line}", reader.line_num + 1
            if not row or not any(x.strip() for x in row):
                continue
            if len(row) < len(header):
                skips.add(where, f"malformed row: {len(row)} fields, expected {len(header)}")
                continue
            yield where, {k: (v if v.isascii() else v.translate(STRAY_BYTES)).strip() for k, v in zip(header, row)}


def stem_index(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """file stem -> path for every file with one of ``suffixes`` under ``folder``."""
    index: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in suffixes and not name.startswith("."):
                index.setdefault(stem, Path(dirpath) / name)
    return index
