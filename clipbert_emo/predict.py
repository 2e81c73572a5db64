"""Prediction on one's own video: load a checkpoint once, score videos with dense clips.

>>> from clipbert_emo import Predictor
>>> p = Predictor("runs/demo/video+text/checkpoint")
>>> result = p("my_clip.mp4", text="no way, that is incredible")
>>> result["prediction"], result["probabilities"], result["clips"][0]
"""

from __future__ import annotations

import os

import torch

from .data.dataset import load_clips
from .data.manifest import Sample
from .eval.inference import class_probabilities
from .models.aggregation import aggregate_clip_logits
from .train.checkpoint import load_checkpoint


class Predictor:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.cfg, self.tokenizer = load_checkpoint(checkpoint, device)
        self.device = torch.device(device)
        self.labels = list(self.cfg.data.labels)

    @torch.no_grad()
    def __call__(self, video: str | os.PathLike | None = None, text: str | None = None, num_clips: int | None = None,
                 aggregation: str | None = None, start: float | None = None, end: float | None = None) -> dict:
        """Aggregated class distribution and the per-clip timeline, as plain Python data."""
        cfg = self.cfg.data
        how = aggregation or self.cfg.model.aggregation
        text = (text or "") if cfg.use_text else ""
        enc = self.tokenizer([text], truncation=True, max_length=cfg.max_text_len, return_tensors="pt")
        clips_t, spans = None, [(None, None)]
        if self.model.uses_video:
            if video is None:
                raise ValueError("this model was trained on video: give a video file")
            n = num_clips or cfg.num_clips_test
            sample = Sample(video=os.fspath(video), text=text, start=start, end=end, source=os.fspath(video))
            clips, spans = load_clips(sample, cfg, n, training=False, rng=None)  # (N, T, 3, S, S)
            clips_t = clips[None].to(self.device)  # (N, T, 3, S, S) -> (1, N, T, 3, S, S)
        clip_logits = self.model.clip_logits(enc["input_ids"].to(self.device),
                                             enc["attention_mask"].to(self.device), clips_t).float().cpu()  # (1, N, K)
        result = {
            "video": os.fspath(video) if video is not None else None,
            "text": text,
            "aggregation": how,
            "num_clips": int(clip_logits.shape[1]),
        }
        logits = aggregate_clip_logits(clip_logits, how)  # (1, N, K) -> (1, K)
        if cfg.task == "regression":
            result["prediction"] = float(logits[0, 0])
            result["clips"] = [{"start": s, "end": e, "prediction": float(v)}
                               for (s, e), v in zip(spans, clip_logits[0, :, 0])]
            return result
        if cfg.task == "multitask":
            per_head = logits[0].reshape(len(cfg.heads), len(self.labels)).softmax(-1)  # (H*K,) -> (H, K)
            result["prediction"] = {h: self.labels[int(p.argmax())] for h, p in zip(cfg.heads, per_head)}
            result["probabilities"] = {h: {lab: float(v) for lab, v in zip(self.labels, p)}
                                       for h, p in zip(cfg.heads, per_head)}
            result["clips"] = [{"start": s, "end": e} for s, e in spans]
            return result
        probs = class_probabilities(logits, cfg.multilabel)[0]  # (K,)
        clip_probs = class_probabilities(clip_logits[0], cfg.multilabel)  # (N, K)
        top = int(probs.argmax())
        result.update({
            "prediction": self.labels[top],
            "probabilities": {lab: float(p) for lab, p in zip(self.labels, probs)},
            "clips": [
                {"start": s, "end": e, "prediction": self.labels[int(cp.argmax())],
                 "probabilities": {lab: float(p) for lab, p in zip(self.labels, cp)}}
                for (s, e), cp in zip(spans, clip_probs)
            ],
        })
        return result


def predict(checkpoint: str | os.PathLike, video: str | os.PathLike | None = None, text: str | None = None,
            num_clips: int | None = None, aggregation: str | None = None, device: str | None = None) -> dict:
    """One call: load ``checkpoint`` and predict on one video (with optional text)."""
    return Predictor(checkpoint, device)(video, text, num_clips=num_clips, aggregation=aggregation)
