"""Checkpoints: a folder with safetensors weights, the resolved config, the tokenizer and a model card
(README.md, clipbert_emo/model_card.py).

Weights are safetensors, so loading a checkpoint can never run code that was pickled
into it. A folder is written under a temporary name and renamed into place, so a run
killed mid-save leaves the previous checkpoint intact, never half of a new one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import ExperimentConfig, from_dict, save_config
from .config.atomic import atomic_folder, atomic_write_text
from .config.errors import UserError
from .model_card import current_command, write_model_card

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"
TOKENIZER = "tokenizer"
TRAINING_STATE = "training_state.pt"
# The MLM/ITM heads of a converted original ClipBERT, kept beside its weights for pretraining to start from.
PRETRAINING_HEADS = "pretraining_heads.safetensors"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint folder that cannot be used; the message names the folder and the file."""


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, cfg: ExperimentConfig, tokenizer,
                    meta: dict | None = None, training_state: dict | None = None) -> Path:
    """Write a checkpoint folder atomically; ``training_state`` (optimizer, scheduler, counters) makes it
    resumable."""
    with atomic_folder(path) as tmp:
        state, seen = {}, set()
        for k, v in model.state_dict().items():
            v = v.detach().contiguous().cpu()
            # safetensors refuses tensors that share memory (the MLM decoder is tied to the word
            # embeddings); the copy is stored twice, as ClipBERT's own checkpoint does.
            state[k] = v.clone() if v.data_ptr() in seen else v
            seen.add(v.data_ptr())
        save_file(state, str(tmp / WEIGHTS))
        save_config(cfg, tmp / CONFIG)
        tokenizer.save_pretrained(str(tmp / TOKENIZER))
        # a late-fusion model without text has no single `transformer`; it says its vocabulary itself
        vocab_size = getattr(model, "vocab_size", None) or model.transformer.config.vocab_size
        info = {"num_labels": getattr(model, "num_labels", 0), "vocab_size": vocab_size,
                "uses_video": model.uses_video, "modalities": model.modality_names, "command": current_command(),
                **(meta or {})}
        (tmp / META).write_text(json.dumps(info, indent=2, default=str))
        write_model_card(tmp, cfg, info)  # README.md: what the model is for, how it was trained, how it did
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
    return Path(path)


