"""Visual Genome region descriptions: region_descriptions.json + the images in VG_100K/ and/or
VG_100K_2/, as <image_id>.jpg. The release has no split; visual_genome_split makes one.

Pretraining pairs, no labels: each region's phrase (whitespace collapsed) with the whole image, the
region's box kept in ``extra``. A file that is not a JSON list is a ManifestError. Skipped and
reported: malformed entries (no integer id or no regions list), regions without a phrase, and regions
whose image is in neither folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...config import DataConfig
from ..manifest import Manifest, ManifestError, Sample
from .common import Release, Skips, finish

VISUAL_GENOME = Release("Visual Genome", """\
    <root>/region_descriptions.json
    <root>/VG_100K/<image_id>.jpg and/or <root>/VG_100K_2/<image_id>.jpg""")


def visual_genome_split(image_id: int) -> str:
    """Visual Genome has no official split: every 100th image id is held out, for val and test alike."""
    return "val" if image_id % 100 == 0 else "train"


def read_visual_genome(cfg: DataConfig, split: str) -> Manifest:
    root = VISUAL_GENOME.root(cfg)
    ann_path = VISUAL_GENOME.need(root / "region_descriptions.json")
    folders = [root / "VG_100K", root / "VG_100K_2"]
    if not any(f.is_dir() for f in folders):
        VISUAL_GENOME.need(folders[0], is_dir=True)
    images: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            images.update({name: folder / name for name in os.listdir(folder)})
    wanted = "train" if split == "train" else "val"
    try:
        entries = json.loads(ann_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{ann_path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(entries, list):
        raise ManifestError(f"{ann_path}: expected a list of {{'id', 'regions'}} objects")
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for i, entry in enumerate(entries):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or not isinstance(entry.get("regions"), list):
            skips.add(f"{ann_path}:entry {i}", "malformed entry: no integer 'id' or no 'regions' list")
            continue
        if visual_genome_split(image_id) != wanted:
            continue
        image = images.get(f"{image_id}.jpg")
        for region in entry["regions"]:
            region_id = region.get("region_id") if isinstance(region, dict) else None
            where = f"{ann_path}:image {image_id} region {region_id}"
            phrase = region.get("phrase") if isinstance(region, dict) else None
            if not isinstance(phrase, str) or not phrase.strip():
                skips.add(where, "malformed region: no phrase")
                continue
            if image is None:
                skips.add(where, f"image file not found: {image_id}.jpg in neither VG_100K nor VG_100K_2")
                continue
            # ClipBERT pairs the text with the whole image; the region box is kept for reference only.
            samples.append(Sample(video=str(image), text=" ".join(phrase.split()), source=where,
                                  extra={"image_id": image_id, "region_id": region_id,
                                         "box": [region.get(k) for k in ("x", "y", "width", "height")]}))
    return finish(ann_path, split, samples, skips)
