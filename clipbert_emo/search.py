"""``clipbert-emo search CHECKPOINT FOLDER "someone laughing"``: rank a folder of videos for a text query.

A retrieval checkpoint (data.task=retrieval) is a cross-encoder: every (query, video) pair needs a
fusion pass. What does not depend on the query, each video's encoder output (the visual tokens before
fusion), is cached on disk, one safetensors file per video under ``<cache>/<model key>/``, so a second
query over the same folder decodes no frame and runs no CNN: only the fusion passes. A cached entry is
used only while the video file (size and modification time), the checkpoint's weights and the clip
settings are what they were when it was written; anything else is recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import WEIGHTS, load_checkpoint
from .config import UserError
from .data.dataset import tokenize_texts
from .data.decode import IMAGE_SUFFIXES
from .data.manifest import Sample
from .data.releases.common import VIDEO_SUFFIXES
from .eval.retrieval import score_matrix, video_features
from .tasks import get_task

CACHE_FOLDER = ".clipbert-emo-cache"


def list_videos(folder: str | Path) -> list[Path]:
    """Video (and image) files under ``folder``, sorted, the cache folder left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of videos")
    found = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES
             and CACHE_FOLDER not in p.parts and not p.name.startswith(".")]
    if not found:
        raise UserError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    return found


def model_key(checkpoint: Path, cfg, num_clips: int) -> str:
    """Changes whenever the cached features would: other weights, other frames, other clips."""
    weights = (Path(checkpoint) / WEIGHTS).resolve()
    st = weights.stat()
    data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if not k.endswith("_manifest") and k != "root"}
    blob = json.dumps([str(weights), st.st_size, st.st_mtime_ns, num_clips, data], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _video_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _cache_file(cache: Path, path: Path) -> Path:
    return cache / (hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20] + ".safetensors")


def cached_features(model, cfg, tokenizer, paths: list[Path], cache: Path, num_clips: int, device,
                    progress: bool = True) -> tuple[dict, dict, list[int], dict]:
    """({modality: (V, N, ...)}, {modality: (V,) present}, indices of the usable videos, counts) for ``paths``,
    read from ``cache`` where valid and computed (then written) otherwise."""
    cache.mkdir(parents=True, exist_ok=True)
    loaded: dict[int, dict] = {}
    for i, p in enumerate(paths):
        file = _cache_file(cache, p)
        if file.exists():
            try:
                from safetensors import safe_open

                with safe_open(str(file), framework="pt") as f:
                    stamp = (f.metadata() or {}).get("stamp")
                if stamp == _video_stamp(p):
                    loaded[i] = load_file(str(file))
            except Exception:  # a damaged cache entry is recomputed
                pass
    todo = [i for i in range(len(paths)) if i not in loaded]
    skipped_idx: set[int] = set()
    skipped = []
    if todo:
        samples = [Sample(video=str(paths[i]), text="", source=str(paths[i])) for i in todo]
        feats, present, skipped = video_features(model, samples, cfg.data, tokenizer, num_clips,
                                                 cfg.train.eval_batch_size, device, progress)
        bad = {w for w, _ in skipped}
        for j, i in enumerate(todo):
            if str(paths[i]) in bad:
                skipped_idx.add(i)
                continue
            entry = {name: f[j].contiguous() for name, f in feats.items()}
            entry.update({f"{name}_present": present[name][j:j + 1].to(torch.uint8) for name in present})
            tmp = _cache_file(cache, paths[i]).with_suffix(".tmp")
            save_file(entry, str(tmp), metadata={"stamp": _video_stamp(paths[i]), "video": str(paths[i])})
            os.replace(tmp, _cache_file(cache, paths[i]))
            loaded[i] = entry
    usable = [i for i in range(len(paths)) if i in loaded]
    names = [m.name for m in model.modalities]
    features = {n: torch.stack([loaded[i][n] for i in usable]) for n in names}  # V x (N, ...) -> (V, N, ...)
    present = {n: torch.cat([loaded[i][f"{n}_present"] for i in usable]).bool() for n in names}  # (V,)
    counts = {"from_cache": len(paths) - len(todo), "computed": len(todo) - len(skipped_idx),
              "skipped": [list(s) for s in skipped]}
    return features, present, usable, counts


def search(checkpoint: str | Path, folder: str | Path, query: str, top_k: int = 10, cache_dir: str | Path | None = None,
           num_clips: int | None = None, device: str | None = None, progress: bool = True) -> dict:
    """The videos of ``folder`` ranked for ``query`` by a retrieval checkpoint: {"results": [{"rank", "video",
    "score"}...], "from_cache", "computed", "skipped", ...}; the score is the ITM match margin."""
    if not query or not query.strip():
        raise UserError("the query is empty: give the text to search for")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, tokenizer = load_checkpoint(checkpoint, device)
    if get_task(cfg.data.task).recipe != "retrieval":
        raise UserError(f"{checkpoint}: search needs a retrieval checkpoint (data.task=retrieval), this one is "
                        f"data.task={cfg.data.task}")
    n = num_clips or cfg.data.num_clips_test
    paths = list_videos(folder)
    cache = Path(cache_dir) if cache_dir else Path(folder) / CACHE_FOLDER
    cache = cache / model_key(Path(checkpoint), cfg, n)
    features, present, usable, counts = cached_features(model, cfg, tokenizer, paths, cache, n, device, progress)
    if not usable:
        raise UserError(f"{folder}: no video could be decoded")
    ids, mask = tokenize_texts(tokenizer, [query], cfg.data.max_text_len)  # (1, L)
    how = cfg.model.aggregation
    scores = score_matrix(model, features, present, ids, mask, [how], cfg.retrieval.eval_pairs_per_pass, device,
                          progress=False)[how][0]  # (V,)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    results = [{"rank": r + 1, "video": str(paths[usable[i]]), "score": float(scores[i])}
               for r, i in enumerate(order[:top_k])]
    return {"query": query, "checkpoint": str(checkpoint), "folder": str(folder), "num_videos": len(usable),
            "n_test": n, "aggregation": how, "cache": str(cache), "results": results, **counts}
