"""The per-clip modalities the fusion transformer reads, beside the text: one entry per modality.

Each entry names its feature encoder (a module on the model, (B, N, ...) clips -> (B, N, D, ...)
features) and its token embeddings (a module on ``transformer.bert``, (B', D, ...) features of one
clip -> (B', n, D) tokens with their own position and type embeddings). The attribute names are
ClipBERT's checkpoint names for video (``cnn``, ``transformer.bert.visual_embeddings``), so
checkpoints keep their keys. Adding a modality = a decoder in ``data/dataset.py``'s
``MODALITY_DECODERS``, its encoder and embeddings here (``register_modality``), and its config
section with a ``data.use_<name>`` switch; the models, the data pipeline, the engine, evaluation
and prediction pick it up by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .audio import AudioEmbeddings, audio_encoder_from_config
from .embeddings import VisualEmbeddings
from .face_expression import face_embeddings_from_config, face_encoder_from_config
from .visual import visual_encoder_from_config


@dataclass(frozen=True)
class Modality:
    name: str  # the batch key and the forward() keyword; data.use_<name> switches it on
    encoder_attr: str  # attribute of the model holding the feature encoder
    embeddings_attr: str  # attribute of transformer.bert holding the token embeddings
    build_encoder: Callable[..., nn.Module]  # (ModelConfig, pretrained: bool) -> encoder
    build_embeddings: Callable[..., nn.Module]  # (ModelConfig, BertConfig) -> token embeddings
    # Built in every model, used or not: ClipBERT's checkpoint layout has the visual embeddings even in a
    # text-only model, so every checkpoint of this library shares one set of keys.
    embeddings_always: bool = False


# A list, extended in place by register_modality, so every module that imported it sees a new entry.
MODALITIES: list[Modality] = [
    Modality(
        name="video",
        encoder_attr="cnn",
        embeddings_attr="visual_embeddings",
        build_encoder=visual_encoder_from_config,
        build_embeddings=lambda cfg, bert: VisualEmbeddings(bert.hidden_size, cfg.max_grid, bert.hidden_dropout_prob,
                                                            bert.layer_norm_eps),
        embeddings_always=True,
    ),
    Modality(
        name="audio",
        encoder_attr="audio_encoder",
        embeddings_attr="audio_embeddings",
        build_encoder=audio_encoder_from_config,
        build_embeddings=lambda cfg, bert: AudioEmbeddings(bert.hidden_size, cfg.audio_tokens,
                                                           bert.hidden_dropout_prob, bert.layer_norm_eps),
    ),
    Modality(  # each sampled frame's face through the FER2013 expression CNN (models/face_expression.py)
        name="face",
        encoder_attr="face_encoder",
        embeddings_attr="face_embeddings",
        build_encoder=face_encoder_from_config,
        build_embeddings=face_embeddings_from_config,
    ),
]

MODALITY_BY_NAME = {m.name: m for m in MODALITIES}


def register_modality(modality: Modality) -> Modality:
    """Add a per-clip modality; its tokens follow those of the modalities registered before it."""
    if modality.name in MODALITY_BY_NAME:
        raise ValueError(f"modality {modality.name!r} is already registered")
    MODALITIES.append(modality)
    MODALITY_BY_NAME[modality.name] = modality
    return modality


def modalities_named(names) -> list[Modality]:
    """The entries for ``names``, in the table's order (which is the order of their tokens)."""
    unknown = [n for n in names if n not in MODALITY_BY_NAME]
    if unknown:
        raise ValueError(f"unknown modality {unknown}; known: {', '.join(MODALITY_BY_NAME)}")
    return [m for m in MODALITIES if m.name in names]
