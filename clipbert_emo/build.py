"""The one place a model is built from an experiment config: fine-tuning, checkpoint loading, conversion
and pretraining all call these, so a model is always the one its config describes."""

from __future__ import annotations

import torch.nn as nn

from .config import ExperimentConfig
from .data.dataset import enabled_modalities
from .models.clipbert import ClipBertForEmotion
from .models.pretraining import ClipBertForPretraining
from .tasks import get_task


def build_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                criterion: nn.Module | None = None) -> ClipBertForEmotion:
    """The emotion model of ``cfg``: the task kind's output width, the modalities data.use_* switch on.
    ``pretrained=False`` skips pretrained-weight loading (a checkpoint is loaded over it next)."""
    task = get_task(cfg.data.task)
    width = task.num_outputs(cfg.data)
    return ClipBertForEmotion(cfg.model, width, vocab_size, pad_token_id=pad_token_id,
                              pretrained=pretrained, criterion=criterion, modalities=enabled_modalities(cfg.data),
                              head=task.build_head(cfg.model, width))


def build_pretraining_model(cfg: ExperimentConfig, vocab_size: int, pad_token_id: int = 0,
                            pretrained: bool = True) -> ClipBertForPretraining:
    """The image-text pretraining model (ITM + MLM heads) of ``cfg``."""
    return ClipBertForPretraining(cfg.model, vocab_size, pad_token_id, pretrained=pretrained,
                                  visual_words_weight=cfg.pretrain.visual_words_weight)
