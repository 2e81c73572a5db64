"""``clipbert-emo search CHECKPOINT FOLDER "someone laughing"``: rank a folder of videos for a text query.

A retrieval checkpoint (data.task=retrieval) is a cross-encoder: every (query, video) pair needs a
fusion pass. What does not depend on the query, each video's encoder output (the visual tokens before
fusion), is cached on disk, one safetensors file per video under ``<cache>/<model key>/``, so a second
query over the same folder decodes no frame and runs no CNN: only the fusion passes. A cached entry is
used only while the video file (size and modification time), the checkpoint's weights and the clip
settings are what they were when it was written, and while its tensors still match the checksum written
with them (and are finite); anything else is recomputed, with a warning for a damaged entry. A video that
does not decode gets a small marker file instead, so every later search reports and skips it without
decoding it again (until the file changes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import WEIGHTS, load_checkpoint, normal_file_mode
from .config import UserError, renamed_keyword, resolve_n_test
from .config.errors import OutputError, describe_os_error
from .data.dataset import tokenize_texts
from .data.decode import IMAGE_SUFFIXES
from .data.manifest import Sample
from .data.files import VIDEO_SUFFIXES, walk_videos
from .eval.retrieval import ranking_scores, video_features
from .tasks import Recipe, get_task

CACHE_FOLDER = ".clipbert-emo-cache"
FAILED_SUFFIX = ".failed.json"  # beside <key>.safetensors: the video did not decode, and why

logger = logging.getLogger(__name__)


def list_videos(folder: str | Path) -> tuple[list[Path], list[list[str]]]:
    """Video (and image) files under ``folder``, sorted, the cache folder and hidden files left out; and
    [path, reason] for each subfolder that cannot be listed or video-named entry that is no regular file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of videos")
    found, problems = walk_videos(str(folder), VIDEO_SUFFIXES + IMAGE_SUFFIXES, skip_folder=CACHE_FOLDER,
                                  skip_hidden=True)
    for problem in problems:
        logger.warning("%s: %s", problem["video"], problem["error"])
    if not found:
        raise UserError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)})"
                        + (f"; {problems[0]['video']}: {problems[0]['error']}" if problems else ""))
    return [Path(f) for f in found], [[p["video"], p["error"]] for p in problems]


def model_key(checkpoint: Path, cfg, n_test: int) -> str:
    """Changes whenever the cached features would: other weights, other frames, other clips."""
    weights = (Path(checkpoint) / WEIGHTS).resolve()
    st = weights.stat()
    data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if not k.endswith("_manifest") and k != "root"}
    blob = json.dumps([str(weights), st.st_size, st.st_mtime_ns, n_test, data], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _video_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _cache_file(cache: Path, path: Path) -> Path:
    return cache / (hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20] + ".safetensors")


def _failed_file(cache: Path, path: Path) -> Path:
    return _cache_file(cache, path).with_suffix(FAILED_SUFFIX)


