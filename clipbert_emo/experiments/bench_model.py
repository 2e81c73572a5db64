"""``clipbert-emo bench infer`` and ``bench train``: loading, prediction, dense evaluation and training speed.

infer measures, side by side in one run: a fresh process's checkpoint load (this library's inference path
against the plain one: transformers' BertModel and tokenizer, weights initialised before the checkpoint
overwrites them), the wall time of ``clipbert-emo predict`` on a short clip, and dense evaluation at N_test = 1,
4, 16 with the CNN in one pass over the batch (before) and in chunks, in fp32 and bf16 autocast, with the
video-level predictions of fp32 and bf16 compared. train measures samples/s with the step split into waiting
for data and computing, for several clip shapes and loader workers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .bench_common import machine, peak_rss_mb, report, write_test_video

ROOT = Path(__file__).resolve().parents[2]  # the folder holding clipbert_emo/, for child processes


def demo_size_config():
    """configs/synthemo_cpu.yaml's model (EfficientNet-lite0, 64 px, 2-layer 128-wide fusion) without its
    pretrained-weight loading: speed does not depend on the weights' values."""
    return bench_config(None)


def bench_config(config: str | None, overrides=()):
    """The config a benchmark builds its model from (default: the demo-size synthemo_cpu), with random weights
    (no ImageNet or BERT download: speed does not depend on the weights' values) and in-process loading."""
    from ..config import load_config

    return load_config(config or "synthemo_cpu", ["model.pretrained=false", "model.text_init=",
                                                 "data.num_workers=0", *overrides])


def demo_checkpoint(folder: str | Path, cfg=None) -> Path:
    """A checkpoint of ``cfg`` (default: the demo-size model) with random weights (written once)."""
    import torch

    from ..build import build_model
    from ..checkpoint import save_checkpoint
    from ..data.text import build_wordpiece_tokenizer

    folder = Path(folder)
    if (folder / "model.safetensors").exists():
        return folder
    cfg = cfg or demo_size_config()
    tokenizer = build_wordpiece_tokenizer(["what a day", "no way that is incredible", "i am fine"], 200,
                                          folder.parent / "tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=False)
    save_checkpoint(folder, model, cfg, tokenizer)
    return folder


def clip_manifest(folder: str | Path, count: int) -> Path:
    """``count`` 4 s 360p clips with a label and a transcript each, as a JSONL manifest (written once)."""
    folder = Path(folder)
    labels = ["neutral", "happy", "sad", "angry", "surprised", "fearful"]
    lines = []
    for i in range(count):
        path = folder / f"clip{i:03d}.mp4"
        if not path.exists():
            write_test_video(path, 4.0, 360, None, fps=25)
        lines.append(json.dumps({"video": str(path.resolve()), "text": "no way that is incredible",
                                 "label": labels[i % len(labels)]}))
    manifest = folder / f"clips{count}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


_LOAD_FAST = """
import json, sys, time
t0 = time.perf_counter()
import torch
from clipbert_emo.predict import Predictor
t1 = time.perf_counter()
p = Predictor(sys.argv[1], device="cpu", threads=1)
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1}))
"""

_LOAD_PLAIN = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import torch
from clipbert_emo.predict import Predictor
t1 = time.perf_counter()
torch.set_num_threads(1)
from clipbert_emo.build import build_model
from clipbert_emo.checkpoint import load_weights, read_checkpoint_config
from clipbert_emo.data.text import load_tokenizer
ck = Path(sys.argv[1])
cfg, meta = read_checkpoint_config(ck)
tok = load_tokenizer(ck / "tokenizer")
model = build_model(cfg, meta["vocab_size"], tok.pad_token_id or 0, pretrained=False)
load_weights(model, ck / "model.safetensors", strict=True)
model.eval()
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1}))
"""


def _child_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _fresh_process(code: str, *argv: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=_child_env(),
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli_seconds(*argv: str, repeat: int = 1) -> float:
    """Wall time of ``clipbert-emo *argv`` in a fresh process, the best of ``repeat`` runs (one run of a 3 s
    command on a shared 2-core machine varies by +-0.5 s)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "clipbert_emo.cli", *argv], capture_output=True, text=True,
                       env=_child_env(), check=True)
        best = min(best, time.perf_counter() - start)
    return best


# Timings in bench infer are the best of this many runs: N_test=1 takes milliseconds and predict about 3 s,
# where one burst of another process on 2 cores moves a single run by tens of percent.
REPEAT = 3


