"""The original ClipBERT checkpoint -> a clipbert-emo checkpoint folder (``clipbert-emo convert-clipbert``).

The original file (``clipbert_image_text_pretrained.pt``) is the flat state dict of its wrapper
model. Every tensor of the parts both models share gets a name here; the rest is dropped and
reported, never silently:

==========================================  ===========================================  ========
original key                                here                                         what
==========================================  ===========================================  ========
cnn.feature.backbone.*                      cnn.backbone.* (models/detectron_resnet.py)  loaded
cnn.grid_encoder.0.weight                   cnn.grid_encoder.0.weight                    loaded
transformer.bert.{embeddings,encoder,       same name                                    loaded
  pooler,visual_embeddings}.*
transformer.classifier.{0,2}.*              head.classifier.{0,2}.*                      loaded if
                                                                                         its K fits
transformer.cls.{predictions,               same name, in pretraining_heads.safetensors  kept aside
  seq_relationship}.*
cnn.feature.proposal_generator.*            -                                            dropped
cnn.feature.roi_heads.*                     -                                            dropped
cnn.feature.{pixel_mean,pixel_std}          -                                            dropped
transformer.bert.visual_embeddings.         -                                            dropped
  position_embeddings.*
==========================================  ===========================================  ========

The detector parts (region proposals, box and attribute heads) trained the backbone on Visual
Genome but ClipBERT never runs them: it reads res5 directly. The visual 1-D position table exists
in the original's module but its forward never adds it. The pretraining heads (MLM, ITM) have no
place in the emotion model; they are kept under their own names for a pretraining model whose
``transformer.cls`` is transformers' ``BertPreTrainingHeads``.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import torch

from .checkpoint import PRETRAINING_HEADS, CheckpointError, check_tokenizer_folder, normal_file_mode, save_checkpoint
from .config import CONFIG_DIR
from .config.atomic import atomic_path

ORIGINAL_CONFIG = CONFIG_DIR / "clipbert_original.yaml"
REPORT = "conversion_report.json"

# Modules of ClipBertForEmotion that the original has no counterpart for: they start at their
# initialisation, and are the only tensors allowed to.
NEW_MODULES = {
    "head.": "downstream classifier (new for these labels)",
    "visual_aux.": "visual auxiliary classifier (model.visual_aux_weight > 0)",
    "cnn.temporal.": "learned temporal fusion (model.temporal_fusion=attention)",
}

DROPPED = {
    "cnn.feature.proposal_generator": "detector region proposals (RPN): ClipBERT never runs them",
    "cnn.feature.roi_heads": "detector box/attribute heads: ClipBERT reads res5 of the backbone directly",
    "cnn.feature.pixel_mean": "detector input statistics: ClipBERT normalises before the backbone "
                              "(model.pixel_mean/pixel_std)",
    "cnn.feature.pixel_std": "detector input statistics: ClipBERT normalises before the backbone "
                             "(model.pixel_mean/pixel_std)",
    "cnn.feature": "a detector part ClipBERT never runs",
    "transformer.bert.visual_embeddings.position_embeddings": "1-D visual positions: never added in the "
                                                              "original's forward",
    "transformer.bert.embeddings.position_ids": "a constant arange buffer, rebuilt by the model",
    "num_batches_tracked": "BatchNorm step counters: meaningless for frozen BatchNorm",
    "transformer.classifier": "fine-tuned classifier whose output size differs from this config's labels",
    "unrecognised": "not part of the original ClipBERT model",
}


class ConversionError(CheckpointError):
    """The file does not hold the original ClipBERT's weights in the expected layout."""


def _group(name: str) -> str:
    """Report group of a converted name: the module two or three levels down (cnn.backbone.res3, ...)."""
    parts = name.split(".")
    depth = 3 if parts[:2] in (["cnn", "backbone"], ["transformer", "bert"], ["transformer", "cls"]) else 2
    return ".".join(parts[:depth])


