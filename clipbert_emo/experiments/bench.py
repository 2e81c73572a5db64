r"""``clipbert-emo bench decode|infer|train|faces|live|gpu``: speed measurements that print a table and write JSON.

Every run records the machine (CPU, cores this process may use, load average before and after, torch and
decoder versions, GPU if any) beside its rows, because on a shared CPU a number means little without the load
it was taken under. Ratios (keyframe against full decode, chunked against one-pass CNN, bf16 against fp32) are
measured side by side in the same run, so they hold even when the absolute times drift with the load.

    clipbert-emo bench decode                 # 10 s and 60 s at 360p and 720p, x264 default and 1 s GOP
    clipbert-emo bench decode --full          # adds 600 s videos (several minutes to generate and decode)
    clipbert-emo bench infer --checkpoint runs/demo/video+text/checkpoint --manifest data/synthemo/test.jsonl
    clipbert-emo bench train
    clipbert-emo bench train --fast-paths     # fp32 vs bf16 vs each training fast path, loss curves (bench_train.py)
    clipbert-emo bench faces                  # face detection rate and ms per frame per detector (bench_faces.py)
    clipbert-emo bench live                   # the page's per-frame webcam mode: updates/s, latency (bench_live.py)
    clipbert-emo bench train --config clipbert_base --device cuda --shapes 1x2,8x2 --batch-size 16 \
        --workers 8 train.mixed_precision=bf16 model.channels_last=true   # the full-size model on a GPU
    clipbert-emo bench gpu --clipbert-src ClipBERT   # a lent GPU in one run: train variants, data wait, N_test=16
                                                     # inference, the original ClipBERT's step (bench_gpu.py)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .bench_common import FPS, NO_CUDA, machine, report, test_videos  # noqa: F401 (test_videos: bench.test_videos, the tests import it)

# The decode bench's durations (seconds); the sizes and GOP kinds are bench_common's HEIGHTS and GOPS.
DURATIONS, DURATIONS_FULL = (10, 60), (10, 60, 600)


def _full_decode_seconds(path: str, threads: int) -> float:
    """Every frame decoded and converted to RGB, front to back: the cost of not sampling."""
    from ..data.decode import open_video

    start = time.perf_counter()
    reader = open_video(path, num_threads=threads)
    for _ in range(len(reader)):
        reader.next().asnumpy()
    return time.perf_counter() - start


def _clips_seconds(path: str, n_test: int, seek: str, threads: int, dense: str = "pyav") -> tuple[float, dict]:
    """Time to open ``path`` and decode the frames of its N_test clips as evaluation and prediction do (T=2
    frames at 2 fps; the letterbox after it is left out, as the full decode has none); and where the clips sat:
    distinct frames read, distinct clip positions, the largest move from the accurate placement (frames) and
    the tolerance it must stay within. ``dense``: how frames are read: "pyav" (the library's plan: seeks or one
    PyAV pass, whichever decodes fewer frames), "decord" (one pass of decord's skip_frames, the reader before
    it), "seek" (decord's seeking whatever the density, before both)."""
    from ..data import decode
    from ..data.sampling import keyframe_tolerance, sample_clip_indices, snap_clips_to_keyframes

    saved = decode.SEQUENTIAL_DENSITY, decode.SEQUENTIAL_READER
    decode.SEQUENTIAL_DENSITY = float("inf") if dense == "seek" else saved[0]
    decode.SEQUENTIAL_READER = dense
    try:
        start = time.perf_counter()
        reader = decode.open_video(path, num_threads=threads)
        info = decode.video_info(reader, path)
        accurate = sample_clip_indices(info.num_frames, info.fps, n_test, 2, 2.0, training=False)  # (N, T)
        keyframes = decode.keyframe_indices(reader)
        indices = snap_clips_to_keyframes(accurate, keyframes, 0, info.num_frames) if seek == "keyframe" else accurate
        # what load_clips reads (it shapes each distinct frame once); "seek" ignores the keyframes' read plan
        decode.read_unique_frames(reader, indices, path, threads=threads,
                                  keyframes=None if dense == "seek" else keyframes)
        seconds = time.perf_counter() - start
    finally:
        decode.SEQUENTIAL_DENSITY, decode.SEQUENTIAL_READER = saved
    return seconds, {"frames_used": len(np.unique(indices)), "positions": len(np.unique(indices[:, 0])),
                     "max_shift": int(np.abs(indices[:, 0] - accurate[:, 0]).max()),
                     "tolerance": round(keyframe_tolerance(accurate, 0, info.num_frames), 2)}


def bench_decode(args) -> dict:
    """N_test clips per seek mode against decoding every frame, for each test video."""
    from tqdm.auto import tqdm

    started = machine()
    videos = test_videos(args.videos, DURATIONS_FULL if args.full else DURATIONS, progress=not args.quiet,
                         match=args.match)
    rows = []
    for v in tqdm(videos, desc="decode", disable=args.quiet, leave=False):
        full = min(_full_decode_seconds(v["path"], threads=1) for _ in range(args.repeat))
        frames = int(round(v["seconds"] * FPS))
        base = {"video": f"{v['seconds']}s {v['height']}p", "gop": v["gop"], "frames": frames, "full_s": full}
        cases = [("accurate", args.n_test, 1, "pyav"), ("keyframe", args.n_test, 1, "pyav"),
                 ("keyframe", args.n_test, 0, "pyav")]
        dense = max(args.n_test, frames // 8)  # clips two frames each, every 8th frame: dense enough to read in one pass
        cases += [("accurate", dense, 1, "seek"), ("accurate", dense, 1, "decord"), ("accurate", dense, 1, "pyav")]
        for seek, n, threads, how in cases:
            timed = [_clips_seconds(v["path"], n, seek, threads, how) for _ in range(args.repeat)]
            seconds, placed = min(t for t, _ in timed), timed[0][1]
            label = {"seek": " (seek only)", "decord": " (decord pass)", "pyav": ""}[how]
            rows.append({**base, "n_test": n, "seek": seek + label, "threads": threads or "auto", **placed,
                         "clips_s": seconds, "speedup_vs_full": full / seconds})
    notes = ["full_s: open + every frame decoded to RGB with decord, 1 thread; clips_s: open + the frames of the "
             "N_test clips (T=2 at 2 fps) through the library's reader (data/decode.py); threads 'auto' = decord's own",
             "accurate (seek only): decord's get_batch for any density (the first reader); accurate (decord pass): "
             "dense frames in one pass of decord's skip_frames + next (the second); accurate: dense frames in one "
             "PyAV pass that converts only the wanted frames (the library's reader)",
             "positions: distinct clip starts of the n_test clips; max_shift: the largest move of a clip start from "
             "the accurate placement, in frames; tolerance: the most it may move (a quarter of the clip spacing, "
             "at least 1 frame): keyframe reads keep positions == n_test and max_shift <= tolerance",
             f"videos: {FPS} fps H.264 (x264 veryfast, crf 28), gop default = x264's keyint 250, 2s = 50, short = 25",
             f"each time is the best of {args.repeat} run(s) (--repeat)"]
    return report("decode", rows, ["video", "gop", "frames", "n_test", "seek", "threads", "frames_used", "positions",
                                   "max_shift", "tolerance", "clips_s", "full_s", "speedup_vs_full"], args.out,
                  {"n_test": args.n_test}, notes, started)


def main(args) -> int:
    if args.what == "decode":
        bench_decode(args)
    elif args.what == "faces":
        from .bench_faces import bench_faces

        bench_faces(args)
    elif args.what == "live":
        from .bench_live import bench_live

        bench_live(args)
    elif args.what == "gpu":
        from .bench_gpu import bench_gpu

        bench_gpu(args)
    elif args.what == "infer":
        from .bench_model import bench_infer

        bench_infer(args)
    elif getattr(args, "fast_paths", False):
        from .bench_train import bench_train_fast_paths

        bench_train_fast_paths(args)
    else:
        from .bench_model import bench_train

        bench_train(args)
    return 0


def add_parser(sub, common):
    """The ``bench`` subcommand of the CLI (its table and JSON path go to stdout: the CLI routes them there)."""
    import argparse

    s = sub.add_parser("bench", parents=[common], help="speed benchmarks: decode | infer | train | faces | live | gpu "
                       "(table + JSON)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("what", choices=["decode", "infer", "train", "faces", "live", "gpu"],
                   help="decode: N_test clips per seek mode against decoding every frame; infer: checkpoint load, "
                        "predict wall time, dense evaluation at N_test 1/4/16 (one CNN pass vs chunks, fp32 vs bf16); "
                        "train: samples/s, data wait and memory per clip shape and loader workers; faces: face "
                        "detection rate (without and with tracking) and ms per frame per detector on real clips; "
                        "live: the page's "
                        "per-frame webcam mode in headless Chromium (updates/s, round trip, server ms per frame); "
                        "gpu: on a CUDA device in one run, training samples/s and MFU of clipbert_base per shape "
                        "in fp32, bf16, bf16+channels_last, bf16+channels_last+compile, the data-wait share with "
                        "--workers loader workers, N_test=16 inference ms per 15 s video (fp32 vs bf16) and the "
                        "original ClipBERT's training step on the same batches (--clipbert-src)")
    s.add_argument("--out", default=None, help="JSON file for the rows and the machine (default: "
                   "runs/bench/<what>.json)")
    s.add_argument("--videos", default="runs/bench/videos", help="folder for the generated test videos, reused "
                   "between runs (default: %(default)s)")
    s.add_argument("--n-test", type=int, default=16, help="clips per video (default: %(default)s)")
    s.add_argument("--full", action="store_true", help="decode: add the 600 s videos; infer: every video of "
                   "--manifest (64 generated ones without) instead of 16; train: 8 steps per setting instead of 4, "
                   "and the dense 16x16 with 0 and 2 workers too")
    s.add_argument("--repeat", type=int, default=None, help="decode: time each case this many times and keep the "
                   "best, which filters out other processes' bursts on a shared CPU (default: 1); train --fast-paths: "
                   "interleaved rounds of every variant (default: 2)")
    s.add_argument("--match", default="", help="decode: only the test videos whose file name contains this, e.g. "
                   "60s_720p")
    s.add_argument("--checkpoint", default=None, help="infer: a checkpoint folder (default: a demo-size model "
                   "with random weights, written to runs/bench/checkpoint); live: the model served (default: the "
                   "ready face model)")
    s.add_argument("--manifest", default=None, help="infer: the videos to score, e.g. data/synthemo/test.jsonl "
                   "(default: generated 4 s clips); bf16 and fp32 predictions are compared on them")
    s.add_argument("--config", default=None, help="train, infer, gpu: the model to measure, a config name or YAML "
                   "(e.g. clipbert_base: ResNet-50, 448 px, 12-layer BERT) built with random weights (default: the "
                   "demo-size synthemo_cpu; gpu: clipbert_base)")
    s.add_argument("overrides", nargs="*", help="train, infer, gpu: config overrides as key.sub=value, e.g. "
                   "train.mixed_precision=bf16 model.channels_last=true")
    s.add_argument("--device", default=None, help="train, gpu: where to run, cpu or cuda (default: cpu; gpu: "
                   "cuda, and without a CUDA device gpu stops unless --device cpu asks for its smoke version)")
    s.add_argument("--shapes", default=None, help="train, gpu: N_train x T settings, e.g. 1x2,8x2 (default: "
                   "1x1,1x2,2x2,4x4,16x16; gpu: 1x2,8x2, the data-wait row at the first)")
    s.add_argument("--workers", default=None, help="train: loader worker counts to try (default: 0,1,2); gpu: "
                   "those of the data-wait rows (default: 8)")
    s.add_argument("--batch-size", type=int, default=None, help="train, gpu: videos per step (default: 4; 8 with "
                   "--fast-paths; gpu: the config's train.batch_size, 16 for clipbert_base)")
    s.add_argument("--steps", type=int, default=0, help="train, gpu: timed steps per setting (default: 4, 8 with "
                   "--full; 20 with --fast-paths; 10 for gpu)")
    s.add_argument("--fast-paths", action="store_true", help="train: fp32 against bf16 autocast and each fast path "
                   "(channels_last, foreach/fused AdamW, torch.compile, loader workers), timed through the engine on "
                   "the demo's model and SynthEmo, plus fp32/bf16 loss curves (experiments/bench_train.py); JSON "
                   "default: runs/bench/train_fast_paths.json")
    s.add_argument("--variants", default="", help="train --fast-paths: the variants to run, comma-separated names "
                   "of bench_train.VARIANTS (default: all; fp32 always runs); gpu: names of bench_gpu.VARIANTS "
                   "(fp32, bf16, bf16+channels_last, bf16+channels_last+compile; default: all), which also pick "
                   "the inference rows")
    s.add_argument("--warmup", type=int, default=3, help="train --fast-paths, gpu: optimizer steps per run left out "
                   "of the step time (gpu: timed apart as warmup_s, compilation included) (default: %(default)s)")
    s.add_argument("--clipbert-src", default=None, help="gpu: a checkout of the original ClipBERT "
                   "(git clone https://github.com/jayleicn/ClipBERT), imported at run time in a child process to "
                   "time its training step on the same batches; without it that row says how to get one")
    s.add_argument("--clipbert-python", default=None, help="gpu: the Python interpreter the original ClipBERT runs "
                   "in, one with what it imports (transformers 2.x, apex, detectron2, horovod, easydict) "
                   "(default: this one)")
    s.add_argument("--curve-epochs", type=int, default=3, help="train --fast-paths: epochs of the fp32, bf16 and "
                   "fp32+channels_last runs whose loss curves and test metrics are compared (0 = none; default: "
                   "%(default)s)")
    s.add_argument("--data", default=None, help="train --fast-paths: a SynthEmo folder (train/val/test.jsonl) "
                   "(default: one generated once into runs/bench/synthemo_train)")
    s.add_argument("--peak-tflops", type=float, default=None, help="train, gpu: the chip's peak for the MFU column "
                   "(default: the published dense bf16 peak of H100/H200/A100/L40S/A10G, none on CPU)")
    s.add_argument("--detectors", default="haar,mtcnn,ssd", help="faces: the detectors to compare, names of "
                   "data.face_detector (default: %(default)s)")
    s.add_argument("--yunet", default="", help="faces: a YuNet .onnx file to compare as well")
    s.add_argument("--threads", type=int, default=1, help="faces: CPU threads for the detectors; live: the "
                   "server's torch threads; train --fast-paths: torch threads of the training runs (default: "
                   "%(default)s)")
    s.add_argument("--seconds", type=float, default=20.0, help="live: seconds measured per frame width, after 3 s "
                   "of warm-up (default: %(default)s)")
    s.add_argument("--frame-widths", default="192", help="live: widths of the frames the page sends, px, e.g. "
                   "160,192,320 (default: %(default)s, the page's own)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=lambda args: main(_with_default_out(args)))
    return s


def _with_default_out(args):
    if args.device is None:
        if args.what == "gpu":
            import torch

            from ..config import UserError

            if not torch.cuda.is_available():
                raise UserError(NO_CUDA)
            args.device = "cuda"
        else:
            args.device = "cpu"
    if args.workers is None:
        args.workers = "8" if args.what == "gpu" else "0,1,2"
    fast_paths = args.what == "train" and args.fast_paths
    if args.out is None:
        args.out = "runs/bench/train_fast_paths.json" if fast_paths else f"runs/bench/{args.what}.json"
    if args.repeat is None:
        args.repeat = 2 if fast_paths else 1
    if args.batch_size is None and args.what != "gpu":  # gpu: the config's train.batch_size
        args.batch_size = 8 if fast_paths else 4
    return args