def _load_and_predict_rows(ckpt: Path, manifest: Path) -> list[dict]:
    """Start-up and whole-command costs: a fresh process's load, `predict` on one video and on the manifest."""
    rows = []
    for name, code in (("plain (before)", _LOAD_PLAIN), ("inference path", _LOAD_FAST)):
        t = _fresh_process(code, str(ckpt))
        rows.append({"measure": "fresh-process load", "setting": name, "seconds": t["load_s"],
                     "imports_s": t["imports_s"]})
    short = next(json.loads(line)["video"] for line in manifest.read_text().splitlines() if line.strip())
    if not os.path.isabs(short):
        short = str((manifest.parent / short).resolve())
    for seek in ("accurate", "keyframe"):
        rows.append({"measure": "clipbert-emo predict wall", "setting": f"--seek {seek}",
                     "seconds": _cli_seconds("predict", str(ckpt), short, "--json", "--seek", seek, repeat=REPEAT)})
    videos = sum(1 for line in manifest.read_text().splitlines() if line.strip())
    for seek in ("accurate", "keyframe"):  # batch prediction: background decoding, batches through the model
        seconds = _cli_seconds("predict", str(ckpt), str(manifest), "--seek", seek, "-q",
                               "--out", str(Path("runs/bench") / f"predict_{seek}.jsonl"))
        rows.append({"measure": f"clipbert-emo predict, {videos} videos", "setting": f"--seek {seek}",
                     "seconds": seconds, "videos_per_s": videos / seconds})
    return rows


def _eval_rows(model, cfg, tokenizer, task, samples, batch_size: int) -> list[dict]:
    """Dense evaluation at N_test 1, 4 and 16 in each CNN mode (one pass, chunks, chunks + bf16): seconds per
    video, the N_test=16 / N_test=1 cost, and whether bf16 changes any prediction."""
    from ..data.loading import make_loader
    from ..eval.inference import collect_clip_logits
    from ..models.aggregation import aggregate_clip_logits

    rows = []
    data = dataclasses.replace(cfg.data, num_workers=0)
    chunk = cfg.model.inference_cnn_frames or 32
    modes = [("one CNN pass (before)", 0, "fp32"), (f"CNN in {chunk}-frame chunks", chunk, "fp32"),
             ("chunks + bf16 autocast", chunk, "bf16")]
    per_video: dict = {}
    predictions: dict = {}
    for n_test in (1, 4, 16):
        start = time.perf_counter()
        batches = list(make_loader(samples, data, tokenizer, False, batch_size, 0, task=task, num_clips=n_test))
        data_s = time.perf_counter() - start
        for name, frames, precision in modes:
            model.cnn.frames_per_pass, model.cfg.inference_precision = frames, precision
            collect_clip_logits(model, batches[:1], progress=False)  # warm-up: first-call allocations
            model_s = float("inf")
            for _ in range(REPEAT):
                start = time.perf_counter()
                res = collect_clip_logits(model, batches, progress=False)
                model_s = min(model_s, time.perf_counter() - start)
            n = res["clip_logits"].shape[0]
            per_video[(name, n_test)] = model_s / n
            predictions[(name, n_test)] = aggregate_clip_logits(res["clip_logits"], cfg.model.aggregation).argmax(-1)
            labels = res["labels"]
            accuracy = (float((predictions[(name, n_test)] == labels).float().mean())
                        if labels is not None and labels.shape == predictions[(name, n_test)].shape else None)
            rows.append({"measure": f"eval N_test={n_test}", "setting": name, "seconds": model_s / n,
                         "data_s": data_s / n, "videos_per_s": n / (model_s + data_s),
                         "peak_rss_mb": peak_rss_mb(), "accuracy": accuracy})
    for name, _, _ in modes:
        rows.append({"measure": "eval cost N_test=16 / N_test=1", "setting": name,
                     "ratio": per_video[(name, 16)] / per_video[(name, 1)]})
    same = int((predictions[(modes[2][0], 16)] == predictions[(modes[1][0], 16)]).sum())
    total = len(predictions[(modes[1][0], 16)])
    rows.append({"measure": "bf16 vs fp32 video predictions (N_test=16)", "setting": f"{same}/{total} identical",
                 "ratio": same / total})
    return rows


