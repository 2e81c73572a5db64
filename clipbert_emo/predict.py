"""Prediction on one's own video: load a checkpoint once, score videos with dense clips.

>>> from clipbert_emo import Predictor
>>> p = Predictor("runs/demo/video+text/checkpoint")
>>> result = p("my_clip.mp4", text="no way, that is incredible")
>>> result["prediction"], result["probabilities"], result["clips"][0]
"""

from __future__ import annotations

import dataclasses
import os

import torch

from .checkpoint import load_checkpoint
from .data.dataset import MODALITY_DECODERS
from .data.manifest import Sample
from .config import UserError
from .models.aggregation import AGGREGATIONS, aggregate_clip_logits
from .tasks import get_task


class Predictor:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None, seek: str = "keyframe",
                 threads: int | None = None):
        """``seek``: where clips sit on the video's timeline, ``keyframe`` (default: each clip starts at the
        nearest keyframe, several times faster on long videos; the frames used are in the result) or
        ``accurate`` (exactly the evaluation's frames). ``threads``: torch CPU threads for the process
        (clipbert_emo.runtime.set_threads); None leaves torch's setting alone."""
        from .data.decode import SEEK_MODES

        if seek not in SEEK_MODES:
            raise UserError(f"seek {seek!r}: expected one of {', '.join(SEEK_MODES)}")
        if threads is not None:
            from .runtime import set_threads

            set_threads(threads)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as e:  # no CUDA build or device, a device name torch does not know
            raise UserError(f"device {device!r} is not usable here ({str(e).strip().splitlines()[0][:120]}); "
                            f"use cpu{' or cuda' if torch.cuda.is_available() else ''}") from None
        self.model, self.cfg, self.tokenizer = load_checkpoint(checkpoint, device)
        self.cfg.data = dataclasses.replace(self.cfg.data, seek=seek)
        self.device = torch.device(device)
        self.labels = list(self.cfg.data.labels)
        self.task = get_task(self.cfg.data.task)

    @torch.no_grad()
    def __call__(self, video: str | os.PathLike | None = None, text: str | None = None, num_clips: int | None = None,
                 aggregation: str | None = None, start: float | None = None, end: float | None = None) -> dict:
        """Aggregated class distribution and the per-clip timeline, as plain Python data."""
        cfg = self.cfg.data
        how = aggregation or self.cfg.model.aggregation
        text = (text or "") if cfg.use_text else ""
        enc = self.tokenizer([text], truncation=True, max_length=cfg.max_text_len, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}
        spans, context = [(None, None)], {}
        if num_clips is not None and num_clips < 1:
            raise UserError(f"num_clips must be >= 1, got {num_clips}")
        if aggregation is not None and aggregation not in AGGREGATIONS:
            raise UserError(f"aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        if self.model.modalities:
            if video is None:
                raise UserError(f"this model was trained on {' and '.join(self.model.modality_names)}: give a "
                                "video file")
            n = num_clips or cfg.num_clips_test
            sample = Sample(video=os.fspath(video), text=text, start=start, end=end, source=os.fspath(video))
            for name in self.model.modality_names:
                clips, clip_spans = MODALITY_DECODERS[name](sample, cfg, n, False, None, context)  # (N, ...)
                context.setdefault("spans", clip_spans)
                inputs[name] = clips[None].to(self.device)  # (N, ...) -> (1, N, ...)
                inputs[f"{name}_present"] = torch.tensor([name not in context.get("absent", ())], device=self.device)
            spans = context["spans"]
        clip_logits = self.model.clip_logits(**inputs, clips_per_pass=self.cfg.model.inference_clips_per_pass)
        clip_logits = clip_logits.float().cpu()  # (1, N, K)
        logits = aggregate_clip_logits(clip_logits, how)  # (1, N, K) -> (1, K)
        # A modality the model knows but this file lacks (a silent video) was masked out; the result says so.
        return {"video": os.fspath(video) if video is not None else None, "text": text, "aggregation": how,
                "num_clips": int(clip_logits.shape[1]), "missing_modalities": sorted(context.get("absent", ())),
                "seek": cfg.seek, "frames": context.get("frames"),  # the frame indices each clip was read from
                **self.task.prediction(logits[0], clip_logits[0], spans, cfg)}


def predict(checkpoint: str | os.PathLike, video: str | os.PathLike | None = None, text: str | None = None,
            num_clips: int | None = None, aggregation: str | None = None, device: str | None = None,
            seek: str = "keyframe", threads: int | None = None) -> dict:
    """One call: load ``checkpoint`` and predict on one video (with optional text)."""
    return Predictor(checkpoint, device, seek, threads)(video, text, num_clips=num_clips, aggregation=aggregation)
