"""COCO 2017 captions: annotations/captions_{train,val}2017.json + the train2017/ and val2017/ image
folders. The val and test splits both read val2017: COCO's test set has no captions.

Pretraining pairs, no labels: each caption (whitespace collapsed) with its image, the annotations
read through pycocotools. Skipped and reported: malformed annotations (an unknown image_id, no or an
empty caption) and images not in the folder.
"""

from __future__ import annotations

import contextlib
import io
import os

from ...config import DataConfig
from ..manifest import Manifest, Sample
from .common import Release, Skips, finish

COCO_CAPTIONS = Release("COCO captions", """\
    <root>/annotations/captions_train2017.json, captions_val2017.json
    <root>/train2017/<file_name>.jpg
    <root>/val2017/<file_name>.jpg""")


def read_coco(cfg: DataConfig, split: str) -> Manifest:
    root = COCO_CAPTIONS.root(cfg)
    subset = "train2017" if split == "train" else "val2017"  # COCO's test set has no captions
    ann_path = COCO_CAPTIONS.need(root / "annotations" / f"captions_{subset}.json")
    image_dir = COCO_CAPTIONS.need(root / subset, is_dir=True)
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("data.format=coco reads annotations with pycocotools: pip install pycocotools "
                          "(or pip install clipbert-emo[pretrain])") from None
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
        coco = COCO(str(ann_path))
    present = set(os.listdir(image_dir))  # one listing instead of a stat per caption
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for ann_id in sorted(coco.anns):
        ann = coco.anns[ann_id]
        where = f"{ann_path}:annotation {ann_id}"
        image = coco.imgs.get(ann.get("image_id"))
        caption = ann.get("caption")
        if image is None or not isinstance(caption, str):
            skips.add(where, "malformed annotation: unknown image_id or no caption")
            continue
        if not caption.strip():
            skips.add(where, "malformed annotation: empty caption")
            continue
        if image["file_name"] not in present:
            skips.add(where, f"image file not found: {image_dir / image['file_name']}")
            continue
        samples.append(Sample(video=str(image_dir / image["file_name"]), text=" ".join(caption.split()),
                              source=where, extra={"image_id": image["id"], "caption_id": ann_id}))
    return finish(ann_path, split, samples, skips)
