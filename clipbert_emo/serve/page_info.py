"""What the page shows besides the model's answers: the model card's summary and the example videos.

Neither ever carries a path to the client: the card gives its title line and a "trained on" sentence, and an
example is served by a name chosen here, looked up in a table made when the app starts (a request's text is never
joined to a folder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..model_card import CARD
from .make_examples import EXAMPLES

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi", ".ogv")
MAX_EXAMPLES = 12
_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ogv": "video/ogg"}
_TRAINED_ON = re.compile(r"^\W*(trained on .+?)\s*$", re.IGNORECASE | re.MULTILINE)
_TRAIN_SPLIT = re.compile(r"^\|\s*train\s*\|\s*(\d+)\s*\|", re.MULTILINE)
_DATA_FORMAT = re.compile(r"^- data\.format `([\w.-]{1,40})`", re.MULTILINE)  # a release reader: its name, no path


def model_card_summary(checkpoint: str | os.PathLike | None) -> dict | None:
    """``{"title", "trained_on"}`` from the checkpoint folder's README.md: its first line (without the ``#``) and a
    sentence saying what it was trained on (SynthEmo when the card says so, else the card's own "Trained on ..."
    line, else the dataset reader and the size of the train split; None when the card says nothing of it). None
    without a card. Manifest paths on the card are never repeated: the page may be seen by others."""
    if checkpoint is None:
        return None
    try:
        text = (Path(checkpoint) / CARD).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    title = lines[0].lstrip("#").strip()[:200]
    split = _TRAIN_SPLIT.search(text)
    videos = f"{split.group(1)} " if split else ""
    own = [m.group(1) for m in _TRAINED_ON.finditer(text) if "stratified" not in m.group(1)]
    reader = _DATA_FORMAT.search(text)
    if "**SynthEmo**" in text:  # model_card.py's mark of generated data
        trained_on = (f"Trained on {videos}SynthEmo videos (generated cartoon faces): a demonstration model, not one "
                      "for real faces")
    elif own:  # a card written for a model made another way says it in its own words
        trained_on = own[0].rstrip(".")[:200]
        trained_on = trained_on[0].upper() + trained_on[1:]
    elif reader:
        trained_on = f"Trained on {reader.group(1)}" + (f" ({videos.strip()} training videos)" if videos else "")
    elif videos:
        trained_on = f"Trained on {videos}videos"
    else:
        trained_on = None
    trained_on = trained_on and trained_on + "."
    return {"title": title, "trained_on": trained_on}


def find_examples(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """The example videos the page offers, by the name their URL uses: the ones that ship with the package
    (serve/static/example-*.mp4), or the video files of ``folder`` (at most MAX_EXAMPLES, by name)."""
    if folder is None:
        static = Path(__file__).parent / "static"
        found = {name: (static / name, title) for name, title in EXAMPLES.items() if (static / name).is_file()}
    else:
        if not Path(folder).is_dir():
            from ..config import UserError

            raise UserError(f"examples folder {folder}: not a folder")
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        found = {}
        for i, p in enumerate(files[:MAX_EXAMPLES]):
            # The URL's name is made here (a number and a tame suffix), never taken from a request.
            found[f"{i + 1}{p.suffix.lower()}"] = (p, re.sub(r"[_-]+", " ", p.stem)[:60])
    return {name: {"path": path, "title": title, "media_type": _MEDIA_TYPES.get(path.suffix.lower(), "video/mp4")}
            for name, (path, title) in found.items()}
