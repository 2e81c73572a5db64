"""Every list of names a config key accepts, in one place.

Config validation (``schema.py``), the command line's ``choices``, the registries (task kinds, aggregations,
seek modes) and the docs read these; ``tests/test_choices.py`` checks that they do. Fusion strategies are the
fusion registry's (``models/``), which is their single source.

The lowest layer holds them so that every layer above can read them without importing up: the config
refuses a name with the same list the library would look it up in.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from .errors import ConfigError

__all__ = ["AGGREGATIONS", "SEEK_MODES", "TASK_KINDS", "Registry", "CHOICES", "DATA_FORMATS", "FACE_DETECTORS",
           "TRACKERS"]

T = TypeVar("T")

# model.aggregation and --aggregation: how the clips' logits become the video's (models/aggregation.py).
AGGREGATIONS: tuple[str, ...] = ("mean", "max", "lse")
# data.seek and --seek: where test clips sit on the decoder's timeline (data/decode.py says what each does).
SEEK_MODES: tuple[str, ...] = ("accurate", "keyframe")
# data.face_detector and --face-detector: the face detectors by name (data/face_detectors.py), the first the default;
# a YuNet .onnx file of the user's is accepted besides.
FACE_DETECTORS: tuple[str, ...] = ("mtcnn", "haar", "ssd")
# train.log_with and --log-with: the experiment trackers accelerate has (accelerate.tracking.LOGGER_TYPE_TO_CLASS;
# tests/test_tracking.py keeps the two lists equal). Each needs its own package, which train/tracking.py names.
TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab",
                             "trackio")
DATA_FORMATS: tuple[str, ...] = ("manifest", "meld", "mosi", "mosei", "sims", "daisee", "fer2013", "image_folder",
                                 "coco", "visual_genome", "iemocap", "msrvtt", "didemo", "tgif_qa", "msrvtt_qa")


class Registry(Generic[T]):
    """Names that one config key accepts, each with the object it names (a task kind, ...), filled by
    ``register``. Validation and lookup read the same names, so a name is accepted exactly when it can be
    looked up; what the objects are is the business of the layer that fills it."""

    def __init__(self, key: str):
        self.key = key
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if not name:
            raise ValueError(f"{type(item).__name__} has no name to register under {self.key}")
        self._items[name] = item
        return item

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"{self.key}={name!r}: expected one of {', '.join(self._items)}") from None

    def get(self, name: str, default: T | None = None) -> T | None:
        return self._items.get(name, default)

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.key}: {', '.join(self._items)})"


# data.task: the task kinds. clipbert_emo/tasks/__init__.py registers the built-in ones (importing the package
# imports it), and clipbert_emo.tasks.register_task adds a user's.
TASK_KINDS: Registry = Registry("data.task")

# The other keys that take one of a fixed list of names, as ExperimentConfig.validate checks them.
CHOICES: dict[str, tuple[str, ...]] = {
    "model.aggregation": AGGREGATIONS,
    "model.temporal_fusion": ("mean", "attention"),
    "model.backbone": ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0", "detectron2_resnet50"),
    "model.channel_order": ("rgb", "bgr"),
    "data.pad": ("bottom_right", "center"),
    "data.single_clip": ("middle", "start", "third"),
    "data.resize_rounding": ("round", "floor"),
    "data.resize_output": ("uint8", "float"),
    "data.frame_index": ("round", "clipbert"),
    "data.seek": SEEK_MODES,
    "model.inference_precision": ("fp32", "bf16"),
    "data.format": DATA_FORMATS,
    "data.audio.front_end": ("log_mel", "waveform"),
    "train.mixed_precision": ("no", "fp16", "bf16", "auto"),
    "optim.optimizer": ("adamw", "apex_fused_adam"),
    "optim.adamw_kernel": ("auto", "for_loop", "foreach", "fused"),
    "retrieval.rank_by": ("itm", "itc", "itc_itm"),
    "train.loss": ("ce", "weighted_ce", "focal"),
    "train.sampler": ("shuffle", "class_balanced"),
}
