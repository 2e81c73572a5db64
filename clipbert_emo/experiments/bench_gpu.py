r"""``clipbert-emo bench gpu``: what a lent GPU is asked to measure, in one run, one table and one JSON file.

    clipbert-emo bench gpu                                  # clipbert_base on the first CUDA device
    clipbert-emo bench gpu --clipbert-src ClipBERT          # + the original ClipBERT's step on the same batches
    clipbert-emo bench gpu --device cpu --config synthemo_cpu --shapes 1x1 --steps 1 --batch-size 2 \
        --variants fp32,bf16,bf16+channels_last           # the smoke version (what tests/test_bench_gpu.py runs)

Parts, each row timed on its own (a row that fails, out of memory or a compiler that refuses, records its
error and the bench goes on):

1. train: forward + backward + AdamW step of ``--config`` (default clipbert_base: ResNet-50 at 448 px, 12-layer
   BERT, random weights) per clip shape (``--shapes``, default 1x2 and 8x2) and variant: fp32, bf16 autocast,
   bf16 + channels_last, bf16 + channels_last + torch.compile. The batch is decoded once and stays on the device,
   so samples/s and MFU measure the model, not the loader; the warm-up steps (compilation included) are timed
   apart (warmup_s). Attention is torch's scaled_dot_product_attention in every variant: the fusion
   transformer is transformers' BertModel with attn_implementation "sdpa" (models/fusion.py), so SDPA is not a
   variant.
2. data wait: bf16 + channels_last at the first shape, batches from the training loader with ``--workers``
   (default 8) worker processes: the share of the step spent waiting for data.
3. infer: ``clipbert-emo predict``'s path (decoding included, model load excluded) at N_test = 16 on a 15 s
   video, fp32 against bf16 (and bf16 + channels_last).
4. original ClipBERT: the original code's training step (jayleicn/ClipBERT: ``src.modeling.e2e_model.ClipBert``
   with ``ClipBertForSequenceClassification``, its own AdamW) on the same batches, imported at run time from the
   checkout ``--clipbert-src`` names, in a child process (``--clipbert-python``, default this interpreter), as
   a peer reference. Nothing of it is copied here.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .bench_common import NO_CUDA, machine, report, test_videos
from .bench_model import (REPEAT, bench_config, build_train_model, demo_checkpoint, parse_shapes, peak_tflops,
                          time_train_steps, train_autocast, train_data, train_row_numbers)

# Training variants: the overrides each sets on top of --config and the command line's overrides.
VARIANTS = {
    "fp32": ("train.mixed_precision=no", "model.channels_last=false", "model.compile=false"),
    "bf16": ("train.mixed_precision=bf16", "model.channels_last=false", "model.compile=false"),
    "bf16+channels_last": ("train.mixed_precision=bf16", "model.channels_last=true", "model.compile=false"),
    "bf16+channels_last+compile": ("train.mixed_precision=bf16", "model.channels_last=true", "model.compile=true"),
}
WAIT_VARIANT = "bf16+channels_last"
# Inference variants: the layout is built into the checkpoint's config, the precision set on the loaded model.
INFER_VARIANTS = {"fp32": (False, "fp32"), "bf16": (False, "bf16"), "bf16+channels_last": (True, "bf16")}
INFER_SECONDS, INFER_N_TEST = 15.0, 16
# The original ClipBERT's (src/configs/msrvtt_qa_base_resnet50.json): RGB mean on the 0-255 scale, std 1.
ORIGINAL_PIXEL_MEAN = [123.675, 116.28, 103.53]
ORIGINAL_URL = "https://github.com/jayleicn/ClipBERT"
ORIGINAL_NEEDS = ("transformers 2.x (it pins 2.11.0), NVIDIA apex, detectron2 (its Dockerfile: commit ffff8ac), "
                  "horovod, easydict")
HOW_TO_GET = f"not run: no --clipbert-src (git clone {ORIGINAL_URL}, then --clipbert-src ClipBERT)"

COLUMNS = ["part", "variant", "shape", "workers", "samples_per_s", "step_s", "warmup_s", "data_wait_pct",
           "gflop_per_step", "mfu_pct", "peak_mem_mb", "ms_per_video", "ours_speedup", "status"]


def _progress(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"[bench gpu] {text}", file=sys.stderr, flush=True)


def _error(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:300]


def _free(device) -> None:
    """Give back what the last row held: its model, optimizer and activations, the compiler's caches."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_description(device) -> str:
    """The device's name and the torch (and CUDA) version: every row carries it."""
    import torch

    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, TF32 cuDNN {torch.backends.cudnn.allow_tf32}, "
                f"cudnn.benchmark {torch.backends.cudnn.benchmark}")
    return f"{device.type} ({machine()['cpu'] or 'CPU'}), torch {torch.__version__}"


