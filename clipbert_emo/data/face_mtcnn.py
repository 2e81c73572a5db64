"""MTCNN, the cascade face detector of Zhang et al. (2016), on the weights that ``facenet-pytorch`` ships.

"Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks": three small networks
look at the picture in turn, each at candidates the one before let through, so the expensive look is spent
on few windows:

1. P-Net, fully convolutional, slides a 12 x 12 window (stride 2) over an image pyramid (each level 0.709 of
   the one before, the first scaled so the smallest face wanted is 12 px): a face probability and the offsets
   of the box's edges per window; windows over a threshold, merged by NMS per level and over all levels;
2. R-Net re-scores each candidate's square crop at 24 x 24 and refines its box;
3. O-Net does the same at 48 x 48, and adds five landmarks (eyes, nose, mouth corners).

The networks and the pipeline are written here; only the weights come from the package (its
``facenet_pytorch/data/{pnet,rnet,onet}.pt``: plain state dicts of tensors, read with ``weights_only=True``,
so loading them runs no code). The package's own code pins an old torch, hence ``--no-deps``.

What the weights expect, checked on real photographs (``tests/test_face_detection.py``: the astronaut's box
and five landmarks where a person sees them): RGB pixels as ``(x - 127.5) / 128``; PReLU after every hidden
layer; upright images (a transposed photograph's face is not found); R-Net's and O-Net's dense layers read
their input flattened in (width, height, channel) order, the order of the original Caffe networks, which were
trained from MATLAB's column-major images (flattened in PyTorch's (channel, height, width) order, the same
weights find 41 "faces" in the astronaut photograph instead of one); box offsets as (x1, y1, x2, y2)
fractions of the box's width and height; landmarks as five x then five y, fractions of the box.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.errors import UserError

WEIGHTS_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"


def _conv_prelu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k), nn.PReLU(cout)]


class PNet(nn.Module):
    """12 x 12 windows, stride 2: (B, 3, H, W) -> face probability (B, H', W'), box offsets (B, 4, H', W')."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 10, 3)
        self.conv2, self.prelu2 = _conv_prelu(10, 16, 3)
        self.conv3, self.prelu3 = _conv_prelu(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _flatten_caffe(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, W*H*C): the order the Caffe-trained dense layers were fitted on (see the module doc)."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """(B, 3, 24, 24) crops -> face probability (B,), box offsets (B, 4)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 28, 3)
        self.conv2, self.prelu2 = _conv_prelu(28, 48, 3)
        self.conv3, self.prelu3 = _conv_prelu(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)  # 24 -> 22 -> 11
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)  # 11 -> 9 -> 4
        x = self.prelu4(self.dense4(_flatten_caffe(self.prelu3(self.conv3(x)))))  # 4 -> 3: 64 * 3 * 3 = 576
        return F.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """(B, 3, 48, 48) crops -> face probability (B,), box offsets (B, 4), landmarks (B, 10)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 32, 3)
        self.conv2, self.prelu2 = _conv_prelu(32, 64, 3)
        self.conv3, self.prelu3 = _conv_prelu(64, 64, 3)
        self.conv4, self.prelu4 = _conv_prelu(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)  # 48 -> 46 -> 23
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)  # 23 -> 21 -> 10
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)  # 10 -> 8 -> 4
        x = self.prelu5(self.dense5(_flatten_caffe(self.prelu4(self.conv4(x)))))  # 4 -> 3: 128 * 3 * 3 = 1152
        return F.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def weights_dir() -> str:
    """The folder of the shipped weights, found without importing the package (its code is not used)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    folder = os.path.join(spec.submodule_search_locations[0], "data") if spec and spec.submodule_search_locations \
        else ""
    if not all(os.path.isfile(os.path.join(folder, f"{n}.pt")) for n in ("pnet", "rnet", "onet")):
        raise UserError("the MTCNN face detector needs the weights facenet-pytorch ships: " + WEIGHTS_INSTALL +
                        " (or data.face_detector=haar for OpenCV's Haar cascade)")
    return folder


