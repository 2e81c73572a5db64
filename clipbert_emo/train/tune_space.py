"""The search space of ``clipbert-emo tune``: a YAML file whose keys are config override paths.

    optim.lr_transformer: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    data.num_clips_train: {type: int, low: 1, high: 4}
    model.aggregation: {type: categorical, choices: [mean, max, lse]}
    model.fusion: [early, late]            # a plain list is a categorical

Everything is checked before the first trial starts, because a mistake found at trial 5 has cost four
runs: every key must be a setting of the config schema (a misspelt key is refused naming it and the
file), every distribution must fit the setting's type, and the config must accept each end of a range
and each choice (the config is built with that value as an override, and the fusion registry asked
whether it can run it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, get_origin, get_type_hints

from ..config import CONFIG_DIR, ConfigError, ExperimentConfig, load_config, safe_load_yaml
from ..config.renamed import upgrade_key_path

__all__ = ["SearchParam", "load_space", "resolve_space_path", "check_space", "param_overrides", "override_value",
           "space_differences", "RESERVED_KEYS"]

KINDS = ("float", "int", "categorical")
_FIELDS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
           "categorical": {"type", "choices"}}
# Settings tune sets itself for every trial (its folder, starting afresh or resuming it): a space or an override
# that set them would make trials share a folder or refuse to start.
RESERVED_KEYS = ("train.output_dir", "train.resume", "train.overwrite")


@dataclass(frozen=True)
class SearchParam:
    """One searched setting: ``key`` (a config path such as ``optim.lr_cnn``) and its distribution."""

    key: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value for this setting (Optuna's suggest_*; the parameter is named by the key)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def as_dict(self) -> dict:
        """The distribution as the space file writes it (what the study records, so workers can be compared)."""
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def probe_values(self) -> list:
        """The values the config is built with before any trial: both ends of a range, every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def override_value(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override. JSON is YAML, and it quotes strings, so a choice
    such as ``"no"`` or ``"1.0"`` stays the string it is instead of becoming a boolean or a number."""
    return json.dumps(value)


def param_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as config overrides, in a stable order."""
    return [f"{key}={override_value(value)}" for key, value in sorted(params.items())]


def _field_type(key: str, where: str) -> Any:
    """The schema type of the setting ``key`` (a dotted path); ConfigError naming the key and ``where``."""
    cls, typ = ExperimentConfig, None
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if cls is None:
            raise ConfigError(f"{where}: {key}: {'.'.join(parts[:depth])} is a setting, not a section")
        hints = get_type_hints(cls)
        if part not in hints:
            section = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(f"{where}: {key} is not a config setting: {section} has no key {part!r}; valid keys: "
                              f"{', '.join(sorted(hints))}")
        typ = hints[part]
        cls = typ if dataclasses.is_dataclass(typ) else None
    if cls is not None:
        raise ConfigError(f"{where}: {key} is a section; name one of its settings ({key}.<name>)")
    return typ


def _number(value: Any, what: str, integer: bool) -> float | int:
    if isinstance(value, str) and not integer:
        try:
            value = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        except ValueError:
            pass
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"{what}: expected {'a whole number' if integer else 'a finite number'}, got {value!r}")
    return value if integer else float(value)


