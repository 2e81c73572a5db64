"""The one error type for a user's mistake, as opposed to a bug in this library.

Every check at a boundary (command-line arguments, config values, manifest lines, checkpoint
folders, video files, output folders) raises a subclass of :class:`UserError` whose message says
what is wrong, where (file, line, field), and what to do. The command line prints it as one
``error:`` line and exits with status 2, without a traceback; anything else is a bug and raises.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """Bad input: the message names what, where, and what to do."""


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema."""


class OutputError(UserError, OSError):
    """An output folder or file that cannot be written (read-only, under a file, disk full, ...)."""


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Make sure ``path`` is, or can become, a writable folder; raise OutputError naming it otherwise."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {path}: {parent} is a file, not a folder; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{what} {path}: {parent} is not writable; choose another path or fix its "
                                  "permissions")
            break
    return path


def describe_os_error(e: OSError, path) -> str:
    """One line for an OSError met while writing ``path``: disk full, read-only, permission, ..."""
    import errno

    why = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
           errno.EDQUOT: "the disk quota is exceeded"}.get(e.errno, e.strerror or type(e).__name__)
    return f"cannot write {path}: {why}"
