#!/usr/bin/env python3
"""Run a model exported by `clipbert-emo export --format onnx` on a video, WITHOUT clipbert-emo installed.

Needs: onnxruntime, numpy, Pillow, transformers (for the tokenizer only; torch is not needed), and decord or
PyAV (`av`) to decode the video.

    python examples/onnx_predict.py exported/ my_video.mp4 --text "no way, that is incredible"
    python examples/onnx_predict.py exported/ my_video.mp4 --aggregation mean --json

Every step is written out here, following exported/model.json: decode the frames of N_test evenly placed
clips, letterbox them to the model's square, normalise, tokenise the text, run the graph, aggregate the
per-clip logits into one distribution.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


# ---- 1. which frames: N_test clips of T frames, evenly over the video (the library's test-time rule) ----
def clip_frame_indices(video_len: int, video_fps: float, s: dict) -> np.ndarray:
    """(N, T) frame indices. s is model.json's "sampling" section."""
    n, t = s["num_clips"], s["num_frames"]
    clip_len = 1.0 if t == 1 else t / s["clip_fps"] * video_fps  # one clip, in source frames
    slack = max(video_len - clip_len, 0.0)
    if n == 1:
        starts = [slack / 2.0 if s["single_clip"] == "middle" else 0.0]
    else:
        starts = [slack * i / n for i in range(n)]
    rows = []
    for start in starts:
        if s["frame_index"] == "round":
            idx = np.rint(np.linspace(start, start + max(clip_len - 1.0, 0.0), t))
        else:  # floor_exclusive: the original ClipBERT's test-time decoder
            idx = np.floor(np.linspace(start, start + clip_len, t))
        rows.append(np.clip(idx.astype(np.int64), 0, video_len - 1))
    return np.stack(rows)


# ---- 2. decoding: decord when installed, else (or when decord fails on a file) PyAV ----
def decode(path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """The sampled frames (N, T, H, W, 3) uint8 RGB, their indices (N, T), and the frame rate."""
    try:
        import decord
    except ImportError:
        return _decode_pyav(path, spec)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        fps = float(reader.get_avg_fps() or 0) or 30.0
        indices = clip_frame_indices(len(reader), fps, spec["sampling"])
        unique, inverse = np.unique(indices.reshape(-1), return_inverse=True)
        frames = reader.get_batch(unique.tolist()).asnumpy()[inverse]  # (N*T, H, W, 3)
    except Exception:  # decord 0.6 fails on some frame widths (24, 48, ... px); PyAV reads those
        return _decode_pyav(path, spec)
    return frames.reshape(*indices.shape, *frames.shape[1:]), indices, fps  # -> (N, T, H, W, 3)


def _decode_pyav(path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, float]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
        every = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]  # F x (H, W, 3)
    indices = clip_frame_indices(len(every), fps, spec["sampling"])
    frames = np.stack([every[i] for i in indices.reshape(-1)])  # (N*T, H, W, 3)
    return frames.reshape(*indices.shape, *frames.shape[1:]), indices, fps  # -> (N, T, H, W, 3)


