"""YAML files and command-line overrides into the typed schema (``schema.py``), and back.

A YAML file in ``configs/`` sets some of the schema's fields, may name one ``base:`` YAML whose values it
overrides (one level only, so a reader never chases a chain), and ``key.sub=value`` strings from the command
line override both. Unknown keys are an error that names the key and the file, because a misspelt key that is
silently ignored costs a training run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .atomic import atomic_write_text
from .renamed import upgrade_key_path, upgrade_keys
from .schema import ConfigError, ExperimentConfig

__all__ = ["to_dict", "from_dict", "parse_override", "apply_overrides", "load_config", "save_config",
           "resolve_config_path", "resolve_preset_path", "named_configs", "CONFIG_DIR", "safe_load_yaml"]


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass with type checking


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(typ, value, where)
    if origin is list:
        (item_type,) = get_args(typ)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept what float() accepts.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, bool):
            # YAML 1.1 reads a bare no/off/yes/on as a boolean (train.mixed_precision=no); these
            # string fields mean the word.
            return "no" if value is False else "yes"
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _refuse_unknown_keys(data: dict, cls: type, where: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")


def _from_dict(cls: type, data: dict, where: str) -> Any:
    hints = get_type_hints(cls)
    _refuse_unknown_keys(data, cls, where)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, where: str = "config") -> ExperimentConfig:
    cfg = _from_dict(ExperimentConfig, upgrade_keys(data, where), where)
    cfg.validate()
    return cfg


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# Deeper than any config this schema describes (a section, a list, a mapping inside it); a file nested far
# deeper is not a config, and parsing or copying it would exhaust Python's recursion limit.
MAX_YAML_DEPTH = 32


class _NestedTooDeeply(ConfigError):
    """Text nested deeper than MAX_YAML_DEPTH: refused even where text that is not YAML is taken as a string."""


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest in ``data`` (iterative: the value may be deeper than the stack)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_YAML_DEPTH:
            break
        todo.extend((child, level + 1) for child in children)
    return deepest


def safe_load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` for text from a file or the command line; ConfigError naming ``where`` for text that is
    not YAML or nests deeper than MAX_YAML_DEPTH levels."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    except RecursionError:
        raise _NestedTooDeeply(f"{where}: nested too deeply to be a config (more than {MAX_YAML_DEPTH} levels of "
                          "lists or mappings); is it the right file?") from None
    if _depth(data) > MAX_YAML_DEPTH:
        raise _NestedTooDeeply(f"{where}: nested too deeply to be a config (more than {MAX_YAML_DEPTH} levels of "
                          "lists or mappings); is it the right file?")
    return data


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a folder; give a YAML file") from None
    except PermissionError:
        raise ConfigError(f"config {path}: permission denied; this account cannot read it") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a YAML config") from None
    data = safe_load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    key, raw = item.split("=", 1)
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {item!r}: empty key part")
    try:
        shown = item if len(item) <= 80 else item[:77] + "..."
        value = safe_load_yaml(raw, f"override {shown!r}") if raw.strip() else ""
    except _NestedTooDeeply:
        raise
    except ConfigError:
        value = raw  # not YAML: the text as written
    return keys, value


def _check_keys(data: dict, cls: type, where: str) -> None:
    """Unknown keys anywhere in ``data`` are an error naming ``where`` (the file they came from)."""
    hints = get_type_hints(cls)
    _refuse_unknown_keys(data, cls, where)
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            _check_keys(v, hints[k], f"{where}.{k}")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` items over ``data``; a key the schema lacks or a value of the wrong type is an error
    naming the override itself (not the YAML it overrides)."""
    data = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item)
        keys = upgrade_key_path(keys, f"override {item!r}")
        cls, node = ExperimentConfig, data
        for depth, k in enumerate(keys):
            names = {f.name for f in fields(cls)}
            if k not in names:
                section = ".".join(keys[:depth]) or "the top level"
                raise ConfigError(f"override {item!r}: {section} has no key {k!r}; valid keys: "
                                  f"{', '.join(sorted(names))}")
            typ = get_type_hints(cls)[k]
            if depth == len(keys) - 1:
                node[k] = _coerce(value, typ, f"override {item!r}")
            else:
                if not dataclasses.is_dataclass(typ):
                    raise ConfigError(f"override {item!r}: {'.'.join(keys[:depth + 1])} is a value, not a section")
                node = node.setdefault(k, {})
                cls = typ
    return data


