"""The fusion transformer: one BERT encoder over [text tokens ; visual tokens ; tokens of other modalities].

Module names follow ClipBERT's checkpoint (``bert.embeddings``, ``bert.encoder``,
``bert.pooler``, ``bert.visual_embeddings``, ``classifier.{0,2}``), so weights of the
original or of any BERT checkpoint map onto it key for key.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .bert_inference import BertSettings, InferenceBert

# transformers' BERT (BertConfig, BertModel, its masks) is imported where a model for training is built: the
# import costs seconds, and a model built for inference uses models/bert_inference.py instead.


def make_bert_config(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                     vocab_size: int, dropout: float, max_text_positions: int, pad_token_id: int = 0,
                     initializer_range: float = 0.02, inference: bool = False) -> "BertConfig | BertSettings":
    """transformers' BertConfig; with ``inference`` the same numbers as BertSettings (no transformers import)."""
    if inference:
        return BertSettings(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                            num_attention_heads=num_heads, intermediate_size=intermediate_size,
                            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                            max_position_embeddings=max_text_positions, pad_token_id=pad_token_id,
                            initializer_range=initializer_range)
    from transformers import BertConfig

    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=max_text_positions,
        pad_token_id=pad_token_id,
        type_vocab_size=2,
        initializer_range=initializer_range,
    )
    cfg._attn_implementation = "sdpa"
    return cfg


