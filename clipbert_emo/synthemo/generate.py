"""Writing the benchmark: labels, per-video draws (family, window, transcript), the render pool, manifests.

The layout and manifest format written here are described in the package docstring.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..config.atomic import atomic_write_text
from .face import FaceParams, sample_face_params
from .media import write_mp4
from .render import render_face_frames
from .spec import (CONDITIONS, EMOTIONS, TEXT_GROUPS, VISUAL_KINDS, VOICE_FAMILIES, SynthEmoConfig, ceilings,
                   condition_probabilities, text_group_table, visual_kind_table, voice_family_table)
from .voice import SAMPLE_RATE as VOICE_SAMPLE_RATE
from .voice import synthesize_voice

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_KEY = {"train": 0, "val": 1, "test": 2}

# Each template is filled from slot lists. Keep every expansion at 3-8 words;
# the test suite checks this.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "neutral_utterance": (
        "here is my video from {day}",
        "ok let me show you this",
        "so this is what i {saw} {day}",
        "just a quick clip from {day}",
        "let me tell you about {thing}",
        "this was recorded {day}",
        "let me talk about {thing}",
        "here we go with {thing}",
    ),
    "positive_exclaim": (
        "{wow} this is {amazing}",
        "no way, that is {amazing}",
        "{wow}, look at that!",
        "i can not believe it, {amazing}!",
        "{wow} what a {surprise}",
        "oh my gosh, {amazing}!",
        "that is so {amazing}, {wow}!",
        "what, really? that is {amazing}",
    ),
    "negative_agitated": (
        "oh no what is that",
        "this is {terrible} get away",
        "{stop} right now, {terrible}!",
        "no no no, {stop}!",
        "what is happening, this is {terrible}",
        "get away from me {now}",
        "why would you do that, {terrible}",
        "i can not stand this {now}",
    ),
    "negative_low": (
        "i feel so {down} today",
        "it is all gone now",
        "nothing {matters} anymore",
        "i just want to {rest}",
        "i {miss} them so much",
        "everything feels so {empty}",
        "it did not work out {again}",
        "i am so tired of {it}",
    ),
}
_SLOTS: dict[str, tuple[str, ...]] = {
    "day": ("today", "this morning", "yesterday", "last week", "this afternoon"),
    "saw": ("saw", "did", "found"),
    "thing": ("my weekend", "the new place", "my trip", "the meeting", "my day"),
    "wow": ("wow", "whoa", "oh wow", "yay"),
    "amazing": ("amazing", "incredible", "fantastic", "awesome", "unbelievable"),
    "surprise": ("surprise", "great surprise", "lovely thing"),
    "terrible": ("terrible", "awful", "horrible", "outrageous"),
    "stop": ("stop it", "stop", "back off"),
    "now": ("now", "right now"),
    "down": ("down", "low", "tired", "lonely"),
    "matters": ("matters", "helps", "works"),
    "rest": ("be alone", "stay in bed", "cry"),
    "miss": ("miss", "really miss"),
    "empty": ("empty", "grey", "heavy", "pointless"),
    "again": ("again", "at all", "this time"),
    "it": ("it", "everything", "all this"),
}


def _seed_seq(cfg: SynthEmoConfig, split: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(cfg.seed), spawn_key=(_SPLIT_KEY[split], *key))


def balanced_labels(n: int, rng: np.random.Generator) -> list[str]:
    """A shuffled label list with counts differing by at most one."""
    order = rng.permutation(len(EMOTIONS))
    labels = [EMOTIONS[order[i % len(EMOTIONS)]] for i in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def make_text(group: str, rng: np.random.Generator) -> str:
    template = _TEMPLATES[group][int(rng.integers(len(_TEMPLATES[group])))]
    fills = {name: vals[int(rng.integers(len(vals)))] for name, vals in sorted(_SLOTS.items())}
    return template.format(**fills)


def _draw_from_row(row: np.ndarray, u: float) -> int:
    # Inverse CDF on a shared uniform: classes with the same row (surprised,
    # fearful) or the same ambiguous share (sad, angry) make the same choice.
    cum = np.cumsum(row)
    cum = cum / cum[-1]   # exact 1.0 at the end, so rounding never picks a zero-probability tail
    return int(min(np.searchsorted(cum, u, side="right"), len(row) - 1))


def sample_video(cfg: SynthEmoConfig, split: str, index: int, label: str) -> tuple[FaceParams, str, dict]:
    """Draws the params, transcript and meta of one video from (seed, split, index)."""
    vis_ss, text_ss = _seed_seq(cfg, split, 1, index).spawn(2)
    vrng = np.random.default_rng(vis_ss)
    c = EMOTIONS.index(label)
    kind = VISUAL_KINDS[_draw_from_row(visual_kind_table(cfg)[c], vrng.random())]
    wlen = vrng.uniform(cfg.window_min, cfg.window_max)
    wstart = vrng.uniform(0.0, 1.0 - wlen)
    params = sample_face_params(kind, (wstart, wstart + wlen), vrng)
    params.label = label

    trng = np.random.default_rng(text_ss)
    group = TEXT_GROUPS[_draw_from_row(text_group_table(cfg)[c], trng.random())]
    text = make_text(group, trng)
    n = cfg.num_frames
    dur = n / cfg.fps   # actual encoded length, may differ from cfg.duration by rounding
    meta = {
        "id": f"{index:06d}",
        "window_start": round(wstart * dur, 4),
        "window_end": round((wstart + wlen) * dur, 4),
        "ambiguous": kind == "ambiguous",
        "text_group": group,
        "visual": kind,
    }
    if cfg.audio:
        # Its own seed stream: the faces and transcripts stay those of the plain benchmark.
        arng = np.random.default_rng(_seed_seq(cfg, split, 3, index))
        probs = condition_probabilities(cfg)
        condition = CONDITIONS[_draw_from_row(np.array([probs[k] for k in CONDITIONS]), arng.random())]
        voice = VOICE_FAMILIES[_draw_from_row(voice_family_table(cfg)[c], arng.random())]
        if condition == "no_text":
            text = ""
        meta.update(condition=condition, voice=voice if condition != "no_voice" else None)
    return params, text, meta


def _render_task(task) -> str:
    path, params, num_frames, size, fps, entropy, key, voice = task
    rng = np.random.default_rng(np.random.SeedSequence(entropy=entropy, spawn_key=key))
    frames = render_face_frames(params, num_frames, size, rng)
    sound = None
    if voice is not ...:  # the audio variant: a voice family, or None for background noise only
        sound = synthesize_voice(voice, num_frames / fps, np.random.default_rng(
            np.random.SeedSequence(entropy=entropy, spawn_key=(*key, 1))))
    write_mp4(path, frames, fps, audio=sound, sample_rate=VOICE_SAMPLE_RATE)
    return path


def _run_tasks(fn, tasks: list, workers: int, progress: bool, desc: str, unit: str, chunksize: int) -> None:
    """Run ``fn`` on every task, in a process pool when ``workers`` > 1, with a progress bar."""
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc=desc, unit=unit)
    workers = max(1, int(workers))
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            fn(task)
            if bar is not None:
                bar.update(1)
    else:
        # fork where available: spawn/forkserver re-import __main__, which
        # breaks (and respawns workers forever) for stdin scripts and scripts
        # without a main guard. Workers only touch numpy and PyAV, never CUDA,
        # so forking a parent that holds a GPU context is safe.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for _ in pool.imap_unordered(fn, tasks, chunksize=chunksize):
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()


def generate_synthemo(out_dir: str | os.PathLike, cfg: SynthEmoConfig = SynthEmoConfig(), progress: bool = True) -> dict:
    """Writes out_dir/{train,val,test}.jsonl and out_dir/videos/<split>/<id>.mp4, plus out_dir/synthemo.json (the config and the ceilings). Returns that summary dict.

    The returned dict also carries ``generation_seconds`` (not written to disk)."""
    from ..config.errors import check_output_folder

    cfg.validate()
    check_output_folder(out_dir, "SynthEmo --out")
    if not 0 < cfg.window_min <= cfg.window_max <= 1:
        raise ValueError("need 0 < window_min <= window_max <= 1")
    for name in ("ambiguous_fraction", "happy_positive_text", "sad_specific_text"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]")
    out = Path(out_dir)
    manifests: dict[str, list[str]] = {}
    tasks = []
    for split, n in cfg.split_sizes().items():
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
        labels = balanced_labels(n, np.random.default_rng(_seed_seq(cfg, split, 0)))
        lines = []
        for i, label in enumerate(labels):
            params, text, meta = sample_video(cfg, split, i, label)
            rel = f"videos/{split}/{i:06d}.mp4"
            lines.append(json.dumps({"video": rel, "text": text, "label": label, "meta": meta}, sort_keys=False))
            voice = meta["voice"] if cfg.audio else ...
            tasks.append((str(out / rel), params, cfg.num_frames, cfg.size, cfg.fps, int(cfg.seed), (_SPLIT_KEY[split], 2, i),
                          voice))
        manifests[split] = lines

    t0 = time.perf_counter()
    _run_tasks(_render_task, tasks, int(cfg.workers), progress, "synthemo", "video", chunksize=4)

    # Manifests go last so they never point at videos that are not written yet.
    for split, lines in manifests.items():
        atomic_write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    cfg_dict = asdict(cfg)
    summary = {
        "name": "synthemo",
        "version": 1,
        "config": cfg_dict,
        "ceilings": ceilings(cfg),
        "emotions": list(EMOTIONS),
        "num_frames": cfg.num_frames,
        "counts": {s: len(v) for s, v in manifests.items()},
        "manifests": {s: f"{s}.jsonl" for s in manifests},
    }
    atomic_write_text(out / "synthemo.json", json.dumps(summary, indent=2) + "\n")
    # Wall time goes only into the returned dict: the file must stay
    # byte-identical for a seed.
    summary["generation_seconds"] = time.perf_counter() - t0
    return summary
