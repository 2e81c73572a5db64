"""Checkpoints: a folder with safetensors weights, the resolved config and the tokenizer.

Weights are safetensors, so loading a checkpoint can never run code that was pickled
into it. A folder is written under a temporary name and renamed into place, so a run
killed mid-save leaves the previous checkpoint intact, never half of a new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..config import ExperimentConfig, from_dict, save_config

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"
TOKENIZER = "tokenizer"


class CheckpointError(RuntimeError):
    pass


TRAINING_STATE = "training_state.pt"


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, cfg: ExperimentConfig, tokenizer,
                    meta: dict | None = None, training_state: dict | None = None) -> Path:
    """Write a checkpoint folder atomically; ``training_state`` (optimizer, scheduler, counters) makes it
    resumable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
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
                "uses_video": model.uses_video, **(meta or {})}
        (tmp / META).write_text(json.dumps(info, indent=2, default=str))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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
    from ..data.text import load_tokenizer
    from ..models.clipbert import ClipBertForEmotion

    path = Path(path)
    cfg, meta = read_checkpoint_config(path)
    tokenizer = load_tokenizer(path / TOKENIZER)
    model = ClipBertForEmotion(cfg.model, meta["num_labels"], meta["vocab_size"], use_video=meta["uses_video"],
                               task=cfg.data.task, num_heads=max(1, len(cfg.data.heads)),
                               pad_token_id=tokenizer.pad_token_id or 0, pretrained=False)
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
