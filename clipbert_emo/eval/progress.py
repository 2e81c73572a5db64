"""``evaluate --resume``: every batch's clip logits are saved as they come, so a killed evaluation of a large split
goes on from where it stopped instead of from the start.

Rank 0 (the only process, or the one that gathers every rank's batch) writes each batch, once gathered, to
``<out>/eval_progress/<n>.pt`` (sample indices in the manifest, clip logits, labels), each file whole or absent
(written beside and renamed). ``meta.json`` there names the evaluation they belong to: the checkpoint's weights,
the samples, N_test, the seek mode and the dropped modalities. With ``--resume`` the saved samples are not scored
again, under any number of processes; without it an earlier evaluation's progress is dropped. The folder goes
when the report is written. A sample whose video does not decode is not saved: a resumed run tries it again and
reports it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

from ..config import UserError
from ..config.atomic import atomic_path, atomic_write_text
from ..data.manifest import Manifest

FOLDER = "eval_progress"
logger = logging.getLogger(__name__)


def evaluation_key(checkpoint, samples, n_test: int, seek: str, drop) -> str:
    """Changes whenever saved logits would not be this evaluation's."""
    from ..checkpoint import WEIGHTS

    weights = (Path(checkpoint) / WEIGHTS).resolve()
    st = weights.stat()
    listing = hashlib.sha1(json.dumps([[s.video, s.text] for s in samples]).encode()).hexdigest()
    return json.dumps({"weights": [str(weights), st.st_size, st.st_mtime_ns], "samples": [len(samples), listing],
                       "n_test": n_test, "seek": seek, "drop": sorted(drop)}, sort_keys=True)


class EvalProgress:
    """The saved batches of one evaluation (every rank holds them all); ``main``: this process writes them."""

    def __init__(self, out_dir: str | Path, key: str, resume: bool, main: bool = True):
        from accelerate.utils import broadcast_object_list

        self.folder, self.main = Path(out_dir) / FOLDER, main
        self.indices: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.count = 0
        if main:
            self._open(key, resume)
        # Every rank skips the same samples and ends with the same logits, as it does without saved ones (the
        # batches are gathered to every rank).
        saved = broadcast_object_list([(self.indices, self.logits, self.labels, self.count)], from_process=0)[0]
        self.indices, self.logits, self.labels, self.count = saved
        self.done = {int(i) for t in self.indices for i in t.tolist()}

    def _open(self, key: str, resume: bool) -> None:
        meta = self.folder / "meta.json"
        if self.folder.exists():
            old = meta.read_text(encoding="utf-8") if meta.is_file() else None
            if resume and old == key:
                self._load()
            elif resume and old is not None:
                raise UserError(f"--resume: {self.folder} holds the progress of another evaluation (another "
                                "checkpoint, manifest, N_test, --seek or --drop); run without --resume to start "
                                "over")
            else:  # a fresh evaluation: what an earlier one saved goes
                if old is not None:
                    logger.warning("%s: an earlier evaluation's saved batches are dropped (--resume continues it)",
                                   self.folder)
                shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta, key)

    def _load(self) -> None:
        for path in sorted(self.folder.glob("*.pt")):
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - a damaged file: named, with what to do
                raise UserError(f"{path}: cannot read this saved batch ({type(e).__name__}); delete it (its samples "
                                "are scored again) or run without --resume") from None
            self.indices.append(saved["indices"])
            self.logits.append(saved["clip_logits"])
            if saved.get("labels") is not None:
                self.labels.append(saved["labels"])
            self.count = max(self.count, int(path.stem) + 1)

    def remaining(self, manifest: Manifest) -> tuple[Manifest, list[int]]:
        """The samples still to score, and each one's index in ``manifest``."""
        keep = [i for i in range(len(manifest.samples)) if i not in self.done]
        return Manifest(manifest.path, [manifest.samples[i] for i in keep], manifest.skipped), keep

    def add(self, clip_logits: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor | None) -> None:
        """One gathered batch (``indices``: in the whole manifest), kept; saved by rank 0."""
        batch = {"indices": indices.cpu(), "clip_logits": clip_logits.float().cpu(),
                 "labels": labels.cpu() if labels is not None else None}
        if self.main:
            with atomic_path(self.folder / f"{self.count:08d}.pt") as tmp:
                torch.save(batch, tmp)
        self.count += 1
        self.indices.append(batch["indices"])
        self.logits.append(batch["clip_logits"])
        if labels is not None:
            self.labels.append(batch["labels"])

    def results(self) -> dict | None:
        """Every saved sample's clip logits and labels, in manifest order (None when nothing was saved)."""
        if not self.indices:
            return None
        indices = torch.cat(self.indices)
        order = torch.argsort(indices)
        labels = torch.cat(self.labels)[order] if self.labels else None
        return {"clip_logits": torch.cat(self.logits)[order], "labels": labels, "indices": indices[order]}

    def finish(self) -> None:
        if self.main:
            shutil.rmtree(self.folder, ignore_errors=True)