def selected_variants(text: str) -> list[str]:
    """--variants: names of VARIANTS, comma-separated (empty: all)."""
    from ..config import UserError

    names = [n.strip() for n in (text or "").split(",") if n.strip()] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"--variants {','.join(unknown)}: bench gpu's variants are {', '.join(VARIANTS)}")
    return names


def _batch(samples, data, tokenizer, task, batch_size: int) -> dict:
    """The first training batch of ``data``'s clip shape (decoded once, on the CPU)."""
    from ..data.loading import make_loader
    from .bench_model import _cycle

    return next(_cycle(make_loader(samples, data, tokenizer, True, batch_size, 0, task=task), 1))


def _train_row(cfg, data, tokenizer, batches, device, steps: int, warmup: int, flops, peak,
               count_flops: bool = True) -> dict:
    """One training row: a fresh model of ``cfg`` timed on ``batches`` (a list, or a loader)."""
    import torch

    mixed, autocast = train_autocast(cfg, device)
    model, optimizer = build_train_model(cfg, data, tokenizer, device)
    if isinstance(batches, list):  # cached batches live on the device: the step waits for no copy
        batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    timing = time_train_steps(model, optimizer, batches, device, autocast, steps, warmup=warmup, flops=flops,
                              count_flops=count_flops)
    return {"precision": mixed, "warmup_s": timing["warmup_s"], "flops": timing["flops"],
            **train_row_numbers(timing, steps, peak, device)}


def train_rows(args, cfg, shapes, names, samples, tokenizer, task, device, steps, warmup, batch_size, peak,
               described) -> tuple[list[dict], dict]:
    """Part 1: every variant at every shape on a cached batch; -> (rows, {shape: the batch})."""
    rows, batches, flops_of = [], {}, {}
    for n, t in shapes:
        shape = f"{n}x{t}"
        data = dataclasses.replace(cfg.data, num_clips_train=n, num_frames=t, num_workers=0)
        try:
            batches[shape] = _batch(samples, data, tokenizer, task, batch_size)
        except Exception as e:  # the batch itself: every variant of this shape is off
            rows += [{"part": "train", "variant": v, "shape": shape, "status": f"error: {_error(e)}",
                      "error": _error(e), "device": described} for v in names]
            continue
        for name in names:
            _progress(args, f"train {shape} {name} ...")
            row = {"part": "train", "variant": name, "shape": shape, "workers": "cached", "device": described}
            compiled = name.endswith("compile")
            try:
                vcfg = bench_config(args.config, [*args.overrides, *VARIANTS[name]])
                # torch.compile'd modules are not FLOP-counted: they take the count of another variant
                flops = flops_of.get(shape) if compiled else None
                numbers = _train_row(vcfg, data, tokenizer, [batches[shape]], device, steps, warmup, flops, peak,
                                     count_flops=not compiled)
                if numbers["flops"] is not None:
                    flops_of.setdefault(shape, numbers["flops"])
                del numbers["flops"]
                row.update(numbers, status="ok")
                _progress(args, f"train {shape} {name}: {row['samples_per_s']:.2f} samples/s, step "
                                f"{row['step_s'] * 1000:.1f} ms, warm-up {row['warmup_s']:.1f} s")
            except Exception as e:
                row.update(status=f"error: {_error(e)}", error=_error(e))
                _progress(args, f"train {shape} {name}: {row['status']}")
            finally:
                if compiled:  # the next shape compiles afresh, within dynamo's recompile limit
                    import torch._dynamo

                    torch._dynamo.reset()
                _free(device)
            rows.append(row)
    return rows, batches


