"""Atomic writes: a reader (or a run killed mid-write) sees the old file or folder or the whole new one.

Every file and folder the library writes for keeps (configs, JSON reports, manifests, videos,
checkpoints) goes through these: the new content is written under a hidden temporary name in the
destination folder, so the final ``os.replace`` is a same-filesystem rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError, UserError, describe_os_error

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_folder", "recover_folder"]


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is removed.

    The caller writes the whole file to the yielded path (any writer that takes a path: PyAV, safetensors).
    ``mode``: permissions of the final file (temporary files are created private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it takes the place of ``path``.

    The previous folder is first renamed to ``.<name>.old`` and removed only once the new one is in
    place, so at every instant one complete folder exists under one of the two names.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a finished folder is as readable as any other
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, UserError):
            raise OutputError(describe_os_error(e, path)) from e
        raise


def recover_folder(path: str | os.PathLike) -> list[str]:
    """Undo what a kill left of ``atomic_folder`` saves of ``path``; returns one line per repair.

    Killed between its two renames, a save leaves the previous folder as ``.<name>.old`` and no
    ``<name>``: it is put back (the newer copy cannot be told complete, the older one can). Killed
    earlier, a save leaves a temporary ``.<name>.<random>`` folder, which is removed.
    """
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    done = []
    if not path.exists() and old.is_dir():
        os.replace(old, path)
        done.append(f"restored {path} from {old.name}: a save was stopped between its two renames")
    for leftover in sorted(path.parent.glob(f".{path.name}.*")):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
            done.append(f"removed {leftover}, left by a save that was stopped")
    return done
