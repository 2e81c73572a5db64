"""Checkpoints: a folder with safetensors weights, the resolved config and the tokenizer.

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
from .config.atomic import atomic_folder

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"
TOKENIZER = "tokenizer"
TRAINING_STATE = "training_state.pt"
# The MLM/ITM heads of a converted original ClipBERT, kept beside its weights for pretraining to start from.
PRETRAINING_HEADS = "pretraining_heads.safetensors"


class CheckpointError(RuntimeError):
    pass


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
        info = {"num_labels": getattr(model, "num_labels", 0), "vocab_size": model.transformer.config.vocab_size,
                "uses_video": model.uses_video, "modalities": model.modality_names, **(meta or {})}
        (tmp / META).write_text(json.dumps(info, indent=2, default=str))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
    return Path(path)


def read_checkpoint_config(path: str | os.PathLike) -> tuple[ExperimentConfig, dict]:
    import yaml

    path = Path(path)
    for name in (WEIGHTS, CONFIG, META):
        if not (path / name).exists():
            raise CheckpointError(f"{path}: not a clipbert-emo checkpoint folder (missing {name})")
    cfg = from_dict(yaml.safe_load((path / CONFIG).read_text()), where=str(path / CONFIG))
    return cfg, json.loads((path / META).read_text())


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode, config, tokenizer) from a checkpoint folder written by ``save_checkpoint``."""
    from .build import build_model
    from .data.text import load_tokenizer
    from .tasks import get_task

    path = Path(path)
    cfg, meta = read_checkpoint_config(path)
    width = get_task(cfg.data.task).num_outputs(cfg.data)
    if meta.get("num_labels", width) != width:
        raise CheckpointError(f"{path}: meta.json says the classifier has {meta['num_labels']} outputs, but its "
                              f"config (data.task={cfg.data.task}, {len(cfg.data.labels)} labels) needs {width}")
    tokenizer = load_tokenizer(path / TOKENIZER)
    model = build_model(cfg, meta["vocab_size"], tokenizer.pad_token_id or 0, pretrained=False)
    load_weights(model, path / WEIGHTS, strict=True)
    return model.to(device).eval(), cfg, tokenizer


def load_training_state(path: str | os.PathLike) -> dict:
    """The resumable state saved beside the weights; plain tensors and numbers only (weights_only)."""
    return torch.load(Path(path) / TRAINING_STATE, map_location="cpu", weights_only=True)


def load_weights(model: torch.nn.Module, file: str | os.PathLike, strict: bool = False) -> dict:
    """Load safetensors weights; report what did not match instead of failing silently."""
    state = load_file(str(file))
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
