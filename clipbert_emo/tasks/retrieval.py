"""Text-to-video retrieval: the image-text matching (ITM) head scores (video, text) pairs.

Training pairs every video with its own caption (label 1) and captions of other videos (label 0), the
2-way cross-entropy of ClipBERT's pretraining ITM; ``train/retrieval.py`` samples the negatives.
Evaluation ranks every video for every query (``eval/retrieval.py``) and reports the recalls and the
median rank computed here.

Tie rule: a query's rank is the number of videos whose score is greater than **or equal to** the true
video's score (the true video included). A tie therefore counts against the query: a model that gives
every video the same score ranks the true video last, never first. Scores are the aggregated ITM logit
margin (match minus no-match), which orders the videos as ClipBERT's softmax probability of "match" does
but does not saturate to exact ties in float32.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.manifest import ManifestError
from .base import Recipe, Task, TaskLoss

RECALL_AT = (1, 5, 10)


def ranks_from_scores(scores: torch.Tensor | np.ndarray, truth) -> np.ndarray:
    """1-based rank of each query's true video. ``scores`` (Q, V), higher = better; ``truth`` (Q,) the index of
    each query's video. Ties count against the query (see the module docstring)."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    truth = torch.as_tensor(np.asarray(truth), dtype=torch.long)
    own = scores.gather(1, truth[:, None])  # (Q, V) -> (Q, 1)
    return (scores >= own).sum(dim=1).numpy().astype(np.int64)  # the true video counts itself: rank >= 1


def retrieval_metrics(scores, truth) -> dict:
    """R@1/5/10 (percent of queries whose video ranks within the top K), median and mean rank, and the same
    figures for a random ranking (``chance_*``) so a report shows them side by side."""
    ranks = ranks_from_scores(scores, truth)
    num_videos = int(np.asarray(scores).shape[1])
    out = {f"r{k}": float((ranks <= k).mean() * 100) for k in RECALL_AT}
    out["rsum"] = sum(out[f"r{k}"] for k in RECALL_AT)
    out.update({"median_rank": float(np.median(ranks)), "mean_rank": float(ranks.mean()),
                "num_queries": int(len(ranks)), "num_videos": num_videos})
    out.update({f"chance_r{k}": 100.0 * min(k, num_videos) / num_videos for k in RECALL_AT})
    out["chance_median_rank"] = (num_videos + 1) / 2
    return out


def match_margin(logits: torch.Tensor) -> torch.Tensor:
    """ITM logits (..., 2) -> the score that ranks videos: logit of "match" minus logit of "no match"."""
    return logits[..., 1] - logits[..., 0]


class RetrievalTask(Task):
    """Records are (video, caption) pairs (``video``, ``text``); a video may have many captions."""

    name = "retrieval"
    select_metric = "rsum"
    recipe = Recipe.RETRIEVAL  # trained and evaluated by ranking (train/retrieval.py, eval/retrieval.py)
    # Recalls and median rank, with a random ranking's beside them.
    summary_metrics = ("r1", "r5", "r10", "median_rank", "chance_r1", "chance_median_rank")
    history_metrics = ("r1", "r5", "r10", "rsum", "median_rank")
    card_metrics = ("r1", "r5", "r10", "median_rank")

    def lower_is_better(self, metric: str) -> bool:
        return metric in ("median_rank", "mean_rank", "loss")

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ()

    def read_target(self, row, where, is_csv, data, required) -> dict:
        if required and not (row.get("text") or "").strip():
            raise ManifestError(f"{where}: a retrieval record needs its caption in 'text'")
        return {}

    def target(self, sample):
        return [1]  # a sample scored against its own caption matches

    def collate(self, targets, data) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B, P): 1 = the text is the video's, 0 = another's

    def num_outputs(self, data) -> int:
        return 2  # per (video, text) pair: no match, match

    def build_head(self, model, width) -> nn.Module:
        # ClipBERT's ITM head (its pretraining checkpoint's transformer.cls.seq_relationship): one linear layer
        # on the pooled [CLS]; train/retrieval.py starts it from a pretraining checkpoint's when there is one.
        return nn.Linear(model.hidden_size, width)

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        def loss(logits, labels, weights):
            pairs = logits.float().view(labels.shape[0], -1, 2)  # (B, P*2) -> (B, P, 2)
            return F.cross_entropy(pairs.flatten(0, 1), labels.flatten())  # (B*P, 2) vs (B*P,)

        return TaskLoss(loss, class_weights)

    def contrastive_targets(self, batch: dict) -> dict:
        return {"positive": torch.zeros_like(batch["group"]), "group": batch["group"]}  # own caption first

    def report(self, logits, labels, data) -> dict:
        """Pair accuracy of the ITM head (the ranking metrics need every video x query: eval/retrieval.py)."""
        pairs = logits.view(labels.shape[0], -1, 2)  # (S, P*2) -> (S, P, 2)
        return {"itm_accuracy": float((pairs.argmax(-1) == labels).float().mean())}

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        p = float(logits.float().softmax(-1)[-1])
        return {"prediction": "match" if p >= 0.5 else "no match", "probabilities": {"match": p},
                "clips": [{"start": s, "end": e, "match": float(c.float().softmax(-1)[-1])}
                          for (s, e), c in zip(spans, clip_logits)]}
