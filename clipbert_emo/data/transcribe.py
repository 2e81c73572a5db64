"""Speech transcripts for samples whose manifest gives no text: ``data.transcribe=<Whisper model>``.

``clipbert_emo.tasks.load_split`` calls :func:`transcribe_samples` on every split it reads, so training,
evaluation and prediction all see the same transcripts. A transformers Whisper checkpoint (a local folder,
or a hub id already in the local cache) turns each sample's sound (its ``audio`` file, else its video's own
track, cut to [start, end]) into text: greedy decoding, 30 s chunks joined with spaces.

Transcribing is slow, so transcripts are cached in a JSONL file beside what the split was read from
(:func:`transcript_cache_path`), one ``{"key": ..., "text": ...}`` per line. The key holds the media path,
the span, the file's size and modification time and the model, so a re-encoded file or another model is
transcribed again, and nothing else is. A sample with text in its manifest is never transcribed; one
without sound (no audio stream, an empty span, digital silence, a file that does not decode) keeps its
empty text and is listed in one warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config.atomic import atomic_write_text
from ..config.errors import UserError, describe_os_error
from .audio import read_audio
from .decode import VideoDecodeError, is_image_path
from .manifest import Sample

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what every Whisper feature extractor expects
CHUNK_SECONDS = 30  # Whisper's fixed input window: longer audio is cut into windows of this length
SILENCE_PEAK = 1e-4  # about -80 dBFS: a muted track, on which Whisper invents "Thank you." rather than nothing
SAVE_EVERY_S = 300.0  # a long transcription run that is killed keeps all but the last few minutes of work


class Transcriber:
    """A Whisper checkpoint loaded once; ``transcriber(wave)`` -> the transcript of 16 kHz mono audio."""

    def __init__(self, model_name: str, device: str = "cpu", max_new_tokens: int = 224, batch_size: int = 8):
        try:
            from transformers import AutoConfig, WhisperForConditionalGeneration, WhisperProcessor

            config = AutoConfig.from_pretrained(model_name, trust_remote_code=False)  # never a folder's code
            if config.model_type != "whisper":
                raise ValueError(f"it is a {config.model_type!r} checkpoint, not a Whisper one")
            self.processor = WhisperProcessor.from_pretrained(model_name)
            self.model = WhisperForConditionalGeneration.from_pretrained(model_name).to(device).eval()
        except Exception as e:  # missing folder, offline hub, wrong files: all the same mistake to the user
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            raise UserError(
                f"data.transcribe={model_name!r}: cannot load a Whisper speech-recognition model ({reason}). "
                "Either set data.transcribe to a local folder holding a transformers Whisper checkpoint (config.json, "
                "the weights, the tokenizer and preprocessor files, as save_pretrained writes them), or leave "
                "data.transcribe empty and give each sample's transcript in the manifest's \"text\" field") from None
        self.device = device
        self.batch_size = batch_size
        gen = self.model.generation_config
        # The prompt (start, language, task, no-timestamps) shares the decoder's max_target_positions.
        self.max_new_tokens = max(1, min(max_new_tokens, config.max_target_positions - 8))
        # Bounded through max_length (Whisper adds the prompt to it), not max_new_tokens: the checkpoints' own
        # max_length would make transformers warn about the pair on every clip.
        gen.max_new_tokens, gen.max_length = None, self.max_new_tokens
        # English-only checkpoints refuse a task argument; multilingual ones could otherwise translate.
        self._task = {"task": "transcribe"} if getattr(gen, "is_multilingual", False) and hasattr(gen, "task_to_id") \
            else {}

    def __call__(self, wave: np.ndarray) -> str:
        wave = np.asarray(wave, np.float32).reshape(-1)
        step = CHUNK_SECONDS * SAMPLE_RATE
        chunks = [wave[i:i + step] for i in range(0, len(wave), step)]
        texts: list[str] = []
        for b in range(0, len(chunks), self.batch_size):
            texts += self._generate(chunks[b:b + self.batch_size])
        return " ".join(t for t in texts if t)

    def _generate(self, chunks: list[np.ndarray]) -> list[str]:
        import torch

        features = self.processor.feature_extractor(chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                                    return_attention_mask=True)
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            ids = self.model.generate(features.input_features.to(self.device, dtype),
                                      attention_mask=features.attention_mask.to(self.device),
                                      do_sample=False, num_beams=1, **self._task)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


def _safe_name(model_name: str) -> str:
    """A file-name form of the model: a local folder's own name, or a hub id with ``/`` as ``--``."""
    name = Path(model_name).resolve().name if os.path.isdir(model_name) else model_name.strip("/").replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "model"


def transcript_cache_path(manifest_path: str | os.PathLike, model_name: str) -> Path:
    """Where the transcripts of a split by ``model_name`` are cached.

    Beside the manifest file: ``<manifest stem>.transcripts.<model>.jsonl``. A release read from data.root
    names its annotation file as the manifest path (MELD's train_sent_emo.csv, MMSA's label.csv), so its
    cache lands in data.root beside that file; where a release names a folder instead, the cache is
    ``transcripts.<model>.jsonl`` inside it. Splits that share an annotation file share its cache (keys differ).
    """
    path = Path(manifest_path)
    if path.is_dir():
        return path / f"transcripts.{_safe_name(model_name)}.jsonl"
    return path.with_name(f"{path.stem}.transcripts.{_safe_name(model_name)}.jsonl")