def read_checkpoint_config(path: str | os.PathLike) -> tuple[ExperimentConfig, dict]:
    """The config and meta.json of a checkpoint folder; CheckpointError naming the file when either is
    missing or unreadable."""
    import yaml

    from .config import ConfigError

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder (a run writes it as <train.output_dir>/checkpoint)")
    for name in (WEIGHTS, CONFIG, META):
        if not (path / name).exists():
            raise CheckpointError(f"{path}: not a clipbert-emo checkpoint folder (missing {name})")
    try:
        cfg = from_dict(yaml.safe_load((path / CONFIG).read_text(encoding="utf-8")) or {}, where=str(path / CONFIG))
    except (yaml.YAMLError, UnicodeDecodeError, ConfigError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG}: cannot be read as this library's config ({_first_line(e)})") from None
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / META}: not valid JSON ({_first_line(e)})") from None
    return cfg, meta


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _tensor_shapes(file: Path) -> dict[str, tuple]:
    """Names and shapes in a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError for a truncated or foreign file
        raise CheckpointError(f"{file}: not a readable safetensors file ({_first_line(e)}); the checkpoint is "
                              "damaged: save it again or use another one") from None


def verify_checkpoint(path: Path, cfg: ExperimentConfig, meta: dict, tokenizer) -> None:
    """The label list, the classifier's width, the tokenizer's vocabulary and the embedding size agree, or
    CheckpointError says which disagree: a mismatch would otherwise mislabel or mis-tokenize silently."""
    from .tasks import get_task

    shapes = _tensor_shapes(path / WEIGHTS)
    width = get_task(cfg.data.task).num_outputs(cfg.data)
    problems = []
    head = shapes.get("head.classifier.2.weight")
    if head is not None and head[0] != width:
        problems.append(f"the classifier has {head[0]} outputs but config.yaml's data.labels ({len(cfg.data.labels)}: "
                        f"{', '.join(cfg.data.labels)}) with data.task={cfg.data.task} need {width}")
    if meta.get("num_labels", width) != width:
        problems.append(f"meta.json says {meta['num_labels']} outputs, config.yaml needs {width}")
    words = shapes.get("transformer.bert.embeddings.word_embeddings.weight")
    if words is not None and words[0] != len(tokenizer):
        problems.append(f"the word embeddings have {words[0]} rows but tokenizer/ has {len(tokenizer)} tokens "
                        "(a vocabulary that lost words would turn them into [UNK])")
    if words is not None and meta.get("vocab_size", words[0]) != words[0]:
        problems.append(f"meta.json says vocab_size {meta['vocab_size']}, the weights have {words[0]} rows")
    if problems:
        raise CheckpointError(f"{path}: the checkpoint's parts disagree: " + "; ".join(problems))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode, config, tokenizer) from a checkpoint folder written by ``save_checkpoint``."""
    from .build import build_model
    from .data.text import load_inference_tokenizer

    path = Path(path)
    cfg, meta = read_checkpoint_config(path)
    if not (path / TOKENIZER).is_dir():
        raise CheckpointError(f"{path}: no {TOKENIZER}/ folder; a checkpoint carries the tokenizer it was trained "
                              "with, copy the folder back from the run")
    try:
        tokenizer = load_inference_tokenizer(path / TOKENIZER)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / TOKENIZER}: cannot load the tokenizer ({_first_line(e)})") from None
    verify_checkpoint(path, cfg, meta, tokenizer)
    model = build_model(cfg, meta.get("vocab_size", len(tokenizer)), tokenizer.pad_token_id or 0, pretrained=False,
                        inference=True)
    load_weights(model, path / WEIGHTS, strict=True)
    return model.to(device).eval(), cfg, tokenizer


def load_training_state(path: str | os.PathLike) -> dict:
    """The resumable state saved beside the weights; plain tensors and numbers only (weights_only)."""
    file = Path(path) / TRAINING_STATE
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for objects beyond tensors and numbers, or a damaged file
        raise CheckpointError(f"{file}: refused, it is not a plain training state written by this library (it holds "
                              f"other Python objects, or is damaged: {_first_line(e)[:120]}). Nothing was loaded; "
                              "delete the last/ folder to start afresh, or resume from a copy you trust") from None


def load_weights(model: torch.nn.Module, file: str | os.PathLike, strict: bool = False) -> dict:
    """Load safetensors weights; report what did not match instead of failing silently."""
    try:
        state = load_file(str(file))
    except Exception as e:  # SafetensorError: truncated, garbage, or not a safetensors file
        raise CheckpointError(f"{file}: not a readable safetensors file ({_first_line(e)}); the checkpoint is "
                              "damaged: save it again or use another one") from None
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in shape_mismatch:
        state.pop(k)
    result = model.load_state_dict(state, strict=False)
    report = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys),
              "shape_mismatch": shape_mismatch}
    if strict and any(report.values()):
        raise CheckpointError(f"{file}: weights do not match the model: " +
                              "; ".join(f"{k}: {v[:5]}" for k, v in report.items() if v))
    return report


def update_model_card(folder: str | os.PathLike, **facts) -> Path:
    """Add ``facts`` (e.g. ``test=summarise_evaluation(result)``, ``split_sizes=...``) to a checkpoint folder's meta.json
    and render its card again; both files are replaced atomically. Dicts are merged one level deep."""
    folder = Path(folder)
    cfg, meta = read_checkpoint_config(folder)
    for key, value in facts.items():
        meta[key] = {**meta[key], **value} if isinstance(value, dict) and isinstance(meta.get(key), dict) else value
    atomic_write_text(folder / META, json.dumps(meta, indent=2, default=str))
    return write_model_card(folder, cfg, meta)
