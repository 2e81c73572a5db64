"""A detectron2-style ResNet-50, the backbone of the original ClipBERT (``model.backbone=detectron2_resnet50``).

Its weights (grid-feats R-50, trained on Visual Genome, then ClipBERT's pretraining) only mean
what they meant there if the network computes the same function, so this differs from
torchvision's resnet50 exactly where detectron2's does:

- each bottleneck puts its stride in the first 1x1 conv (detectron2's ``STRIDE_IN_1X1``; the MSRA
  weights were trained that way), not in the 3x3;
- every BatchNorm is frozen: statistics and affine are buffers, never updated, so batch size
  and train/eval mode do not change the output;
- the stem and res2 never train (detectron2's ``FREEZE_AT=2``);
- res5 has no dilation (ClipBERT forces ``RES5_DILATION=1``): stride 32, 2048 channels.

Module names equal the original checkpoint's keys after ``cnn.feature.backbone.``
(``stem.conv1.weight``, ``stem.conv1.norm.running_var``, ``res3.0.shortcut.norm.bias``, ...),
so converting them is a prefix swap.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

# (name, blocks, bottleneck width, output channels, stride of the stage's first block)
_STAGES = (("res2", 3, 64, 256, 1), ("res3", 4, 128, 512, 2), ("res4", 6, 256, 1024, 2), ("res5", 3, 512, 2048, 2))


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine: y = (x - mean) / sqrt(var + eps) * weight + bias.

    All four are buffers, so no optimizer sees them and ``train()`` changes nothing; they are still
    in the state dict, which is what the checkpoint stores.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Folded into one scale and shift per channel: two elementwise ops instead of four.
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm's counter has no meaning for frozen statistics; ignore it rather than fail on it.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class ConvNorm(nn.Conv2d):
    """A bias-free conv followed by its own FrozenBatchNorm2d, stored as ``<conv>.norm`` as detectron2 does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.norm = FrozenBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int):
        super().__init__()
        # Only where the shape changes (block 0 of a stage) does the identity need a projection.
        self.shortcut = ConvNorm(in_channels, out_channels, 1, stride=stride) if (
            in_channels != out_channels or stride != 1) else None
        self.conv1 = ConvNorm(in_channels, width, 1, stride=stride)  # stride in the 1x1, as the weights expect
        self.conv2 = ConvNorm(width, width, 3, padding=1)
        self.conv3 = ConvNorm(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class Stem(nn.Module):
    def __init__(self, out_channels: int = 64):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # (F, 3, H, W) -> (F, 64, H/2, W/2)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # -> (F, 64, H/4, W/4)


class DetectronResNet50(nn.Module):
    """Stem + res2..res5 (``num_stages=4``, stride 32, 2048 channels) or + res2..res4 (3: stride 16, 1024)."""

    def __init__(self, num_stages: int = 4, freeze_at: int = 2):
        super().__init__()
        if num_stages not in (3, 4):
            raise ValueError(f"detectron2_resnet50: num_stages must be 3 or 4, got {num_stages}")
        self.stem = Stem(64)
        self.stage_names: list[str] = []
        in_ch = 64
        for name, blocks, width, out_ch, stride in _STAGES[: num_stages]:
            stage = nn.Sequential(*[Bottleneck(in_ch if i == 0 else out_ch, width, out_ch, stride if i == 0 else 1)
                                    for i in range(blocks)])
            self.add_module(name, stage)
            self.stage_names.append(name)
            in_ch = out_ch
        self.out_channels = in_ch
        self.gradient_checkpointing = False
        # freeze_at=2: the stem (1) and res2 (2) keep their weights, as in the original; their low-level
        # filters are generic, and not storing their gradients saves memory at 448-768 px.
        frozen = [self.stem] + [getattr(self, n) for n in self.stage_names[: max(0, freeze_at - 1)]]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (F, 3, H, W) -> (F, 64, H/4, W/4)
        for name in self.stage_names:
            stage = getattr(self, name)
            trainable = any(p.requires_grad for p in stage.parameters())
            if self.gradient_checkpointing and trainable and self.training and torch.is_grad_enabled():
                # Recomputed in backward instead of stored; exact, since frozen BatchNorm has no state
                # to update twice. Frozen stages store no activations for backward anyway.
                x = torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return x  # (F, C, H/s, W/s): s = 32, C = 2048 with res5


def load_backbone_weights(net: DetectronResNet50, weights_file: str) -> None:
    """A state dict of this backbone, with its own names or the original checkpoint's
    ``cnn.feature.backbone.`` prefix (loaded as plain tensors, never unpickling code)."""
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    prefix = "cnn.feature.backbone."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{weights_file}: no weights for {len(result.missing_keys)} backbone tensors, e.g. "
                         f"{result.missing_keys[:5]}")
