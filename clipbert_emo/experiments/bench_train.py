"""``clipbert-emo bench train --fast-paths``: training precision (fp32, bf16 autocast) and the fast paths on top of
each (channels_last CNN, AdamW's foreach and fused kernels, torch.compile, loader workers), timed through the
engine itself: every variant is a real ``finetune`` run (accelerate's autocast, the guard, clipping, the
schedule, the loader), stopped after warm-up + timed optimizer steps.

- **Same batches for every variant.** The data is a SynthEmo folder (generated once into ``runs/bench/``, or
  ``--data``); the sampler's order, each sample's clips and crops and the dropout masks are functions of the
  seed, so every variant trains on the same batch stream, and its per-step losses are compared with fp32's of
  the same round (``max_loss_diff``): 0 for the loader rows, float rounding for a layout or an optimizer kernel,
  bf16's rounding for bf16.
- **Interleaved rounds.** ``--repeat`` rounds of all the variants in turn (each round starting one variant
  further on), so a change in the machine's load falls on every variant alike; each row pools its rounds' timed
  steps (median), takes its speed-up over fp32 round by round, and gives the spread of the round medians. The load
  average is sampled before every run.
- **Warm-up apart.** The first ``--warmup`` steps of a run (loader start, first-call allocations, and for
  ``compile`` the compilation) are not in the step time; ``warmup_extra_s`` is what they took beyond as many
  median steps (for compile: the compile time, in the first round with an empty inductor cache).
- **Loss curves.** With ``--curve-epochs`` > 0, short fp32, bf16 and fp32+channels_last runs from the same seed,
  with validation and the test split: per-step loss curves in ``<out>_curves.png`` (channels_last changes only
  float rounding: how far training carries that is the yardstick for bf16's difference) and final metrics in the
  JSON and the table's notes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

from ..train.observers import RunObserver
from .bench_common import machine, report

# name -> config overrides. fp32 is the default run (the golden-loss path); every other variant adds one thing.
VARIANTS: dict[str, list[str]] = {
    "fp32": [],
    "bf16": ["train.mixed_precision=bf16"],
    "fp32+channels_last": ["model.channels_last=true"],
    "bf16+channels_last": ["train.mixed_precision=bf16", "model.channels_last=true"],
    "fp32+foreach_adamw": ["optim.adamw_kernel=foreach"],
    "fp32+fused_adamw": ["optim.adamw_kernel=fused"],
    "fp32+compile": ["model.compile=true"],
    "bf16+compile": ["train.mixed_precision=bf16", "model.compile=true"],
    "fp32+frozen_cnn8": ["model.cnn_frozen_stride=8"],
    "fp32+channels_last+frozen_cnn8": ["model.channels_last=true", "model.cnn_frozen_stride=8"],
    "fp32+workers0": ["data.num_workers=0"],
    "fp32+workers2": ["data.num_workers=2"],
}
# Every variant starts from the plain path: the demo config's own fast paths (channels_last, the frozen early CNN
# layers) off, so that fp32 is the training `make demo` did before them and each row adds its one thing.
PLAIN = ["model.channels_last=false", "model.cnn_frozen_stride=0"]
# SynthEmo's own video size and length (64 px, 4 s at 8 fps, as `make demo` trains on), fewer videos: enough
# training videos for the default warm-up + timed steps to stay inside the first epoch at batch 8.
BENCH_SYNTHEMO = {"num_train": 192, "num_val": 48, "num_test": 96}


class StepTimer(RunObserver):
    """Wall time between consecutive optimizer steps (everything the loop does for a step: waiting for the batch,
    forward, backward, optimizer, logging), with the engine's data-wait share of each."""

    def __init__(self):
        self.durations: list[float] = []
        self.wait_shares: list[float] = []
        self._last = 0.0

    def on_start(self, engine):
        self._last = time.perf_counter()

    def on_step(self, engine, step, logs):
        now = time.perf_counter()
        self.durations.append(now - self._last)
        self.wait_shares.append(float(logs["data_wait_share"]))
        self._last = now

    def on_epoch(self, engine, epoch, entry):
        # validation and the epoch's save are not a step's cost (the timed steps stay in one epoch by default)
        self._last = time.perf_counter()


