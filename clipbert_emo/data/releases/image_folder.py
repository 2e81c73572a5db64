"""Image folders: <root>/<split>/<class name>/<image>, for each of train, val and test; the class
folder's name is the label.

Hidden files are ignored. Skipped and reported: files not inside a class folder, files whose suffix
is not an image's, and class folders outside data.labels.
"""

from __future__ import annotations

from ...config import DataConfig
from ..decode import IMAGE_SUFFIXES
from ..manifest import Manifest, Sample
from .common import Release, Skips, finish, label_indices, need_task

IMAGE_FOLDER = Release("image folder", """\
    <root>/train/<class name>/<image>.jpg|.jpeg|.png|.bmp|.webp
    <root>/val/<class name>/...
    <root>/test/<class name>/...""")


def read_image_folder(cfg: DataConfig, split: str) -> Manifest:
    need_task(cfg, ("single_label",), "one class folder per image")
    root = IMAGE_FOLDER.root(cfg)
    split_dir = IMAGE_FOLDER.need(root / split, is_dir=True)
    label_index = label_indices(cfg)
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for path in sorted(split_dir.rglob("*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        where = str(path)
        rel = path.relative_to(split_dir)
        if len(rel.parts) < 2:
            skips.add(where, f"not inside a class folder: expected {split_dir}/<class name>/{path.name}")
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skips.add(where, f"not an image file: suffix {path.suffix!r} is not one of {', '.join(IMAGE_SUFFIXES)}")
            continue
        name = rel.parts[0]
        if name not in label_index:
            skips.add(where, f"label not in data.labels: class folder {name!r}")
            continue
        samples.append(Sample(video=str(path), text="", label=label_index[name], source=where))
    return finish(split_dir, split, samples, skips)
