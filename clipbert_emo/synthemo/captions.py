"""Captioned still frames of SynthEmo faces, for image-text pretraining.

ClipBERT's first stage matches images with captions (ITM) and fills in
masked caption words (MLM). generate_captioned_frames() gives that stage an
in-domain corpus: SynthEmo faces at their expression peak, each with a
caption that says what the face LOOKS like (mouth, brows, eyes) and never
which emotion it is. Fine-tuning then still has to learn the mapping from
appearance to label; pretraining only teaches the model to see the features.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config.atomic import atomic_write_text
from .face import FaceParams, sample_face_params
from .generate import _run_tasks
from .media import write_png
from .render import render_face_frames
from .spec import VISUAL_KINDS

_CAPTION_KEY = 7   # spawn-key branch of the caption corpus; videos use 0..2, so the two never share streams

# Words a caption must never contain: emotion names, their obvious synonyms
# and stems, and the visual family names. "calm" is here too because RAVDESS
# uses it as an emotion class. Tests check every caption against this list.
CAPTION_FORBIDDEN_WORDS: frozenset[str] = frozenset({
    "happy", "happiness", "happily", "joy", "joyful", "glad", "cheerful", "delighted", "pleased", "content",
    "sad", "sadness", "sadly", "unhappy", "sorrow", "sorrowful", "grief", "gloomy", "depressed", "miserable",
    "angry", "anger", "angrily", "mad", "furious", "rage", "irritated", "annoyed", "hostile",
    "surprise", "surprised", "surprising", "astonished", "astonishment", "amazed", "shocked", "startled",
    "fear", "fearful", "afraid", "scared", "frightened", "terrified", "anxious", "worried", "nervous",
    "neutral", "calm", "relaxed", "disgust", "disgusted", "contempt", "upset", "excited",
    "emotion", "emotional", "mood", "feeling", "ambiguous",
})

# Phrases for each visible feature. "np": noun phrases that follow "with";
# "verb": participles for "someone <verb> with ..."; "adj": for "a <adj> face".
_FEATURE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "smile": {
        "np": ("a broad smile", "a wide smile", "upturned mouth corners", "mouth corners curled up", "a big grin"),
        "verb": ("smiling broadly", "grinning", "smiling widely"),
        "adj": ("smiling", "grinning"),
    },
    "frown": {
        "np": ("mouth corners turned down", "a downturned mouth", "a drooping mouth",
               "the corners of the mouth pulled down"),
        "verb": ("frowning", "frowning deeply"),
        "adj": ("frowning",),
    },
    "slight_frown": {
        "np": ("slightly downturned mouth corners", "a mouth that curves down a little",
               "a faint downward curve to the mouth"),
        "verb": ("frowning slightly",),
        "adj": ("slightly frowning",),
    },
    "mouth_straight": {
        "np": ("a closed mouth", "a straight closed mouth", "lips closed in a straight line", "a flat closed mouth"),
    },
    "mouth_wide_open": {
        "np": ("a wide open mouth", "a gaping mouth", "a round open mouth", "the mouth open wide", "a dropped jaw"),
        "verb": ("gaping", "staring open-mouthed"),
        "adj": ("open-mouthed", "gaping"),
    },
    "mouth_parted": {
        "np": ("parted lips", "a slightly open mouth", "lips a little apart"),
    },
    "tight_lips": {
        "np": ("tightly pressed lips", "a tight narrow mouth", "lips pressed together"),
    },
    "brows_raised": {
        "np": ("raised brows", "eyebrows lifted high", "brows arched up high", "high raised eyebrows"),
    },
    "brows_lowered": {
        "np": ("brows pulled down", "lowered eyebrows", "eyebrows drawn low"),
    },
    "brows_slightly_lowered": {
        "np": ("slightly lowered brows", "brows a little low", "eyebrows set a bit low"),
    },
    "brows_inner_up": {
        "np": ("brows raised at the inner ends", "eyebrows slanting up toward the middle", "inner brow corners lifted"),
    },
    "brows_knitted": {
        "np": ("brows drawn together", "knitted eyebrows", "brows slanting down toward the nose"),
    },
    "brows_level": {
        "np": ("level brows", "flat eyebrows", "eyebrows at rest"),
    },
    "eyes_wide": {
        "np": ("wide open eyes", "eyes opened wide", "big round eyes"),
        "adj": ("wide-eyed",),
    },
    "eyes_narrow": {
        "np": ("narrowed eyes", "squinting eyes", "half-closed eyes"),
        "verb": ("squinting",),
    },
    "eyes_normal": {
        "np": ("eyes open normally", "ordinary open eyes", "a steady gaze"),
    },
}
CAPTION_FEATURES: tuple[str, ...] = tuple(_FEATURE_PHRASES)

_CAPTION_SUBJECTS = ("a face", "a cartoon face", "a drawn face", "a person", "someone", "a cartoon person",
                     "a close-up of a face")
_CAPTION_NOUN_TEMPLATES = ("{subject} with {list}", "{subject} showing {list}", "{subject} that has {list}")
_CAPTION_VERB_TEMPLATES = ("{person} {verb} with {list}", "{person} {verb}, with {list}")
_CAPTION_ADJ_TEMPLATES = ("{article} {adj} face with {list}", "{article} {adj} cartoon face with {list}")
_CAPTION_PERSONS = ("someone", "a person", "a cartoon person", "a cartoon face", "a drawn face")


def describe_expression(expression) -> list[str]:
    """The visible features of an expression vector (layout :data:`EXPRESSION_FIELDS`), as
    :data:`CAPTION_FEATURES` keys in a fixed order (mouth, brows, eyes).

    Thresholds sit in the gaps between the visual families' jitter ranges
    (see ``sample_face_params``: deviation from neutral x U(0.85, 1.15),
    +- 0.04), so every family always gets its own core features:

    * happy: smile, mouth_parted (+ eyes_narrow for most draws: the happy
      eye range 0.56..0.74 straddles the 0.72 cut);
    * sad: frown, brows_inner_up;
    * angry: slight_frown, tight_lips, brows_lowered, brows_knitted, eyes_narrow;
    * ambiguous: slight_frown, brows_slightly_lowered;
    * astonished: mouth_wide_open, brows_raised, eyes_wide;
    * neutral: mouth_straight, brows_level, eyes_normal.
    """
    curve, mopen, mwidth, brow_h, brow_tilt, eye_open = (float(v) for v in np.asarray(expression, dtype=np.float64))
    feats: list[str] = []
    # mouth
    if mopen > 0.6:
        feats.append("mouth_wide_open")
    if curve > 0.4:
        feats.append("smile")
    elif curve < -0.5:
        feats.append("frown")
    elif curve < -0.15:
        feats.append("slight_frown")
    if 0.1 < mopen <= 0.6:
        feats.append("mouth_parted")
    elif mopen <= 0.1:
        if mwidth < 0.84:
            feats.append("tight_lips")
        elif abs(curve) < 0.15:
            feats.append("mouth_straight")
    # brows
    n_before = len(feats)
    if brow_h > 0.5:
        feats.append("brows_raised")
    elif brow_h < -0.6:
        feats.append("brows_lowered")
    elif brow_h < -0.2:
        feats.append("brows_slightly_lowered")
    if brow_tilt > 0.5:
        feats.append("brows_inner_up")
    elif brow_tilt < -0.5:
        feats.append("brows_knitted")
    if len(feats) == n_before:
        feats.append("brows_level")
    # eyes
    if eye_open > 1.2:
        feats.append("eyes_wide")
    elif eye_open < 0.72:
        feats.append("eyes_narrow")
    elif 0.95 <= eye_open <= 1.2:
        feats.append("eyes_normal")
    return feats


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _join_phrases(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(expression, rng: np.random.Generator) -> str:
    """A plain-words caption of the face's look, e.g. "someone smiling broadly with narrowed eyes
    and level brows". Varies template, feature order and synonyms with ``rng``; the content
    comes from :func:`describe_expression` only, and no word of
    :data:`CAPTION_FORBIDDEN_WORDS` can occur."""
    feats = describe_expression(expression)
    order = [feats[i] for i in rng.permutation(len(feats))]
    style = int(rng.integers(3))   # 0 noun phrase, 1 verb lead, 2 adjective lead
    lead_key = "verb" if style == 1 else "adj"
    leads = [f for f in order if lead_key in _FEATURE_PHRASES[f]]
    if style and leads:
        lead = leads[0]
        rest = [_pick(_FEATURE_PHRASES[f]["np"], rng) for f in order if f != lead]
        if style == 1:
            verb = _pick(_FEATURE_PHRASES[lead]["verb"], rng)
            person = _pick(_CAPTION_PERSONS, rng)
            if not rest:
                return f"{person} {verb}"
            return _pick(_CAPTION_VERB_TEMPLATES, rng).format(person=person, verb=verb, list=_join_phrases(rest))
        adj = _pick(_FEATURE_PHRASES[lead]["adj"], rng)
        article = "an" if adj[0] in "aeiou" else "a"
        if not rest:
            return f"{article} {adj} face"
        return _pick(_CAPTION_ADJ_TEMPLATES, rng).format(article=article, adj=adj, list=_join_phrases(rest))
    parts = [_pick(_FEATURE_PHRASES[f]["np"], rng) for f in order]
    return _pick(_CAPTION_NOUN_TEMPLATES, rng).format(subject=_pick(_CAPTION_SUBJECTS, rng), list=_join_phrases(parts))


def _caption_seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(_CAPTION_KEY, *key))


def sample_captioned_frame(seed: int, index: int, kind: str) -> tuple[FaceParams, str]:
    """Params and caption of still ``index``: a face of visual family ``kind``
    drawn as in the videos, but with no blinks (a one-frame render at t = 0.5 would otherwise often
    catch one) and a window covering the whole clip, so the single frame shows the expression at
    full intensity."""
    vis_ss, text_ss = _caption_seq(seed, 1, index).spawn(2)
    params = replace(sample_face_params(kind, (0.0, 1.0), np.random.default_rng(vis_ss)), blinks=())
    caption = make_caption(params.expression, np.random.default_rng(text_ss))
    return params, caption


def _render_still_task(task) -> str:
    path, params, size, seed, index = task
    rng = np.random.default_rng(_caption_seq(seed, 2, index))
    # One frame at t = 0.5; with window (0, 1) the intensity there is exactly 1.
    write_png(path, render_face_frames(params, 1, size, rng)[0])
    return path


def generate_captioned_frames(out_dir: str | os.PathLike, num_images: int = 2000, size: int = 64, seed: int = 0,
                              progress: bool = True, workers: int = 0) -> dict:
    """Writes SynthEmo still frames with appearance captions, for image-text pretraining.

    Layout::

        out_dir/
          images/<id>.png        (size x size RGB), ids 000000.. stable for a seed
          captions.jsonl         90%: {"video": "images/000017.png", "text": caption,
                                       "meta": {"id", "kind", "features"}}
          val_captions.jsonl     10% held out (round(0.1 * num_images) images)
          captions.json          summary: config, counts, kinds

    The key is ``video`` because the pretraining reader treats an image as a
    one-frame video; paths are relative to ``out_dir`` (the manifests' folder).
    Visual kinds (:data:`VISUAL_KINDS`, neutral included) are balanced (counts
    differ by at most one); appearance is drawn as for the videos; the face is
    fully expressed. Captions come from :func:`make_caption` and contain no
    emotion word (:data:`CAPTION_FORBIDDEN_WORDS`); ``meta`` carries the kind
    and feature keys for diagnostics only.

    Deterministic: everything is seeded from (seed, index), so the files are
    byte-identical for a seed whatever ``workers`` is. ``workers`` <= 1
    renders in this process; more uses a process pool. Returns the summary
    dict plus ``generation_seconds`` (not written to disk).
    """
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be a positive int, got {num_images!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    num_images, size, seed = int(num_images), int(size), int(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)

    order_rng = np.random.default_rng(_caption_seq(seed, 0))
    kind_order = order_rng.permutation(len(VISUAL_KINDS))
    kinds = [VISUAL_KINDS[kind_order[i % len(VISUAL_KINDS)]] for i in range(num_images)]
    kinds = [kinds[i] for i in order_rng.permutation(num_images)]
    num_val = int(round(0.1 * num_images))
    val_ids = set(order_rng.permutation(num_images)[:num_val].tolist())

    lines = {"train": [], "val": []}
    tasks = []
    for i, kind in enumerate(kinds):
        params, caption = sample_captioned_frame(seed, i, kind)
        rel = f"images/{i:06d}.png"
        meta = {"id": f"{i:06d}", "kind": kind, "features": describe_expression(params.expression)}
        lines["val" if i in val_ids else "train"].append(json.dumps({"video": rel, "text": caption, "meta": meta}))
        tasks.append((str(out / rel), params, size, seed, i))

    t0 = time.perf_counter()
    _run_tasks(_render_still_task, tasks, workers, progress, "synthemo captions", "image", chunksize=16)

    # Manifests last, so they never point at images that are not written yet.
    atomic_write_text(out / "captions.jsonl", "".join(line + "\n" for line in lines["train"]))
    atomic_write_text(out / "val_captions.jsonl", "".join(line + "\n" for line in lines["val"]))
    kind_counts = {k: kinds.count(k) for k in VISUAL_KINDS}
    summary = {
        "name": "synthemo_captions",
        "version": 1,
        "config": {"num_images": num_images, "size": size, "seed": seed},
        "counts": {"train": len(lines["train"]), "val": len(lines["val"])},
        "kinds": kind_counts,
        "manifests": {"train": "captions.jsonl", "val": "val_captions.jsonl"},
    }
    atomic_write_text(out / "captions.json", json.dumps(summary, indent=2) + "\n")
    summary["generation_seconds"] = time.perf_counter() - t0
    return summary