# ---- 3. geometry and normalisation: letterbox to size x size, then (x / 255 - mean) / std ----
def letterbox(frame: np.ndarray, size: int, lb: dict) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 on the 0-255 scale: the longer side resized to ``size``
    (bilinear, antialiased when shrinking, as Pillow does), the rest zero padding."""
    from PIL import Image

    h, w = frame.shape[:2]
    scale = size / max(h, w)
    rnd = round if lb["resize_rounding"] == "round" else int
    nh, nw = max(1, rnd(h * scale)), max(1, rnd(w * scale))
    if (nh, nw) == (h, w):
        resized = frame.astype(np.float32)
    elif lb["resize_output"] == "uint8":
        resized = np.asarray(Image.fromarray(frame).resize((nw, nh), Image.BILINEAR), np.float32)
    else:  # kept as floats, one channel at a time
        resized = np.stack([np.asarray(Image.fromarray(frame[:, :, c].astype(np.float32), "F")
                                       .resize((nw, nh), Image.BILINEAR)) for c in range(3)], axis=-1)
    out = np.zeros((size, size, 3), np.float32)
    top, left = ((size - nh) // 2, (size - nw) // 2) if lb["pad"] == "center" else (0, 0)
    out[top:top + nh, left:left + nw] = resized
    return out


def preprocess(clips: np.ndarray, spec: dict) -> np.ndarray:
    """(N, T, H, W, 3) uint8 -> (1, N, T, 3, S, S) float32, normalised."""
    size = spec["frame_size"]
    mean = np.asarray(spec["pixel_mean"], np.float32)
    std = np.asarray(spec["pixel_std"], np.float32)
    n, t = clips.shape[:2]
    out = np.stack([letterbox(f, size, spec["letterbox"]) for f in clips.reshape(-1, *clips.shape[2:])])
    out = (out / 255.0 - mean) / std  # (N*T, S, S, 3), per channel in RGB order
    out = out.transpose(0, 3, 1, 2).reshape(1, n, t, 3, size, size)  # (N*T, S, S, 3) -> (1, N, T, 3, S, S)
    return np.ascontiguousarray(out, dtype=np.float32)


# ---- 4. aggregation of per-clip logits (the same three as in training) ----
def aggregate(clip_logits: np.ndarray, how: str) -> np.ndarray:
    """(N, K) -> (K,)."""
    if how == "mean":
        return clip_logits.mean(axis=0)
    if how == "max":
        return clip_logits.max(axis=0)
    top = clip_logits.max(axis=0)  # lse, computed stably
    return top + np.log(np.exp(clip_logits - top).sum(axis=0))


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    if task == "single_label":
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits  # regression and multitask heads: the raw outputs


def predict(export_dir: str, video: str, text: str = "", aggregation: str | None = None) -> dict:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    folder = Path(export_dir)
    spec = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    if spec["format"] != "onnx":
        raise SystemExit(f"{folder}: a {spec['format']} export; this script runs ONNX exports")
    if "audio" in spec["modalities"]:
        raise SystemExit(f"{folder}: this model also reads the sound track (log-mel windows, model.json's "
                         "inputs.audio); this example feeds video and text only")
    tokenizer = AutoTokenizer.from_pretrained(str(folder / spec["tokenizer"]))
    fixed = spec["text_len"] != "dynamic"
    enc = tokenizer([text if spec["uses_text"] else ""], truncation=True,
                    max_length=spec["text_len"] if fixed else spec["max_text_len"],
                    padding="max_length" if fixed else False, return_tensors="np")
    feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    spans = [(None, None)]
    if "video" in spec["modalities"]:
        clips, indices, fps = decode(video, spec)
        feed["frames"] = preprocess(clips, spec)
        spans = [(float(row[0]) / fps, float(row[-1] + 1) / fps) for row in indices]
    session = ort.InferenceSession(str(folder / spec["model_file"]), providers=["CPUExecutionProvider"])
    clip_logits, logits = session.run(["clip_logits", "logits"], feed)  # (1, N, K), (1, K)
    how = aggregation or spec["aggregation"]
    if how != spec["aggregation"]:
        logits = aggregate(clip_logits[0], how)[None]
    labels, task = spec["labels"], spec["task"]
    probs, clip_probs = probabilities(logits[0], task), probabilities(clip_logits[0], task)
    result = {"video": video, "text": text, "aggregation": how, "num_clips": int(clip_logits.shape[1])}
    if task in ("single_label", "multilabel"):
        result["prediction"] = labels[int(np.argmax(probs))]
        result["probabilities"] = {lab: float(p) for lab, p in zip(labels, probs)}
        result["clips"] = [{"start": s, "end": e, "prediction": labels[int(np.argmax(p))],
                            "probabilities": {lab: float(x) for lab, x in zip(labels, p)}}
                           for (s, e), p in zip(spans, clip_probs)]
    else:
        result["outputs"] = logits[0].tolist()
        result["clips"] = [{"start": s, "end": e, "outputs": p.tolist()} for (s, e), p in zip(spans, clip_probs)]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", help="the folder `clipbert-emo export --format onnx --out DIR` wrote")
    p.add_argument("video", help="a video file")
    p.add_argument("--text", default="", help="transcript or caption")
    p.add_argument("--aggregation", choices=["mean", "max", "lse"], default=None,
                   help="how to combine the clips (default: the exported model's)")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = p.parse_args(argv)
    result = predict(args.export_dir, args.video, args.text, args.aggregation)
    if args.json or "probabilities" not in result:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.video}: {result['prediction']} ({result['aggregation']} over {result['num_clips']} clips)")
    for label, prob in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<12} {prob:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
