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


class CannotDecode(Exception):
    """The video file could not be decoded; the message says why (main prints it as one line, exit 1)."""


class BadExport(Exception):
    """The export folder is not a usable ONNX export; the message says why."""


def _reason(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


# ---- 1. which frames: N_test clips of T frames, evenly over the video (the library's test-time rule) ----
def clip_frame_indices(video_len: int, video_fps: float, s: dict) -> np.ndarray:
    """(N, T) frame indices. s is model.json's "sampling" section."""
    n, t = s["num_clips"], s["num_frames"]
    clipbert = s["frame_index"] == "clipbert"
    clip_len = 1.0 if t == 1 and not clipbert else t / s["clip_fps"] * video_fps  # one clip, in source frames
    slack = max(video_len - clip_len, 0.0)
    if n == 1:
        starts = [{"middle": slack / 2.0, "start": 0.0, "third": slack / 3.0}[s["single_clip"]]]
    else:
        starts = [slack * i / n for i in range(n)]
    rows = []
    for start in starts:
        if s["frame_index"] == "round":
            idx = np.rint(np.linspace(start, start + max(clip_len - 1.0, 0.0), t))
        else:  # clipbert: the first frame at or after the start, then trunc(linspace(0, clip_len - 1, t)) after it
            idx = np.ceil(start - 1e-6) + np.trunc(np.linspace(0.0, max(clip_len - 1.0, 0.0), t))
        rows.append(np.clip(idx.astype(np.int64), 0, video_len - 1))
    return np.stack(rows)


# ---- 2. decoding: decord when installed, else (or when decord fails on a file) PyAV ----
def decode(path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """The sampled frames (N, T, H, W, 3) uint8 RGB, their indices (N, T), and the frame rate; CannotDecode
    saying why for a file that is missing, empty, not a video, or has no frame that decodes."""
    file = Path(path)
    if not file.exists():
        raise CannotDecode("no such file")
    if file.is_dir():
        raise CannotDecode("a folder, not a video file")
    if file.stat().st_size == 0:
        raise CannotDecode("the file is empty (0 bytes)")
    try:
        import decord
    except ImportError:
        return _decode_pyav(path, spec)
    _probe(path)  # decord logs its own lines to stderr on a file it cannot open; PyAV says why quietly
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        fps = float(reader.get_avg_fps() or 0) or 30.0
        indices = clip_frame_indices(len(reader), fps, spec["sampling"])
        unique, inverse = np.unique(indices.reshape(-1), return_inverse=True)
        frames = reader.get_batch(unique.tolist()).asnumpy()[inverse]  # (N*T, H, W, 3)
    except Exception:  # decord 0.6 fails on some frame widths (24, 48, ... px); PyAV reads those
        return _decode_pyav(path, spec)
    return frames.reshape(*indices.shape, *frames.shape[1:]), indices, fps  # -> (N, T, H, W, 3)


def _open_pyav(path: str):
    """The file opened by PyAV, with a video stream; CannotDecode otherwise."""
    import av

    try:
        container = av.open(path)
    except Exception as e:  # av's InvalidDataError and kin: text, garbage, a file cut before its index
        raise CannotDecode(f"not a video file that FFmpeg can read ({_reason(e)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        raise CannotDecode(f"no video stream (it holds {', '.join(kinds) or 'no stream'}; an audio-only file?)")
    return container


def _probe(path: str) -> None:
    """CannotDecode for a file without a readable video stream (when PyAV is installed to tell)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return
    _open_pyav(path).close()


def _decode_pyav(path: str, spec: dict) -> tuple[np.ndarray, np.ndarray, float]:
    every = []  # F x (H, W, 3)
    with _open_pyav(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
        try:
            for f in container.decode(stream):
                every.append(f.to_ndarray(format="rgb24"))
        except Exception as e:  # a truncated or damaged file: the frames decoded so far are used
            if not every:
                raise CannotDecode(f"no frame could be decoded, the file is truncated or damaged ({_reason(e)})") \
                    from None
            print(f"warning: {path}: decoding stopped after {len(every)} frames ({_reason(e)}); using those",
                  file=sys.stderr)
    if not every:
        raise CannotDecode("no frame could be decoded (an empty or truncated video stream)")
    indices = clip_frame_indices(len(every), fps, spec["sampling"])
    frames = np.stack([every[i] for i in indices.reshape(-1)])  # (N*T, H, W, 3)
    return frames.reshape(*indices.shape, *frames.shape[1:]), indices, fps  # -> (N, T, H, W, 3)


# ---- 3. geometry and normalisation: letterbox to size x size, then (x / 255 - mean) / std ----
def letterbox(frame: np.ndarray, size: int, lb: dict) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 on the 0-255 scale: the longer side resized to ``size``
    (bilinear, antialiased when shrinking, as Pillow does), the rest zero padding."""
    from PIL import Image

    h, w = frame.shape[:2]
    if lb["resize_rounding"] == "round":
        nh, nw = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    else:  # floor: the longer side is size itself, the shorter int(size * short / long) in that order
        nh, nw = (size, max(1, int(size * w / h))) if h >= w else (max(1, int(size * h / w)), size)
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
    try:
        spec = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or any(k not in spec for k in ("format", "modalities", "tokenizer")):
            raise ValueError("not the JSON object an export writes")
    except (OSError, ValueError) as e:
        raise BadExport(f"no readable model.json ({_reason(e)}); give the folder `clipbert-emo export --format onnx "
                        "--out DIR` wrote") from None
    if spec["format"] != "onnx":
        raise BadExport(f"a {spec['format']} export; this script runs ONNX exports")
    if "audio" in spec["modalities"]:
        raise BadExport("this model also reads the sound track (log-mel windows, model.json's inputs.audio); this "
                        "example feeds video and text only")
    # An export's tokenizer is a plain BERT one: code shipped beside it (an auto_map) is never run.
    tokenizer = AutoTokenizer.from_pretrained(str(folder / spec["tokenizer"]), trust_remote_code=False)
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
    try:
        session = ort.InferenceSession(str(folder / spec["model_file"]), providers=["CPUExecutionProvider"])
    except Exception as e:  # a missing or damaged model.onnx
        raise BadExport(f"cannot load {spec['model_file']} ({_reason(e)})") from None
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
    try:
        result = predict(args.export_dir, args.video, args.text, args.aggregation)
    except CannotDecode as e:
        print(f"{p.prog}: error: {args.video}: cannot decode it: {e}", file=sys.stderr)
        return 1
    except BadExport as e:
        print(f"{p.prog}: error: {args.export_dir}: {e}", file=sys.stderr)
        return 1
    if args.json or "probabilities" not in result:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.video}: {result['prediction']} ({result['aggregation']} over {result['num_clips']} clips)")
    for label, prob in sorted(result["probabilities"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<12} {prob:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
