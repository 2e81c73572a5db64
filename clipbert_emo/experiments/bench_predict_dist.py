r"""How fast ``predict`` scores a corpus with one process and with several (``accelerate launch``): prints a table
and writes JSON.

    python -m clipbert_emo.experiments.bench_predict_dist --videos 40 --processes 1 2 \
        --out docs/results/predict_dist.json
    python -m clipbert_emo.experiments.bench_predict_dist --checkpoint runs/demo/video+text/checkpoint

Each row is the whole command as a user runs it (``clipbert-emo predict FOLDER --out preds.jsonl``, under
``accelerate launch --multi_gpu --num_processes N`` for N > 1, which on a machine without a GPU gives N gloo
ranks on the CPU), timed from start to exit: launcher, model loading, the folder walk, scoring, the merge. The
fixed part is measured with a 2-video folder and taken off to give the steady rate (videos/s once started).
The rows run in turns (1, 2, 1, 2, ... with --repeats) so that a load that drifts touches each alike; the load
average (`uptime`) is recorded beside each row, since on a shared CPU a rate means little without it. Each
N-process --out is compared with the 1-process one, byte for byte.

Videos: SynthEmo's test videos (64 px, 4 s at 8 fps: the demo's data), generated once into --work. Model:
--checkpoint, or by default the demo's architecture (configs/synthemo_cpu.yaml: EfficientNet-lite0 on 64 px,
2-layer 128-wide fusion) with random weights: the speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .bench_common import machine, report

LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]


def synthemo_videos(folder: Path, count: int) -> Path:
    """``count`` SynthEmo test videos (the generator's defaults) in ``folder/videos/test``, made once."""
    from ..synthemo import SynthEmoConfig, generate_synthemo

    videos = folder / "videos" / "test"
    if len(list(videos.glob("*.mp4"))) != count:
        generate_synthemo(folder, SynthEmoConfig(num_train=0, num_val=0, num_test=count), progress=False)
    return videos


def random_checkpoint(path: Path) -> Path:
    """The demo's model (synthemo_cpu) with random weights and a small WordPiece vocabulary, saved once."""
    if (path / "config.yaml").exists():
        return path
    import torch

    from ..build import build_model
    from ..checkpoint import save_checkpoint
    from ..config import load_config
    from ..data.text import build_wordpiece_tokenizer

    cfg = load_config("synthemo_cpu", ["model.pretrained=false"])
    tok = build_wordpiece_tokenizer(["what a happy face", "so sad today", "no way that is incredible"],
                                    cfg.model.vocab_size, path.parent / f"{path.name}_tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg, len(tok), tok.pad_token_id or 0, pretrained=False).eval()
    save_checkpoint(path, model, cfg, tok, {"epoch": 0, "note": "random weights, for speed measurements"})
    return path


def _run(processes: int, checkpoint: Path, folder: Path, out: Path, extra: list[str]) -> dict:
    cmd = ([*LAUNCH, "--num_processes", str(processes)] if processes > 1 else [sys.executable]) + \
        ["-m", "clipbert_emo.cli", "predict", str(checkpoint), str(folder), "--out", str(out), "--overwrite", "-q",
         *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if processes > 1:
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: a video failed, which the table shows
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, "load_before": load, "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="default: the demo's model with random weights")
    p.add_argument("--videos", type=int, default=40, help="SynthEmo videos in the corpus (default: %(default)s)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=1, help="turns of every row (default: %(default)s)")
    p.add_argument("--work", default="runs/bench/predict_dist", help="videos, model and outputs (kept, reused)")
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("extra", nargs="*", help="more predict options, after --, e.g. -- --batch-size 8")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    videos = synthemo_videos(work / "synthemo", args.videos)
    small = work / "two_videos"
    small.mkdir(exist_ok=True)
    for v in sorted(videos.glob("*.mp4"))[:2]:
        if not (small / v.name).exists():
            (small / v.name).write_bytes(v.read_bytes())
    checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(work / "random_synthemo_cpu")
    started = machine()
    times: dict[int, dict[str, list]] = {n: {"full": [], "fixed": []} for n in args.processes}
    for _ in range(args.repeats):
        for n in args.processes:
            times[n]["fixed"].append(_run(n, checkpoint, small, work / f"small_{n}.jsonl", args.extra))
            times[n]["full"].append(_run(n, checkpoint, videos, work / f"preds_{n}.jsonl", args.extra))
    reference = (work / f"preds_{args.processes[0]}.jsonl").read_bytes()
    count = len(list(videos.glob("*.mp4")))
    rows = []
    for n in args.processes:
        full = min(r["seconds"] for r in times[n]["full"])  # the least disturbed turn
        fixed = min(r["seconds"] for r in times[n]["fixed"])
        # under a load that swings, the 2-video run can take longer than the whole corpus: no steady rate then
        steady = round((count - 2) / (full - fixed), 2) if full > fixed else None
        loads = [r["load_before"] for r in times[n]["full"]] + [r["load_after"] for r in times[n]["full"]]
        rows.append({"processes": n, "videos": count, "wall_s": round(full, 1), "videos_per_s": round(count / full, 2),
                     "startup_s": round(fixed, 1),
                     "steady_videos_per_s": steady,
                     "load_1m": f"{min(loads):.1f}-{max(loads):.1f}",
                     "same_bytes": (work / f"preds_{n}.jsonl").read_bytes() == reference})
    base = rows[0]
    for row in rows:
        row["speedup"] = round(base["wall_s"] / row["wall_s"], 2)
    notes = [f"{count} SynthEmo videos ({videos}), checkpoint {checkpoint}; predict options: "
             f"{' '.join(args.extra) or '(defaults)'}",
             "wall_s: the whole command, launcher and model loading included (best of --repeats turns); startup_s: "
             "the same command on 2 videos; steady: (videos - 2) / (wall_s - startup_s)",
             "same_bytes: --out identical to the first row's"]
    return report("predict_dist", rows, ["processes", "videos", "wall_s", "videos_per_s", "startup_s",
                                         "steady_videos_per_s", "speedup", "load_1m", "same_bytes"],
                  args.out, {"turns": {str(n): t for n, t in times.items()}}, notes, started)


if __name__ == "__main__":
    main()
