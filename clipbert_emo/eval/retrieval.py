"""Ranking every video for every query with a cross-encoder, in bounded memory.

ClipBERT's retrieval model fuses text and video, so a query's score for a video needs a fusion pass
per (query, video, clip). What does not depend on the query is computed once: each video's encoder
output (the visual tokens before fusion, :func:`video_features`). The (Q, V) score matrix is then
filled block by block (:func:`score_matrix`), each block at most ``pairs_per_pass`` fusion sequences,
so memory stays bounded whatever Q and V are (MSR-VTT 1k-A: 1000 x 1000 x N_test). Features stay on
the CPU between blocks; only the block being scored is on the accelerator.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import AGGREGATIONS, renamed_keyword, resolve_n_test
from ..data.dataset import tokenize_texts
from ..data.loading import make_loader
from ..data.manifest import Manifest
from ..data.retrieval import gallery
from ..models.aggregation import aggregate_clip_logits
from ..tasks.retrieval import match_margin, retrieval_metrics


@torch.no_grad()
def video_features(model, videos: list, cfg_data, tokenizer, n_test: int, batch_size: int, device,
                   progress: bool = True, allow_none: bool = False) -> tuple[dict, dict, list]:
    """Encoder outputs of ``videos`` (samples) at ``n_test`` clips each: ({modality: (V, N, D, ...)} on the CPU,
    {modality: (V,) present}, skipped). A video that does not decode is reported in ``skipped`` and gets all-zero features, so the
    gallery keeps its size and a query's true video keeps its index (it then ranks wherever zeros rank).
    ``allow_none``: when no video decodes, return ({}, {}, skipped) instead of raising (a caller that has
    other features already, as search's cache)."""
    model.eval()
    loader = make_loader(Manifest(path="gallery", samples=list(videos), skipped=[]), cfg_data, tokenizer, False,
                         batch_size, 0, num_clips=n_test)
    feats: dict[str, list] = {}
    present: dict[str, list] = {}
    rows: list[torch.Tensor] = []
    skipped = []
    for batch in tqdm(loader, desc="video features", disable=not progress, leave=False):
        skipped.extend(batch["skipped"])
        if "input_ids" not in batch:
            continue
        inputs = {m.name: batch[m.name].to(device) for m in model.modalities}
        out = model.encode_features(inputs)  # {name: (B, N, D, ...)}
        for name, f in out.items():
            feats.setdefault(name, []).append(f.float().cpu())
            present.setdefault(name, []).append(batch[f"{name}_present"])
        rows.append(batch["index"])
    if not rows:
        if allow_none:
            return {}, {}, skipped
        raise ValueError(f"no video of the gallery could be decoded ({len(skipped)} skipped)")
    order = torch.cat(rows)
    full, has = {}, {}
    for name, parts in feats.items():
        got = torch.cat(parts)  # (V_ok, N, D, ...)
        full[name] = got.new_zeros(len(videos), *got.shape[1:])
        full[name][order] = got
        has[name] = torch.zeros(len(videos), dtype=torch.bool)
        has[name][order] = torch.cat(present[name])
    return full, has, skipped


@torch.no_grad()
def score_matrix(model, features: dict, present: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 aggregations=AGGREGATIONS, pairs_per_pass: int = 4096, device="cpu",
                 progress: bool = True) -> dict:
    """{aggregation: (Q, V) scores}: the ITM match margin of every query (``input_ids`` (Q, L)) against every
    video (``features`` {name: (V, N, ...)}), clip logits aggregated each way (the same fusion passes serve all)."""
    model.eval()
    num_q = input_ids.shape[0]
    num_v, num_clips = next(iter(features.values())).shape[:2]
    q_chunk = max(1, min(num_q, pairs_per_pass // num_clips))
    v_chunk = max(1, min(num_v, pairs_per_pass // (num_clips * q_chunk)))
    scores = {how: torch.empty(num_q, num_v) for how in aggregations}
    blocks = [(q, v) for q in range(0, num_q, q_chunk) for v in range(0, num_v, v_chunk)]
    for q0, v0 in tqdm(blocks, desc="ranking", disable=not progress, leave=False):
        q1, v1 = min(q0 + q_chunk, num_q), min(v0 + v_chunk, num_v)
        nv, nq = v1 - v0, q1 - q0
        # Every video of the block meets every query of the block: text (v, q, L), one pass for all pairs.
        ids = input_ids[q0:q1].to(device).unsqueeze(0).expand(nv, -1, -1)  # (q, L) -> (v, q, L)
        mask = attention_mask[q0:q1].to(device).unsqueeze(0).expand(nv, -1, -1)  # (q, L) -> (v, q, L)
        block = {name: f[v0:v1].to(device) for name, f in features.items()}  # (v, N, ...)
        has = {name: p[v0:v1].to(device) for name, p in present.items()}  # (v,)
        clip_logits = model.clip_logits_from_features(ids, mask, block, has).float()  # (v, N, q*2)
        for how in aggregations:
            pair = aggregate_clip_logits(clip_logits, how).view(nv, nq, 2)  # (v, N, q*2) -> (v, q*2) -> (v, q, 2)
            scores[how][q0:q1, v0:v1] = match_margin(pair).t().cpu()  # (v, q) -> (q, v)
    return scores


@torch.no_grad()
def contrastive_scores(model, features: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       device="cpu") -> torch.Tensor:
    """(Q, V): the cosine of each query's and each video's contrastive embeddings (model.contrastive_weight's:
    mean word embedding, mean visual token over the clips and the grid). No fusion pass: one matrix product."""
    model.eval()
    video = F.normalize(model.contrastive_video_embedding(features["video"].float()), dim=-1)  # (V, N, D, h, w) -> (V, D)
    text = model.contrastive_text_embedding(input_ids.to(device), attention_mask.to(device))  # (Q, L) -> (Q, D)
    return F.normalize(text.float().cpu(), dim=-1) @ video.T  # (Q, D) x (D, V) -> (Q, V)


@torch.no_grad()
def rerank_top_k(model, features: dict, present: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 first: torch.Tensor, top_k: int, aggregations=AGGREGATIONS, pairs_per_pass: int = 4096, device="cpu",
                 progress: bool = True) -> dict:
    """ALBEF's second stage: {aggregation: (Q, V)} where each query's ``top_k`` videos by ``first`` (Q, V) are
    scored by the ITM margin and rank ahead of every other video, and the others keep ``first``'s order below them.
    Only Q x top_k pairs go through the fusion transformer."""
    model.eval()
    num_q, num_v = first.shape
    k = min(top_k, num_v)
    top = first.topk(k, dim=1).indices  # (Q, k)
    num_clips = next(iter(features.values())).shape[1]
    q_chunk = max(1, pairs_per_pass // (num_clips * k))
    margins = {how: torch.empty(num_q, k) for how in aggregations}
    for q0 in tqdm(range(0, num_q, q_chunk), desc="re-ranking", disable=not progress, leave=False):
        q1 = min(q0 + q_chunk, num_q)
        picked = top[q0:q1].reshape(-1)  # (q, k) -> (q*k,): the videos each query's pairs read
        ids = input_ids[q0:q1].repeat_interleave(k, dim=0).unsqueeze(1).to(device)  # (q, L) -> (q*k, 1, L)
        mask = attention_mask[q0:q1].repeat_interleave(k, dim=0).unsqueeze(1).to(device)  # -> (q*k, 1, L)
        block = {name: f[picked].to(device) for name, f in features.items()}  # (q*k, N, ...)
        has = {name: p[picked].to(device) for name, p in present.items()}  # (q*k,)
        clip_logits = model.clip_logits_from_features(ids, mask, block, has).float()  # (q*k, N, 2)
        for how in aggregations:
            pair = aggregate_clip_logits(clip_logits, how).view(q1 - q0, k, 2)  # (q*k, N, 2) -> (q, k, 2)
            margins[how][q0:q1] = match_margin(pair).cpu()  # (q, k)
    scores = {}
    for how, m in margins.items():
        # below the lowest re-ranked margin, in first's order
        out = (m.min() - 1.0) - (first.max() - first)
        out.scatter_(1, top, m)
        scores[how] = out
    return scores


def ranking_scores(model, cfg, features: dict, present: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   aggregations=AGGREGATIONS, device="cpu", progress: bool = True) -> dict:
    """{aggregation: (Q, V)} as retrieval.rank_by orders videos: the ITM margin of every pair (itm), the contrastive
    cosine (itc; the same for every aggregation), or the cosine's top retrieval.rerank_top_k re-ranked by ITM
    (itc_itm)."""
    r = cfg.retrieval
    if r.rank_by == "itm":
        return score_matrix(model, features, present, input_ids, attention_mask, aggregations, r.eval_pairs_per_pass,
                            device, progress)
    first = contrastive_scores(model, features, input_ids, attention_mask, device)
    if r.rank_by == "itc":
        return {how: first for how in aggregations}
    return rerank_top_k(model, features, present, input_ids, attention_mask, first, r.rerank_top_k, aggregations,
                        r.eval_pairs_per_pass, device, progress)


def rank_manifest(model, cfg, tokenizer, manifest: Manifest, n_test: int, aggregations=AGGREGATIONS,
                  batch_size: int = 8, device="cpu", progress: bool = True) -> dict:
    """Rank the manifest's videos (``n_test`` clips each) for each of its captions; {"reports": {aggregation:
    metrics}, ...}."""
    if not model.uses_video:
        raise ValueError("retrieval ranks videos: the model must use video (data.use_video=true)")
    videos, queries, truth = gallery(manifest)
    start = time.time()
    feats, present, skipped = video_features(model, videos, cfg.data, tokenizer, n_test, batch_size, device,
                                             progress)
    ids, mask = tokenize_texts(tokenizer, queries, cfg.data.max_text_len)  # (Q, L)
    scores = ranking_scores(model, cfg, feats, present, ids, mask, aggregations, device, progress)
    return {"n_test": n_test, "rank_by": cfg.retrieval.rank_by, "num_videos": len(videos), "num_queries": len(queries),
            "eval_seconds": time.time() - start, "skipped": [list(s) for s in list(manifest.skipped) + skipped],
            "reports": {how: retrieval_metrics(s, truth) for how, s in scores.items()}}


def evaluate_retrieval(checkpoint: str | Path, split: str, out_dir: str | Path | None = None,
                       n_test: int | None = None, aggregations=AGGREGATIONS, batch_size: int | None = None,
                       device=None, progress: bool = True, *, num_clips: int | None = None) -> dict:
    """Text-to-video retrieval of a checkpoint on a split (train | val | test) of its data config, or on a
    manifest file of (video, text) records, at ``n_test`` clips per video (default: the config's data.n_test;
    ``num_clips`` is its deprecated name); writes retrieval_metrics.json into ``out_dir``."""
    from ..checkpoint import load_checkpoint
    from ..data.manifest import read_manifest
    from ..tasks import get_task, load_split
    from .report import write_json

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg, tokenizer = load_checkpoint(checkpoint, device)
    if split in ("train", "val", "test"):
        manifest = load_split(cfg.data, split)
    else:
        manifest = read_manifest(split, get_task(cfg.data.task).target_reader(cfg.data), strict=cfg.data.strict)
    n_test = resolve_n_test(cfg, renamed_keyword(n_test, num_clips, "n_test", "num_clips", "evaluate_retrieval"))
    result = rank_manifest(model, cfg, tokenizer, manifest, n_test, aggregations,
                           batch_size or cfg.train.eval_batch_size, device, progress)
    result.update({"checkpoint": str(checkpoint), "manifest": str(split)})
    if out_dir is not None:
        write_json(Path(out_dir) / "retrieval_metrics.json", result)
    return result


def format_retrieval(result: dict) -> list[dict]:
    """Table rows: per aggregation R@1/5/10 and median rank, with a random ranking's beside them."""
    rows = []
    for how, m in result["reports"].items():
        rows.append({"n_test": result["n_test"], "aggregation": how, "videos": m["num_videos"],
                     "queries": m["num_queries"], "R@1": m["r1"], "R@5": m["r5"], "R@10": m["r10"],
                     "MdR": m["median_rank"], "chance R@1/5/10": f"{m['chance_r1']:.1f}/{m['chance_r5']:.1f}/"
                                                                 f"{m['chance_r10']:.1f}",
                     "chance MdR": m["chance_median_rank"]})
    return rows