class FusionTransformer(nn.Module):
    """BERT over [text tokens ; the tokens of each other modality], in ``models/modalities.py``'s order."""

    def __init__(self, bert_config: "BertConfig | BertSettings",
                 modality_embeddings: dict[str, tuple[str, Callable[[], nn.Module]]]):
        """``modality_embeddings``: modality name -> (attribute under ``bert``, a builder of its token embeddings,
        called after BERT's own layers so that their random initialisation does not depend on the modalities).
        A BertSettings ``bert_config`` builds the inference encoder (models/bert_inference.py) instead of
        transformers' BertModel: same parameter names, same logits, no transformers import."""
        super().__init__()
        self.config = bert_config
        if isinstance(bert_config, BertSettings):
            self.bert = InferenceBert(bert_config)
        else:
            from transformers import BertModel

            self.bert = BertModel(bert_config, add_pooling_layer=True)
        # Attached to the BertModel so the parameter names read ``bert.visual_embeddings.*``
        # as in ClipBERT's checkpoint.
        self.embeddings_attr = {}
        for name, (attr, build) in modality_embeddings.items():
            module = build()
            setattr(self.bert, attr, module)
            module.apply(self._init_weights)
            self.embeddings_attr[name] = attr

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation of one module (``module.apply`` walks a tree with it, children first)."""
        init_bert_module(module, self.config.initializer_range)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the BERT layers in the backward pass (non-reentrant: unused inputs and no-grad parts are fine)."""
        self.bert.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def load_bert(self, name_or_path: str) -> dict:
        """Copy a pretrained BERT-family encoder (embeddings, layers, pooler) into ``self.bert``.

        The visual embeddings are new and keep their initialisation; every other tensor must be
        found with the same shape, or this raises, so nothing is silently left at random init.
        """
        from transformers import BertModel

        try:
            pretrained = BertModel.from_pretrained(name_or_path, add_pooling_layer=True)
        except (OSError, ValueError) as e:  # not a local folder, and the hub is out of reach
            from ..config import UserError

            raise UserError(
                f"model.text_init={name_or_path}: cannot load it ({str(e).strip().splitlines()[0][:160]}). Three ways "
                f"on: (1) a local copy: model.text_init=/path/to/folder (with config.json, the weights and vocab.txt); "
                f"(2) a converted original ClipBERT: configs/clipbert_original.yaml with train.init_checkpoint=DIR "
                f"from `clipbert-emo convert-clipbert`; (3) the CPU preset, which trains a small transformer from "
                f"scratch: --preset cpu. (model.text_init= with no value also trains it from scratch.)") from None
        theirs = pretrained.config
        ours = self.config
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if getattr(theirs, key) != getattr(ours, key):
                raise ValueError(f"model.text_init={name_or_path}: its {key} is {getattr(theirs, key)}, the "
                                 f"model's is {getattr(ours, key)}; set the model config (and tokenizer) to match")
        result = self.bert.load_state_dict(pretrained.state_dict(), strict=False)
        ours_only = tuple(f"{attr}." for attr in self.embeddings_attr.values())  # new modules: no BERT weights
        missing = [k for k in result.missing_keys if not k.startswith(ours_only)]
        if missing:
            raise ValueError(f"model.text_init={name_or_path}: no weights for {missing[:5]}")
        return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: dict[str, torch.Tensor] | None = None,
                present: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text (B', L) ids and mask; ``features``: modality name -> that modality's features of each of
        the B' sequences (video: the clip grid (B', D, h, w)); ``present``: modality name -> (B',) whether the
        sequence has it (an absent modality's tokens are masked out; default: all present).

        Returns the sequence output (B', L + tokens, D) and the pooled text [CLS] (B', D).
        """
        sequence = self.sequence(input_ids, attention_mask, features, present)
        pooled = self.bert.pooler(sequence)  # tanh(dense(token 0)): the text [CLS]
        return sequence, pooled

    def sequence(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 features: dict[str, torch.Tensor] | None = None,
                 present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The encoder's output (B', L + tokens, D) without the pooler (see :meth:`forward`)."""
        hidden = [self.bert.embeddings(input_ids=input_ids)]  # (B', L) -> (B', L, D)
        masks = [attention_mask]
        for name, attr in self.embeddings_attr.items():
            if features is None or name not in features:
                continue
            tokens = getattr(self.bert, attr)(features[name])  # e.g. (B', D, h, w) -> (B', h*w, D)
            hidden.append(tokens)
            has = (present or {}).get(name)
            masks.append(attention_mask.new_ones(tokens.shape[:2]) if has is None  # never padding
                         else has.to(attention_mask.dtype)[:, None].expand(tokens.shape[:2]))
        hidden = torch.cat(hidden, dim=1)  # -> (B', L + tokens, D)
        mask = torch.cat(masks, dim=1)  # -> (B', L + tokens)
        if isinstance(self.bert, InferenceBert):
            sequence = self.bert.encode(hidden, mask)  # -> (B', L + tokens, D)
        else:
            from transformers.masking_utils import create_bidirectional_mask

            mask4d = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=mask)
            sequence = self.bert.encoder(hidden, attention_mask=mask4d).last_hidden_state
        return sequence


def fusion_transformer_from_config(cfg, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True,
                                   modalities=("video",), inference: bool = False) -> FusionTransformer:
    """The fusion transformer a ModelConfig describes, with token embeddings for ``modalities`` (and those
    every checkpoint has), started from ``cfg.text_init`` when set. ``inference``: the encoder of
    models/bert_inference.py, for a checkpoint to be loaded over (no training, no text_init)."""
    from .modalities import MODALITIES

    bert_cfg = make_bert_config(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, vocab_size,
                                cfg.dropout, cfg.max_text_positions, pad_token_id, cfg.initializer_range, inference)
    embeddings = {m.name: (m.embeddings_attr, lambda m=m: m.build_embeddings(cfg, bert_cfg))
                  for m in MODALITIES if m.embeddings_always or m.name in modalities}
    transformer = FusionTransformer(bert_cfg, embeddings)
    if cfg.text_init and pretrained:
        transformer.load_bert(cfg.text_init)
    return transformer


class ClassifierHead(nn.Module):
    """ClipBERT's downstream head: dropout -> Linear(D, 2D) -> ReLU -> Linear(2D, K)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Sequential(
            nn.Linear(hidden_size, hidden_size * 2), nn.ReLU(inplace=True), nn.Linear(hidden_size * 2, num_labels)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


def init_bert_module(module: nn.Module, std: float) -> None:
    """BERT's initialisation of one module: normal(0, std) weights, zero biases, unit LayerNorms; others untouched."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_like_bert(root: nn.Module, std: float) -> None:
    """BERT's initialisation of every module under ``root``, parents before children (``modules()`` order: the
    order of the random draws, so a model keeps its initial weights)."""
    for module in root.modules():
        init_bert_module(module, std)


# A task kind's ``build_head``: (ModelConfig, width) -> the module from a pooled vector to the width outputs, or None.
HeadBuilder = Callable[..., "nn.Module | None"]


def output_head(cfg, width: int, build_head: HeadBuilder | None = None) -> nn.Module:
    """The module from a pooled vector (D,) to a task's ``width`` outputs: the task kind's own (``Task.build_head``,
    e.g. retrieval's image-text matching layer) or, where it has none, ClipBERT's classifier MLP."""
    head = build_head(cfg, width) if build_head is not None else None
    return head if head is not None else ClassifierHead(cfg.hidden_size, width, cfg.dropout)