def convert_clipbert_state_dict(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename the original ClipBERT's tensors to this library's; drop what has no counterpart.

    ``state_dict`` is the flat state dict or a dict with it under ``"model"``. Returns ``(converted,
    report)``: ``converted`` maps ClipBertForEmotion names (and the kept ``transformer.cls.*``
    pretraining-head names) to the original tensors; ``report`` has ``"total"`` (tensors in the file),
    ``"mapped"`` {group: count}, ``"dropped"`` {group: count}, ``"dropped_keys"`` {group: [original keys]},
    ``"why"`` {group: reason} and ``"filled_in"`` (tied copies the file left out, rebuilt from their twin).
    """
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    if not isinstance(state_dict, dict) or not state_dict:
        raise ConversionError("expected a state dict (name -> tensor), or a dict with one under 'model'")
    converted: dict[str, torch.Tensor] = {}
    mapped: Counter = Counter()
    dropped: dict[str, list[str]] = defaultdict(list)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            dropped["unrecognised"].append(key)
            continue
        new = None
        if key.endswith(".num_batches_tracked"):
            dropped["num_batches_tracked"].append(key)
        elif key.startswith("cnn.feature.backbone."):
            new = "cnn.backbone." + key[len("cnn.feature.backbone."):]
        elif key.startswith("cnn.feature."):
            dropped[".".join(key.split(".")[:3])].append(key)  # proposal_generator, roi_heads, pixel_mean, ...
        elif key.startswith("cnn.grid_encoder."):
            new = key
        elif key.startswith("transformer.bert.visual_embeddings.position_embeddings."):
            dropped["transformer.bert.visual_embeddings.position_embeddings"].append(key)
        elif key == "transformer.bert.embeddings.position_ids":
            dropped[key].append(key)
        elif key.startswith(("transformer.bert.", "transformer.cls.")):
            new = key
        elif key.startswith("transformer.classifier."):
            new = "head.classifier." + key[len("transformer.classifier."):]
        else:
            dropped["unrecognised"].append(key)
        if new is not None:
            converted[new] = value
            mapped[_group(new)] += 1
    # transformers' BertLMPredictionHead stores the MLM bias twice (predictions.bias and decoder.bias) and
    # ties the decoder to the word embeddings; a file that saved only one copy gets the other filled in.
    cls, words = "transformer.cls.predictions.", "transformer.bert.embeddings.word_embeddings.weight"
    filled_in = []
    if cls + "bias" in converted and cls + "decoder.bias" not in converted:
        converted[cls + "decoder.bias"] = converted[cls + "bias"]
        filled_in.append(cls + "decoder.bias")
    if any(k.startswith(cls) for k in converted) and cls + "decoder.weight" not in converted and words in converted:
        converted[cls + "decoder.weight"] = converted[words]
        filled_in.append(cls + "decoder.weight")
    report = {
        "total": len(state_dict),
        "mapped": dict(sorted(mapped.items())),
        "dropped": {g: len(keys) for g, keys in sorted(dropped.items())},
        "dropped_keys": {g: keys for g, keys in sorted(dropped.items())},
        "why": {g: DROPPED[g] if g in DROPPED else DROPPED["cnn.feature"] for g in sorted(dropped)},
        "filled_in": filled_in,
    }
    return converted, report


def load_original_state_dict(path: str | os.PathLike) -> dict:
    """The original checkpoint's tensors; ``weights_only`` so that loading can never run pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise ConversionError(f"{path}: the file is empty (0 bytes), not the original ClipBERT checkpoint; download "
                              "or copy it again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise ConversionError(f"{path}: permission denied; this account cannot read it") from None
    except Exception as e:  # UnpicklingError (objects beyond tensors), a truncated or non-torch file, ...
        lines = str(e).strip().splitlines()  # some of torch's errors have no message at all
        raise ConversionError(f"{path}: cannot read it as a tensor-only torch file "
                              f"({type(e).__name__}{': ' + lines[0][:200] if lines else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def _sample(keys, n: int = 8) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _is_new(key: str) -> bool:
    return key.startswith(tuple(NEW_MODULES))


def _conversion_config(config: str | os.PathLike | None, tokenizer: str, labels: list[str] | None,
                       overrides: list[str] | None):
    """The config the converted model is built from (``config`` or clipbert_original.yaml, overridden), and its
    path; refuses one whose visual side cannot take the original's weights."""
    from .config import ConfigError, load_config

    config = Path(config) if config else ORIGINAL_CONFIG
    if not config.is_file():
        raise ConfigError(f"config {config} not found; pass the path of clipbert_original.yaml (--config)")
    cfg = load_config(config, list(overrides or []))
    cfg.model.tokenizer = str(tokenizer)  # recorded for the record; the checkpoint carries its own copy
    if labels:
        cfg.data.labels = list(labels)
    cfg.validate()
    if cfg.model.backbone != "detectron2_resnet50" or cfg.model.backbone_stages != 4 or not cfg.data.use_video:
        raise ConfigError("the original's visual weights need model.backbone=detectron2_resnet50, "
                          "model.backbone_stages=4 and data.use_video=true")
    return cfg, config


def _load_tokenizer_for(converted: dict, ckpt_path, tokenizer: str):
    """The tokenizer, checked against the size of the file's word embeddings."""
    from .data.text import load_tokenizer

    if Path(tokenizer).is_dir():
        check_tokenizer_folder(tokenizer, strict=False)  # a local folder's shipped code never runs
    tok = load_tokenizer(tokenizer)
    words = converted.get("transformer.bert.embeddings.word_embeddings.weight")
    if words is None:
        raise ConversionError(f"{ckpt_path}: no transformer.bert.embeddings.word_embeddings.weight; is this "
                              "a ClipBERT checkpoint?")
    if words.shape[0] != len(tok):
        raise ConversionError(f"tokenizer {tokenizer!r} has {len(tok)} tokens but the checkpoint's word embeddings "
                              f"have {words.shape[0]} rows: pass the vocabulary it was trained with "
                              "(bert-base-uncased for the original)")
    return tok


def _drop_other_classifier(weights: dict, own: dict, mapping: dict, num_labels: int) -> None:
    """A classifier fine-tuned for another label set cannot serve this one: drop it whole, reported."""
    clf = [k for k in weights if k.startswith("head.")]
    if not clf or all(k in own and own[k].shape == weights[k].shape for k in clf):
        return
    mapping["dropped"]["transformer.classifier"] = len(clf)
    mapping["dropped_keys"]["transformer.classifier"] = ["transformer.classifier." + k[len("head.classifier."):]
                                                        for k in clf]
    k_file = weights.get("head.classifier.2.weight", weights[clf[-1]]).shape[0]
    mapping["why"]["transformer.classifier"] = (f"{DROPPED['transformer.classifier']} "
                                               f"(file: {k_file} outputs, config: {num_labels})")
    mapping["mapped"].pop("head.classifier", None)
    for k in clf:
        weights.pop(k)


def _check_fit(weights: dict, own: dict, ckpt_path, config: Path) -> None:
    """Every model tensor from the file at its shape (new modules aside), and nothing of the file left over."""
    unexpected = [k for k in weights if k not in own]
    wrong_shape = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}"
                   for k, v in weights.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in weights and not _is_new(k)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors not in the file: {_sample(missing)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} of another shape (check model.* sizes against the file): "
                        f"{_sample(wrong_shape, 4)}")
    if unexpected:
        problems.append(f"{len(unexpected)} file tensors with no place in the model: {_sample(unexpected)}")
    if problems:
        raise ConversionError(f"{ckpt_path} does not fit the model of {config.name}: " + "; ".join(problems))


