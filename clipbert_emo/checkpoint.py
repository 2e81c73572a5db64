"""Checkpoints: a folder with safetensors weights, the resolved config, the tokenizer and a model card
(README.md, clipbert_emo/model_card.py).

Weights are safetensors, so loading a checkpoint can never run code that was pickled
into it. A folder is written under a temporary name and renamed into place, so a run
killed mid-save leaves the previous checkpoint intact, never half of a new one.
"""

from __future__ import annotations

import dataclasses

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import ExperimentConfig, from_dict, save_config
from .config.atomic import atomic_folder, atomic_write_text
from .config.errors import OutputError, UserError
from .model_card import current_command, write_model_card

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "meta.json"
TOKENIZER = "tokenizer"
TRAINING_STATE = "training_state.pt"
# The MLM/ITM heads of a converted original ClipBERT, kept beside its weights for pretraining to start from.
PRETRAINING_HEADS = "pretraining_heads.safetensors"
# The tokenizer classes this library writes (save_pretrained of the BERT WordPiece tokenizers it builds or
# loads). A checkpoint naming another class, or an auto_map, would have transformers import Python code
# shipped in the folder: loading a checkpoint never runs code, so those are refused.
TOKENIZER_CLASSES = ("BertTokenizer", "BertTokenizerFast")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint folder that cannot be used; the message names the folder and the file."""


DISK_FULL = "the disk is full"


class CheckpointSaveError(OutputError):
    """A checkpoint folder that could not be written (disk full, permission, ...); the folder it would have
    replaced is untouched."""

    def __init__(self, path: Path, why: str, outcome: str):
        self.path, self.why, self.outcome = path, why, outcome
        full = why == DISK_FULL
        advice = ("free some space (or choose a folder on another disk) and run again" if full
                  else "fix that, or choose another folder, and run again")
        super().__init__(f"{'no space left' if full else why} while saving {path}"
                         f"{f' ({why})' if full else ''}; {outcome}: {advice}")

    def replace_outcome(self, outcome: str) -> "CheckpointSaveError":
        """The same failure, with what a caller (the engine putting an older run back) made of it."""
        return CheckpointSaveError(self.path, self.why, outcome)


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_file_mode() -> int:
    """The mode a file created by this account gets (0644 under umask 022), for files written private first."""
    return 0o666 & ~_umask()


def give_normal_permissions(folder: Path) -> None:
    """Files and folders under ``folder`` as readable as any file this account creates (0644 under umask 022).

    safetensors (0.8) and mkstemp create private (0600) files; a checkpoint is meant to be read by other
    accounts too, e.g. the service account that runs ``serve``."""
    mask = _umask()
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _write_failure(e: BaseException) -> str:
    """What stopped a write, in words: the disk is full, permission denied, ... (OSError, SafetensorError, or the
    RuntimeError of torch.save, which carry it in different places)."""
    import errno

    text = str(e)
    code = getattr(e, "errno", None)
    if code == errno.ENOSPC or "No space left" in text or "StorageFull" in text or "os error 28" in text:
        return DISK_FULL
    if code == errno.EDQUOT or "quota" in text.lower():
        return "the disk quota is exceeded"
    if code == errno.EROFS or "Read-only file system" in text:
        return "the file system is read-only"
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return "permission denied"
    return _first_line(e)


def _save_failed(path: Path, had_previous: bool, e: BaseException) -> CheckpointSaveError:
    if had_previous and path.is_dir():
        kept = "the previous checkpoint is intact"
    elif had_previous:  # stopped between atomic_folder's two renames
        kept = f"the previous checkpoint is kept as .{path.name}.old beside it (the next run puts it back)"
    else:
        kept = "nothing was left there (no earlier checkpoint existed)"
    return CheckpointSaveError(path, _write_failure(e), kept)


def _is_write_failure(e: BaseException) -> bool:
    """An error of the file system while a checkpoint's files are written, as opposed to a bug."""
    from safetensors import SafetensorError

    if isinstance(e, UserError):
        return False
    if isinstance(e, (OSError, SafetensorError)):
        return True
    # torch.save reports a failed write as "PytorchStreamWriter failed writing file ...: file write failed"
    return isinstance(e, RuntimeError) and "write" in str(e).lower() and "PytorchStreamWriter" in str(e)


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, cfg: ExperimentConfig, tokenizer,
                    meta: dict | None = None, training_state: dict | None = None) -> Path:
    """Write a checkpoint folder atomically; ``training_state`` (optimizer, scheduler, counters) makes it
    resumable. A write that fails (full disk, permissions) raises CheckpointSaveError and leaves any previous
    folder at ``path`` as it was."""
    path = Path(path)
    had_previous = path.is_dir()
    try:
        with atomic_folder(path) as tmp:
            try:
                _write_checkpoint(tmp, model, cfg, tokenizer, meta, training_state)
            except Exception as e:
                if _is_write_failure(e):
                    raise _save_failed(path, had_previous, e) from e
                raise
    except OutputError as e:
        if isinstance(e, CheckpointSaveError):
            raise
        # atomic_folder's own steps (the temporary folder, the renames) met the file system's error
        raise _save_failed(path, had_previous, e.__cause__ or e) from e
    return path


