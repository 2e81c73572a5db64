"""From a manifest line to a training example: sample clips, decode them, shape them.

Each item is drawn with its own generator seeded by (seed, epoch, index), so the
random clips and crops a sample gets do not depend on worker count or on the order
in which the loader asks, and a resumed run sees the same data as an uninterrupted one.
A video that fails to decode becomes an ``error`` item that the collator drops and
reports, so one bad file costs one sample, not the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig, resolve_n_test
from .decode import (DecodedFrames, VideoDecodeError, check_span, decode_what_decodes, is_image_path,
                     keyframe_indices, open_video, read_image, read_unique_frames, scaled_size,
                     video_info)
from .manifest import Manifest, Sample
from .sampling import clip_spans_seconds, snap_clips_to_keyframes
from .sample_frames import sample_frame_indices, sample_frame_range
from .audio import load_audio_clips
from .face_tokens import load_face_clips
from .transforms import Resize, clips_transform

logger = logging.getLogger(__name__)


def load_clips(
    sample: Sample,
    cfg: DataConfig,
    num_clips: int,
    training: bool,
    rng: np.random.Generator | None,
    context: dict | None = None,
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Decode ``num_clips`` clips of one video. Returns (N, T, 3, S, S) uint8 and each clip's (start, end) s.

    A still image (``sample.image`` or an image file) is a one-frame video: every clip repeats it, and
    at train time each clip still gets its own crop and flip. ``context`` (when given) receives the frame
    indices the clips were read from (``frames``, (N, T)), which ``data.seek=keyframe`` moves. With
    ``data.face_crop`` each clip is first cut to the face (data/faces.py), ``context["faces"]`` gets the
    detection counts and ``context["face_boxes"]`` each clip's T face boxes ([x, y, w, h] in the frame's pixels).
    """
    resize = Resize.from_config(cfg)
    if sample.image is not None or (sample.video is not None and is_image_path(sample.video)):
        image = np.asarray(sample.image) if sample.image is not None else read_image(sample.video)
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) grey -> (H, W, 3)
        frames = np.broadcast_to(image, (num_clips, cfg.num_frames, *image.shape)).copy()  # -> (N, T, H, W, 3)
        if cfg.face_crop:
            return (_face_cropped_clips(frames, np.zeros(frames.shape[:2], np.int64), sample, cfg, training, rng,
                                        context), [(0.0, 0.0)] * num_clips)
        clips = clips_transform(frames, cfg.frame_size, training and cfg.augment, rng, cfg.crop_scale_min,
                                cfg.hflip, cfg.pad, resize)  # (N, T, H, W, 3) -> (N, T, 3, S, S)
        return clips, [(0.0, 0.0)] * num_clips
    # Scaled in the decoder only where the frame is shaped in one piece afterwards (no per-clip face box or crop).
    size = (scaled_size(sample.video, cfg.frame_size)
            if cfg.decode_resize and not cfg.face_crop and not (training and cfg.augment) else None)
    reader = open_video(sample.video, num_threads=cfg.decode_threads, size=size)
    info = video_info(reader, sample.video)
    check_span(sample.start, sample.end, info.duration, sample.source or sample.video)
    indices = sample_frame_indices(sample, info, cfg, num_clips, training, rng)  # (N, T)
    keyframes = keyframe_indices(reader)
    if cfg.seek == "keyframe":  # only where a keyframe lies near a clip: the clips stay where accurate puts them
        indices = snap_clips_to_keyframes(indices, keyframes, *sample_frame_range(sample, info))
    try:
        unique_frames, inverse = read_unique_frames(reader, indices, sample.video, size,  # (U, H, W, 3), (N*T,)
                                                     cfg.decode_threads, keyframes)
    except VideoDecodeError as e:
        if isinstance(reader, DecodedFrames):
            raise
        # The container promised frames that do not decode (a truncated file): sample again among those that do.
        reader = decode_what_decodes(sample.video, reason=str(e).split(": ", 1)[-1])
        info = video_info(reader, sample.video)
        indices = sample_frame_indices(sample, info, cfg, num_clips, training, rng)
        unique_frames, inverse = read_unique_frames(reader, indices, sample.video, threads=cfg.decode_threads)
    if context is not None:
        context["frames"] = indices.tolist()
    if cfg.face_crop or (training and cfg.augment):  # each clip its own face box, or its own crop and flip
        frames = unique_frames[inverse].reshape(*indices.shape, *unique_frames.shape[1:])  # -> (N, T, H, W, 3)
        if cfg.face_crop:
            return _face_cropped_clips(frames, indices, sample, cfg, training, rng, context), \
                clip_spans_seconds(indices, info.fps)
        clips = clips_transform(frames, cfg.frame_size, True, rng, cfg.crop_scale_min, cfg.hflip, cfg.pad,
                                resize)  # (N, T, H, W, 3) -> (N, T, 3, S, S)
    else:  # every frame shaped alike: each distinct frame once (clips that share frames, keyframe clips)
        shaped = clips_transform(unique_frames[:, None], cfg.frame_size, False, None, cfg.crop_scale_min, cfg.hflip,
                                 cfg.pad, resize)  # (U, H, W, 3) -> (U, 1, 3, S, S)
        clips = shaped[:, 0][torch.from_numpy(inverse)]  # (U, 3, S, S) -> (N*T, 3, S, S)
        clips = clips.reshape(*indices.shape, *clips.shape[1:])  # (N*T, 3, S, S) -> (N, T, 3, S, S)
    return clips, clip_spans_seconds(indices, info.fps)