def bench_synthemo(folder: str | Path, progress: bool = False) -> Path:
    """The benchmark's SynthEmo folder, generated once (about a minute on 2 cores) and reused."""
    from ..synthemo import SynthEmoConfig, generate_synthemo

    folder = Path(folder)
    if not all((folder / f"{split}.jsonl").exists() for split in ("train", "val", "test")):
        generate_synthemo(folder, SynthEmoConfig(**BENCH_SYNTHEMO, workers=1), progress=progress)
    return folder


def run_config(config: str | None, data: Path, out_dir: Path, overrides=()):
    """The demo's config (or ``config``) on the benchmark's SynthEmo folder, writing into ``out_dir``."""
    from ..config import load_config

    return load_config(config or "synthemo_cpu", [
        f"data.train_manifest={data / 'train.jsonl'}", f"data.val_manifest={data / 'val.jsonl'}",
        f"data.test_manifest={data / 'test.jsonl'}", f"train.output_dir={out_dir}", "train.overwrite=true",
        *overrides])


def timed_run(config, data: Path, out_dir: Path, overrides, steps: int) -> tuple[StepTimer, dict]:
    """One training run of ``steps`` optimizer steps, no validation or test; its step timer and metrics."""
    import torch

    from ..train.finetune import finetune

    # Every run compiles afresh (inductor's on-disk cache may still serve it): dynamo's in-process cache would
    # otherwise carry one run's graphs into the next, and past its recompile limit fall back to eager silently.
    torch._dynamo.reset()
    cfg = run_config(config, data, out_dir, ["data.val_manifest=", "data.test_manifest=",
                                             f"train.max_steps={steps}", *overrides])
    timer = StepTimer()
    metrics = finetune(cfg, progress=False, observers=[timer])
    # nothing of the run is read again (its numbers are returned); its checkpoints would fill gigabytes
    shutil.rmtree(out_dir, ignore_errors=True)
    return timer, metrics


def _median(values):
    return statistics.median(values) if values else None


def variant_rows(runs: dict[str, list[dict]], warmup: int, batch_size: int) -> list[dict]:
    """One row per variant from its rounds: pooled median step time after the warm-up, samples/s, the speed-up
    over fp32 (the median over rounds of the ratio to the same round's fp32: a load that drifts between rounds
    cancels out), data-wait share, the spread of the round medians, the warm-up's extra time, and the per-step loss
    differences from fp32 of the same round (the first step's: what one step computes differently; the largest:
    after training has amplified it)."""
    base = [_median(r["durations"][warmup:]) for r in runs.get("fp32", [])]
    rows = []
    for name, rounds in runs.items():
        timed = [d for r in rounds for d in r["durations"][warmup:]]
        waits = [w for r in rounds for w in r["wait_shares"][warmup:]]
        step = _median(timed)
        medians = [_median(r["durations"][warmup:]) for r in rounds]
        ratios = [b / m for b, m in zip(base, medians) if b and m]
        extra = [sum(r["durations"][:warmup]) - warmup * _median(r["durations"][warmup:]) for r in rounds]
        diffs = [r["max_loss_diff"] for r in rounds if r.get("max_loss_diff") is not None]
        first = [r["first_loss_diff"] for r in rounds if r.get("first_loss_diff") is not None]
        rows.append({"variant": name, "step_s": step, "samples_per_s": batch_size / step if step else None,
                     "speedup_vs_fp32": _median(ratios) if ratios else None,
                     "data_wait_pct": 100 * _median(waits) if waits else None,
                     "round_spread_pct": 100 * (max(medians) - min(medians)) / step if step and len(medians) > 1
                     else None,
                     "warmup_extra_s": extra[0] if extra else None,
                     "warmup_extra_later_s": _median(extra[1:]) if len(extra) > 1 else None,
                     "first_loss_diff": max(first) if first else None,
                     "max_loss_diff": max(diffs) if diffs else None, "rounds": len(rounds),
                     "round_step_s": medians})
    return rows


def max_abs_diff(a: list[float], b: list[float]) -> float:
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


# The loss-curve runs: fp32, bf16, and fp32 with channels_last, a change of float rounding alone: how far
# training carries a rounding difference is the yardstick for bf16's.
CURVES = {"fp32": [], "bf16": ["train.mixed_precision=bf16"],
          "fp32+channels_last": ["model.channels_last=true"]}


