"""SynthEmo for retrieval and question answering: captions and questions from what the generator drew.

Every video's face parameters are a function of (seed, split, index) (:func:`.generate.sample_video`), so
the captions and answers written here come from the generator itself, never from looking at pixels:

- retrieval (``retrieval_{split}.jsonl``): a caption of what the video shows, e.g. "a dark face that
  frowns with knitted brows as a blue square drifts past"; the expression (what happens to the face), the
  moving shape and its colour, and the skin tone, so most videos of a split have a caption of their own.
  Training videos get two differently worded captions, validation and test videos one (MSR-VTT style).
- open-ended QA (``qa_{split}.jsonl``): four questions per video, ``question_type`` in feeling (the emotion;
  the question carries the transcript, which the face alone cannot replace), mouth (what the mouth does),
  shape and colour (of the moving shape).
- multiple-choice QA (``qa_mc_{split}.jsonl``): the same questions with four candidates of the same type.

Per-frame features only: ClipBERT scores each clip on its own, so nothing here depends on when the
expression happens or which way the shape moves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..config.atomic import atomic_write_text
from .captions import _FEATURE_PHRASES, describe_expression
from .generate import sample_video
from .spec import SynthEmoConfig

# What the mouth does in each expression family (describe_expression's mouth features -> an answer).
MOUTH_ANSWERS = {"mouth_wide_open": "it opens wide", "smile": "it smiles", "frown": "it turns down",
                 "tight_lips": "it presses tight", "slight_frown": "it turns down a little",
                 "mouth_straight": "nothing"}
QUESTIONS = {
    "feeling": ("what does the person feel? they say: {text}", "how does the person feel when saying: {text}"),
    "mouth": ("what happens to the mouth?", "what does the mouth do?"),
    "shape": ("what shape moves past the face?", "which shape drifts across?"),
    "colour": ("what colour is the moving shape?", "what colour is the shape that drifts past?"),
}
ANSWERS = {"mouth": tuple(dict.fromkeys(MOUTH_ANSWERS.values())), "shape": ("square", "circle"),
           "colour": ("red", "green", "blue", "grey")}
# Multiple choice offers four candidates of the question's type; shapes that never occur fill the shape pool.
_MC_EXTRA = {"shape": ("triangle", "star")}
_EXPRESSION_VERBS = {"smile": "smiles", "frown": "frowns", "slight_frown": "frowns slightly",
                     "mouth_wide_open": "opens its mouth wide", "tight_lips": "presses its lips tight",
                     "mouth_straight": "keeps a straight face"}
_TASK_KEY = 11  # the captions' and questions' own seed branch (videos use 0..3, captioned stills 7)


def colour_name(rgb) -> str:
    rgb = np.asarray(rgb, dtype=float)
    if rgb.max() - rgb.min() < 60:
        return "grey"
    return ("red", "green", "blue")[int(rgb.argmax())]


def skin_word(skin) -> str:
    lum = float(np.mean(skin))
    return "pale" if lum > 185 else "dark" if lum < 120 else "tanned"


def video_facts(params, label: str, text: str) -> dict:
    feats = describe_expression(params.expression)
    mouth = next(f for f in ("mouth_wide_open", "smile", "frown", "tight_lips", "slight_frown", "mouth_straight")
                 if f in feats or f == "mouth_straight")
    return {"label": label, "transcript": text, "features": feats, "mouth": mouth,
            "shape": "square" if params.distractor_square else "circle",
            "colour": colour_name(params.distractor_color), "skin": skin_word(params.skin)}


def make_retrieval_caption(facts: dict, rng: np.random.Generator) -> str:
    verb = _EXPRESSION_VERBS[facts["mouth"]]
    others = [f for f in facts["features"] if f != facts["mouth"] and f in _FEATURE_PHRASES
              and f not in ("brows_level", "eyes_normal", "mouth_parted")]
    detail = ""
    if others:
        pick = others[int(rng.integers(len(others)))]
        detail = " with " + _FEATURE_PHRASES[pick]["np"][int(rng.integers(len(_FEATURE_PHRASES[pick]["np"])))]
    shape = f"{facts['colour']} {facts['shape']}"
    forms = (f"a {facts['skin']} face that {verb}{detail} as a {shape} drifts past",
             f"a {shape} moves behind a {facts['skin']} face that {verb}{detail}",
             f"someone with a {facts['skin']} face {verb.replace('its', 'their')}{detail} while a {shape} "
             "floats by")
    return forms[int(rng.integers(len(forms)))]


def _answer(facts: dict, qtype: str) -> str:
    if qtype == "feeling":
        return facts["label"]
    if qtype == "mouth":
        return MOUTH_ANSWERS[facts["mouth"]]
    return facts[qtype]


def write_task_manifests(data_dir: str | Path) -> dict:
    """Write the retrieval and QA manifests next to a generated SynthEmo (its synthemo.json and split JSONLs).
    Returns {manifest name: number of records}."""
    data_dir = Path(data_dir)
    summary = json.loads((data_dir / "synthemo.json").read_text())
    cfg = SynthEmoConfig(**summary["config"])
    counts = {}
    all_feelings = tuple(summary["emotions"])
    for split in ("train", "val", "test"):
        path = data_dir / f"{split}.jsonl"
        if not path.exists():
            continue
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        retrieval, qa, mc = [], [], []
        for i, rec in enumerate(records):
            params, text, meta = sample_video(cfg, split, i, rec["label"])
            facts = video_facts(params, rec["label"], rec["text"])
            rng = np.random.default_rng(np.random.SeedSequence(entropy=int(cfg.seed), spawn_key=(_TASK_KEY, i,
                                                                                                  len(split))))
            for _ in range(2 if split == "train" else 1):
                retrieval.append({"video": rec["video"], "text": make_retrieval_caption(facts, rng),
                                  "meta": {"id": meta["id"], **{k: facts[k] for k in ("mouth", "shape", "colour",
                                                                                       "skin")}}})
            for qtype, forms in QUESTIONS.items():
                question = forms[int(rng.integers(len(forms)))].format(text=rec["text"] or "nothing")
                answer = _answer(facts, qtype)
                qa.append({"video": rec["video"], "text": question, "answer": answer, "question_type": qtype})
                pool = [a for a in (all_feelings if qtype == "feeling" else ANSWERS[qtype] + _MC_EXTRA.get(qtype, ()))
                        if a != answer]
                wrong = [pool[j] for j in rng.permutation(len(pool))[:3]]
                cands = [answer, *wrong]
                order = rng.permutation(len(cands))
                cands = [cands[j] for j in order]
                mc.append({"video": rec["video"], "text": question, "candidates": cands,
                           "answer": cands.index(answer), "question_type": qtype})
        for name, lines in (("retrieval", retrieval), ("qa", qa), ("qa_mc", mc)):
            out = data_dir / f"{name}_{split}.jsonl"
            atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in lines))
            counts[out.name] = len(lines)
    return counts
