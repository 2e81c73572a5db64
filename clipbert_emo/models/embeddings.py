"""Visual tokens: a clip grid plus learned row/column positions and a visual token type."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange


class VisualEmbeddings(nn.Module):
    """(B', D, h, w) grid -> (B', h*w, D) tokens, row-major, as ClipBERT's ``visual_embeddings``.

    There is no 1-D position embedding: where a token sits in the frame is all that its
    position means, and the row and column tables say exactly that.
    """

    def __init__(self, hidden_size: int, max_grid: int = 100, dropout: float = 0.1, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.max_grid = max_grid
        self.row_position_embeddings = nn.Embedding(max_grid, hidden_size)
        self.col_position_embeddings = nn.Embedding(max_grid, hidden_size)
        self.token_type_embeddings = nn.Embedding(1, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        _, _, h, w = grid.shape
        if h > self.max_grid or w > self.max_grid:
            raise ValueError(f"visual grid {h}x{w} exceeds the position tables ({self.max_grid}); "
                             "lower data.frame_size or raise model.max_grid")
        rows = self.row_position_embeddings(torch.arange(h, device=grid.device))  # (h, D)
        cols = self.col_position_embeddings(torch.arange(w, device=grid.device))  # (w, D)
        pos = rows[:, None, :] + cols[None, :, :]  # (h, 1, D) + (1, w, D) -> (h, w, D)
        tokens = rearrange(grid, "b d h w -> b h w d") + pos  # (B', D, h, w) -> (B', h, w, D)
        tokens = rearrange(tokens, "b h w d -> b (h w) d")  # -> (B', h*w, D)
        tokens = tokens + self.token_type_embeddings.weight  # (1, D) broadcast
        return self.dropout(self.LayerNorm(tokens))
