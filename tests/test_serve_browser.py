"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): upload a
SynthEmo video and see the bars and the timeline; record from a fake webcam fed by a generated .y4m and see live
updates arrive. Screenshots go to the test's temporary folder. Skipped, saying why, where Chromium is missing
(install: apt-get update && apt-get install -y chromium chromium-driver)."""

import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)",
                allow_module_level=True)


def write_y4m(path, frames: np.ndarray, fps: int) -> None:
    """(F, H, W, 3) RGB frames as an uncompressed YUV4MPEG2 file (4:2:0), what Chromium's fake camera reads."""
    import av

    f, h, w = frames.shape[:3]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
            out.write(b"FRAME\n" + yuv.tobytes())  # (H*3/2, W): Y plane, then U and V


def serve_in_thread(app):
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


def chromium(tmp_path, fake_video=None):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or a driver
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        opts.add_argument(arg)
    if fake_video:
        opts.add_argument(f"--use-file-for-fake-video-capture={fake_video}")
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)


def wait_for(driver, script, timeout=60.0):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.2)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {script!r}; page status: {status!r}")


BARS = "Array.from(document.querySelectorAll('#bars .bar')).map(b => parseFloat(b.dataset.p))"
INKED = ("(() => { const c = document.getElementById('timeline'); const d = c.getContext('2d')"
         ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
         " for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2]) n++; return n; })()")


@pytest.fixture(scope="module")
def page(tiny_checkpoint):
    from clipbert_emo import Predictor
    from clipbert_emo.serve import ServeLimits, create_app

    server, thread, url = serve_in_thread(create_app(Predictor(tiny_checkpoint, device="cpu"),
                                                     ServeLimits(max_seconds=30)))
    yield url
    server.should_exit = True
    thread.join(10)


def test_upload_draws_bars_and_timeline(page, synthemo_dir, tmp_path):
    video = synthemo_dir / "videos" / "test" / "000001.mp4"
    driver = chromium(tmp_path)
    try:
        driver.get(page)
        wait_for(driver, "document.getElementById('status').textContent.startsWith('Ready')")
        assert driver.execute_script(f"return {BARS}.length") == 6
        driver.find_element("id", "file").send_keys(str(video))
        driver.find_element("id", "send").click()
        wait_for(driver, "document.getElementById('timeline').dataset.clips === '3'")
        probs = driver.execute_script(f"return {BARS}")
        assert sum(probs) == pytest.approx(1.0, abs=2e-3) and all(p > 0 for p in probs)
        top = driver.execute_script("return document.getElementById('top').textContent")
        assert top == driver.execute_script(
            "const b = Array.from(document.querySelectorAll('#bars .bar'));"
            "return b.reduce((a, c) => parseFloat(c.dataset.p) > parseFloat(a.dataset.p) ? c : a).dataset.label")
        assert "% confidence" in driver.find_element("id", "confidence").text
        widths = driver.execute_script("return Array.from(document.querySelectorAll('#bars .fill'))"
                                       ".map(f => f.getBoundingClientRect().width)")
        assert all(w > 0 for w in widths)
        assert driver.execute_script(f"return {INKED}") > 200  # coloured lines drawn on the canvas
        driver.save_screenshot(str(tmp_path / "upload.png"))
        assert (tmp_path / "upload.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_webcam_live_mode_updates_the_bars(page, synthemo_dir, tmp_path):
    from clipbert_emo.data.decode import open_video

    reader = open_video(synthemo_dir / "videos" / "test" / "000002.mp4")
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()  # (F, 32, 32, 3)
    frames = frames.repeat(4, axis=1).repeat(4, axis=2)  # (F, 128, 128, 3): a camera-sized picture
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, frames, fps=8)
    driver = chromium(tmp_path, fake_video=y4m)
    try:
        driver.get(page)
        wait_for(driver, "document.getElementById('status').textContent.startsWith('Ready')")
        driver.find_element("id", "camera").click()
        wait_for(driver, "!document.getElementById('live').disabled", timeout=30)
        driver.find_element("id", "live").click()
        wait_for(driver, "parseInt(document.getElementById('updates').textContent) >= 2", timeout=90)
        probs = driver.execute_script(f"return {BARS}")
        assert sum(probs) == pytest.approx(1.0, abs=2e-3)
        assert int(driver.execute_script("return document.getElementById('timeline').dataset.clips")) >= 1
        assert "ms" in driver.find_element("id", "latency").text
        assert "error" not in driver.find_element("id", "status").get_attribute("class")
        driver.save_screenshot(str(tmp_path / "live.png"))
        driver.find_element("id", "live").click()
    finally:
        driver.quit()
