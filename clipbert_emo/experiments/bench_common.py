"""What every ``clipbert-emo bench`` measurement shares: the machine it ran on, the table and JSON it writes,
peak memory, and the generated test videos."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path

import numpy as np

from ..eval.report import format_table, write_json

FPS = 25


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from ..runtime import available_cores

    info = {"cpu": cpu, "cores_usable": available_cores(), "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    try:
        info["cpu_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older torch or a build without oneDNN
        info["cpu_bf16"] = None
    for name in ("decord", "av"):
        try:
            info[name] = __import__(name).__version__
        except Exception:
            info[name] = None
    return info


def report(kind: str, rows: list[dict], columns: list[str], out: str | None, meta: dict, notes: list[str],
           started: dict) -> dict:
    """Print the table and the notes; write {machine, command, rows, notes} as JSON to ``out``."""
    finished = machine()
    result = {"bench": kind, "command": " ".join(["clipbert-emo"] + sys.argv[1:]), "machine": started,
              "load_average_1m_after": finished["load_average_1m"], **meta, "rows": rows, "notes": notes}
    print(format_table(rows, columns, floatfmt=".3f"))
    for note in notes:
        print(f"- {note}")
    print(f"load average (1 min): {started['load_average_1m']:.2f} before, {finished['load_average_1m']:.2f} after, "
        f"on {started['cores_usable']} usable core(s) of {started['cpu']}")
    if out:
        write_json(out, result)
        print(f"written: {out}")
    return result


def write_test_video(path: str | Path, seconds: float, height: int, gop: int | None, fps: int = FPS) -> Path:
    """An H.264 mp4 with moving texture and a moving block (motion the encoder has to code, at a realistic
    bitrate); ``gop`` = x264's keyframe interval, None = x264's default."""
    import av

    width = height * 16 // 9 // 2 * 2
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    texture = texture.repeat(32, 0).repeat(32, 1) // 2 + 64  # (h/32, w/32, 3) -> (h+64, w+64, 3) blocks
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        options = {"preset": "veryfast", "crf": "28"}
        if gop:
            stream.codec_context.gop_size = gop
            options["keyint"] = str(gop)
        stream.options = options
        for i in range(int(seconds * fps)):
            dx, dy = (i * 3) % 32, (i * 2) % 32
            img = texture[dy:dy + height, dx:dx + width].copy()
            x = (i * 7) % (width - 40)
            img[20:60, x:x + 40] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    tmp.replace(path)
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The test videos: heights, and x264's keyframe interval per GOP kind. "default" is x264's
# own (keyint 250, i.e. 10 s at 25 fps: what encoders hand users); "short" is 1 s, "2s" 2 s (social-media encodes).
HEIGHTS = (360, 720)
GOPS = {"default": None, "2s": 50, "short": 25}
NO_CUDA = "no CUDA device: bench gpu measures a GPU; --device cpu runs its smoke version"


def test_videos(folder: str | Path, durations, heights=HEIGHTS, gops=GOPS, progress: bool = True,
                match: str = "") -> list[dict]:
    """The benchmark's videos, written once into ``folder`` and reused; ``match``: only those whose file name
    contains it (the others are not written either)."""
    from tqdm.auto import tqdm

    todo = [(d, h, g, f"{d}s_{h}p_{g}gop.mp4") for d in durations for h in heights for g in gops]
    videos = []
    for d, h, g, name in tqdm([t for t in todo if match in t[3]], desc="test videos", disable=not progress, leave=False):
        path = Path(folder) / name
        if not path.exists():
            write_test_video(path, d, h, gops[g])
        videos.append({"path": str(path), "seconds": d, "height": h, "gop": g})
    return videos
