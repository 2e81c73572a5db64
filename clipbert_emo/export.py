"""Export a fine-tuned checkpoint to ONNX or TorchScript, for running without this library.

The exported graph is the model at one fixed shape: one video, N_test clips of T frames of S x S
pixels, and a text of L tokens (L fixed, or a dynamic axis). Its inputs are what the data pipeline
and the model's own normalisation would have produced:

- ``input_ids``, ``attention_mask``: (1, L) int64, the tokenizer's output (the tokenizer is copied
  beside the model);
- ``frames``: (1, N, T, 3, S, S) float32, RGB, letterboxed to S x S, then ``(pixel / 255 - mean) / std``
  per channel (a model whose weights expect BGR flips the channels inside the graph);
- ``audio``, ``audio_present`` (models trained with data.use_audio): (1, N, n_mels, frames) float32 log-mel
  windows centred on the clips, and (1,) bool.

Its outputs are ``clip_logits`` (1, N, K), one row per clip (a timeline), and ``logits`` (1, K), the
clips aggregated as the model was trained (mean, max or lse). ``model.json`` beside the model file says
all of this (labels, shapes, mean/std, the sampling rule, the aggregation) so that a script with
decord/PyAV, numpy, transformers' tokenizer and onnxruntime can use it: ``examples/onnx_predict.py``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import TOKENIZER, load_checkpoint
from .config import AGGREGATIONS, ExperimentConfig, UserError, check_output_folder, resolve_n_test, to_dict
from .config.atomic import atomic_folder
from .models.aggregation import aggregate_clip_logits

FORMATS = ("onnx", "torchscript")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
SPEC_FILE = "model.json"
CARD = "README.md"
# The ONNX operator set: 17 has LayerNormalization and everything BERT and a ResNet need; ONNX Runtime
# releases of the last years run it.
OPSET = 17
# The largest shape an export accepts, each well beyond what any config here trains with (N_test 16, T 2-8,
# 448 px, 512 tokens); larger values are typos that would only end in a memory-allocation failure. The command
# line checks each while parsing; export_checkpoint checks them again, and their product, for API callers.
MAX_N_TEST = 64
MAX_FRAMES = 64
MAX_FRAME_SIZE = 1024
MAX_TEXT_LEN = 4096
# Pixels of the one video the trace runs on (N x T x S x S): 2^26 is 64 clips x 16 frames x 256 px, or 16 x 8 x
# 724 px; its float32 frames alone take 768 MiB and the CNN's activations several times that.
MAX_VIDEO_PIXELS = 2 ** 26


@dataclass
class ExportShape:
    """The fixed shape an exported model runs at; ``text_len`` None = a dynamic text length."""

    n_test: int
    num_frames: int
    frame_size: int
    text_len: int | None


class ExportableModel(nn.Module):
    """The fine-tuning model with plain tensor inputs and outputs, for tracing: normalised float frames in
    (the uint8 -> float scaling and mean/std are done by the caller, as written in model.json), per-clip and
    aggregated logits out."""

    def __init__(self, model: nn.Module, aggregation: str):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.aggregation = aggregation
        self.modality_names = list(self.model.modality_names)
        if self.model.cnn is not None:
            bgr = self.model.cnn.channel_order == "bgr"
            # The caller normalises in RGB order; only the channel flip of BGR weights stays in the graph.
            self.model.cnn.normalize = (lambda x: x.flip(1)) if bgr else (lambda x: x)  # (F, 3, H, W)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *clips: torch.Tensor):
        inputs = {}
        rest = list(clips)
        for name in self.modality_names:  # the order of input_names(): video, audio and face with their flags
            inputs[name] = rest.pop(0)
            if name in ("audio", "face"):
                inputs[f"{name}_present"] = rest.pop(0)
        clip_logits = self.model.clip_logits(input_ids, attention_mask, **inputs)  # (1, N, K)
        return clip_logits, aggregate_clip_logits(clip_logits, self.aggregation)  # (1, N, K) -> (1, K)


def input_names(modalities: list[str]) -> list[str]:
    names = ["input_ids", "attention_mask"]
    for name in modalities:
        names += {"video": ["frames"], "audio": ["audio", "audio_present"], "face": ["faces", "face_present"]}[name]
    return names


def _audio_window_shape(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The shape of one clip's audio input: (n_mels, frames) log-mel, as data/audio.py computes it."""
    from .data.audio import log_mel

    a = cfg.data.audio
    window = np.zeros((1, int(round(a.window_seconds * a.sample_rate))), np.float32)
    return tuple(log_mel(window, a).shape[1:])