def wait_rows(args, cfg, shapes, samples, tokenizer, task, device, steps, warmup, batch_size, peak,
              described) -> list[dict]:
    """Part 2: bf16 + channels_last at the first shape, fed by the loader with each --workers count."""
    n, t = shapes[0]
    rows = []
    # enough samples that one pass of the loader covers every step: no worker restarts inside the timing
    repeat = -(-batch_size * (steps + warmup) // max(1, len(samples.samples)))
    many = dataclasses.replace(samples, samples=samples.samples * repeat)
    for workers in [int(w) for w in str(args.workers).split(",") if w.strip()]:
        shape = f"{n}x{t}"
        _progress(args, f"data wait {shape} {WAIT_VARIANT}, {workers} workers ...")
        row = {"part": "data wait", "variant": WAIT_VARIANT, "shape": shape, "workers": workers,
               "device": described}
        try:
            from ..data.loading import make_loader

            vcfg = bench_config(args.config, [*args.overrides, *VARIANTS[WAIT_VARIANT]])
            data = dataclasses.replace(vcfg.data, num_clips_train=n, num_frames=t, num_workers=workers)
            loader = make_loader(many, data, tokenizer, True, batch_size, 0, task=task)
            numbers = _train_row(vcfg, data, tokenizer, loader, device, steps, warmup, None, peak)
            del numbers["flops"]
            row.update(numbers, status="ok")
            _progress(args, f"data wait {shape}, {workers} workers: {row['data_wait_pct']:.1f}% of the step, "
                            f"{row['samples_per_s']:.2f} samples/s")
        except Exception as e:
            row.update(status=f"error: {_error(e)}", error=_error(e))
            _progress(args, f"data wait: {row['status']}")
        finally:
            _free(device)
        rows.append(row)
    return rows


def _config_key(cfg) -> str:
    return hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:10]


def infer_rows(args, names, device, described) -> list[dict]:
    """Part 3: predict's path on a 15 s video at N_test = 16, per inference variant: ms per video, decoding
    included, model load excluded; the best of REPEAT calls after one warm-up call."""
    import torch

    from ..predict import Predictor

    rows = []
    base = bench_config(args.config, args.overrides)
    # the smallest usual height that is at least the model's frame size: the decoder's work is that of a video
    # the model does not upscale (480p for 448 px frames)
    height = next((h for h in (144, 240, 360, 480, 720, 1080) if h >= base.data.frame_size), 1080)
    try:
        video = test_videos(args.videos, (int(INFER_SECONDS),), heights=(height,), gops={"default": None},
                            progress=not args.quiet)[0]["path"]
    except Exception as e:
        return [{"part": "infer", "variant": v, "status": f"error: {_error(e)}", "error": _error(e),
                 "device": described} for v in INFER_VARIANTS if v in names]
    for name, (channels_last, precision) in INFER_VARIANTS.items():
        if name not in names:
            continue
        shape = f"N_test={INFER_N_TEST}, {int(INFER_SECONDS)} s {height}p"
        _progress(args, f"infer {shape} {name} ...")
        row = {"part": "infer", "variant": name, "shape": shape, "device": described}
        try:
            cfg = bench_config(args.config, [*args.overrides, "model.compile=false",
                                             f"model.channels_last={str(channels_last).lower()}"])
            ckpt = demo_checkpoint(Path("runs/bench") / f"checkpoint-{cfg.name}-{_config_key(cfg)}", cfg)
            predictor = Predictor(ckpt, device=str(device))
            predictor.model.cfg.inference_precision = precision
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            predictor(video, "no way that is incredible", n_test=INFER_N_TEST)  # warm-up: first-call allocations
            best = float("inf")
            for _ in range(REPEAT):
                start = time.perf_counter()
                predictor(video, "no way that is incredible", n_test=INFER_N_TEST)  # ends with logits on the CPU
                best = min(best, time.perf_counter() - start)
            row.update(ms_per_video=1000 * best, status="ok")
            if device.type == "cuda":
                row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            _progress(args, f"infer {name}: {row['ms_per_video']:.1f} ms per video")
        except Exception as e:
            row.update(status=f"error: {_error(e)}", error=_error(e))
            _progress(args, f"infer {name}: {row['status']}")
        finally:
            predictor = None
            _free(device)
        rows.append(row)
    return rows