def _conversion_report(ckpt_path, own: dict, weights: dict, heads: dict, initialised: list[str],
                       mapping: dict) -> dict:
    loaded = Counter(_group(k) for k in own if k in weights)  # in the model's order: stem, res2, ...
    return {
        "source": str(ckpt_path),
        "loaded": dict(loaded),
        "kept_aside": {g: n for g, n in Counter(_group(k) for k in heads).items()},
        "kept_aside_file": PRETRAINING_HEADS if heads else None,
        "dropped": mapping["dropped"],
        "dropped_keys": mapping["dropped_keys"],
        "why": mapping["why"],
        "initialised": dict(sorted(Counter(_group(k) for k in initialised).items())),
        "initialised_keys": initialised,
        "initialised_why": {p.rstrip("."): why for p, why in NEW_MODULES.items()
                            if any(k.startswith(p) for k in initialised)},
        "filled_in": mapping["filled_in"],
        "tensors": {"file": mapping["total"], "loaded": len(weights),
                    "kept_aside": len(heads), "dropped": sum(mapping["dropped"].values()),
                    "initialised": len(initialised)},
    }


def _write_converted(out_dir: Path, model, cfg, tok, heads: dict, report: dict, ckpt_path) -> None:
    """The checkpoint folder, the pretraining heads beside it, and the report."""
    from safetensors.torch import save_file

    summary = {k: report[k] for k in ("loaded", "kept_aside", "dropped", "initialised", "tensors")}
    save_checkpoint(out_dir, model, cfg, tok, meta={"converted_from": str(ckpt_path), "conversion": summary})
    if heads:
        # Copies: the tied MLM decoder shares memory with the word embeddings, which safetensors refuses.
        with atomic_path(out_dir / PRETRAINING_HEADS, mode=normal_file_mode()) as tmp:
            save_file({k: v.detach().contiguous().clone() for k, v in heads.items()}, str(tmp))
    with atomic_path(out_dir / REPORT, mode=normal_file_mode()) as tmp:
        tmp.write_text(json.dumps(report, indent=2))