def _face_cropped_clips(frames: np.ndarray, indices: np.ndarray, sample: Sample, cfg: DataConfig, training: bool,
                        rng: np.random.Generator | None, context: dict | None) -> torch.Tensor:
    """(N, T, H, W, 3) frames -> (N, T, 3, S, S) clips cut to the face; boxes are cached on disk at train time
    (epochs repeat). Clips differ in crop size, so each is shaped on its own."""
    from .faces import default_cache_dir, face_crop_clips, get_detector

    cache = (cfg.face_cache or default_cache_dir()) if training and sample.video and sample.image is None else None
    crops, stats = face_crop_clips(frames, indices, get_detector(cfg.face_detector), cfg.face_margin,
                                   video=sample.video, cache_dir=cache)
    if context is not None:
        context["faces"] = stats.as_dict()
        context["face_boxes"] = stats.boxes  # N lists of T [x, y, w, h] in the frame's pixels (or None)
    return torch.stack([
        clips_transform(c[None], cfg.frame_size, training and cfg.augment, rng, cfg.crop_scale_min, cfg.hflip,
                        cfg.pad, Resize.from_config(cfg))[0]  # (T, h, w, 3) -> (1, T, h, w, 3) -> (T, 3, S, S)
        for c in crops
    ])  # N x (T, 3, S, S) -> (N, T, 3, S, S)


# Per-clip modalities, in the order their tokens follow the text: name -> decoder. ``data.use_<name>``
# switches one on; the batch carries its clips under ``<name>``, and the model's encoder of the same name
# (models/modalities.py) turns them into tokens. A decoder returns the sample's clips, (N, ...), and each
# clip's (start, end) seconds; ``context`` holds what earlier decoders found (``spans``), so a modality
# can align its windows with the video's clips.
MODALITY_DECODERS = {
    "video": lambda sample, cfg, num_clips, training, rng, context: load_clips(sample, cfg, num_clips, training, rng,
                                                                               context),
    "audio": load_audio_clips,
    "face": load_face_clips,
}


def enabled_modalities(cfg: DataConfig) -> list[str]:
    return [name for name in MODALITY_DECODERS if getattr(cfg, f"use_{name}", False)]


def video_key(sample: Sample) -> tuple:
    """What makes two records the same video: the file and the span of it they use."""
    return (sample.video, sample.start, sample.end)


def shared_video_key(sample: Sample):
    """What makes two samples read the same clips under data.group_by_video: the same video (:func:`video_key`)
    and sound (the questions of one video); None for a sample whose pixels come from elsewhere (an in-memory
    image)."""
    if sample.image is not None or not sample.video:
        return None
    return (*video_key(sample), sample.audio)


