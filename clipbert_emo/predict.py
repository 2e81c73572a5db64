"""Prediction on one's own video: load a checkpoint once, score videos with dense clips.

Examples:
    >>> from clipbert_emo import Predictor
    >>> p = Predictor("runs/demo/video+text/checkpoint")
    >>> result = p("my_clip.mp4", text="no way, that is incredible")
    >>> result["prediction"], result["probabilities"], result["timeline"]["probabilities"]["happy"]
    >>> for r in p.predict_many(["a.mp4", "b.mp4"], texts=["wow", None], progress=True):
    ...     print(r["video"], r.get("prediction"), r.get("error"))
    >>> plot_timeline(result, p.labels, "timeline.png")   # the per-clip probabilities over time
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import torch

from .checkpoint import load_checkpoint
from .data.dataset import MODALITY_DECODERS
from .data.files import VIDEO_SUFFIXES, not_regular, walk_videos
from .data.manifest import Sample
from .config import AGGREGATIONS, SEEK_MODES, UserError, renamed_keyword, resolve_n_test
from .models.aggregation import aggregate_clip_logits
from .tasks import get_task


class Predictor:
    def __init__(self, checkpoint: str | os.PathLike, device: str | None = None, seek: str = "keyframe",
                 threads: int | None = None):
        """``seek``: where clips sit on the video's timeline, ``keyframe`` (default: a clip starts on a keyframe
        where one lies within a quarter of the clip spacing, else exactly where sampled, so the clips never bunch
        up; faster where keyframes are dense; the frames read are in the result) or ``accurate`` (exactly the
        evaluation's frames). ``threads``: torch CPU threads for the process
        (clipbert_emo.runtime.set_threads); None leaves torch's setting alone."""
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
        # keyframe is the fast mode throughout: the decoder also scales frames down as it converts them;
        # accurate reads the evaluation's frames at the evaluation's pixels.
        self.cfg.data = dataclasses.replace(self.cfg.data, seek=seek, decode_resize=seek == "keyframe")
        self.device = torch.device(device)
        self.labels = list(self.cfg.data.labels)
        self.task = get_task(self.cfg.data.task)

    @property
    def draws_timelines(self) -> bool:
        """Whether its results can be drawn as a timeline of class probabilities (``plot_timeline``): a model that
        reads clips, of a task kind whose clips have a probability per label."""
        return bool(self.model.modalities) and self.task.clip_probabilities

    @torch.no_grad()
    def __call__(self, video: str | os.PathLike | None = None, text: str | None = None, n_test: int | None = None,
                 aggregation: str | None = None, start: float | None = None, end: float | None = None, *,
                 num_clips: int | None = None) -> dict:
        """Aggregated class distribution and the per-clip timeline, as plain Python data. ``n_test``: clips
        (default: the config's data.n_test; ``num_clips`` is its deprecated name)."""
        cfg = self.cfg.data
        n = resolve_n_test(cfg, renamed_keyword(n_test, num_clips, "n_test", "num_clips", "Predictor.__call__"))
        how = self._aggregation(aggregation)
        text = (text or "") if cfg.use_text else ""
        enc = self.tokenizer([text], truncation=True, max_length=cfg.max_text_len, return_tensors="pt")
        inputs = {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}
        spans, context = [(None, None)], {}
        if self.model.modalities:
            if video is None:
                raise UserError(f"this model was trained on {' and '.join(self.model.modality_names)}: give a "
                                "video file")
            sample = Sample(video=os.fspath(video), text=text, start=start, end=end, source=os.fspath(video))
            for name in self.model.modality_names:
                clips, clip_spans = MODALITY_DECODERS[name](sample, cfg, n, False, None, context)  # (N, ...)
                context.setdefault("spans", clip_spans)
                inputs[name] = clips[None].to(self.device)  # (N, ...) -> (1, N, ...)
                inputs[f"{name}_present"] = torch.tensor([name not in context.get("absent", ())], device=self.device)
            spans = context["spans"]
        clip_logits = self.model.clip_logits(**inputs, clips_per_pass=self.cfg.model.inference_clips_per_pass)
        clip_logits = clip_logits.float().cpu()  # (1, N, K)
        return self._result(os.fspath(video) if video is not None else None, text, how, clip_logits[0], spans,
                            sorted(context.get("absent", ())), context.get("faces"),
                            context.get("frames"), context.get("face_boxes"))

    def _aggregation(self, aggregation: str | None) -> str:
        if aggregation is not None and aggregation not in AGGREGATIONS:
            raise UserError(f"aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        return aggregation or self.cfg.model.aggregation

    def _result(self, video: str | None, text: str, how: str, clip_logits: torch.Tensor, spans, missing: list[str],
                faces: dict | None, frames: list | None = None, face_boxes: list | None = None) -> dict:
        """One video's result from its (N, K) clip logits: the task's prediction, the timeline, the face counts and,
        per clip, its face boxes (``face_boxes``: one [x, y, w, h] or None per frame of ``frames``, in the video's
        pixels; ``face_box``: their mean, the clip's box)."""
        logits = aggregate_clip_logits(clip_logits[None], how)  # (N, K) -> (1, N, K) -> (1, K)
        # A modality the model knows but this file lacks (a silent video) was masked out; the result says so.
        n = int(clip_logits.shape[0])
        # num_clips: n_test's name before it was renamed, kept for a release for the clients that read it.
        result = {"video": video, "text": text, "aggregation": how, "n_test": n, "num_clips": n,
                  "missing_modalities": missing,
                  "seek": self.cfg.data.seek, "frames": frames,  # the frame indices each clip was read from
                  **self.task.prediction(logits[0], clip_logits, spans, self.cfg.data)}
        result["timeline"] = clip_timeline(result["clips"])
        if faces is not None:
            result["face_crop"] = faces
        if face_boxes is not None:
            from .data.faces import clip_face_box

            for clip, boxes in zip(result["clips"], face_boxes):
                clip["face_box"], clip["face_boxes"] = clip_face_box(boxes), boxes
        return result

    def use_face_crop(self, enabled: bool = True, detector: str | None = None, margin: float | None = None) -> None:
        """Crop sampled frames to the largest face before the backbone (data/faces.py), whatever the checkpoint was
        trained with; ``detector``: "" = MTCNN, "haar" = OpenCV's Haar cascade, "ssd", or a YuNet .onnx file."""

        from .data.faces import get_detector

        data = dataclasses.replace(self.cfg.data, face_crop=enabled)
        if detector is not None:
            data.face_detector = detector
        if margin is not None:
            data.face_margin = margin
        if enabled:
            get_detector(data.face_detector)  # a missing or unreadable model file fails now, not per video
        self.cfg = dataclasses.replace(self.cfg, data=data)

    @torch.no_grad()
    def predict_many(self, videos: Sequence[str | os.PathLike], texts: Sequence[str | None] | None = None, *,
                     n_test: int | None = None, aggregation: str | None = None, batch_size: int | None = None,
                     num_workers: int | None = None, spans: Sequence[tuple[float | None, float | None]] | None = None,
                     progress: bool = False, num_clips: int | None = None,
                     batches: Sequence[Sequence[int]] | None = None) -> Iterator[dict]:
        """Score many videos at ``n_test`` clips each (default: the config's data.n_test; ``num_clips`` is its
        deprecated name): decoded in ``num_workers`` background processes, scored ``batch_size`` at a time.

        ``batches``: the positions of ``videos`` scored together, batch by batch, each position once (default:
        consecutive runs of ``batch_size``). A video's numbers depend, in their last bits, on the videos it shares
        a batch with; a caller that splits a corpus across processes keeps each video in the batch one process
        would have put it in, so the results are the same to the byte.

        Yields one dict per video, in the given order (with ``batches``: batch by batch): the same result as
        ``__call__``, or ``{"video", "error"}`` for a video that cannot be read (the others go on).
        """
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        from .data.dataset import Collator, VideoTextDataset, model_inputs
        from .data.manifest import Manifest

        cfg = self.cfg.data
        videos = [os.fspath(v) for v in videos]
        texts = list(texts) if texts is not None else [None] * len(videos)
        spans = list(spans) if spans is not None else [(None, None)] * len(videos)
        if len(texts) != len(videos) or len(spans) != len(videos):
            raise ValueError(f"{len(videos)} videos but {len(texts)} texts and {len(spans)} spans")
        n = resolve_n_test(cfg, renamed_keyword(n_test, num_clips, "n_test", "num_clips", "Predictor.predict_many"))
        how = self._aggregation(aggregation)
        if not self.model.modalities:
            raise UserError("predict_many scores video files; this model reads text only: call the predictor "
                            "once per text")
        samples = [Sample(video=v, text=(t or "") if cfg.use_text else "", start=a, end=b, source=v)
                   for v, t, (a, b) in zip(videos, texts, spans)]
        dataset = VideoTextDataset(Manifest("<predict>", samples, []), cfg, training=False, num_clips=n)
        collate = _PredictCollate(Collator(self.tokenizer, cfg.max_text_len))
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        if batches is not None:
            batches = [[int(i) for i in b] for b in batches if len(b)]
            if sorted(i for b in batches for i in b) != list(range(len(videos))):
                raise ValueError(f"batches must hold each of the {len(videos)} positions once")
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate)
        else:
            loader = DataLoader(dataset, batch_size=batch_size or self.cfg.train.eval_batch_size, shuffle=False,
                                num_workers=workers, collate_fn=collate)
        names = self.model.modality_names
        with tqdm(total=len(samples), desc="predict", unit="video", disable=not progress) as bar:
            for batch in loader:
                # The decoders' messages start with the file name; the result names it already.
                done = {i: {"video": videos[i], "text": samples[i].text, "error": reason.removeprefix(f"{videos[i]}: ")}
                        for i, reason in batch["failed"]}
                if "input_ids" in batch:
                    inputs = {k: v.to(self.device) for k, v in model_inputs(batch).items()}
                    out = self.model.clip_logits(**inputs, clips_per_pass=self.cfg.model.inference_clips_per_pass)
                    out = out.float().cpu()  # (B, N, K)
                    for row, i in enumerate(batch["index"].tolist()):
                        missing = sorted(n for n in names if not bool(batch[f"{n}_present"][row]))
                        done[i] = self._result(videos[i], samples[i].text, how, out[row], batch["spans"][row],
                                               missing, batch["faces"][row], batch["frames"][row],
                                               batch["face_boxes"][row])
                bar.update(len(done))
                yield from (done[i] for i in sorted(done))


class _PredictCollate:
    """The dataset's collator, keeping which videos failed and why (by position) and each one's face counts."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, items: list[dict]) -> dict:
        good = [it for it in items if "error" not in it]
        batch = self.collator(good) if good else {}
        batch["failed"] = [(it["index"], it["error"]) for it in items if "error" in it]
        batch["faces"] = [it.get("faces") for it in good]
        batch["frames"] = [it.get("frames") for it in good]
        batch["face_boxes"] = [it.get("face_boxes") for it in good]
        return batch


def clip_timeline(clips: list[dict]) -> dict:
    """The per-clip results as columns: ``start``/``end`` seconds and, per class, its probability in each clip
    (``probabilities``), or each clip's predicted value (``values``, regression)."""
    timeline: dict = {"start": [c.get("start") for c in clips], "end": [c.get("end") for c in clips]}
    if clips and isinstance(clips[0].get("probabilities"), dict):
        timeline["probabilities"] = {lab: [c["probabilities"][lab] for c in clips] for lab in clips[0]["probabilities"]}
    elif clips and isinstance(clips[0].get("prediction"), (int, float)):
        timeline["values"] = [c["prediction"] for c in clips]
    return timeline


def predict(checkpoint: str | os.PathLike, video: str | os.PathLike | None = None, text: str | None = None,
            n_test: int | None = None, aggregation: str | None = None, device: str | None = None,
            seek: str = "keyframe", threads: int | None = None, *, num_clips: int | None = None) -> dict:
    """One call: load ``checkpoint`` and predict on one video (with optional text) at ``n_test`` clips (default:
    the config's data.n_test; ``num_clips`` is its deprecated name)."""
    n_test = renamed_keyword(n_test, num_clips, "n_test", "num_clips", "predict")
    return Predictor(checkpoint, device, seek, threads)(video, text, n_test=n_test, aggregation=aggregation)


def transcribe(video: str | os.PathLike, whisper: str) -> str:
    """The speech of ``video``'s sound track as text, by the Whisper checkpoint ``whisper`` (a local folder or hub
    id); "" for a video without sound."""
    from .data.audio import read_audio
    from .data.transcribe import Transcriber

    wave = read_audio(os.fspath(video), 16000)
    return Transcriber(whisper)(wave) if wave is not None and len(wave) else ""


def plot_timeline(result: dict, labels: Sequence[str], path: str | os.PathLike, title: str | None = None) -> bool:
    """Draw a result's per-clip class probabilities over time to the PNG ``path`` (clips at their mid-time, or at
    their index where the result has no times). False, and nothing drawn, for a result without class probabilities
    per clip (see ``Predictor.draws_timelines``)."""
    from pathlib import Path

    import numpy as np

    from .eval.plots import plot_clip_timeline

    t = result.get("timeline") or {}
    if "probabilities" not in t:
        return False
    times = [(a + b) / 2 if a is not None else i for i, (a, b) in enumerate(zip(t["start"], t["end"]))]
    probs = np.array([t["probabilities"][lab] for lab in labels]).T  # (K, N) -> (N, K)
    plot_clip_timeline(times, probs, list(labels), path, title=title or Path(result["video"]).name)
    return True


MANIFEST_SUFFIXES = (".jsonl", ".csv")


def is_manifest(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(MANIFEST_SUFFIXES)


def gather_inputs(paths: Sequence[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """What to score from command-line PATHs: video or image files, folders (searched recursively for video
    files), and manifests (JSONL/CSV with ``video`` and optional ``text``/``start``/``end``; no labels needed).

    Returns (inputs, failures): each input ``{"video", "text", "start", "end"}`` (text None = none given), each
    failure ``{"video", "error"}`` for a path that does not exist, is not a regular file (a FIFO, socket or
    device: never opened), a folder without videos, a subfolder that cannot be listed, or a manifest line whose
    video is missing.
    """
    from pathlib import Path

    from .data.manifest import read_manifest

    inputs: list[dict] = []
    failures: list[dict] = []

    def add(video: str, text: str | None = None, start: float | None = None, end: float | None = None) -> None:
        inputs.append({"video": video, "text": text, "start": start, "end": end})

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found, problems = walk_videos(str(p))
            failures += problems
            if not found and not problems:
                failures.append({"video": str(p), "error": f"folder has no video files ({', '.join(VIDEO_SUFFIXES)})"})
            for f in found:
                add(f)
        elif is_manifest(p) and p.is_file():
            manifest = read_manifest(p, read_target=None, require_label=False)
            for s in manifest.samples:
                odd = not_regular(s.video)
                if odd:
                    failures.append({"video": s.video, "error": f"{s.source}: {odd}"})
                else:
                    add(s.video, s.text or None, s.start, s.end)
            failures += [{"video": where, "error": reason} for where, reason in manifest.skipped]
        elif p.is_file():
            add(str(p))
        elif p.exists():
            failures.append({"video": str(p), "error": not_regular(p)})
        else:
            failures.append({"video": str(p), "error": "file not found"})
    return inputs, failures


def read_transcripts(path: str | os.PathLike) -> dict[str, str]:
    """A JSONL of ``{"video": ..., "text": ...}`` lines -> {key: text}, keyed by the absolute path (relative paths
    are taken from the transcript file's folder) and by the bare file name, so either form matches."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--transcripts {path}: file not found")
    found: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UserError(f"{path}:{lineno}: not a JSON object ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str) or not isinstance(row.get("text"), str):
            raise UserError(f'{path}:{lineno}: expected {{"video": "file.mp4", "text": "..."}}, got {line[:80]!r}')
        video = Path(row["video"])
        found[str((video if video.is_absolute() else path.parent / video).resolve())] = row["text"]
        found.setdefault(video.name, row["text"])
    return found


def transcript_for(video: str, transcripts: dict[str, str]) -> str | None:
    from pathlib import Path

    return transcripts.get(str(Path(video).resolve()), transcripts.get(Path(video).name))