# The child process that times the original ClipBERT. It runs in --clipbert-python (default: this interpreter),
# which may be an older environment: Python 3.6 syntax, no clipbert_emo import. argv[1]: the JSON spec.
_ORIGINAL_CHILD = r'''
import contextlib, importlib.util, json, os, sys, time

spec = json.loads(sys.argv[1])
PREFIX = "CLIPBERT_BENCH_ROW "


def emit(row):
    print(PREFIX + json.dumps(row), flush=True)


def say(text):
    print("[bench gpu, original ClipBERT] " + text, file=sys.stderr, flush=True)


def absent():
    return [d for d in ("transformers", "apex", "detectron2", "horovod", "easydict")
            if importlib.util.find_spec(d) is None]


def transformers_version():
    try:
        import importlib.metadata as md
        return md.version("transformers")
    except Exception:
        return None


sys.path.insert(0, spec["src"])
for name in [m for m in list(sys.modules) if m == "src" or m.startswith("src.")]:
    del sys.modules[name]
try:
    import torch
    from src.modeling.e2e_model import ClipBert
    from src.modeling.modeling import ClipBertForSequenceClassification
    from src.optimization.adamw import AdamW
    from transformers import BertConfig
except ImportError as e:
    emit({"import_error": "%s: %s" % (type(e).__name__, e), "missing": e.name, "absent": absent(),
          "transformers": transformers_version(), "python": sys.executable})
    sys.exit(0)
try:  # its grid_feat module asks horovod for the rank while it builds detectron2's config
    import horovod.torch as hvd
    hvd.init()
except Exception:
    pass

device = torch.device(spec["device"])
try:
    config = BertConfig(**json.load(open(os.path.join(spec["src"], "src", "configs", "base_model.json"))))
    for key, value in spec["bert"].items():  # the sizes of the model it is compared with
        setattr(config, key, value)
    config.classifier, config.cls_hidden_scale, config.loss_type = "mlp", 2, "ce"
    model = ClipBert(config, input_format="BGR",
                     detectron2_model_cfg=os.path.join(spec["src"], "src", "configs", "detectron2_configs",
                                                       "R-50-grid.yaml"),
                     transformer_cls=ClipBertForSequenceClassification).to(device).train()
except Exception as e:
    emit({"build_error": "%s: %s" % (type(e).__name__, (str(e).strip().splitlines() or [""])[0][:240])})
    sys.exit(0)
params_m = sum(p.numel() for p in model.parameters()) / 1e6
trained_m = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
try:
    batches = torch.load(spec["batches"], weights_only=True)
except TypeError:  # torch < 1.13
    batches = torch.load(spec["batches"])
mean = torch.tensor(spec["pixel_mean"], device=device).view(1, 1, 3, 1, 1)


def autocast_for(precision):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def step(batch, optimizer, precision):
    video = batch["video"]  # (B, N, T, 3, H, W) uint8
    b, n = video.shape[0], video.shape[1]
    with autocast_for(precision):
        logits = []
        for i in range(n):  # one clip at a time through the whole model, as its training loop does
            frames = video[:, i].float() - mean  # (B, T, 3, H, W), its normalisation (std 1; BGR inside)
            out = model({"visual_inputs": frames, "text_input_ids": batch["input_ids"],
                         "text_input_mask": batch["attention_mask"], "n_examples_list": [1] * b, "labels": None})
            logits.append(out["logits"])
        # LogSumExp over the clips, then cross-entropy: its "lse" training loss
        logits = torch.logsumexp(torch.stack(logits, 1).float(), dim=1)
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


for shape in spec["shapes"]:
    batch = {k: v.to(device) for k, v in batches[shape].items()}
    for precision in spec["precisions"]:
        row = {"shape": shape, "variant": precision, "params_m": params_m, "trained_params_m": trained_m}
        say("train %s %s ..." % (shape, precision))
        try:
            optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, betas=(0.9, 0.98),
                              weight_decay=1e-3)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for i in range(spec["warmup"] + spec["steps"]):
                if i == spec["warmup"]:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    row["warmup_s"] = time.perf_counter() - start
                    start = time.perf_counter()
                step(batch, optimizer, precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            row.update(step_s=seconds / spec["steps"],
                       samples_per_s=spec["steps"] * batch["video"].shape[0] / seconds)
            if device.type == "cuda":
                row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
            say("train %s %s: %.2f samples/s" % (shape, precision, row["samples_per_s"]))
        except Exception as e:
            row["error"] = "%s: %s" % (type(e).__name__, (str(e).strip().splitlines() or [""])[0][:240])
            say("train %s %s: %s" % (shape, precision, row["error"]))
        optimizer = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        emit(row)
'''
ORIGINAL_ROW_PREFIX = "CLIPBERT_BENCH_ROW "
ORIGINAL_TIMEOUT_S = 3600


