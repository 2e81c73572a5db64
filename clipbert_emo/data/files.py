"""Finding videos on disk: the files of a folder tree, and the paths that must never be opened as videos."""

from __future__ import annotations

import os
import stat
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts",
                  ".y4m")


def not_regular(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be opened as a video (a FIFO blocks its reader forever), or None for a regular file
    (or one that is missing: the decoder says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
    return f"not a regular file ({kind}); not opened"


def walk_videos(folder: str, suffixes: tuple[str, ...] = VIDEO_SUFFIXES, skip_folder: str | None = None,
                skip_hidden: bool = False) -> tuple[list[str], list[dict]]:
    """The files under ``folder`` named with one of ``suffixes`` (recursively, sorted as paths, symlinked folders
    followed once; entries named ``skip_folder``, and with ``skip_hidden`` those starting with a dot, left out),
    and a failure
    ``{"video", "error"}`` for each subfolder that cannot be listed and each video-named entry that is not a
    regular file. Path.rglob skips unreadable folders without a word, which hides whole branches of a dataset."""
    found: list[Path] = []
    failures: list[dict] = []
    seen: set[tuple[int, int]] = set()
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            st = os.stat(current)
            if (st.st_dev, st.st_ino) in seen:  # a symlink loop, or a folder linked twice
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as e:
            why = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
            failures.append({"video": current, "error": f"cannot list this folder: {why}; its videos are left out"})
            continue
        for entry in entries:
            try:
                if entry.name == skip_folder or (skip_hidden and entry.name.startswith(".")):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.name.lower().endswith(suffixes):
                    if entry.is_file():
                        found.append(Path(entry.path))
                    elif os.path.exists(entry.path):  # a dangling link is no video either, as before
                        failures.append({"video": entry.path,
                                         "error": not_regular(entry.path) or "not a regular file; not opened"})
            except OSError as e:
                failures.append({"video": entry.path, "error": f"cannot stat: {e.strerror or type(e).__name__}"})
    return [str(f) for f in sorted(found)], sorted(failures, key=lambda f: Path(f["video"]))