def bench_infer(args) -> dict:
    from ..checkpoint import load_checkpoint
    from ..data.manifest import read_manifest
    from ..runtime import set_threads
    from ..tasks import get_task

    started = machine()
    threads = set_threads(None)
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        cfg = bench_config(args.config, args.overrides)
        ckpt = demo_checkpoint(f"runs/bench/checkpoint-{cfg.name}" if args.config else "runs/bench/checkpoint", cfg)
    count = 64 if args.full else 16
    manifest = Path(args.manifest) if args.manifest else clip_manifest("runs/bench/clips", count)
    rows = _load_and_predict_rows(ckpt, manifest)

    model, cfg, tokenizer = load_checkpoint(ckpt, "cpu")
    task = get_task(cfg.data.task)
    samples = read_manifest(str(manifest), task.target_reader(cfg.data), require_video=True)
    if not (args.full and args.manifest):  # --full with a manifest: all of it (SynthEmo's test split: 300 videos)
        samples.samples = samples.samples[:count]
    batch_size = 16
    rows += _eval_rows(model, cfg, tokenizer, task, samples, batch_size)
    notes = [f"checkpoint {ckpt}, {len(samples.samples)} videos of {manifest}; batch {batch_size}, torch threads "
             f"{threads} (the runtime policy)",
             f"seconds: per video, model only, the best of {REPEAT} passes over the batches (decoded once "
             "beforehand: data_s per video); "
             "peak_rss_mb: the process's peak so far (runs go from small to large N_test)",
             "fresh-process load: a new Python process; imports_s = import torch + clipbert_emo.predict, seconds = "
             "what follows until the model is ready (the plain path imports transformers' BERT then)",
             "predict wall: `python -m clipbert_emo.cli predict CHECKPOINT VIDEO --json` on the first video, imports "
             f"included, best of {REPEAT} fresh processes"]
    return report("infer", rows, ["measure", "setting", "seconds", "imports_s", "data_s", "videos_per_s",
                                  "peak_rss_mb", "accuracy", "ratio"], args.out, {"checkpoint": str(ckpt),
                                                                     "manifest": str(manifest)}, notes, started)


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """"1x2,8x2" -> [(1, 2), (8, 2)]: N_train clips x T frames per setting."""
    try:
        shapes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(sh) != 2 or min(sh) < 1 for sh in shapes):
        raise ValueError(f"--shapes {text!r}: expected N x T pairs such as 1x2,8x2")
    return shapes


def peak_tflops(device) -> float | None:
    """The chip's dense bf16 peak (TFLOP/s) for the MFU column, for the GPUs whose figure is published."""
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in (("H200", 989.5), ("H100", 989.5), ("A100", 312.0), ("L40S", 362.1), ("A10G", 70.0)):
        if key in name:
            return peak
    return None