def load_nets(folder: str | None = None) -> tuple[PNet, RNet, ONet]:
    folder = folder or weights_dir()
    nets = PNet(), RNet(), ONet()
    for name, net in zip(("pnet", "rnet", "onet"), nets):
        state = torch.load(os.path.join(folder, f"{name}.pt"), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval().requires_grad_(False)
    return nets


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """(K, 4) x1 y1 x2 y2 -> squares of the longer side on the same centres: the crops the next net sees."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _refine(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each edge moved by its offset, a fraction of the box's width (x1, x2) or height (y1, y2)."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (K, 4): w, h, w, h
    return boxes + offsets * size


class MTCNN:
    """Faces in RGB frames: ``detect(frames)`` -> per frame (K, 4) boxes x1 y1 x2 y2, (K,) scores, (K, 10) landmarks.

    ``min_face``: the smallest face side searched for, in pixels of the frame given; ``thresholds``: the three
    nets' face probabilities a candidate must reach (the paper's 0.6, 0.7, 0.7).
    """

    def __init__(self, min_face: float = 20.0, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, folder: str | None = None):
        self.pnet, self.rnet, self.onet = load_nets(folder)
        self.min_face, self.thresholds, self.factor = float(min_face), thresholds, factor

    def scales(self, height: int, width: int, min_face: float | None = None) -> list[float]:
        """The pyramid: the first level makes ``min_face`` 12 px (P-Net's window), the last still holds 12 px."""
        first = 12.0 / (min_face or self.min_face)
        side, scales = min(height, width) * first, []
        while side >= 12:
            scales.append(first * self.factor ** len(scales))
            side *= self.factor
        return scales

    @torch.inference_mode()
    def detect(self, frames: np.ndarray, min_face: float | None = None
               ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(B, H, W, 3) uint8 RGB frames of one size -> per frame (boxes (K, 4) x1 y1 x2 y2, scores (K,), landmarks
        (K, 10): five x then five y), in the frame's pixels, best score first. ``min_face``: this call's own."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
        x = (x - 127.5) * 0.0078125
        boxes, scores, owner = self._stage1(x, min_face)
        boxes, scores, owner, _ = self._stage(self.rnet, 24, self.thresholds[1], x, boxes, owner)
        boxes, scores, owner, marks = self._stage(self.onet, 48, self.thresholds[2], x, boxes, owner)
        out = []
        for b in range(x.shape[0]):
            mine = owner == b
            order = torch.argsort(scores[mine], descending=True)
            out.append((boxes[mine][order].numpy(), scores[mine][order].numpy(),
                        marks[mine][order].numpy() if marks is not None else np.zeros((0, 10), np.float32)))
        return out

    def _stage1(self, x: torch.Tensor, min_face: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid: candidate boxes (K, 4), scores (K,), and the frame each belongs to (K,)."""
        h, w = x.shape[2:]
        found = []
        for s in self.scales(h, w, min_face):
            level = F.interpolate(x, size=(int(h * s + 1), int(w * s + 1)), mode="area")
            prob, offsets = self.pnet(level)  # (B, h', w'), (B, 4, h', w')
            b, ys, xs = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if not len(b):
                continue
            # window (ys, xs) of the level covers its pixels [2x, 2x + 12): back to the frame's pixels
            corner = torch.stack([xs, ys], dim=1).float() * 2 / s
            boxes = torch.cat([corner, corner + 12 / s], dim=1)
            score = prob[b, ys, xs]
            keep = _batched_nms(boxes, score, b, 0.5)
            found.append((boxes[keep], score[keep], b[keep], offsets[b, :, ys, xs][keep]))
        if not found:
            return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
        boxes, score, owner, offsets = (torch.cat(t) for t in zip(*found))
        keep = _batched_nms(boxes, score, owner, 0.7)
        return _square(_refine(boxes[keep], offsets[keep])), score[keep], owner[keep]

    def _stage(self, net: nn.Module, size: int, threshold: float, x: torch.Tensor, boxes: torch.Tensor,
               owner: torch.Tensor):
        """R-Net or O-Net on each candidate's crop: those over ``threshold``, refined, NMS-merged."""
        if not len(boxes):
            return boxes, torch.zeros(0), owner, (torch.zeros(0, 10) if size == 48 else None)
        out = net(_crops(x, boxes, owner, size))
        prob, offsets = out[0], out[1]
        keep = prob >= threshold
        boxes, prob, owner, offsets = boxes[keep], prob[keep], owner[keep], offsets[keep]
        marks = None
        if size == 48:
            wh = (boxes[:, 2:] - boxes[:, :2])
            rel = out[2][keep]
            marks = torch.cat([boxes[:, :1] + rel[:, :5] * wh[:, :1], boxes[:, 1:2] + rel[:, 5:] * wh[:, 1:]], dim=1)
        refined = _refine(boxes, offsets)
        keep = _batched_nms(refined, prob, owner, 0.7)
        refined, prob, owner = refined[keep], prob[keep], owner[keep]
        if marks is not None:
            return refined, prob, owner, marks[keep]
        return _square(refined), prob, owner, None


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, owner: torch.Tensor, iou: float) -> torch.Tensor:
    from torchvision.ops import batched_nms

    return batched_nms(boxes, scores, owner, iou)


def _crops(x: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor, size: int) -> torch.Tensor:
    """(K, 3, size, size) crops of the normalised frames ``x`` at ``boxes``, averaged over each output pixel's
    area (as the original's area resize). Parts outside the frame are black, as the original pads: roi_align
    samples 0 there, so it reads the frames shifted to black = 0 and the shift is undone after."""
    from torchvision.ops import roi_align

    rois = torch.cat([owner[:, None].float(), boxes], dim=1)  # (K, 5): frame index, x1 y1 x2 y2
    return roi_align(x + 1.0, rois, (size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True) - 1.0