# The experiment YAMLs ship inside the package, so a named config works from any folder and after a
# plain (non-editable) install; the repository's top-level configs/ points here.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def named_configs() -> list[str]:
    """Names of the configs that ship with the package (``meld``, ``synthemo_cpu``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A config file: an existing path as given, else a shipped config by name (``meld`` or ``meld.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent in (Path("."), Path("configs")) and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name_or_path} (neither a file nor one of the shipped configs: "
                      f"{', '.join(named_configs())})")


def _read_config_file(path: Path) -> dict:
    """A YAML experiment merged over its optional ``base:``, each file's keys checked against the schema."""
    data = upgrade_keys(_read_yaml(path), str(path))
    base = data.pop("base", None)
    _check_keys(data, ExperimentConfig, str(path))
    if base:
        base_path = (path.parent / base).resolve()
        base_data = upgrade_keys(_read_yaml(base_path), str(base_path))
        if "base" in base_data:
            raise ConfigError(f"{base_path}: a base config may not name another base (one level only)")
        _check_keys(base_data, ExperimentConfig, str(base_path))
        data = _deep_merge(base_data, data)
    return data


def resolve_preset_path(name_or_path: str | os.PathLike) -> Path:
    """A preset file: an existing path as given, else a shipped preset by name (``cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / "presets" / f"{path.stem}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in (CONFIG_DIR / "presets").glob("*.yaml"))
    raise ConfigError(f"preset not found: {name_or_path} (neither a file nor one of the shipped presets: "
                      f"{', '.join(names)})")


# Path fields stored absolute, so a run's config.yaml (and a checkpoint's) still finds its data from any folder.
_PATH_FIELDS = (("data", "root"), ("data", "train_manifest"), ("data", "val_manifest"), ("data", "test_manifest"),
                ("train", "init_checkpoint"), ("model", "backbone_weights"))
# Names that are a local folder when one exists, and a model-hub id otherwise.
_LOCAL_OR_HUB_FIELDS = (("model", "tokenizer"), ("model", "text_init"))


def _absolute_paths(cfg: ExperimentConfig) -> None:
    for section, key in _PATH_FIELDS + _LOCAL_OR_HUB_FIELDS:
        part = getattr(cfg, section)
        value = getattr(part, key)
        if value and not os.path.isabs(value) and ((section, key) in _PATH_FIELDS or os.path.exists(value)):
            setattr(part, key, os.path.abspath(value))
    cfg.pretrain.roots = [os.path.abspath(r) if r else r for r in cfg.pretrain.roots]


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                preset: str | list | None = None) -> ExperimentConfig:
    """Read a YAML experiment (with its optional ``base:``), then presets over it (``cpu``: a laptop-sized
    model; ``audio``: the sound track as a third modality; ``"cpu,audio"`` or a list for several), then
    ``key.sub=value`` overrides. Relative paths become absolute (from the current folder)."""
    data: dict = {}
    where = "config"
    if path:
        path = resolve_config_path(path)
        where = str(path)
        data = _read_config_file(path)
    names = preset.split(",") if isinstance(preset, str) else list(preset or [])
    for name in (n.strip() for n in names if str(n).strip()):  # several presets apply in the order given
        preset_path = resolve_preset_path(name)
        preset_data = upgrade_keys(_read_yaml(preset_path), str(preset_path))
        _check_keys(preset_data, ExperimentConfig, str(preset_path))
        data = _deep_merge(data, preset_data)
    data = apply_overrides(data, overrides or [])
    cfg = from_dict(data, where)
    _absolute_paths(cfg)
    return cfg


def save_config(cfg: ExperimentConfig, path: str | os.PathLike) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
