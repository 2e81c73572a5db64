"""Sound to tokens: a small log-mel CNN trained from scratch, ``model.audio_tokens`` tokens per audio window,
with their own position and type embeddings (the third modality of the fusion transformer)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AudioEncoder(nn.Module):
    """(B, N, n_mels, frames) log-mel windows -> (B, N, D, K) features: three stride-2 conv blocks over the
    spectrogram, frequency pooled away, K evenly pooled time steps projected to the transformer width."""

    def __init__(self, hidden_size: int, num_tokens: int, channels: int = 64):
        super().__init__()
        blocks, c_in = [], 1
        for c_out in (channels // 2, channels, channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        self.net = nn.Sequential(*blocks)
        self.proj = nn.Linear(channels, hidden_size)
        self.num_tokens = num_tokens

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        b, n = mels.shape[:2]
        x = mels.float().flatten(0, 1)[:, None]  # (B, N, M, F) -> (B*N, 1, M, F)
        x = self.net(x).mean(dim=2)  # -> (B*N, C, M/8, F/8) -> (B*N, C, F/8)
        x = F.adaptive_avg_pool1d(x, self.num_tokens)  # -> (B*N, C, K)
        x = self.proj(x.transpose(1, 2)).transpose(1, 2)  # (B*N, K, C) -> (B*N, K, D) -> (B*N, D, K)
        return x.reshape(b, n, *x.shape[1:])  # -> (B, N, D, K)

    def enable_gradient_checkpointing(self) -> None:
        pass  # a few small convolutions: nothing worth recomputing


class AudioEmbeddings(nn.Module):
    """(B', D, K) audio features of one window -> (B', K, D) tokens + position + audio type, LayerNorm, dropout."""

    def __init__(self, hidden_size: int, num_tokens: int, dropout: float = 0.1, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.position_embeddings = nn.Embedding(num_tokens, hidden_size)
        self.token_type_embeddings = nn.Embedding(1, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = features.transpose(1, 2)  # (B', D, K) -> (B', K, D)
        tokens = tokens + self.position_embeddings.weight[: tokens.shape[1]] + self.token_type_embeddings.weight
        return self.dropout(self.LayerNorm(tokens))


def audio_encoder_from_config(cfg, pretrained: bool = True) -> AudioEncoder:
    return AudioEncoder(cfg.hidden_size, cfg.audio_tokens)