def _read_cache(path: Path) -> dict[str, str]:
    try:
        # split("\n"), not splitlines(): a transcript may hold U+2028, which splitlines() breaks on.
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        logger.warning("transcript cache %s cannot be read (%s); its transcripts will be made again", path, e)
        return {}
    cache = {}
    for line in lines:
        try:
            obj = json.loads(line)
            cache[str(obj["key"])] = str(obj["text"])
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line (a cache edited by hand) costs only that transcript
    return cache


def _write_cache(path: Path, cache: dict[str, str], current: dict[tuple, str]) -> bool:
    """Rewrite the whole cache atomically, without the entries of files since changed; False if it cannot."""
    lines = []
    for key, text in cache.items():
        try:
            p, start, end, _size, _mtime, model = json.loads(key)
            slot = (p, start, end, model)
        except (ValueError, TypeError):
            slot = None
        if current.get(slot, key) == key:  # drop the transcript of an older version of a file we have now
            lines.append(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
    try:
        atomic_write_text(path, "".join(lines))
        return True
    except OSError as e:
        logger.warning("%s; the transcripts are kept for this run only and will be made again next time",
                       describe_os_error(e, path))
        return False


def _media(sample: Sample) -> str | None:
    """The file whose sound is transcribed: the sample's own audio file, else its video (not a still image)."""
    if sample.audio:
        return sample.audio
    if sample.video and not is_image_path(sample.video):
        return sample.video
    return None


def _sound(sample: Sample, media: str) -> tuple[np.ndarray | None, str]:
    """The sample's span of sound at 16 kHz, or None and why there is none."""
    try:
        wave = read_audio(media, SAMPLE_RATE)
    except VideoDecodeError as e:
        return None, str(e)
    if wave is None:
        return None, "no audio stream"
    if sample.start is not None or sample.end is not None:
        lo = int(round((sample.start or 0.0) * SAMPLE_RATE))
        wave = wave[lo:None if sample.end is None else int(round(sample.end * SAMPLE_RATE))]
    if not len(wave):
        return None, "no sound in its span"
    if float(np.abs(wave).max()) < SILENCE_PEAK:
        return None, "silent"
    return wave, ""


def transcribe_samples(samples: Sequence[Sample], model_name: str, cache_file: str | os.PathLike,
                       progress: bool = True) -> int:
    """Fill ``text`` in place for every sample that has none and has sound; returns how many were filled.

    Cached transcripts are reused; the model is loaded only if something is left to transcribe, and freed
    on return (it would otherwise hold its memory through training). A transcript can be empty when the
    model heard no words; it still counts as filled and is cached.
    """
    from tqdm.auto import tqdm

    cache_file = Path(cache_file)
    model_id = str(Path(model_name).resolve()) if os.path.isdir(model_name) else model_name
    cache = _read_cache(cache_file)
    current: dict[tuple, str] = {}  # (path, start, end, model) -> this run's key, to drop stale entries
    todo, silent, filled = [], [], 0
    for i, s in enumerate(samples):
        if s.text:
            continue
        media = _media(s)
        if media is None:
            silent.append((i, s, "no video or sound file"))
            continue
        try:
            st = os.stat(media)
        except OSError as e:
            silent.append((i, s, f"cannot read {media}: {e.strerror}"))
            continue
        path = os.path.abspath(media)
        key = json.dumps([path, s.start, s.end, st.st_size, st.st_mtime_ns, model_id])
        current[(path, s.start, s.end, model_id)] = key
        if key in cache:
            s.text = cache[key]
            filled += 1
        else:
            todo.append((i, s, media, key))

    transcriber, new, writable, saved_at = None, 0, True, time.monotonic()
    try:
        for i, s, media, key in tqdm(todo, desc=f"transcribing with {_safe_name(model_name)}", unit="clip",
                                  disable=not progress or not todo):
            if key in cache:  # the same clip listed twice in the manifest
                s.text, filled = cache[key], filled + 1
                continue
            wave, why = _sound(s, media)
            if wave is None:
                silent.append((i, s, why))
                continue
            transcriber = transcriber or Transcriber(model_name)
            s.text = cache[key] = transcriber(wave)
            filled, new = filled + 1, new + 1
            if writable and time.monotonic() - saved_at > SAVE_EVERY_S:
                writable, saved_at = _write_cache(cache_file, cache, current), time.monotonic()
    finally:  # also on Ctrl-C or an error: what was transcribed is kept
        if new and writable:
            _write_cache(cache_file, cache, current)
    if todo or silent:
        logger.info("transcripts (%s): %d from the cache, %d new, %d without sound", model_name, filled - new, new,
                    len(silent))
    if silent:
        silent.sort(key=lambda x: x[0])  # in manifest order
        shown = "; ".join(f"{s.source or s.video or s.audio} ({why})" for _, s, why in silent[:5])
        more = f"; ... and {len(silent) - 5} more" if len(silent) > 5 else ""
        logger.warning("data.transcribe: %d sample(s) have no text and no sound to transcribe; their text stays "
                       "empty: %s%s", len(silent), shown, more)
    return filled
