"""The fusion transformer: one BERT encoder over [text tokens ; visual tokens].

Module names follow ClipBERT's checkpoint (``bert.embeddings``, ``bert.encoder``,
``bert.pooler``, ``bert.visual_embeddings``, ``classifier.{0,2}``), so weights of the
original or of any BERT checkpoint map onto it key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import BertConfig, BertModel
from transformers.masking_utils import create_bidirectional_mask

from .embeddings import VisualEmbeddings


def make_bert_config(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                     vocab_size: int, dropout: float, max_text_positions: int, pad_token_id: int = 0,
                     initializer_range: float = 0.02) -> BertConfig:
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
    def __init__(self, bert_config: BertConfig, max_grid: int = 100):
        super().__init__()
        self.config = bert_config
        self.bert = BertModel(bert_config, add_pooling_layer=True)
        # Attached to the BertModel so the parameter names read ``bert.visual_embeddings.*``
        # as in ClipBERT's checkpoint.
        self.bert.visual_embeddings = VisualEmbeddings(
            bert_config.hidden_size, max_grid, bert_config.hidden_dropout_prob, bert_config.layer_norm_eps
        )
        self.bert.visual_embeddings.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def load_bert(self, name_or_path: str) -> dict:
        """Copy a pretrained BERT-family encoder (embeddings, layers, pooler) into ``self.bert``.

        The visual embeddings are new and keep their initialisation; every other tensor must be
        found with the same shape, or this raises, so nothing is silently left at random init.
        """
        pretrained = BertModel.from_pretrained(name_or_path, add_pooling_layer=True)
        theirs = pretrained.config
        ours = self.config
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
            if getattr(theirs, key) != getattr(ours, key):
                raise ValueError(f"model.text_init={name_or_path}: its {key} is {getattr(theirs, key)}, the "
                                 f"model's is {getattr(ours, key)}; set the model config (and tokenizer) to match")
        result = self.bert.load_state_dict(pretrained.state_dict(), strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("visual_embeddings.")]
        if missing:
            raise ValueError(f"model.text_init={name_or_path}: no weights for {missing[:5]}")
        return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                visual_grid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text (B', L) ids and mask, visual grid (B', D, h, w) or None.

        Returns the sequence output (B', L + h*w, D) and the pooled text [CLS] (B', D).
        """
        hidden = self.bert.embeddings(input_ids=input_ids)  # (B', L) -> (B', L, D)
        mask = attention_mask
        if visual_grid is not None:
            visual = self.bert.visual_embeddings(visual_grid)  # (B', D, h, w) -> (B', h*w, D)
            hidden = torch.cat([hidden, visual], dim=1)  # -> (B', L + h*w, D)
            visual_mask = attention_mask.new_ones(visual.shape[:2])  # visual tokens are never padding
            mask = torch.cat([attention_mask, visual_mask], dim=1)  # -> (B', L + h*w)
        mask4d = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=mask)
        sequence = self.bert.encoder(hidden, attention_mask=mask4d).last_hidden_state
        pooled = self.bert.pooler(sequence)  # tanh(dense(token 0)): the text [CLS]
        return sequence, pooled


def fusion_transformer_from_config(cfg, vocab_size: int, pad_token_id: int = 0, pretrained: bool = True
                                   ) -> FusionTransformer:
    """The fusion transformer a ModelConfig describes, started from ``cfg.text_init`` when set."""
    bert_cfg = make_bert_config(cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size, vocab_size,
                                cfg.dropout, cfg.max_text_positions, pad_token_id, cfg.initializer_range)
    transformer = FusionTransformer(bert_cfg, cfg.max_grid)
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
