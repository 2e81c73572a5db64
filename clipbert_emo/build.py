"""The one place a model is built from an experiment config: fine-tuning, checkpoint loading, conversion
and pretraining all call these, so a model is always the one its config describes."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .config import ExperimentConfig
from .data.dataset import enabled_modalities
from .models.registry import check_fusion
from .models.scorer import ClipScorer
from .tasks import get_task


def build_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                criterion: nn.Module | None = None, inference: bool = False) -> ClipScorer:
    """The emotion model of ``cfg``: the strategy registered as ``model.fusion`` (models/registry.py), with the task
    kind's output width and head, reading the modalities data.use_* switch on. A combination the strategy does not
    declare it supports is refused here (``check_fusion``: a ConfigError naming both), before anything is built.
    ``pretrained=False`` skips pretrained-weight loading (a checkpoint is loaded over it next). ``inference``: a
    model only ever evaluated, built fast (no transformers modelling code, no random initial weights: every
    weight comes from the checkpoint loaded next; see ``skip_weight_init``)."""
    strategy = check_fusion(cfg)
    task = get_task(cfg.data.task)
    # A strategy whose outputs are named classes (face_expression: FER's, picked by name) is told the labels.
    named = {"labels": list(cfg.data.labels)} if getattr(strategy, "reads_labels", False) else {}
    with skip_weight_init() if inference else contextlib.nullcontext():
        return strategy(cfg.model, task.num_outputs(cfg.data), vocab_size, pad_token_id=pad_token_id,
                        pretrained=pretrained and not inference, criterion=criterion,
                        modalities=enabled_modalities(cfg.data), use_text=cfg.data.use_text,
                        build_head=task.build_head if strategy.task_head else None, inference=inference, **named)


# Every random initialisation goes through these: torch.nn.init's functions that dispatch on tensors, and the two
# random fills the others call.
_RANDOM_FILLS = frozenset([*(getattr(torch.nn.init, n) for n in ("uniform_", "normal_", "trunc_normal_",
                                                                 "kaiming_uniform_", "kaiming_normal_",
                                                                 "xavier_uniform_", "xavier_normal_", "constant_",
                                                                 "orthogonal_")),
                           torch.Tensor.uniform_, torch.Tensor.normal_])


class _SkipRandomFills(TorchFunctionMode):
    """Inside it, a random fill returns its tensor as it is. A torch function mode is thread-local: other threads
    (serve scores requests in a pool) build and run models as usual meanwhile."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


@contextlib.contextmanager
def skip_weight_init():
    """Build modules without drawing their random initial weights, on this thread only, for a model whose every
    parameter a strict checkpoint load overwrites next: a ResNet-50 + BERT-base draws ~140M random numbers for
    nothing. Deterministic fills (BatchNorm statistics, LayerNorm ones, pixel constants) are set as usual."""
    with _SkipRandomFills():
        yield


def build_pretraining_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0,
                            pretrained: bool = True) -> "ClipBertForPretraining":
    """The image-text pretraining model (ITM + MLM heads) of ``cfg``."""
    from .models.pretraining import ClipBertForPretraining  # transformers' BERT heads: imported only to pretrain

    return ClipBertForPretraining(cfg.model, vocab_size, pad_token_id, pretrained=pretrained,
                                  visual_words_weight=cfg.pretrain.visual_words_weight)
