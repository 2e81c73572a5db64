"""Names that changed, and the old spellings kept working for a release with a DeprecationWarning.

Configs saved before a rename (every checkpoint's config.yaml keeps the key it was trained with) still load:
``upgrade_keys`` moves an old key to its new name as a file or an override is read. Code reading or writing the
old attribute reaches the new field (``renamed_attribute``), and a function's old keyword still works
(``renamed_keyword``).
"""

from __future__ import annotations

import warnings
from typing import Any

from .errors import ConfigError

__all__ = ["RENAMED_KEYS", "upgrade_keys", "upgrade_key_path", "renamed_attribute", "renamed_keyword"]

# Per section: old key -> new key.
RENAMED_KEYS: dict[str, dict[str, str]] = {
    "data": {"num_clips_test": "n_test"},
    "train": {"val_num_clips": "val_n_test"},
}


def _warn(message: str, stacklevel: int) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)


def upgrade_keys(data: Any, where: str) -> Any:
    """``data`` (a config read from ``where``, as nested dicts) with every renamed key under its new name. A section
    giving both the old and the new key is refused, as the two could disagree."""
    if not isinstance(data, dict):
        return data
    for section, renames in RENAMED_KEYS.items():
        part = data.get(section)
        if not isinstance(part, dict) or not any(old in part for old in renames):
            continue
        part = dict(part)
        for old, new in renames.items():
            if old not in part:
                continue
            if new in part:
                raise ConfigError(f"{where}: {section}.{old} and {section}.{new} are the same setting (the first is its "
                                  f"old name); keep only {section}.{new}")
            _warn(f"{where}: {section}.{old} is deprecated, read as {section}.{new}; rename it", stacklevel=3)
            part[new] = part.pop(old)
        data = {**data, section: part}
    return data


def upgrade_key_path(keys: list[str], where: str) -> list[str]:
    """An override's ``section.key`` path with a renamed key under its new name."""
    if len(keys) == 2 and keys[1] in RENAMED_KEYS.get(keys[0], {}):
        new = RENAMED_KEYS[keys[0]][keys[1]]
        _warn(f"{where}: {keys[0]}.{keys[1]} is deprecated, read as {keys[0]}.{new}; rename it", stacklevel=3)
        return [keys[0], new]
    return keys


def renamed_attribute(section: str, old: str, new: str) -> property:
    """A deprecated attribute of a config section that reads and writes the field ``new``."""
    def get(self):
        _warn(f"{section}.{old} is deprecated: use {section}.{new}", stacklevel=2)
        return getattr(self, new)

    def set_(self, value) -> None:
        _warn(f"{section}.{old} is deprecated: use {section}.{new}", stacklevel=2)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated spelling of {section}.{new}.")


def renamed_keyword(new_value, old_value, new: str, old: str, where: str):
    """The value of keyword argument ``new``, or of its deprecated spelling ``old`` (with a DeprecationWarning naming
    ``where``, the function); TypeError when both are given."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"{where}() got both {new}= and {old}= (its old name); pass {new}= only")
    _warn(f"{where}({old}=...) is deprecated: use {new}=", stacklevel=3)
    return old_value