def curve_runs(config, data: Path, out_dir: Path, epochs: int, overrides) -> dict:
    """Short runs of CURVES from the same seed, with validation and the test split: per-step losses, final
    metrics (test at the config's N_test, with the aggregation it trains with), and each run's per-step loss
    difference from fp32."""
    from ..train.finetune import finetune

    results = {}
    for name, extra in CURVES.items():
        cfg = run_config(config, data, out_dir / name, [f"train.epochs={epochs}", *overrides, *extra])
        m = finetune(cfg, progress=False)
        test = (m.get("test") or {}).get("reports", {}).get(cfg.model.aggregation, {})
        results[name] = {"step_losses": m["step_losses"], "train_loss": [h["train_loss"] for h in m["history"]],
                         "val_loss": [h.get("val_loss") for h in m["history"]],
                         "best_val_macro_f1": m.get("best_val_macro_f1"),
                         "test": {k: test[k] for k in ("accuracy", "macro_f1") if k in test},
                         "test_aggregation": cfg.model.aggregation, "train_seconds": m["train_seconds"]}
        a, b = results["fp32"]["step_losses"], m["step_losses"]
        results[name]["max_step_loss_diff"] = max_abs_diff(a, b)
        results[name]["mean_step_loss_diff"] = sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))
    return results


def plot_curves(curves: dict, path: Path) -> None:
    """The CURVES runs' per-step training losses (top) and each one's difference from fp32 (bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    colors = {"fp32": "tab:blue", "bf16": "tab:red", "fp32+channels_last": "tab:gray"}
    a = curves["fp32"]["step_losses"]
    for name in CURVES:
        losses = curves[name]["step_losses"]
        top.plot(range(1, len(losses) + 1), losses, label=name, linewidth=1.1, color=colors.get(name))
        if name != "fp32":
            bottom.plot(range(1, min(len(a), len(losses)) + 1), [y - x for x, y in zip(a, losses)],
                        label=f"{name} - fp32", linewidth=1, color=colors.get(name))
    top.set_ylabel("training loss (per step)")
    top.legend()
    top.set_title("same seed and batches: bf16 autocast, and a float-rounding change (channels_last)")
    bottom.axhline(0, color="black", linewidth=0.5)
    bottom.set_ylabel("difference from fp32")
    bottom.legend(fontsize=8)
    bottom.set_xlabel("optimizer step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _rounds(args, names, rounds, data, work, common, warmup, steps) -> tuple[dict[str, list[dict]], list[float]]:
    """``rounds`` rounds of every variant: each run's step times, data-wait shares, losses and the load before it."""
    runs: dict[str, list[dict]] = {n: [] for n in names}
    loads = []
    for r in range(rounds):
        # each round starts one variant further on, so no variant always runs right after the same neighbour
        for name in names[r % len(names):] + names[:r % len(names)]:
            loads.append(os.getloadavg()[0])
            timer, metrics = timed_run(args.config, data, work / name, [*common, *VARIANTS[name]], warmup + steps)
            runs[name].append({"durations": timer.durations, "wait_shares": timer.wait_shares,
                               "losses": metrics["step_losses"], "load_average_1m": loads[-1]})
            if not args.quiet:
                print(f"[bench train --fast-paths] round {r + 1}/{rounds} {name}: median step "
                      f"{_median(timer.durations[warmup:]):.3f} s, load {loads[-1]:.2f}", flush=True)
    return runs, loads


