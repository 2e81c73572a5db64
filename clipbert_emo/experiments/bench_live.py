r"""``clipbert-emo bench live``: the page's per-frame live mode end to end, as a person in front of a webcam gets it.

    clipbert-emo bench live                                  # the ready face model, 20 s of live frames (~1 min)
    clipbert-emo bench live --frame-widths 160,192,320 --seconds 30

It starts ``clipbert-emo serve`` (the ready face model, built once into its cache folder, or ``--checkpoint``) as its
own process, opens the page in headless Chromium with a fake webcam fed a real face (scikit-image's astronaut
portrait, moved and zoomed over time in a 320 x 240 picture, as serve/make_examples.py moves it), starts the camera
and the per-frame mode, lets it warm up for 3 s, and then reads the page's own counts (``window.__liveStats``:
every answer's round trip as the page timed it, and the server's time for each frame) over ``--seconds``:

- ``updates_s``: answers drawn per second (the page sends the next frame when the answer to the last one comes);
- ``rtt_ms_median`` / ``rtt_ms_p90``: from sending the frame's JPEG to having its answer read, as the page timed
  it (the request, the server, the JSON; the few ms of drawing and encoding the frame before are not in it);
- ``server_ms_median`` / ``server_ms_p90``: the server's time for a frame (decode, detect, score), and of that
  ``detect_ms_median`` for the face detector;
- ``face_found``: the share of answers with a face box, and ``top``: the emotion the answers gave most.

Before the page, ``server alone`` rows send the same camera's frames straight into the server's frame scorer (no
page, no HTTP), with the detector on every frame and on one frame in two (what the server does while it tracks a
face): the most the server could answer, and what tracking saves.

The load average is taken before and after, beside the figures: on a shared CPU a rate means little without it.
Needs Chromium, chromedriver and Selenium (the packages the browser tests use); nothing goes to the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import UserError
from .bench_common import machine, report

CAMERA_FPS = 25
CAMERA_SIZE = (320, 240)  # what the page asks the camera for
WARMUP_S = 3.0


def camera_frames(seconds: float = 4.0, fps: int = CAMERA_FPS) -> np.ndarray:
    """(F, 240, 320, 3) uint8: the astronaut's moving portrait (240 px square) in the middle of a 320 x 240 picture."""
    from ..serve.make_examples import moving_portrait

    width, height = CAMERA_SIZE
    square = moving_portrait(int(seconds * fps), height)  # (F, 240, 240, 3)
    frames = np.empty((len(square), height, width, 3), np.uint8)
    frames[:] = (70, 80, 96)  # a wall behind the head
    left = (width - height) // 2
    frames[:, :, left:left + height] = square
    return frames


def write_y4m(path: str | Path, frames: np.ndarray, fps: int) -> Path:
    """Frames as an uncompressed YUV4MPEG2 (4:2:0) file, the format Chromium's fake camera plays in a loop."""
    import av

    _, h, w = frames.shape[:3]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + planes.tobytes())  # (H*3/2, W): Y, then U and V
    return Path(path)