def _checksum(entry: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: an entry whose bytes changed after it was
    written (a header left intact over overwritten data) no longer matches."""
    h = hashlib.sha256()
    for name in sorted(entry):
        t = entry[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_entry(file: Path, stamp: str, names: list[str]) -> tuple[dict | None, str | None]:
    """(the cached tensors, None) when ``file`` is a sound entry for a video of ``stamp``; (None, why) when it is
    damaged; (None, None) when it is stale (another version of the video)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("stamp") != stamp:
            return None, None
        entry = load_file(str(file))
    except Exception as e:  # SafetensorError: truncated, garbage
        return None, f"unreadable ({str(e).strip()[:120] or type(e).__name__})"
    expected = set(names) | {f"{n}_present" for n in names}
    if set(entry) != expected:
        return None, f"holds {sorted(entry)}, expected {sorted(expected)}"
    if not all(torch.isfinite(t.float()).all() for t in entry.values()):
        return None, "it holds NaN or infinite values"
    if meta.get("sha256") != _checksum(entry):
        return None, "its tensors do not match the checksum written with them"
    return entry, None


def _read_failure(file: Path, stamp: str) -> str | None:
    """The reason recorded for a video that did not decode, while the video is the one that failed."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        if isinstance(record, dict) and record.get("stamp") == stamp and isinstance(record.get("reason"), str):
            return record["reason"]
    except (OSError, ValueError):
        pass
    return None


def _write_atomic(final: Path, write) -> None:
    """``write(tmp_path)``, then rename over ``final``: a reader never meets half an entry."""
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, normal_file_mode())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cache_error(e: Exception, cache: Path, default: bool) -> UserError:
    where = getattr(e, "filename", None) or cache
    why = describe_os_error(e, where) if isinstance(e, OSError) else f"cannot write {where}: {e}"
    if default:
        return OutputError(f"{why}: the feature cache is kept in the video folder by default; pass --cache DIR "
                           "to keep it in a folder you can write to")
    return OutputError(f"{why}: choose another --cache folder")


def cached_features(model, cfg, tokenizer, paths: list[Path], cache: Path, n_test: int, device,
                    progress: bool = True, default_cache: bool = False) -> tuple[dict, dict, list[int], dict]:
    """({modality: (V, N, ...)}, {modality: (V,) present}, indices of the usable videos, counts) for ``paths``,
    read from ``cache`` where valid and computed (then written) otherwise. ``default_cache``: ``cache`` is the
    default location in the video folder (an error that it cannot be written then points to --cache)."""
    names = [m.name for m in model.modalities]
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cache_error(e, cache, default_cache) from None
    loaded: dict[int, dict] = {}
    failed: dict[int, str] = {}
    for i, p in enumerate(paths):
        stamp, file = _video_stamp(p), _cache_file(cache, p)
        if file.exists():
            entry, damage = _read_entry(file, stamp, names)
            if entry is not None:
                loaded[i] = entry
                continue
            if damage:
                logger.warning("feature cache entry %s of %s is damaged (%s): recomputing it", file, p, damage)
        reason = _read_failure(_failed_file(cache, p), stamp) if _failed_file(cache, p).exists() else None
        if reason is not None:
            failed[i] = reason
    from_cache = len(loaded)
    todo = [i for i in range(len(paths)) if i not in loaded and i not in failed]
    computed = 0
    if todo:
        samples = [Sample(video=str(paths[i]), text="", source=str(paths[i])) for i in todo]
        feats, present, skipped = video_features(model, samples, cfg.data, tokenizer, n_test,
                                                 cfg.train.eval_batch_size, device, progress, allow_none=True)
        reasons = {w: r for w, r in skipped}
        try:
            for j, i in enumerate(todo):
                stamp = _video_stamp(paths[i])
                if str(paths[i]) in reasons:
                    # remembered, so that every later search reports and skips it without decoding it again
                    failed[i] = reasons[str(paths[i])]
                    record = json.dumps({"stamp": stamp, "video": str(paths[i]), "reason": failed[i]})
                    _write_atomic(_failed_file(cache, paths[i]), lambda t: Path(t).write_text(record, encoding="utf-8"))
                    _cache_file(cache, paths[i]).unlink(missing_ok=True)
                    continue
                entry = {name: f[j].contiguous() for name, f in feats.items()}
                entry.update({f"{name}_present": present[name][j:j + 1].to(torch.uint8) for name in present})
                loaded[i] = entry
                computed += 1
                if not all(torch.isfinite(t.float()).all() for t in entry.values()):
                    continue  # used (and reported by its score) now, but never cached: a reader would refuse it
                meta = {"stamp": stamp, "video": str(paths[i]), "sha256": _checksum(entry)}
                _write_atomic(_cache_file(cache, paths[i]), lambda t: save_file(entry, t, metadata=meta))
                _failed_file(cache, paths[i]).unlink(missing_ok=True)
        except OSError as e:
            raise _cache_error(e, cache, default_cache) from None
    usable = [i for i in range(len(paths)) if i in loaded]
    if usable:
        features = {n: torch.stack([loaded[i][n] for i in usable]) for n in names}  # V x (N, ...) -> (V, N, ...)
        present = {n: torch.cat([loaded[i][f"{n}_present"] for i in usable]).bool() for n in names}  # (V,)
    else:
        features, present = {}, {}
    counts = {"from_cache": from_cache, "computed": computed,
              "skipped": [[str(paths[i]), failed[i]] for i in sorted(failed)]}
    return features, present, usable, counts


def search(checkpoint: str | Path, folder: str | Path, query: str, top_k: int = 10, cache_dir: str | Path | None = None,
           n_test: int | None = None, device: str | None = None, progress: bool = True, *,
           num_clips: int | None = None) -> dict:
    """The videos of ``folder`` ranked for ``query`` by a retrieval checkpoint, at ``n_test`` clips per video
    (default: the config's data.n_test; ``num_clips`` is its deprecated name): {"results": [{"rank", "video",
    "score"}...], "from_cache", "computed", "skipped", ...}; the score is the ITM match margin.

    Under ``accelerate launch`` the ranks share the work of building the feature cache (each its own GPU, or
    its share of the CPU); rank 0 returns the result, the others None. ``cache_dir`` (default: in ``folder``)
    must then be a folder every machine of the launch shares."""
    from .ranks import launch_state, launched, rank_device

    n_test = renamed_keyword(n_test, num_clips, "n_test", "num_clips", "search")
    if not query or not query.strip():
        raise UserError("the query is empty: give the text to search for")
    state = launch_state(device) if launched() else None
    if state is not None:
        device = rank_device(state, device)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, tokenizer = load_checkpoint(checkpoint, device)
    if get_task(cfg.data.task).recipe != Recipe.RETRIEVAL:
        raise UserError(f"{checkpoint}: search needs a retrieval checkpoint (data.task=retrieval), this one is "
                        f"data.task={cfg.data.task}")
    n = resolve_n_test(cfg, n_test)
    paths, unlisted = list_videos(folder)
    cache = Path(cache_dir) if cache_dir else Path(folder) / CACHE_FOLDER
    cache = cache / model_key(Path(checkpoint), cfg, n)
    shares = None
    if state is not None:
        # Under accelerate launch the ranks build the cache together: rank r computes (and writes) the features of
        # every W-th video from the r-th, then rank 0 alone reads them all back and ranks them for the query.
        # The entries are one file per video, each written whole, so the ranks never write the same file.
        import torch.distributed as dist

        mine = paths[state.process_index::state.num_processes]
        _, _, _, counts = cached_features(model, cfg, tokenizer, mine, cache, n, device,
                                          progress and state.is_main_process, default_cache=not cache_dir)
        shares = [None] * state.num_processes
        dist.all_gather_object(shares, (counts["from_cache"], counts["computed"]))
        if not state.is_main_process:
            return None
    features, present, usable, counts = cached_features(model, cfg, tokenizer, paths, cache, n, device, progress,
                                                        default_cache=not cache_dir)
    if shares is not None:  # what the ranks found in the cache and computed, not rank 0's second reading
        counts["from_cache"], counts["computed"] = (sum(c[i] for c in shares) for i in (0, 1))
    counts["skipped"] = unlisted + counts["skipped"]
    if not usable:
        reasons = "; ".join(f"{w}: {r}" for w, r in counts["skipped"][:3])
        raise UserError(f"{folder}: no video could be decoded ({len(counts['skipped'])} skipped: {reasons})")
    ids, mask = tokenize_texts(tokenizer, [query], cfg.data.max_text_len)  # (1, L)
    how = cfg.model.aggregation
    scores = ranking_scores(model, cfg, features, present, ids, mask, [how], device, progress=False)[how][0]  # (V,)
    # A NaN would sort first and is not JSON: a video whose score is not a number is an error reported with it,
    # never a rank. Cached features are checked for NaN on reading, so this is the checkpoint's weights.
    finite = [j for j in range(len(usable)) if math.isfinite(float(scores[j]))]
    for j in sorted(set(range(len(usable))) - set(finite)):
        why = (f"its score is {float(scores[j])} (not a number): the checkpoint's weights or this video's "
               "features hold non-finite values")
        logger.warning("%s: %s", paths[usable[j]], why)
        counts["skipped"].append([str(paths[usable[j]]), why])
    if not finite:
        raise UserError(f"{checkpoint}: every video scored NaN/inf for this query, so nothing can be ranked: the "
                        "checkpoint's weights hold non-finite values; use another checkpoint")
    order = sorted(finite, key=lambda j: -float(scores[j]))  # stable: ties keep the folder's order
    results = [{"rank": r + 1, "video": str(paths[usable[j]]), "score": float(scores[j])}
               for r, j in enumerate(order[:top_k])]
    return {"query": query, "checkpoint": str(checkpoint), "folder": str(folder), "num_videos": len(finite),
            "n_test": n, "aggregation": how, "cache": str(cache), "results": results, **counts}