class VideoTextDataset(Dataset):
    """Items of one split: the text, each enabled modality's clips, and the task's annotation.

    ``target(sample)``: the annotation an item carries (the task kind's ``Task.target``); None = none.
    ``text_of(sample)``: the text(s) fused with the clips (the task kind's ``Task.texts``): one string, or a list
    of P strings that are each scored against the same clips (multiple-choice candidates); default ``text``.
    """

    def __init__(self, manifest: Manifest, cfg: DataConfig, training: bool, num_clips: int | None = None, seed: int = 0,
                 target: Callable[[Sample], object] | None = None,
                 text_of: Callable[[Sample], str | list[str]] | None = None):
        self.samples = manifest.samples
        self.cfg = cfg
        self.training = training
        self.num_clips = num_clips or (cfg.num_clips_train if training else resolve_n_test(cfg))
        self.seed = seed
        self.epoch = 0
        self.target = target or (lambda sample: None)
        self.text_of = text_of or (lambda sample: sample.text)
        self.modalities = enabled_modalities(cfg)
        # data.group_by_video: each video's first sample index stands for the video (its clips' seed, the batch's
        # sharing key); the last decoded video is kept, as its other samples come next (the grouped sampler).
        self.video_rows: dict = {}
        if cfg.group_by_video:
            for i, sample in enumerate(self.samples):
                key = shared_video_key(sample)
                if key is not None:
                    self.video_rows.setdefault(key, i)
        self._last_decoded: tuple | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        texts = self.text_of(sample)
        if not self.cfg.use_text:
            texts = [""] * len(texts) if isinstance(texts, list) else ""
        item = {"index": index, "text": texts, "source": sample.source}
        item["label"] = self.target(sample)
        if not self.modalities:
            return item
        row = self.video_rows.get(shared_video_key(sample)) if self.video_rows else None
        if row is None:
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.training else None
            item.update(self._decode(sample, rng))
        else:  # the video's clips are drawn by its first sample's generator, the same for all its samples
            key = (row, self.epoch if self.training else None)
            if self._last_decoded is None or self._last_decoded[0] != key:
                rng = np.random.default_rng([self.seed, self.epoch, row]) if self.training else None
                self._last_decoded = (key, self._decode(sample, rng))
            item.update(self._last_decoded[1])
            item["clip_key"] = row
            rng = np.random.default_rng([self.seed, self.epoch, index, 1]) if self.training else None
        if "error" not in item and self.training and self.cfg.modality_dropout > 0:
            drop_modalities(item, self.modalities, self.cfg.use_text, self.cfg.modality_dropout, rng)
        return item

    def _decode(self, sample: Sample, rng: np.random.Generator | None) -> dict:
        """Every enabled modality's clips of ``sample`` with their presence flags, spans and what the decoders
        found (face counts and boxes, frame indices); ``{"error": why}`` for a video that does not decode."""
        out: dict = {}
        context: dict = {}
        try:
            for name in self.modalities:
                out[name], spans = MODALITY_DECODERS[name](sample, self.cfg, self.num_clips, self.training, rng,
                                                           context)
                context.setdefault("spans", spans)
        except VideoDecodeError as e:
            return {"error": str(e)}
        for name in self.modalities:  # a file without, say, a sound track: those tokens are masked out
            out[f"{name}_present"] = name not in context.get("absent", ())
        out["spans"] = context["spans"]
        # face counts and each clip's per-frame face boxes (data/faces.py: boxes_by_clip); the frame indices the
        # clips were read from (data.seek moves them)
        out.update({k: context[k] for k in ("faces", "face_boxes", "frames") if k in context})
        return out


def drop_modalities(item: dict, names: list[str], use_text: bool, p: float, rng: np.random.Generator) -> None:
    """Modality dropout: each modality the item has is marked absent (``<name>_present`` false, ``text_present``
    for the transcript) with probability ``p``, independently; when that would leave none, one of them, drawn
    at random, stays. Drawn after the clips from the item's own generator, so resume replays it."""
    has = [n for n in names if item[f"{n}_present"]] + (["text"] if use_text else [])
    if len(has) < 2:  # a sample with one modality keeps it
        if use_text:
            item["text_present"] = True
        return
    dropped = rng.random(len(has)) < p
    if dropped.all():
        dropped[int(rng.integers(len(has)))] = False
    for name, drop in zip(has, dropped):
        item[f"{name}_present"] = not drop
    if use_text:
        item.setdefault("text_present", True)


