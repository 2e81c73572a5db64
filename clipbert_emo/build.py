"""The one place a model is built from an experiment config: fine-tuning, checkpoint loading, conversion
and pretraining all call these, so a model is always the one its config describes."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .config import ExperimentConfig
from .data.dataset import enabled_modalities
from .models.clipbert import ClipBertForEmotion, ClipScorer
from .tasks import get_task


def build_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                criterion: nn.Module | None = None, inference: bool = False) -> ClipScorer:
    """The emotion model of ``cfg``: ``model.fusion``'s strategy, the task kind's output width and head, the
    modalities data.use_* switch on.
    ``pretrained=False`` skips pretrained-weight loading (a checkpoint is loaded over it next). ``inference``: a
    model only ever evaluated, built fast (no transformers modelling code, no weight initialisation: every
    weight comes from the checkpoint loaded next; see ``skip_weight_init``)."""
    task = get_task(cfg.data.task)
    with skip_weight_init() if inference else contextlib.nullcontext():
        if cfg.model.fusion != "early":  # late, cross_attention, hybrid: models/fusion_strategies.py
            from .models.fusion_strategies import fusion_model

            return fusion_model(cfg.model, task.num_outputs(cfg.data), vocab_size, pad_token_id=pad_token_id,
                                pretrained=pretrained and not inference, criterion=criterion,
                                modalities=enabled_modalities(cfg.data), use_text=cfg.data.use_text,
                                build_head=task.build_head)
        width = task.num_outputs(cfg.data)
        return ClipBertForEmotion(cfg.model, width, vocab_size, pad_token_id=pad_token_id,
                                  pretrained=pretrained and not inference, criterion=criterion,
                                  modalities=enabled_modalities(cfg.data), inference=inference,
                                  head=task.build_head(cfg.model, width))


@contextlib.contextmanager
def skip_weight_init():
    """Build modules without drawing their random initial weights (torch.nn.init's fills become no-ops), for a
    model whose every parameter a strict checkpoint load overwrites next: a ResNet-50 + BERT-base draws ~140M
    random numbers for nothing. Buffers (BatchNorm statistics, pixel constants) are set as usual."""
    names = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
             "xavier_normal_", "zeros_", "ones_", "constant_", "orthogonal_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def build_pretraining_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0,
                            pretrained: bool = True) -> "ClipBertForPretraining":
    """The image-text pretraining model (ITM + MLM heads) of ``cfg``."""
    from .models.pretraining import ClipBertForPretraining  # transformers' BERT heads: imported only to pretrain

    return ClipBertForPretraining(cfg.model, vocab_size, pad_token_id, pretrained=pretrained,
                                  visual_words_weight=cfg.pretrain.visual_words_weight)
