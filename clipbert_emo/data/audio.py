"""The sound track: decoded from the same file as the frames, mono at a fixed rate, cut into one window per
sampled clip, turned into log-mel spectrograms (SpecAugment at train time), all in the data workers.

Sparse sampling extends to sound: each of the N clips the video decoder sampled gets the audio window centred
on its span, so training sees N random clips of frames and their sound, and dense inference scores N aligned
windows. Without video, the N windows are placed over the sound track as clips would be. A file without an
audio stream gets silent windows marked absent, so the model masks its audio tokens out.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..config import AudioConfig, DataConfig
from .decode import VideoDecodeError
from .manifest import Sample
from .sampling import sample_clip_indices

logger = logging.getLogger(__name__)


def read_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray | None:
    """The first audio stream of ``path`` as mono float32 at ``sample_rate``; None when the file has none."""
    import av

    path = os.fspath(path)
    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{path}: cannot open for its sound ({str(e).strip()[:160]})") from None
    with container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))  # (1, n) packed mono -> (n,)
        except av.error.FFmpegError:
            pass  # a damaged end: keep what decoded
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def read_audio_cached(path: str | os.PathLike, sample_rate: int, cache_dir: str | os.PathLike) -> np.ndarray | None:
    """``read_audio``, through a folder of decoded tracks (data.audio.cache_dir): the same array, decoded once per
    file version. The entry's name hashes the absolute path, size, modification time and rate, so an edited file
    or another rate is decoded afresh; a file without sound is remembered by an empty ``.none`` entry. Entries are
    written atomically (DataLoader workers may write the same one at once) and read with ``allow_pickle=False``;
    an unreadable entry is decoded again and replaced."""
    from ..config.atomic import atomic_path

    path = os.fspath(path)
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{sample_rate}".encode()).hexdigest()
    folder = Path(cache_dir)
    entry, no_sound = folder / f"{key}.npy", folder / f"{key}.none"
    if no_sound.exists():
        return None
    if entry.exists():
        try:
            wave = np.load(entry, allow_pickle=False)
            if wave.dtype == np.float32 and wave.ndim == 1:
                return wave
        except (OSError, ValueError, EOFError):
            pass
        logger.warning("%s: unreadable cached sound track, decoding %s again", entry, path)
    wave = read_audio(path, sample_rate)
    try:
        with atomic_path(no_sound if wave is None else entry) as tmp:
            if wave is None:
                tmp.write_bytes(b"")
            else:
                with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
                    np.save(f, wave, allow_pickle=False)
    except OSError as e:  # a full disk or a folder we may not write: train on, decoding as without a cache
        _warn_cache_unwritable(folder, e)
    return wave


_UNWRITABLE_CACHES: set[Path] = set()  # warned about once per process, not once per file


def _warn_cache_unwritable(folder: Path, error: OSError) -> None:
    if folder not in _UNWRITABLE_CACHES:
        _UNWRITABLE_CACHES.add(folder)
        logger.warning("data.audio.cache_dir=%s: cannot write decoded sound tracks there (%s); decoding without it",
                       folder, error)


def audio_windows(wave: np.ndarray, sample_rate: int, centres: list[float], window_seconds: float) -> np.ndarray:
    """(N, L) windows of ``window_seconds`` centred on ``centres`` (seconds); outside the track is zeros."""
    length = int(round(window_seconds * sample_rate))
    out = np.zeros((len(centres), length), np.float32)
    for i, c in enumerate(centres):
        start = int(round(c * sample_rate)) - length // 2
        lo, hi = max(start, 0), min(start + length, len(wave))
        if hi > lo:
            out[i, lo - start:hi - start] = wave[lo:hi]
    return out


@lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
                           max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney",
                           mel_scale="slaney")


def log_mel(windows: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(N, L) waveforms -> (N, n_mels, frames) natural-log mel energies.

    The filter bank is transformers.audio_utils' (Slaney); the short-time transform is one batched torch.stft,
    which gives the same energies as that module's frame-by-frame numpy spectrogram (a test holds them
    together) at a small fraction of its cost in the data workers.
    """
    win = int(round(cfg.win_ms / 1000 * cfg.sample_rate))
    hop = int(round(cfg.hop_ms / 1000 * cfg.sample_rate))
    n_fft = 1 << (win - 1).bit_length()  # the next power of two
    filters = torch.from_numpy(_mel_filters(cfg.sample_rate, n_fft, cfg.n_mels)).float()  # (n_fft//2+1, n_mels)
    window = torch.hann_window(win, periodic=True)  # stft centres it inside the n_fft frame
    with torch.no_grad():
        spec = torch.stft(torch.from_numpy(np.ascontiguousarray(windows, np.float32)), n_fft, hop_length=hop,
                          win_length=win, window=window, center=True, pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (N, n_fft//2+1, frames)
        mel = torch.einsum("nft,fm->nmt", power, filters)  # (N, n_freq, frames) -> (N, n_mels, frames)
        return mel.clamp_min(1e-10).log().numpy()


def spec_augment(mels: np.ndarray, cfg: AudioConfig, rng: np.random.Generator) -> np.ndarray:
    """Zero ``time_masks`` random time bands and ``freq_masks`` frequency bands of each (n_mels, frames) window,
    at the spectrogram's floor (its minimum), as SpecAugment does."""
    mels = mels.copy()
    for m in mels:
        floor = m.min()
        for _ in range(cfg.time_masks):
            w = int(rng.integers(0, cfg.time_mask_frames + 1))
            t0 = int(rng.integers(0, max(1, m.shape[1] - w)))
            m[:, t0:t0 + w] = floor
        for _ in range(cfg.freq_masks):
            w = int(rng.integers(0, cfg.freq_mask_bins + 1))
            f0 = int(rng.integers(0, max(1, m.shape[0] - w)))
            m[f0:f0 + w, :] = floor
    return mels


def load_audio_clips(sample: Sample, cfg: DataConfig, num_clips: int, training: bool,
                     rng: np.random.Generator | None, context: dict) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """The audio decoder of ``data/dataset.py``: (N, n_mels, frames) log-mel windows (or (N, L) raw windows with
    ``front_end=waveform``) and each window's span.

    Centred on the video's clip spans (``context["spans"]``) when the video was decoded first; else placed
    over the sound track itself. A file without sound gives silent windows and ``context["absent"]`` names it.
    """
    a = cfg.audio
    source = sample.audio or sample.video
    wave = read_audio_cached(source, a.sample_rate, a.cache_dir) if a.cache_dir else read_audio(source, a.sample_rate)
    if wave is None or len(wave) == 0:
        context.setdefault("absent", set()).add("audio")
        wave = np.zeros(0, np.float32)
    if "spans" in context:
        spans = context["spans"]
    else:  # no video: clips over the sound track, at the video sampler's positions (audio frames at 100 Hz)
        rate = 100.0
        first = sample.start or 0.0
        end = sample.end or (float(sample.extra.get("audio_offset", 0.0)) if sample.audio else 0.0) + len(wave) / a.sample_rate
        total = max(1, int((end - first) * rate))
        idx = sample_clip_indices(total, rate, num_clips, 2, 2.0 / a.window_seconds, training=training, rng=rng,
                                  single_clip=cfg.single_clip)
        spans = [(first + row[0] / rate, first + (row[-1] + 1) / rate) for row in idx]
    # A separate sound file of an utterance starts at the utterance, not at the start of its (dialogue) video.
    offset = float(sample.extra.get("audio_offset", 0.0)) if sample.audio else 0.0
    windows = audio_windows(wave, a.sample_rate, [(s + e) / 2 - offset for s, e in spans], a.window_seconds)  # (N, L)
    if a.front_end == "waveform":  # a pretrained speech encoder computes its own features
        return torch.from_numpy(windows), spans
    mels = log_mel(windows, a)  # (N, n_mels, frames)
    if training and rng is not None and "audio" not in context.get("absent", ()):
        mels = spec_augment(mels, a, rng)
    return torch.from_numpy(mels), spans