def example_inputs(model, cfg: ExperimentConfig, tokenizer, shape: ExportShape, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of the export shape; the text is padded (the attention mask has zeros), so that tracing
    records the masking path and the graph honours any mask it is given."""
    g = torch.Generator().manual_seed(seed)
    length = shape.text_len or min(8, cfg.data.max_text_len)
    real = max(2, length // 2)
    ids = torch.randint(5, len(tokenizer), (1, length), generator=g)
    ids[0, 0] = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else ids[0, 0]
    ids[0, real:] = tokenizer.pad_token_id or 0
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[0, :real] = 1
    inputs = [ids, mask]
    for name in model.modality_names:
        if name == "video":
            inputs.append(torch.randn(1, shape.n_test, shape.num_frames, 3, shape.frame_size, shape.frame_size,
                                      generator=g))  # (1, N, T, 3, S, S) normalised RGB
        elif name == "audio":
            inputs.append(torch.randn(1, shape.n_test, *_audio_window_shape(cfg), generator=g))  # (1, N, mels, F)
            inputs.append(torch.ones(1, dtype=torch.bool))
        elif name == "face":
            side = cfg.data.face.size
            inputs.append(torch.randint(0, 256, (1, shape.n_test, shape.num_frames, side, side), generator=g,
                                        dtype=torch.uint8))  # (1, N, T, S, S) grey face crops
            inputs.append(torch.ones(1, dtype=torch.bool))
    return inputs


def _check_args(cfg: ExperimentConfig, model, fmt: str, shape: ExportShape, aggregation: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if aggregation not in AGGREGATIONS:
        raise UserError(f"--aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
    for what, value, most in (("--n-test", shape.n_test, MAX_N_TEST), ("--frames", shape.num_frames, MAX_FRAMES),
                              ("--size", shape.frame_size, MAX_FRAME_SIZE)):
        if value < 1:
            raise UserError(f"{what} must be >= 1, got {value}")
        if value > most:
            raise UserError(f"{what} must be at most {most}, got {value}")
    pixels = shape.n_test * shape.num_frames * shape.frame_size ** 2
    if "video" in model.modality_names and pixels > MAX_VIDEO_PIXELS:
        raise UserError(f"--n-test {shape.n_test} x --frames {shape.num_frames} x --size {shape.frame_size}^2 = "
                        f"{pixels:,} pixels per video, more than the {MAX_VIDEO_PIXELS:,} an export traces in "
                        "memory; lower one of them")
    if shape.text_len is not None and not 2 <= shape.text_len <= cfg.model.max_text_positions:
        raise UserError(f"--text-len must be between 2 ([CLS] [SEP]) and the model's model.max_text_positions "
                        f"({cfg.model.max_text_positions}), got {shape.text_len}; or 'dynamic'")
    unknown = [n for n in model.modality_names if n not in ("video", "audio", "face")]
    if unknown:
        raise UserError(f"this checkpoint uses the modality {', '.join(unknown)}, which export does not know how to "
                        "feed; export supports video, text, log-mel audio and faces")
    if "audio" in model.modality_names and cfg.data.audio.front_end != "log_mel":
        raise UserError(f"this checkpoint reads raw audio through a pretrained speech encoder (data.audio.front_end="
                        f"{cfg.data.audio.front_end}); export supports the log-mel audio front end only")


def _out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text or \
        "not enough memory" in text or "bad_alloc" in text


def _memory_error(shape: ExportShape) -> UserError:
    return UserError(f"not enough memory to trace the model at --n-test {shape.n_test} --frames {shape.num_frames} "
                     f"--size {shape.frame_size}; lower one of them (nothing was written)")


class _memory_errors_reported:
    """An allocation failure while tracing or verifying becomes a UserError naming the shape."""

    def __init__(self, shape: ExportShape):
        self.shape = shape

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is not None and isinstance(e, (MemoryError, RuntimeError)) and _out_of_memory(e):
            raise _memory_error(self.shape) from None
        return False


def _prepare_out(out: Path) -> None:
    check_output_folder(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / SPEC_FILE).exists():
        raise UserError(f"--out {out} holds other files; export writes a whole folder: give a new or empty one "
                        "(or an earlier export's, which is replaced)")


def _spec(cfg: ExperimentConfig, model, fmt: str, shape: ExportShape, aggregation: str, names: list[str],
          checkpoint: Path, max_abs_diff: float) -> dict:
    from .tasks import get_task

    d = cfg.data
    inputs = {"input_ids": {"shape": [1, shape.text_len or "L"], "dtype": "int64"},
              "attention_mask": {"shape": [1, shape.text_len or "L"], "dtype": "int64"}}
    if "video" in model.modality_names:
        inputs["frames"] = {"shape": [1, shape.n_test, shape.num_frames, 3, shape.frame_size, shape.frame_size],
                            "dtype": "float32", "channels": "RGB",
                            "how": "letterbox each frame to size x size (longer side resized bilinearly, "
                                   "then zero padding), then (pixel / 255 - pixel_mean) / pixel_std per channel"}
    if "audio" in model.modality_names:
        inputs["audio"] = {"shape": [1, shape.n_test, *_audio_window_shape(cfg)], "dtype": "float32",
                           "how": "natural-log mel energies of the window centred on each clip (data/audio.py)",
                           "audio": to_dict(d.audio)}
        inputs["audio_present"] = {"shape": [1], "dtype": "bool"}
    if "face" in model.modality_names:
        side = d.face.size
        inputs["faces"] = {"shape": [1, shape.n_test, shape.num_frames, side, side], "dtype": "uint8",
                           "how": "each sampled frame's largest face, cut as the fer package cuts it: grey, box made "
                                  f"square, {d.face.offset} px added on every side (a frame padded by 40 px with its "
                                  f"bottom rows' mean), resized bilinearly to {side} x {side} (data/face_tokens.py)",
                           "face": to_dict(d.face)}
        inputs["face_present"] = {"shape": [1], "dtype": "bool", "how": "false when no sampled frame has a face"}
    task = get_task(d.task)
    return {
        "format": fmt,
        "model_file": MODEL_FILES[fmt],
        "checkpoint": str(checkpoint),
        "task": d.task,
        "labels": list(d.labels),
        "num_outputs": task.num_outputs(d),
        "modalities": list(model.modality_names),
        "uses_text": d.use_text,
        "inputs": {name: inputs[name] for name in names},
        "outputs": {"clip_logits": {"shape": [1, shape.n_test if model.modality_names else 1, task.num_outputs(d)]},
                    "logits": {"shape": [1, task.num_outputs(d)]}},
        "aggregation": aggregation,
        "n_test": shape.n_test,
        "num_frames": shape.num_frames,
        "frame_size": shape.frame_size,
        "text_len": shape.text_len or "dynamic",
        "max_text_len": d.max_text_len,
        "tokenizer": TOKENIZER,
        "tokenizer_call": "tokenizer([text], truncation=True, max_length=max_text_len"
                          + (", padding='max_length'" if shape.text_len else "") + ")",
        "pixel_mean": list(cfg.model.pixel_mean),
        "pixel_std": list(cfg.model.pixel_std),
        "letterbox": {"pad": d.pad, "resize_rounding": d.resize_rounding, "resize_antialias": d.resize_antialias,
                      "resize_output": d.resize_output},
        "sampling": {
            "clip_fps": d.clip_fps, "num_frames": shape.num_frames, "num_clips": shape.n_test,
            "single_clip": d.single_clip, "frame_index": d.frame_index,
            "rule": "clip_len = num_frames / clip_fps * video_fps source frames (1 if num_frames == 1 and "
                    "frame_index is 'round'); slack = max(video_len - clip_len, 0); clip i starts at slack * i / "
                    "num_clips (one clip: slack / 2 for 'middle', 0 for 'start', slack / 3 for 'third'); "
                    "frame_index 'round': rint(linspace(start, start + max(clip_len - 1, 0), num_frames)), "
                    "'clipbert': ceil(start) + trunc(linspace(0, clip_len - 1, num_frames)); clipped to "
                    "[0, video_len - 1]",
        },
        "verified_max_abs_diff": max_abs_diff,
    }


def graph_inputs(file: Path) -> list[str]:
    """The inputs an ONNX file declares: the exporter drops those the graph never reads (a model without text has
    no input_ids)."""
    import onnx

    return [i.name for i in onnx.load(str(file), load_external_data=False).graph.input]


def _run_exported(fmt: str, file: Path, names: list[str], inputs: list[torch.Tensor]) -> list[np.ndarray]:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        read = graph_inputs(file)
        feed = {n: x.numpy() for n, x in zip(names, inputs) if n in read}
        return session.run(["clip_logits", "logits"], feed)
    loaded = torch.jit.load(str(file), map_location="cpu")
    with torch.no_grad():
        return [y.numpy() for y in loaded(*inputs)]


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: str = "onnx",
                      n_test: int | None = None, num_frames: int | None = None, frame_size: int | None = None,
                      text_len: int | str | None = None, aggregation: str | None = None) -> dict:
    """Write ``out``/model.onnx (or model.pt), model.json, tokenizer/ and the checkpoint's model card.

    ``n_test``, ``num_frames``, ``frame_size``: the fixed shape (default: the checkpoint's data.n_test,
    data.num_frames, data.frame_size); ``text_len``: a fixed token count, or "dynamic" (default: the config's
    data.max_text_len, fixed). Returns model.json's content. The exported file is run once on random inputs
    and compared with PyTorch; the largest difference is written as ``verified_max_abs_diff``."""
    checkpoint, out = Path(checkpoint), Path(out)
    model, cfg, tokenizer = load_checkpoint(checkpoint, "cpu")
    if isinstance(text_len, str):
        if text_len != "dynamic":
            try:
                text_len = int(text_len)
            except ValueError:
                raise UserError(f"--text-len must be a whole number or 'dynamic', got {text_len!r}") from None
        else:
            text_len = None
    elif text_len is None:
        text_len = cfg.data.max_text_len
    shape = ExportShape(resolve_n_test(cfg, n_test), num_frames or cfg.data.num_frames,
                        frame_size or cfg.data.frame_size, text_len)
    aggregation = aggregation or cfg.model.aggregation
    _check_args(cfg, model, fmt, shape, aggregation)
    _prepare_out(out)
    wrapper = ExportableModel(model, aggregation)
    names = input_names(wrapper.modality_names)
    inputs = example_inputs(model, cfg, tokenizer, shape)
    try:
        with torch.no_grad():
            expected = [y.numpy() for y in wrapper(*inputs)]
    except ValueError as e:  # e.g. a frame size whose grid of visual tokens exceeds the position tables
        raise UserError(f"the model cannot run at --n-test {shape.n_test} --frames {shape.num_frames} --size "
                        f"{shape.frame_size}: {e}") from None
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        raise _memory_error(shape) from None
    with _memory_errors_reported(shape), atomic_folder(out) as tmp, warnings.catch_warnings():
        # Tracing warns about every Python-level shape check it freezes; the shape is fixed by design.
        warnings.simplefilter("ignore")
        file = tmp / MODEL_FILES[fmt]
        if fmt == "onnx":
            dynamic = {"input_ids": {1: "text_len"}, "attention_mask": {1: "text_len"}} if text_len is None else None
            try:
                torch.onnx.export(wrapper, tuple(inputs), str(file), input_names=names,
                                  output_names=["clip_logits", "logits"], dynamic_axes=dynamic, opset_version=OPSET,
                                  dynamo=False)
            except torch.onnx.errors.OnnxExporterError as e:
                # e.g. the log-mel audio encoder's adaptive pooling to a size that does not divide its input
                raise UserError(f"this model has an operation ONNX export does not support "
                                f"({str(e).splitlines()[0][:200]}); export it with --format torchscript") from None
        else:
            with torch.no_grad():
                traced = torch.jit.trace(wrapper, tuple(inputs), check_trace=False)
            traced.save(str(file))
        got = _run_exported(fmt, file, names, inputs)
        diff = float(max(np.abs(a - b).max() for a, b in zip(got, expected)))
        if not diff <= 1e-3:
            raise RuntimeError(f"the exported {fmt} model differs from PyTorch by {diff} on the same inputs")
        shutil.copytree(checkpoint / TOKENIZER, tmp / TOKENIZER)
        if (checkpoint / CARD).exists():
            shutil.copy2(checkpoint / CARD, tmp / CARD)
        read = graph_inputs(file) if fmt == "onnx" else names
        spec = _spec(cfg, model, fmt, shape, aggregation, [n for n in names if n in read], checkpoint, diff)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return spec