def _write_checkpoint(tmp: Path, model: torch.nn.Module, cfg: ExperimentConfig, tokenizer, meta: dict | None,
                      training_state: dict | None) -> None:
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
    give_normal_permissions(tmp)


def read_checkpoint_config(path: str | os.PathLike) -> tuple[ExperimentConfig, dict]:
    """The config and meta.json of a checkpoint folder; CheckpointError naming the file when either is
    missing or unreadable."""
    from .config import ConfigError
    from .config.loading import safe_load_yaml

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder (a run writes it as <train.output_dir>/checkpoint)")
    for name in (WEIGHTS, CONFIG, META):
        if not (path / name).exists():
            raise CheckpointError(f"{path}: not a clipbert-emo checkpoint folder (missing {name})")
        check_readable(path / name)
    try:
        data = safe_load_yaml((path / CONFIG).read_text(encoding="utf-8"), str(path / CONFIG)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"the top level is a {type(data).__name__}, not a mapping")
        cfg = from_dict(data, where=str(path / CONFIG))
    except (UnicodeDecodeError, ConfigError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG}: cannot be read as this library's config ({_first_line(e)})") from None
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / META}: not valid JSON ({_first_line(e)})") from None
    return cfg, meta


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def _permission_denied(file: Path) -> CheckpointError:
    return CheckpointError(f"{file}: permission denied: the file is there but this account may not read it; make "
                           "it readable to this account (e.g. chmod a+r), or run as one that can read it")


def check_readable(file: Path) -> None:
    """CheckpointError saying "permission denied" for a file this account may not read: reported as what it
    is, not as a damaged checkpoint (which is what the safetensors or JSON error that follows would say)."""
    try:
        with open(file, "rb") as f:
            f.read(1)
    except FileNotFoundError:
        return  # the reader that follows says what is missing, as it always has
    except PermissionError:
        raise _permission_denied(file) from None
    except IsADirectoryError:
        raise CheckpointError(f"{file}: a folder where a file belongs; the checkpoint is damaged") from None


def check_tokenizer_folder(folder: str | os.PathLike, strict: bool = True) -> None:
    """Refuse a tokenizer folder that would make transformers run code shipped in it.

    An ``auto_map`` (in tokenizer_config.json or config.json) names Python files of the folder to import; a
    ``tokenizer_class`` outside TOKENIZER_CLASSES is not one this library writes. ``strict``: the folder must
    be one this library wrote (a checkpoint's tokenizer/), so tokenizer_config.json must name an allowed class;
    otherwise (a user's own tokenizer folder) only what is present is checked."""
    folder = Path(folder)
    config_file = folder / "tokenizer_config.json"
    for file in sorted(folder.iterdir()) if folder.is_dir() else []:
        if file.is_file():
            check_readable(file)  # else the fast tokenizer path would fall back and blame the model hub
    for file in (config_file, folder / "config.json"):
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{file}: not valid JSON ({_first_line(e)})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{file}: not a JSON object")
        if "auto_map" in data:
            raise CheckpointError(f"{file}: refused: its auto_map asks to import Python code shipped with the "
                                  "tokenizer, and loading a checkpoint never runs code. Nothing was run; a tokenizer "
                                  "written by clipbert-emo has no auto_map, so use a checkpoint you trust")
        if file == config_file and (strict or "tokenizer_class" in data):
            cls = data.get("tokenizer_class")
            if cls not in TOKENIZER_CLASSES:
                raise CheckpointError(f"{file}: refused: tokenizer_class {cls!r} is not one this library writes "
                                      f"({', '.join(TOKENIZER_CLASSES)}); nothing was run")
    if strict and not config_file.is_file():
        raise CheckpointError(f"{folder}: no tokenizer_config.json; a checkpoint's tokenizer/ is written with one "
                              "(copy the folder back from the run)")


def _tensor_shapes(file: Path) -> dict[str, tuple]:
    """Names and shapes in a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    check_readable(file)
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except PermissionError:
        raise _permission_denied(file) from None
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
    # data.audio.cache_dir is the training run's folder of decoded sound tracks: predicting, serving or searching
    # the user's own files must not write their sound into it (or anywhere on disk).
    cfg.data = dataclasses.replace(cfg.data, audio=dataclasses.replace(cfg.data.audio, cache_dir=""))
    if not (path / TOKENIZER).is_dir():
        raise CheckpointError(f"{path}: no {TOKENIZER}/ folder; a checkpoint carries the tokenizer it was trained "
                              "with, copy the folder back from the run")
    check_tokenizer_folder(path / TOKENIZER)
    try:
        tokenizer = load_inference_tokenizer(path / TOKENIZER)
    except PermissionError as e:
        raise _permission_denied(Path(e.filename or path / TOKENIZER)) from None
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
    check_readable(file)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for objects beyond tensors and numbers, or a damaged file
        raise CheckpointError(f"{file}: refused, it is not a plain training state written by this library (it holds "
                              f"other Python objects, or is damaged: {_first_line(e)[:120]}). Nothing was loaded; "
                              "delete the last/ folder to start afresh, or resume from a copy you trust") from None


def load_weights(model: torch.nn.Module, file: str | os.PathLike, strict: bool = False) -> dict:
    """Load safetensors weights; report what did not match instead of failing silently."""
    check_readable(Path(file))
    try:
        state = load_file(str(file))
    except PermissionError:
        raise _permission_denied(Path(file)) from None
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