def _step_flops(model, batch, autocast) -> float:
    """FLOPs of one training step: torch's operator count of the forward pass, times 3 for forward + backward
    (the usual MFU convention; torch's counter overstates the backward of grouped convolutions, such as
    EfficientNet's depthwise ones, by up to 35x, so the backward is not counted directly)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, autocast():
        model(**batch)
    model.zero_grad(set_to_none=True)
    return 3.0 * float(counter.get_total_flops())


def train_autocast(cfg, device) -> tuple:
    """(the precision cfg.train.mixed_precision resolves to on ``device``, as training takes "auto"; a factory of
    its autocast context, a no-op one at fp32)."""
    import contextlib

    import torch

    from ..train.accelerator import resolve_mixed_precision

    mixed = resolve_mixed_precision(cfg.train.mixed_precision, device.type == "cuda")
    precision = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed)
    autocast = ((lambda: torch.autocast(device.type, dtype=precision)) if precision is not None
                else contextlib.nullcontext)
    return mixed, autocast


def train_data(args, cfg) -> tuple:
    """(task, manifest path, samples, tokenizer) the training benchmarks read: --manifest, or 16 generated 4 s
    clips; a WordPiece vocabulary built from their texts."""
    from ..data.manifest import read_manifest
    from ..data.text import build_wordpiece_tokenizer
    from ..tasks import get_task

    task = get_task(cfg.data.task)
    manifest = Path(args.manifest) if args.manifest else clip_manifest("runs/bench/clips", 16)
    samples = read_manifest(str(manifest), task.target_reader(cfg.data), require_video=True)
    tokenizer = build_wordpiece_tokenizer([s.text for s in samples.samples], 200, "runs/bench/train_tokenizer")
    return task, manifest, samples, tokenizer


def build_train_model(cfg, data, tokenizer, device) -> tuple:
    """(model in train mode on ``device``, its AdamW) for ``cfg`` with ``data``'s clip shape, seed 0, random
    weights; the CUDA peak-memory counter starts after the model is on the device."""
    import torch

    from ..build import build_model
    from ..train.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(dataclasses.replace(cfg, data=data), len(tokenizer), tokenizer.pad_token_id or 0,
                        pretrained=False).to(device).train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return model, build_optimizer(model, cfg.optim)


def time_train_steps(model, optimizer, batches, device, autocast, steps: int, warmup: int = 1,
                     flops: float | None = None, count_flops: bool = True) -> dict:
    """``warmup`` + ``steps`` training steps (forward, backward, optimizer step) over ``batches`` (a loader, or a
    list of batches taken over and over); the warm-up steps (worker start-up, first-call allocations,
    compilation) are left out of the times. ``flops``: one step's FLOPs, or None to count them on the first step
    (``count_flops``; without it they stay None).
    -> {"wait": seconds waiting for batches, "compute": seconds computing, "samples": samples timed,
    "flops": FLOPs per step, "warmup_s": seconds of the warm-up steps}."""
    import torch

    wait = compute = warmup_s = 0.0
    done = 0
    start = clock = time.perf_counter()
    for step, batch in enumerate(_cycle(batches, steps + warmup)):
        inputs = {k: batch[k].to(device, non_blocking=True) for k in ("input_ids", "attention_mask", "video",
                                                                     "labels")}
        got = time.perf_counter()
        if flops is None and count_flops and step == 0:  # on the first (warm-up) step
            flops = _step_flops(model, inputs, autocast)
        with autocast():
            out = model(**inputs)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if step >= warmup:
            wait, compute, done = wait + got - clock, compute + now - got, done + len(batch["index"])
        else:
            warmup_s = now - start
        clock = now
    return {"wait": wait, "compute": compute, "samples": done, "flops": flops, "warmup_s": warmup_s}


def train_row_numbers(timing: dict, steps: int, peak: float | None, device) -> dict:
    """A training bench row's measurements from ``time_train_steps``'s timing."""
    import torch

    wait, compute, flops = timing["wait"], timing["compute"], timing["flops"]
    gflops = flops * steps / compute / 1e9 if compute and flops is not None else None
    return {"samples_per_s": timing["samples"] / (wait + compute), "step_s": (wait + compute) / steps,
            "data_wait_pct": 100 * wait / (wait + compute),
            "gflop_per_step": flops / 1e9 if flops is not None else None, "gflop_per_s": gflops,
            "mfu_pct": 100 * gflops / (1000 * peak) if peak and gflops else None,
            "peak_mem_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                            else peak_rss_mb())}


def bench_train(args) -> dict:
    """Training steps: samples/s, data wait vs compute, peak memory and model FLOP/s (MFU on known GPUs), per
    clip shape and loader workers, for the demo-size model or ``--config``."""
    import torch

    from ..data.loading import make_loader

    started = machine()
    steps = args.steps or (8 if args.full else 4)
    cfg = bench_config(args.config, args.overrides)
    device = torch.device(args.device)
    mixed, autocast = train_autocast(cfg, device)
    peak = args.peak_tflops or peak_tflops(device)
    task, manifest, samples, tokenizer = train_data(args, cfg)
    default_shapes = args.shapes is None
    shapes = parse_shapes(args.shapes or "1x1,1x2,2x2,4x4,16x16")
    workers_list = [int(w) for w in args.workers.split(",")]
    rows = []
    for n, t in shapes:
        for workers in workers_list:
            if default_shapes and (n, t) == (16, 16) and workers != 1 and not args.full:
                continue  # the dense setting once by default: minutes per worker count on 2 cores
            data = dataclasses.replace(cfg.data, num_clips_train=n, num_frames=t, num_workers=workers)
            model, optimizer = build_train_model(cfg, data, tokenizer, device)
            loader = make_loader(samples, data, tokenizer, True, args.batch_size, 0, task=task)
            # the warm-up step: worker start-up, first-call allocations, and the FLOP count
            timing = time_train_steps(model, optimizer, loader, device, autocast, steps, warmup=1)
            rows.append({"n_train x T": f"{n}x{t}", "workers": workers,
                         **train_row_numbers(timing, steps, peak, device)})
    size = ("demo-size model (configs/synthemo_cpu.yaml: EfficientNet-lite0, 64 px, 2x128 fusion)" if not args.config
            else f"config {cfg.name}: {cfg.model.backbone}, {cfg.data.frame_size} px, {cfg.model.num_layers}x"
                 f"{cfg.model.hidden_size} fusion, random weights")
    notes = [f"{size}, batch {args.batch_size}, {steps} timed steps after one warm-up step, AdamW, "
             f"precision {mixed}, device {device}; videos: {manifest}",
             "gflop_per_step: 3 x the forward pass's FLOPs (torch.utils.flop_counter, on the warm-up step); "
             f"mfu_pct: gflop_per_s against {f'{peak:g} TFLOP/s (dense bf16 peak)' if peak else 'no known peak'}",
             "peak_mem_mb: CUDA peak allocated on a GPU; on CPU the process's peak RSS so far, in row order"]
    return report("train", rows, ["n_train x T", "workers", "samples_per_s", "step_s", "data_wait_pct",
                                  "gflop_per_step", "gflop_per_s", "mfu_pct", "peak_mem_mb"], args.out,
                  {"steps": steps, "config": cfg.name, "device": str(device)}, notes, started)


def _cycle(loader, count: int):
    """``count`` batches, starting the loader over as often as needed."""
    done = 0
    while True:
        for batch in loader:
            if "labels" not in batch:
                continue
            yield batch
            done += 1
            if done >= count:
                return