@dataclass
class Collator:
    """Stacks items into a batch and tokenizes the texts; failed items are dropped and listed.

    ``collate_targets(targets)``: the batch's annotations -> the labels tensor (the task kind's
    ``Task.collate``); None, or an item without annotation, gives a batch without ``labels``.
    """

    tokenizer: object
    max_text_len: int
    collate_targets: Callable[[list], torch.Tensor] | None = None

    def __call__(self, items: list[dict]) -> dict:
        skipped = [(it["source"], it["error"]) for it in items if "error" in it]
        for source, reason in skipped:
            logger.warning("skipping %s: %s", source, reason)
        items = [it for it in items if "error" not in it]
        batch: dict = {"skipped": skipped, "index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
        if not items:
            return batch
        batch["input_ids"], batch["attention_mask"] = tokenize_texts(self.tokenizer, [it["text"] for it in items],
                                                                     self.max_text_len)
        # data.group_by_video: samples of one video carry the same clips; each is stacked once, (U, N, ...), and
        # clip_rows (B,) says which row every sample reads (the model encodes U videos, then indexes).
        keys = [it.get("clip_key") for it in items]
        stacked = items
        if None not in keys and len(set(keys)) < len(keys):
            first: dict = {}
            for k in keys:
                first.setdefault(k, len(first))
            stacked = [items[keys.index(k)] for k in first]
            batch["clip_rows"] = torch.tensor([first[k] for k in keys], dtype=torch.long)  # (B,)
        for name in MODALITY_DECODERS:
            if name in items[0]:
                batch[name] = torch.stack([it[name] for it in stacked])  # U x (N, ...) -> (U, N, ...), U <= B
                batch[f"{name}_present"] = torch.tensor([it[f"{name}_present"] for it in items])  # (B,) bool
        if "text_present" in items[0]:  # modality dropout removed some transcripts
            batch["text_present"] = torch.tensor([it["text_present"] for it in items])  # (B,) bool
        if "spans" in items[0]:
            batch["spans"] = [it["spans"] for it in items]
        labels = [it["label"] for it in items]
        if self.collate_targets is not None and all(lab is not None for lab in labels):
            batch["labels"] = self.collate_targets(labels)
        return batch


def tokenize_texts(tokenizer, texts: list, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of B texts (B, L), or of B lists of P texts each (B, P, L): every text of a
    list is scored against the same clips (retrieval pairs, multiple-choice candidates)."""
    if texts and isinstance(texts[0], list):
        pairs = len(texts[0])
        if any(len(t) != pairs for t in texts):
            raise ValueError(f"every sample of a batch must carry the same number of texts, got "
                             f"{sorted({len(t) for t in texts})}")
        ids, mask = tokenize_texts(tokenizer, [x for t in texts for x in t], max_len)  # (B*P, L)
        return ids.view(len(texts), pairs, -1), mask.view(len(texts), pairs, -1)  # (B*P, L) -> (B, P, L)
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]  # (B, L)


def model_inputs(batch: dict) -> dict:
    """The keyword arguments a model's forward takes from a batch: the text, every modality's clips, which
    samples have each modality (``<name>_present``), and under data.group_by_video which clips each sample reads
    (``clip_rows``)."""
    names = set(MODALITY_DECODERS) | {f"{n}_present" for n in MODALITY_DECODERS} | {"text_present", "clip_rows"}
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask") or k in names}


def without_modalities(inputs: dict, drop) -> dict:
    """Model inputs with the modalities ``drop`` names (text, video, audio) marked absent in every sample: the
    dropped-modality evaluation (``clipbert-emo evaluate --drop text``)."""
    if not drop:
        return inputs
    b = inputs["input_ids"].shape[0]
    absent = torch.zeros(b, dtype=torch.bool, device=inputs["input_ids"].device)
    return {**inputs, **{f"{name}_present": absent for name in drop}}