def convert_clipbert(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike, tokenizer: str = "bert-base-uncased",
                     labels: list[str] | None = None, overrides: list[str] | None = None,
                     config: str | os.PathLike | None = None) -> dict:
    """Convert the original checkpoint into a checkpoint folder for ``train.init_checkpoint`` / ``load_checkpoint``.

    The model is built from ``config`` (default: configs/clipbert_original.yaml) plus ``overrides``
    (``key.sub=value``) and ``labels`` (data.labels). Every one of its tensors must come from the file
    with the right shape, except the new modules in ``NEW_MODULES`` (the classifier, unless the file
    has one of the same size): anything else missing, left over or of another shape raises
    ConversionError naming the keys. Writes ``out_dir`` (model.safetensors, config.yaml, tokenizer/,
    meta.json) plus ``pretraining_heads.safetensors`` and ``conversion_report.json``; returns the report.
    """
    from .build import build_model

    cfg, config = _conversion_config(config, tokenizer, labels, overrides)
    converted, mapping = convert_clipbert_state_dict(load_original_state_dict(ckpt_path))
    tok = _load_tokenizer_for(converted, ckpt_path, tokenizer)

    model = build_model(cfg, len(tok), tok.pad_token_id or 0, pretrained=False)
    own = model.state_dict()
    heads = {k: v for k, v in converted.items() if k.startswith("transformer.cls.")}
    weights = {k: v for k, v in converted.items() if k not in heads}
    _drop_other_classifier(weights, own, mapping, model.num_labels)
    _check_fit(weights, own, ckpt_path, config)

    result = model.load_state_dict(weights, strict=False)
    initialised = sorted(result.missing_keys)
    if result.unexpected_keys or not all(_is_new(k) for k in initialised):  # the checks above rule this out
        raise ConversionError(f"load_state_dict disagrees with the checks: {result}")

    report = _conversion_report(ckpt_path, own, weights, heads, initialised, mapping)
    _write_converted(Path(out_dir), model, cfg, tok, heads, report, ckpt_path)
    return report
