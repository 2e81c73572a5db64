"""Public benchmark releases, read as their authors distribute them.

``read_split(cfg, "train" | "val" | "test")`` turns ``data.root`` (an unpacked release, files
and folder names untouched) into the same ``Manifest`` a hand-written JSONL manifest gives, so
nothing downstream knows where the samples came from. ``data.format`` picks the reader: the
module of releases/ named after it (mmsa.py for mosi, mosei and sims), whose docstring gives the
layout it expects and what it skips.

- ``manifest``: the JSONL/CSV files named by data.{train,val,test}_manifest (manifest.py)
- ``meld``: MELD.Raw (Poria et al., 2019): {train,dev,test}_sent_emo.csv + the clip folders
- ``mosi`` / ``mosei`` / ``sims``: the MMSA "Raw" layout: label.csv + Raw/<video_id>/<clip_id>.mp4
- ``iemocap``: IEMOCAP_full_release: Session{1..5}/dialog/{EmoEvaluation,transcriptions,avi/DivX}/,
  data.fold (1..5) names the session held out for testing
- ``daisee``: DAiSEE: DataSet/<Split>/<subject>/<clip>/<clip>.avi + Labels/<Split>Labels.csv
- ``fer2013``: the Kaggle fer2013.csv (48x48 grey pixels inside the CSV)
- ``image_folder``: <split>/<class>/<image>
- ``coco``: COCO 2017 captions (pretraining pairs, no labels)
- ``visual_genome``: Visual Genome region descriptions (pretraining pairs, no labels)
- ``msrvtt``: MSR-VTT videodatainfo JSONs (+ the 1k-A test CSV), text-to-video retrieval
- ``didemo``: DiDeMo's {train,val,test}_data.json + videos/, paragraph-to-video retrieval
- ``tgif_qa``: TGIF-QA's per-task TSVs + gifs/ (data.target: action | transition | frameqa | count)
- ``msrvtt_qa``: MSRVTT-QA's {train,val,test}_qa.json + MSR-VTT's videos

What the readers promise: a sample that cannot be used (missing clip, label outside
``data.labels``, malformed row) is left out and listed in ``Manifest.skipped`` as
("file:line", reason), with one warning that counts the reasons; ``data.strict`` turns the
first such sample into a ManifestError. A missing release folder or annotation file is a
ManifestError that shows the layout expected. Whether a clip that exists actually decodes is
the loader's business (it skips and reports those at decode time), so a corrupt file costs a
sample there, not a full scan of the dataset here.
"""

from __future__ import annotations

from typing import Callable

from ..config import ConfigError, DataConfig
from .manifest import Manifest, ManifestError, read_manifest
from .releases.coco import read_coco
from .releases.didemo import read_didemo
from .releases.daisee import DAISEE_LEVELS, DAISEE_STATES, read_daisee
from .releases.fer2013 import FER_EMOTIONS, read_fer2013
from .releases.iemocap import IEMOCAP_4CLASS, IEMOCAP_6CLASS, read_iemocap
from .releases.image_folder import read_image_folder
from .releases.meld import MELD_EMOTIONS, MELD_SENTIMENTS, read_meld
from .releases.mmsa import MOSEI_EMOTIONS, SENTIMENT_2, SENTIMENT_7, read_mmsa
from .releases.msrvtt import read_msrvtt
from .releases.msrvtt_qa import read_msrvtt_qa
from .releases.tgif_qa import read_tgif_qa
from .releases.visual_genome import read_visual_genome

# The releases' label names stay importable from here, where configs and tests spelling out
# data.labels find them.
__all__ = ["DAISEE_LEVELS", "DAISEE_STATES", "FER_EMOTIONS", "IEMOCAP_4CLASS", "IEMOCAP_6CLASS", "MELD_EMOTIONS",
           "MELD_SENTIMENTS", "MOSEI_EMOTIONS", "SENTIMENT_2", "SENTIMENT_7", "READERS", "IMAGE_TEXT_FORMATS", "SPLITS",
           "has_split", "read_split", "read_image_text_pairs"]

SPLITS = ("train", "val", "test")


def _read_manifest(cfg: DataConfig, split: str, read_target=None, require_label: bool = True) -> Manifest:
    path = getattr(cfg, f"{split}_manifest")
    if not path:
        raise ManifestError(f"data.{split}_manifest is not set")
    return read_manifest(path, read_target, require_video=cfg.use_video, require_label=require_label,
                         strict=cfg.strict)


# A release's reader knows its own annotation files; a manifest's records are read by the task kind's
# reader (read_split's ``read_target``).
READERS: dict[str, Callable[[DataConfig, str], Manifest]] = {
    "meld": read_meld,
    "mosi": read_mmsa,
    "mosei": read_mmsa,
    "sims": read_mmsa,
    "iemocap": read_iemocap,
    "daisee": read_daisee,
    "fer2013": read_fer2013,
    "image_folder": read_image_folder,
    "coco": read_coco,
    "visual_genome": read_visual_genome,
    "msrvtt": read_msrvtt,
    "didemo": read_didemo,
    "tgif_qa": read_tgif_qa,
    "msrvtt_qa": read_msrvtt_qa,
}
IMAGE_TEXT_FORMATS = ("manifest", "coco", "visual_genome")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")


def has_split(cfg: DataConfig, split: str) -> bool:
    """Whether the experiment has this split: a manifest path is set, or a release is read from data.root."""
    return cfg.format != "manifest" or bool(getattr(cfg, f"{split}_manifest"))


def read_split(cfg: DataConfig, split: str, read_target) -> Manifest:
    """The ``split`` ("train" | "val" | "test") of the dataset ``cfg`` describes, as a Manifest.

    ``read_target``: the task kind's reader of a manifest record's annotation (``Task.target_reader``;
    ``clipbert_emo.tasks.load_split`` passes the config's own)."""
    _check_split(split)
    if cfg.format == "manifest":
        return _read_manifest(cfg, split, read_target)
    reader = READERS.get(cfg.format)
    if reader is None:
        raise ConfigError(f"data.format={cfg.format!r}: expected one of manifest, {', '.join(READERS)}")
    return reader(cfg, split)


def read_image_text_pairs(cfg: DataConfig, split: str) -> Manifest:
    """Image (or video) + text pairs for pretraining; labels are read where present, never required."""
    _check_split(split)
    if cfg.format not in IMAGE_TEXT_FORMATS:
        raise ConfigError(f"data.format={cfg.format}: pretraining pairs come from "
                          f"{', '.join(IMAGE_TEXT_FORMATS)}")
    if cfg.format == "manifest":
        return _read_manifest(cfg, split, require_label=False)  # pairs carry no annotation
    return READERS[cfg.format](cfg, split)
