"""The fusion transformer's BERT encoder for inference, without importing transformers' modelling code.

Importing ``transformers.BertModel`` costs 2.5-3 s on the project's 2-core CPU (it pulls in torch._dynamo and
transformers' generation and loss modules), several times what prediction spends in the model. This module holds
the same layers under the same parameter names (``embeddings.word_embeddings``, ``encoder.layer.0.attention.self
.query``, ..., ``pooler.dense``) and the same arithmetic in the same order as transformers' BERT with SDPA
attention in eval mode, so a checkpoint loads key for key and gives the same logits
(tests/test_fast_paths.py compares the two). Training keeps transformers' BertModel: its initialisation, gradient
checkpointing and ``from_pretrained`` are what training needs, and the golden losses were recorded with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class BertSettings:
    """The BertConfig fields the encoder and the token embeddings read (names as in transformers' BertConfig)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_dropout_prob: float
    attention_probs_dropout_prob: float
    max_position_embeddings: int
    pad_token_id: int = 0
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12


class _Embeddings(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)[None]  # (1, L)
        types = torch.zeros_like(input_ids)  # (B, L): every token is segment 0, as transformers' default
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(types)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))  # (B, L, D)


class _Projection(nn.Module):
    """dense -> dropout -> LayerNorm(+ residual): transformers' BertSelfOutput and BertOutput."""

    def __init__(self, d_in: int, s: BertSettings):
        super().__init__()
        self.dense = nn.Linear(d_in, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.heads = s.num_attention_heads
        self.head_size = s.hidden_size // s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)
        self.dropout = nn.Dropout(s.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        shape = (*x.shape[:-1], -1, self.head_size)
        q = self.query(x).view(shape).transpose(1, 2)  # (B, L, D) -> (B, heads, L, D/heads)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.head_size ** -0.5)
        return out.transpose(1, 2).reshape(*x.shape[:-1], -1)  # (B, heads, L, D/heads) -> (B, L, D)


class _Attention(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _Projection(s.hidden_size, s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # transformers' "gelu": the exact erf form


class _Layer(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _Projection(s.intermediate_size, s)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(s) for _ in range(s.num_hidden_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class _Pooler(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(sequence[:, 0]))  # the first token: [CLS]


class InferenceBert(nn.Module):
    """BertModel's embeddings, encoder and pooler under transformers' names; ``encode`` takes a (B, L) 0/1
    padding mask where transformers takes a 4-D mask."""

    def __init__(self, settings: BertSettings):
        super().__init__()
        self.config = settings
        self.embeddings = _Embeddings(settings)
        self.encoder = _Encoder(settings)
        self.pooler = _Pooler(settings)

    def encode(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, D) embedded tokens and their (B, L) padding mask -> (B, L, D)."""
        # As transformers' SDPA path: no mask when nothing is padding, else a boolean "may attend" mask.
        attend = None if bool(mask.all()) else mask.bool()[:, None, None, :].expand(-1, 1, mask.shape[1], -1)
        return self.encoder(hidden, attend)  # attend: (B, 1, L, L)
