"""Sound to tokens: a small log-mel CNN trained from scratch (the default) or a pretrained speech encoder
(``model.audio_init``), ``model.audio_tokens`` tokens per audio window, with their own position and type
embeddings (the third modality of the fusion transformer)."""

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


class PretrainedSpeechEncoder(nn.Module):
    """(B, N, L) raw 16 kHz windows -> (B, N, D, K) features from a transformers speech model (wav2vec2, HuBERT,
    WavLM, data2vec-audio): each window normalised as their feature extractors do, its frames pooled to K
    tokens and projected to the transformer width. The speech model trains with the CNN learning rate."""

    def __init__(self, name_or_path: str, hidden_size: int, num_tokens: int, pretrained: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        try:
            config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)  # never a folder's code
            # Without pretrained weights (a checkpoint is loaded over them next) only the architecture is built.
            self.speech = (AutoModel.from_pretrained(name_or_path, trust_remote_code=False) if pretrained
                           else AutoModel.from_config(config, trust_remote_code=False))
        except (OSError, ValueError) as e:
            from ..config import UserError

            raise UserError(f"model.audio_init={name_or_path}: cannot load it ({str(e).strip().splitlines()[0][:160]}); "
                            "give a local folder of a wav2vec2/HuBERT/WavLM/data2vec-audio checkpoint, or leave "
                            "model.audio_init empty for the log-mel CNN (with data.audio.front_end=log_mel)") from None
        self.proj = nn.Linear(self.speech.config.hidden_size, hidden_size)
        self.num_tokens = num_tokens

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        b, n = waves.shape[:2]
        x = waves.float().flatten(0, 1)  # (B, N, L) -> (B*N, L)
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + 1e-7)  # zero mean, unit variance
        frames = self.speech(input_values=x).last_hidden_state  # -> (B*N, frames, H)
        pooled = F.adaptive_avg_pool1d(frames.transpose(1, 2), self.num_tokens)  # -> (B*N, H, K)
        out = self.proj(pooled.transpose(1, 2)).transpose(1, 2)  # (B*N, K, H) -> (B*N, K, D) -> (B*N, D, K)
        return out.reshape(b, n, *out.shape[1:])  # -> (B, N, D, K)

    def enable_gradient_checkpointing(self) -> None:
        if getattr(self.speech, "supports_gradient_checkpointing", False):
            self.speech.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def audio_encoder_from_config(cfg, pretrained: bool = True) -> nn.Module:
    """The log-mel CNN, or the pretrained speech encoder model.audio_init names."""
    if cfg.audio_init:
        return PretrainedSpeechEncoder(cfg.audio_init, cfg.hidden_size, cfg.audio_tokens, pretrained)
    return AudioEncoder(cfg.hidden_size, cfg.audio_tokens)