def original_rows(args, cfg, vocab_size: int, batches, ours: list[dict], device, steps: int, warmup: int,
                  described) -> list[dict]:
    """Part 4: the original ClipBERT's training step on the same batches, in a child process; ``vocab_size``: our
    model's word-embedding rows, which its BERT gets too."""
    import torch

    part = "original ClipBERT"
    if not getattr(args, "clipbert_src", None):
        return [{"part": part, "status": HOW_TO_GET, "device": described}]
    src = Path(args.clipbert_src).resolve()
    if not (src / "src" / "modeling" / "e2e_model.py").is_file():
        return [{"part": part, "status": f"not run: {src} holds no src/modeling/e2e_model.py, so it is not a "
                                         f"checkout of {ORIGINAL_URL} (git clone it and pass its folder)",
                 "device": described}]
    if not batches:
        return [{"part": part, "status": "not run: no batch was decoded for the training rows",
                 "device": described}]
    from ..tasks import get_task

    file = Path(args.out).with_suffix(".batches.pt") if args.out else Path("runs/bench/gpu.batches.pt")
    file.parent.mkdir(parents=True, exist_ok=True)
    keys = ("input_ids", "attention_mask", "video", "labels")
    torch.save({shape: {k: b[k].cpu() for k in keys} for shape, b in batches.items()}, file)
    m = cfg.model
    spec = {"src": str(src), "batches": str(file.resolve()), "device": str(device), "shapes": list(batches),
            "precisions": ["fp32", "bf16"], "steps": steps, "warmup": warmup, "pixel_mean": ORIGINAL_PIXEL_MEAN,
            "bert": {"hidden_size": m.hidden_size, "num_hidden_layers": m.num_layers,
                     "num_attention_heads": m.num_heads, "intermediate_size": m.intermediate_size,
                     "vocab_size": max(vocab_size, *(int(b["input_ids"].max()) + 1 for b in batches.values())),
                     "num_labels": get_task(cfg.data.task).num_outputs(cfg.data)}}
    python = getattr(args, "clipbert_python", None) or sys.executable
    _progress(args, f"original ClipBERT from {src} with {python} ...")
    _free(device)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        # stderr goes straight to the user's (its progress, its own logs); the rows come back on stdout
        proc = subprocess.run([python, "-c", _ORIGINAL_CHILD, json.dumps(spec)], stdout=subprocess.PIPE,
                              text=True, env=env, timeout=ORIGINAL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [{"part": part, "status": f"error: {_error(e)}", "error": _error(e), "device": described}]
    finally:
        file.unlink(missing_ok=True)
    found = [json.loads(line[len(ORIGINAL_ROW_PREFIX):]) for line in proc.stdout.splitlines()
             if line.startswith(ORIGINAL_ROW_PREFIX)]
    if not found:
        return [{"part": part, "status": f"error: the child process exited with code {proc.returncode} and "
                                         "reported nothing (its stderr is above)", "device": described}]
    if "import_error" in found[0]:
        got = found[0]
        missing = (f"missing: {got['missing']}" if got["import_error"].startswith("ModuleNotFoundError")
                   else f"in module {got['missing']}")
        others = [d for d in got["absent"] if d != got["missing"]]
        wrong = (f"transformers {got['transformers']} where it needs 2.x"
                 if got.get("transformers") and not str(got["transformers"]).startswith("2.") else "")
        detail = "; ".join([f"absent: {', '.join(others)}"] * bool(others) + [wrong] * bool(wrong))
        return [{"part": part, "status": f"not run: its import failed: {got['import_error']} ({missing})"
                                         + (f"; {detail}" if detail else ""),
                 "missing": got["missing"], "absent": got["absent"], "transformers": got.get("transformers"),
                 "python": got["python"], "error": got["import_error"], "device": described}]
    if "build_error" in found[0]:
        error = found[0]["build_error"]
        return [{"part": part, "status": f"error: building it failed: {error}", "error": error,
                 "device": described}]
    rows = []
    same = {"fp32": "fp32", "bf16": "bf16"}  # our variant of the same precision
    for got in found:
        row = {"part": part, "variant": got["variant"], "shape": got["shape"], "workers": "cached",
               "device": described, **{k: got[k] for k in ("samples_per_s", "step_s", "warmup_s", "peak_mem_mb",
                                                          "params_m", "trained_params_m") if k in got}}
        if "error" in got:
            row.update(status=f"error: {got['error']}", error=got["error"])
        else:
            row["status"] = "ok"
            mine = next((r for r in ours if r.get("part") == "train" and r.get("variant") == same.get(got["variant"])
                         and r.get("shape") == got["shape"] and r.get("samples_per_s")), None)
            if mine:
                row["ours_samples_per_s"] = mine["samples_per_s"]
                row["ours_speedup"] = mine["samples_per_s"] / got["samples_per_s"]
        rows.append(row)
    return rows


def bench_gpu(args) -> dict:
    """Parts 1-4 (the module's docstring) in one run: one table, one JSON file (--out, default
    runs/bench/gpu.json)."""
    import torch

    from ..config import UserError

    started = machine()
    device = torch.device(args.device)
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise UserError(f"--device {args.device}: not usable here ({_error(e)}); {NO_CUDA}") from None
    names = selected_variants(getattr(args, "variants", ""))
    shapes = parse_shapes(args.shapes or "1x2,8x2")
    steps = args.steps or 10
    warmup = max(1, args.warmup)
    cfg = bench_config(args.config or "clipbert_base", args.overrides)
    args.config = args.config or "clipbert_base"
    batch_size = args.batch_size or cfg.train.batch_size
    peak = args.peak_tflops or peak_tflops(device)
    described = device_description(device)
    _progress(args, f"{described}; config {cfg.name}, batch {batch_size}, {warmup} warm-up + {steps} timed steps")
    task, manifest, samples, tokenizer = train_data(args, cfg)
    rows, batches = train_rows(args, cfg, shapes, names, samples, tokenizer, task, device, steps, warmup,
                               batch_size, peak, described)
    skipped = [n for n in VARIANTS if n not in names]
    rows += [{"part": "train", "variant": n, "shape": ",".join(f"{a}x{b}" for a, b in shapes),
              "status": "skipped: not in --variants", "device": described} for n in skipped]
    rows += wait_rows(args, cfg, shapes, samples, tokenizer, task, device, steps, warmup, batch_size, peak,
                      described)
    rows += infer_rows(args, names, device, described)
    rows += original_rows(args, cfg, len(tokenizer), batches, rows, device, steps, warmup, described)
    smoke = device.type != "cuda"
    notes = [f"device: {described}" + (" (smoke run: not GPU numbers)" if smoke else ""),
             f"config {cfg.name}: {cfg.model.backbone} at {cfg.data.frame_size} px, {cfg.model.num_layers}x"
             f"{cfg.model.hidden_size} fusion transformer, random weights; batch {batch_size} videos of N x T "
             f"frames (shape); {warmup} warm-up steps (warmup_s: compilation, or the FLOP count, included) then "
             f"{steps} timed; AdamW (fused on CUDA); videos: {manifest}",
             "train: the batch decoded once and kept on the device (workers 'cached'): samples/s and MFU of the "
             "model alone; attention is torch's scaled_dot_product_attention in every variant (transformers' "
             "BertModel with attn_implementation sdpa), so SDPA is no separate variant",
             "gflop_per_step: 3 x the forward pass's FLOPs (torch.utils.flop_counter; a compiled variant takes the "
             f"count of another variant of its shape); mfu_pct against "
             f"{f'{peak:g} TFLOP/s (dense bf16 peak)' if peak else 'no known peak (--peak-tflops)'}, fp32 rows too",
             f"data wait: {WAIT_VARIANT} at {shapes[0][0]}x{shapes[0][1]}, batches from the training loader with "
             "--workers worker processes; data_wait_pct = the share of the step spent waiting for the next batch",
             f"infer: Predictor (clipbert-emo predict's path, keyframe seeking) on a {int(INFER_SECONDS)} s video "
             f"at N_test={INFER_N_TEST}: ms per video, decoding included, model load excluded, the best of "
             f"{REPEAT} after one warm-up call",
             "original ClipBERT: jayleicn/ClipBERT's src.modeling.e2e_model.ClipBert with "
             "ClipBertForSequenceClassification (detectron2 ResNet-50 grid, its BERT) and its own AdamW, random "
             "weights, sizes and vocabulary of this config, on the same batches, one clip at a time as its "
             "training loop runs them, LogSumExp over clips; fp32 and bf16 autocast (it trained with apex amp "
             "O2 fp16); ours_speedup = our samples/s at the same precision / its samples/s. Its imports need "
             f"{ORIGINAL_NEEDS}: --clipbert-python names an interpreter that has them (and torch)"]
    if skipped:
        notes.append(f"skipped (--variants): {', '.join(skipped)}")
    return report("gpu", rows, COLUMNS, args.out,
                  {"config": cfg.name, "device": str(device), "device_name": described, "steps": steps,
                   "warmup": warmup, "batch_size": batch_size, "shapes": [f"{a}x{b}" for a, b in shapes],
                   "variants": names, "smoke": smoke}, notes, started)
