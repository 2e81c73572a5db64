"""A real headless Chromium (Debian's chromium + chromium-driver through Selenium) against the page of
`clipbert-emo serve`, for tests/test_serve_browser.py and tests/test_serve_page_browser.py.

``require_chromium()`` skips the calling module, saying why, where Chromium, its driver, Selenium or the server's
packages are missing; Selenium is pointed at /usr/bin's binaries and never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# The per-label probabilities of the bars, as the page stores them on each row.
BARS = "Array.from(document.querySelectorAll('#bars .bar')).map(b => parseFloat(b.dataset.p))"
# Pixels of the timeline that are not grey: the coloured lines and markers.
INKED = ("(() => { const c = document.getElementById('timeline'); const d = c.getContext('2d')"
         ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
         " for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++; return n; })()")


def require_chromium() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)",
                    allow_module_level=True)


class Gate:
    """A predictor that waits for ``open`` before scoring (open unless a test closes it), so a test can look at
    the page while a request is under way."""

    def __init__(self, predictor):
        self.predictor, self.open, self.entered = predictor, threading.Event(), threading.Event()
        self.open.set()

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def __call__(self, *args, **kwargs):
        self.entered.set()
        self.open.wait(60)
        return self.predictor(*args, **kwargs)


def serve_in_thread(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    return server, thread, f"http://127.0.0.1:{port}"


def chromium(tmp_path, fake_video=None, size=(1200, 900)):
    """A headless Chromium with a fake camera (fed by ``fake_video``, a .y4m, when given), its console kept
    (``driver.get_log("browser")``) and downloads written to ``tmp_path / "downloads"``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or a driver
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={size[0]},{size[1]}",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        opts.add_argument(arg)
    if fake_video:
        opts.add_argument(f"--use-file-for-fake-video-capture={fake_video}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    (tmp_path / "downloads").mkdir(exist_ok=True)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow",
                                                           "downloadPath": str(tmp_path / "downloads")})
    return driver


def as_phone(driver, width=390, height=844, scale=3):
    """Make the page's viewport a phone's (CSS pixels and device pixel ratio of an iPhone 12-15)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                                  "deviceScaleFactor": scale, "mobile": True})


def wait_for(driver, script, timeout=60.0):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {script!r}; page status: {status!r}")


def open_page(driver, url):
    driver.get(url)
    wait_for(driver, "document.getElementById('status').textContent.startsWith('Ready')")


def text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent")


def drop_file(driver, data: bytes | None, name: str, kind: str, size: int | None = None) -> None:
    """Drop a file on the page's drop zone as a person dragging it from a file manager would: a DataTransfer
    holding ``data`` (or ``size`` zero bytes, made in the page)."""
    import base64

    driver.execute_script(
        "const [b64, name, kind, size] = arguments;"
        "const bytes = size ? new Uint8Array(size) : Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));"
        "const dt = new DataTransfer(); dt.items.add(new File([bytes], name, {type: kind}));"
        "const zone = document.getElementById('drop');"
        "for (const type of ['dragenter', 'dragover', 'drop'])"
        "  zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));",
        base64.b64encode(data or b"").decode(), name, kind, size or 0)


def csp_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


def write_y4m(path, frames: np.ndarray, fps: int) -> None:
    """(F, H, W, 3) RGB frames as an uncompressed YUV4MPEG2 file (4:2:0), what Chromium's fake camera reads."""
    import av

    f, h, w = frames.shape[:3]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + yuv.tobytes())  # (H*3/2, W): Y plane, then U and V