def _parse_entry(key: str, spec: Any, where: str) -> SearchParam:
    """One entry of the space file (``key: spec``) as a SearchParam; ConfigError naming ``where`` and the key."""
    here = f"{where}: {key}"
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{here}: expected a distribution such as {{type: float, low: 1.0e-5, high: 1.0e-3, "
                          f"log: true}} or a list of choices, got {spec!r}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{here}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise ConfigError(f"{here}: unknown field(s) {', '.join(map(str, unknown))} for type {kind}; valid: "
                          f"{', '.join(sorted(_FIELDS[kind]))}")
    typ = _field_type(key, where)
    if get_origin(typ) is list:
        raise ConfigError(f"{here}: a list setting ({typ}) cannot be searched; search scalar settings only")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{here}: choices must be a non-empty list, got {choices!r}")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{here}: choice {c!r} is not a single value (a string, number or true/false)")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(f"{here}: choices repeat a value: {choices}")
        return SearchParam(key, kind, choices=tuple(choices))
    integer = kind == "int"
    if integer and typ is not int:
        raise ConfigError(f"{here}: type int, but the setting takes {getattr(typ, '__name__', typ)}; use type: "
                          f"{'float' if typ is float else 'categorical'}")
    if not integer and typ is not float:
        raise ConfigError(f"{here}: type float, but the setting takes {getattr(typ, '__name__', typ)}; use type: "
                          f"{'int' if typ is int else 'categorical'}")
    for name in ("low", "high"):
        if name not in spec:
            raise ConfigError(f"{here}: type {kind} needs low and high")
    low, high = (_number(spec[n], f"{here}: {n}", integer) for n in ("low", "high"))
    if not low < high:
        raise ConfigError(f"{here}: low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{here}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{here}: a log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{here}: step", integer)
        if step <= 0:
            raise ConfigError(f"{here}: step must be > 0, got {step}")
        if log and (not integer or step != 1):
            raise ConfigError(f"{here}: step and log exclude each other (Optuna samples a log scale without steps)")
    return SearchParam(key, kind, low=low, high=high, log=log, step=step)


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A space file: an existing path as given, else a shipped one by name (``space_synthemo``, from
    ``configs/tune/``), which works from any folder after a plain install."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = CONFIG_DIR / "tune" / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent in (Path("."), Path("configs/tune"), Path("tune")) and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "tune").glob("*.yaml")))
    raise ConfigError(f"search space file not found: {name_or_path} (neither a file nor one of the shipped spaces: "
                      f"{names})")


def load_space(path: str | Path) -> list[SearchParam]:
    """The space file as SearchParams, each key checked against the config schema (ConfigError naming the key and
    the file otherwise). Old spellings of renamed keys are read under their new name, with a warning."""
    path = resolve_space_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"search space file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"search space {path} is a folder; give a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a search space") from None
    data = safe_load_yaml(text, str(path))
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of config keys to distributions, e.g. "
                          "optim.lr_transformer: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}")
    params, seen = [], {}
    for raw_key, spec in data.items():
        if not isinstance(raw_key, str) or not raw_key or not all(raw_key.split(".")):
            raise ConfigError(f"{path}: key {raw_key!r} is not a config path such as optim.lr_cnn")
        if isinstance(spec, dict) and "type" not in spec and all(isinstance(v, dict) for v in spec.values()):
            # A nested section: refused rather than guessed at, since its leaves would read as distributions.
            raise ConfigError(f"{path}: {raw_key}: write each searched setting as one dotted key "
                              f"({raw_key}.<name>: {{type: ...}}), not as a nested section")
        key = ".".join(upgrade_key_path(raw_key.split("."), f"{path}: {raw_key}"))
        if key in RESERVED_KEYS:
            raise ConfigError(f"{path}: {key} is set by tune for every trial (each trial has its own folder) and "
                              "cannot be searched")
        if key in seen:
            raise ConfigError(f"{path}: {raw_key} and {seen[key]} are the same setting")
        seen[key] = raw_key
        params.append(_parse_entry(key, spec, str(path)))
    return params


def check_space(params: Sequence[SearchParam], space_path: str | Path, config: str | None, overrides: list[str],
                preset: str | None) -> None:
    """Build the config with each end of every range and each choice (over the fixed overrides); the first value
    the config or the fusion registry refuses is a ConfigError naming the space file, the key and the value.
    A key that is both searched and fixed by an override is refused too: the search would change nothing."""
    from ..models.registry import check_fusion

    fixed = {".".join(upgrade_key_path(item.split("=", 1)[0].strip().split("."), f"override {item!r}")): item
             for item in overrides if "=" in item}
    for key in RESERVED_KEYS:
        if key in fixed:
            raise ConfigError(f"override {fixed[key]!r}: tune sets {key} for every trial; leave it out (trials run "
                              "in OUT/trial_NNNN)")
    for p in params:
        if p.key in fixed:
            raise ConfigError(f"{space_path}: {p.key} is searched, but the override {fixed[p.key]!r} fixes it; "
                              "drop one of the two")
        for value in p.probe_values():
            try:
                cfg = load_config(config, [*overrides, f"{p.key}={override_value(value)}"], preset=preset)
                check_fusion(cfg)
            except ConfigError as e:
                raise ConfigError(f"{space_path}: {p.key}: the config refuses {value!r}: {e}") from None


def space_differences(recorded: dict, params: Sequence[SearchParam]) -> list[str]:
    """The keys whose distribution differs between a study's recorded space and ``params`` (empty when equal)."""
    mine = {p.key: p.as_dict() for p in params}
    return sorted(k for k in set(recorded) | set(mine) if recorded.get(k) != mine.get(k))