def start_server(checkpoint: str, threads: int | None, log: Path) -> tuple[subprocess.Popen, str]:
    """``clipbert-emo serve CHECKPOINT --port 0`` as a child process; its URL once it says it is serving. Its output
    (the CLI writes its messages to stderr) goes to ``log``."""
    import threading

    cmd = [sys.executable, "-m", "clipbert_emo.cli", "serve", str(checkpoint), "--port", "0"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    out = open(log, "w")
    found: list[str] = []
    started = threading.Event()

    def drain():  # read to the end: a full pipe would stop the server mid-write
        for line in proc.stdout:
            out.write(line)
            out.flush()
            url = re.search(r"serving .* on (http://\S+)", line)
            if url and not found:
                found.append(url.group(1))
                started.set()
        out.close()
        started.set()

    threading.Thread(target=drain, daemon=True).start()
    if not started.wait(180) or not found:
        proc.kill()
        raise UserError(f"clipbert-emo serve did not start; its output is in {log}")
    return proc, found[0]


def chromium(profile: Path, camera: Path):
    """Headless Chromium whose webcam plays ``camera`` (a .y4m), the camera allowed without asking."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("bench live drives Chromium through Selenium: pip install selenium") from None
    browser, driver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    if not (os.path.exists(browser) and driver):
        raise UserError("bench live needs Chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not go looking for a browser to download
    opts = Options()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1200,900", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def _wait(driver, script: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.execute_script("return " + script):
            return
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise UserError(f"the page did not get there ({script}); it says: {status!r}")


def _snapshot(driver) -> dict:
    """The page's counts now, and its lists of times (the newest last)."""
    return driver.execute_script("const s = window.__liveStats; return {now: performance.now(), updates: s.updates,"
                                 " faces: s.faces, errors: s.errors, rtt: s.roundTrip, server: s.server,"
                                 " detect: s.detect};")


def measure_page(driver, url: str, seconds: float) -> dict:
    """One run of the per-frame mode: the page opened at ``url``, camera on, WARMUP_S s, then ``seconds`` measured."""
    driver.get(url)
    _wait(driver, "document.getElementById('status').textContent.startsWith('Ready')", 60)
    driver.find_element("id", "camera").click()
    _wait(driver, "!document.getElementById('live-frame').disabled", 30)
    driver.find_element("id", "live-frame").click()
    _wait(driver, "window.__liveStats && window.__liveStats.updates > 0", 60)
    time.sleep(WARMUP_S)
    first = _snapshot(driver)
    tops: Counter = Counter()
    end = time.time() + seconds
    while time.time() < end:  # the top emotions as they come (the page keeps only the last)
        time.sleep(0.25)
        top = driver.execute_script("const l = window.__liveStats.last; return l && l.prediction;")
        tops[top or "(no face)"] += 1
    last = _snapshot(driver)
    driver.find_element("id", "live-frame").click()  # stop
    updates = last["updates"] - first["updates"]
    rtt, server = (np.asarray(last[k][-updates:], dtype=float) for k in ("rtt", "server"))
    detect = np.asarray([v for v in last["detect"][-updates:] if v is not None], dtype=float)
    elapsed = (last["now"] - first["now"]) / 1000
    return {"updates": updates, "seconds": round(elapsed, 2), "updates_s": updates / elapsed,
            "rtt_ms_median": float(np.median(rtt)), "rtt_ms_p90": float(np.percentile(rtt, 90)),
            "server_ms_median": float(np.median(server)), "server_ms_p90": float(np.percentile(server, 90)),
            "detect_ms_median": float(np.median(detect)) if len(detect) else None,
            "detected": len(detect) / max(1, updates),
            "face_found": (last["faces"] - first["faces"]) / max(1, updates),
            "errors": last["errors"] - first["errors"], "top": tops.most_common(1)[0][0] if tops else None}


def server_alone(checkpoint, width: int, frames: int = 120) -> list[dict]:
    """The server's part without the page: ``frames`` JPEGs of the camera at ``width`` px through the frame scorer
    of one page's session, with the detector on every frame and on one frame in two (live.py's DETECT_EVERY), the
    two taking turns frame by frame so that the other processes' load falls on both alike. One row each."""
    import io

    from PIL import Image

    from ..predict import Predictor
    from ..serve import ServeLimits
    from ..serve.live import FrameScorer, LiveTracker

    predictor = Predictor(checkpoint, device="cpu")
    scorers = {every: FrameScorer(predictor, ServeLimits(), LiveTracker(detect_every=every)) for every in (1, 2)}
    jpegs = []
    for frame in camera_frames(frames / CAMERA_FPS):
        out = io.BytesIO()
        Image.fromarray(frame).resize((width, width * 3 // 4), Image.BILINEAR).save(out, "JPEG", quality=80)
        jpegs.append(out.getvalue())
    answers: dict[int, list[dict]] = {every: [] for every in scorers}
    for i, data in enumerate(jpegs[:10] + jpegs):  # the first 10: the detector sets its buffers up for this size
        for every, scorer in scorers.items():
            answer = scorer(data, "bench")
            if i >= 10:
                answers[every].append(answer)
    rows = []
    for every, done in answers.items():
        ms = np.asarray([a["ms"] for a in done])
        detect = np.asarray([a["detect_ms"] for a in done if a["detected"]])
        rows.append({"what": f"server alone, detector on 1 frame in {every}", "frame_width": width,
                     "updates": len(done), "updates_s": float(1000 / ms.mean()),
                     "server_ms_median": float(np.median(ms)), "server_ms_p90": float(np.percentile(ms, 90)),
                     "detected": len(detect) / len(done),
                     "detect_ms_median": float(np.median(detect)) if len(detect) else None,
                     "face_found": float(np.mean([a["box"] is not None for a in done])),
                     "top": Counter(a["prediction"] or "(no face)" for a in done).most_common(1)[0][0]})
    return rows


def bench_live(args) -> dict:
    started = machine()
    started["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    work = Path(args.videos).parent / "live"
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from ..face_model import ensure_face_model

        checkpoint = ensure_face_model()
    camera = write_y4m(work / "camera.y4m", camera_frames(), CAMERA_FPS)
    widths = [int(w) for w in str(args.frame_widths).split(",") if w.strip()]
    rows = []
    if args.threads:
        from ..runtime import set_threads

        set_threads(args.threads)  # as the server is told below
    for width in widths:  # first, while nothing else of the benchmark runs
        rows += [{**row, "load_1m": round(os.getloadavg()[0], 2)} for row in server_alone(checkpoint, width)]
    proc, url = start_server(checkpoint, args.threads, work / "serve.log")
    driver = None
    try:
        driver = chromium(work / "chromium-profile", camera)
        for width in widths:
            row = measure_page(driver, f"{url}/?frame_width={width}", args.seconds)
            rows.append({"what": "page + server", "frame_width": width, **row,
                         "load_1m": round(os.getloadavg()[0], 2)})
            if not args.quiet:
                print(f"frame width {width}: {row['updates_s']:.1f} updates/s", file=sys.stderr)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    notes = [f"page + server: the page's per-frame mode in headless Chromium, fake webcam {CAMERA_SIZE[0]}x"
             f"{CAMERA_SIZE[1]} at {CAMERA_FPS} fps (the astronaut portrait moving), one frame in flight; "
             f"{WARMUP_S:g} s of warm-up, then {args.seconds:g} s measured per row",
             "server alone: the same camera's frames as JPEGs straight into the server's frame scorer (no page, no "
             "HTTP), one after the other; updates_s there is the most the server could answer (1000 / mean ms); "
             "detector on 1 frame in 2 is what the server does (live.py's DETECT_EVERY), 1 in 1 what it did first",
             "frame_width: px of the JPEG the page sends (its default is 192); rtt: JPEG sent to answer read, as the "
             "page timed it; server: decode + detect + score in the server's frame thread; detected: the share "
             "of frames the detector ran on; detect_ms: the detector alone, on those frames",
             f"server: clipbert-emo serve {checkpoint}" + (f" --threads {args.threads}" if args.threads else ""),
             "load_1m: the 1-minute load average after the row; the machine's cores are shared with whatever "
             "else runs"]
    return report("live", rows, ["what", "frame_width", "updates", "updates_s", "rtt_ms_median", "rtt_ms_p90",
                                 "server_ms_median", "server_ms_p90", "detected", "detect_ms_median", "face_found",
                                 "errors", "top", "load_1m"], args.out,
                  {"checkpoint": str(checkpoint), "seconds": args.seconds,
                   "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()]}, notes, started)