def bench_train_fast_paths(args) -> dict:
    """Every variant in ``--variants`` for ``--repeat`` interleaved rounds, then the loss curves; prints the table
    and writes the JSON (and the curves' PNG beside it)."""
    import torch

    from ..train.accelerator import cpu_bf16_supported

    started = machine()
    names = [n.strip() for n in (args.variants or ",".join(VARIANTS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; expected names from {', '.join(VARIANTS)}")
    if "fp32" not in names:
        names.insert(0, "fp32")  # every ratio and loss difference is against it
    warmup, steps = args.warmup, args.steps or 20
    batch = args.batch_size or 8
    rounds = max(1, args.repeat or 2)
    out = Path(args.out)
    work = out.parent / f"{out.stem}_runs"  # each variant's run folder (replaced by the next round's run)
    data = Path(args.data) if args.data else bench_synthemo("runs/bench/synthemo_train", progress=not args.quiet)
    common = [*PLAIN, f"train.batch_size={batch}", f"train.threads={args.threads}", *args.overrides]
    # Round 1 compiles with an empty inductor cache (what a first run on a machine pays), later rounds with the
    # cache round 1 filled (what every later run pays); a cache the caller chose is left as it is.
    own_cache = "TORCHINDUCTOR_CACHE_DIR" not in os.environ and any("compile" in n for n in names)
    if own_cache:
        shutil.rmtree(work / "inductor_cache", ignore_errors=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor_cache")
    try:
        runs, loads = _rounds(args, names, rounds, data, work, common, warmup, steps)
    finally:
        if own_cache:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]
    for name in names:  # against fp32 of the same round: the same batches and seed
        for run, base in zip(runs[name], runs["fp32"]):
            run["first_loss_diff"] = abs(run["losses"][0] - base["losses"][0])
            run["max_loss_diff"] = max_abs_diff(run["losses"], base["losses"])
    rows = variant_rows(runs, warmup, batch)
    curves = None
    if args.curve_epochs > 0:
        curves = curve_runs(args.config, data, work / "curves", args.curve_epochs, common)
        plot_curves(curves, out.with_name(out.stem + "_curves.png"))
    cfg = run_config(args.config, data, work, common)
    notes = [f"config {cfg.name}: {cfg.model.backbone} at {cfg.data.frame_size} px, {cfg.data.num_clips_train} "
             f"clip(s) x {cfg.data.num_frames} frame(s) per video, {cfg.model.num_layers}x{cfg.model.hidden_size} "
             f"fusion; batch {batch}, {args.threads} torch thread(s), {cfg.data.num_workers} loader worker(s) unless "
             f"the variant says; data {data}",
             f"{rounds} interleaved round(s) of {warmup} warm-up + {steps} timed optimizer steps per variant, through "
             "the engine (finetune with train.max_steps); step_s: median wall time between optimizer steps, pooled "
             "over the rounds; round_spread_pct: (slowest - fastest round median) / step_s",
             "warmup_extra_s: the warm-up steps' time beyond as many median steps, first round (for compile: the "
             "compile time with an empty inductor cache; later rounds, with the cache filled: warmup_extra_later_s "
             "in the JSON)",
             "speedup_vs_fp32: median over the rounds of (that round's fp32 median step / the variant's)",
             "first_loss_diff / max_loss_diff: |loss - fp32 loss| at the first step / the largest over the run's "
             "steps, same round (same batches, seed): the first is what one step computes differently, the largest "
             "what training made of it",
             f"CPU bf16 instructions (avx512_bf16 / amx_bf16 / Arm bf16): {cpu_bf16_supported()}; torch "
             f"{torch.__version__}; 1-minute load average before each run: min {min(loads):.2f}, median "
             f"{statistics.median(loads):.2f}, max {max(loads):.2f}"]
    if curves:
        for name in CURVES:
            c = curves[name]
            test = ", ".join(f"{k} {v:.3f}" for k, v in c["test"].items()) or "none"
            val = c["best_val_macro_f1"]
            notes.append(f"{args.curve_epochs}-epoch run, {name}: final train loss {c['train_loss'][-1]:.4f}, best val "
                         f"macro-F1 {'-' if val is None else f'{val:.3f}'}, test ({c['test_aggregation']}) {test}"
                         + ("" if name == "fp32" else f"; per-step loss vs fp32 over {len(c['step_losses'])} steps: "
                            f"max |diff| {c['max_step_loss_diff']:.4f}, mean {c['mean_step_loss_diff']:.4f}"))
        notes.append(f"loss curves: {out.with_name(out.stem + '_curves.png')}")
    meta = {"config": cfg.name, "batch_size": batch, "threads": args.threads, "warmup_steps": warmup,
            "timed_steps": steps, "rounds": rounds, "load_average_1m_per_run": loads,
            "cpu_bf16": cpu_bf16_supported(), "runs": runs, "curves": curves}
    return report("train_fast_paths", rows, ["variant", "step_s", "samples_per_s", "speedup_vs_fp32",
                                             "data_wait_pct", "round_spread_pct", "warmup_extra_s",
                                             "first_loss_diff", "max_loss_diff"], str(out), meta, notes, started)
