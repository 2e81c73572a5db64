"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): upload a
SynthEmo video and see the bars, the timeline and what a screen reader is told; the busy state while a request is
under way, the old results dimmed then cleared by a failure said in plain words; the size and length limits
checked before anything is sent; a file dropped on the page; the webcam (Chromium's fake camera, fed a moving
real face) in live mode with its recording sign, its rolling history and the Stop camera button. Skipped, saying
why, where Chromium is missing (install: apt-get update && apt-get install -y chromium chromium-driver)."""

import pytest
from support.browser import (BARS, INKED, Gate, chromium, drop_file, open_page, require_chromium, serve_in_thread,
                             text, wait_for, write_y4m)

require_chromium()

MAX_UPLOAD = 3 * 2**20  # small, so the browser's own size check can be shown without a large file


@pytest.fixture(scope="module")
def gate(tiny_checkpoint):
    from clipbert_emo import Predictor

    return Gate(Predictor(tiny_checkpoint, device="cpu"))


@pytest.fixture(scope="module")
def page(gate, tiny_checkpoint):
    from clipbert_emo.serve import ServeLimits, create_app

    app = create_app(gate, ServeLimits(max_seconds=30, max_upload_bytes=MAX_UPLOAD), checkpoint=tiny_checkpoint)
    server, thread, url = serve_in_thread(app)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def driver(tmp_path):
    d = chromium(tmp_path)
    yield d
    d.quit()


def test_upload_draws_bars_and_timeline(page, driver, synthemo_dir, tmp_path):
    video = synthemo_dir / "videos" / "test" / "000001.mp4"
    open_page(driver, page)
    assert driver.execute_script(f"return {BARS}.length") == 6
    driver.find_element("id", "file").send_keys(str(video))
    wait_for(driver, "!document.getElementById('send').disabled", timeout=15)
    driver.find_element("id", "send").click()
    wait_for(driver, "document.getElementById('timeline').dataset.clips === '3'")
    probs = driver.execute_script(f"return {BARS}")
    assert sum(probs) == pytest.approx(1.0, abs=2e-3) and all(p > 0 for p in probs)
    top = text(driver, "top")
    assert top == driver.execute_script(
        "const b = Array.from(document.querySelectorAll('#bars .bar'));"
        "return b.reduce((a, c) => parseFloat(c.dataset.p) > parseFloat(a.dataset.p) ? c : a).dataset.label")
    assert "% confidence" in driver.find_element("id", "confidence").text
    widths = driver.execute_script("return Array.from(document.querySelectorAll('#bars .fill'))"
                                   ".map(f => f.getBoundingClientRect().width)")
    assert all(w > 0 for w in widths)
    assert driver.execute_script(f"return {INKED}") > 200  # coloured lines drawn on the canvas
    # A screen reader hears the top emotion: a polite live region, filled with a sentence.
    announce = driver.find_element("id", "announce")
    assert announce.get_attribute("aria-live") == "polite"
    assert announce.get_attribute("textContent") == f"Top emotion: {top}, {round(100 * max(probs))} percent."
    assert "stale" not in driver.find_element("id", "outputs").get_attribute("class")
    assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []  # no script error, no 404
    driver.save_screenshot(str(tmp_path / "upload.png"))
    assert (tmp_path / "upload.png").stat().st_size > 10_000


def test_busy_state_then_a_failure_in_plain_words(page, driver, gate, synthemo_dir):
    video = synthemo_dir / "videos" / "test" / "000003.mp4"
    open_page(driver, page)
    driver.find_element("id", "file").send_keys(str(video))
    wait_for(driver, "!document.getElementById('send').disabled", timeout=15)
    driver.find_element("id", "send").click()
    wait_for(driver, "document.getElementById('timeline').dataset.clips === '3'")
    gate.open.clear()
    gate.entered.clear()
    driver.execute_script("window.said = []; new MutationObserver(() => said.push("
                          "document.getElementById('busy-text').textContent))"
                          ".observe(document.getElementById('busy-text'), {childList: true})")
    try:
        driver.find_element("id", "send").click()
        assert gate.entered.wait(30)
        # The server holds the video: the page says it is scoring, the old results are dimmed, nothing to click twice.
        wait_for(driver, "document.getElementById('busy').dataset.phase === 'scoring'", timeout=10)
        assert driver.find_element("id", "busy").is_displayed()
        assert driver.execute_script("return document.getElementById('progress').dataset.fraction") == "1"
        said = driver.execute_script("return said")
        assert said[0].startswith("Uploading… ") and said[-1] == "Scoring…", said  # upload progress, then scoring
        outputs = driver.find_element("id", "outputs")
        assert "stale" in outputs.get_attribute("class") and outputs.get_attribute("aria-busy") == "true"
        assert float(driver.execute_script("return getComputedStyle(document.getElementById('bars')).opacity")) < 0.5
        assert not driver.find_element("id", "send").is_enabled()
    finally:
        gate.open.set()
    wait_for(driver, "!document.getElementById('outputs').classList.contains('stale')")
    assert not driver.find_element("id", "busy").is_displayed()
    # Not a video (a text file called .mp4): the server's 422 said plainly, the old results cleared.
    drop_file(driver, b"this is not a video\n" * 50, "notes.mp4", "video/mp4")
    wait_for(driver, "!document.getElementById('send').disabled", timeout=15)
    driver.find_element("id", "send").click()
    wait_for(driver, "document.getElementById('status').classList.contains('error')")
    status = text(driver, "status")
    assert status.startswith("The file could not be read as a video"), status
    assert "Errno" not in status and "[" not in status and "/tmp" not in status
    assert text(driver, "top") == "–" and driver.execute_script(f"return {BARS}") == [0.0] * 6
    assert driver.execute_script("return document.getElementById('timeline').dataset.clips") == "0"
    assert not driver.find_element("id", "download-csv").is_enabled()


def test_limits_are_shown_and_checked_before_upload(page, driver, tmp_path):
    import av
    import numpy as np

    open_page(driver, page)
    assert text(driver, "limits") == "Videos up to 3.0 MB and 30 s."
    served = driver.execute_script("return fetch('/health').then(r => r.json()).then(h => h.served)")
    drop_file(driver, None, "big.webm", "video/webm", size=MAX_UPLOAD + 1000)
    wait_for(driver, "document.getElementById('status').classList.contains('error')", timeout=10)
    assert text(driver, "status") == "This file is 3.0 MB; the server takes videos up to 3.0 MB."
    assert not driver.find_element("id", "send").is_enabled()
    long_video = tmp_path / "long.webm"  # 40 s of 16 px frames at 1 fps: a few KB, over the 30 s limit
    with av.open(str(long_video), "w") as out:
        stream = out.add_stream("libvpx", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 6 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    driver.find_element("id", "file").send_keys(str(long_video))
    wait_for(driver, "document.getElementById('status').textContent.includes('long')", timeout=15)
    assert text(driver, "status") == "This video is 40.0 s long; the server takes videos up to 30 s."
    assert not driver.find_element("id", "send").is_enabled()
    assert driver.execute_script("return fetch('/health').then(r => r.json()).then(h => h.served)") == served


def test_a_dropped_video_is_scored(page, driver, synthemo_dir):
    video = synthemo_dir / "videos" / "test" / "000004.mp4"
    open_page(driver, page)
    drop_file(driver, video.read_bytes(), "dropped.mp4", "video/mp4")
    wait_for(driver, "!document.getElementById('send').disabled", timeout=15)
    assert text(driver, "chosen") == "dropped.mp4"
    driver.find_element("id", "send").click()
    wait_for(driver, "document.getElementById('timeline').dataset.clips === '3'")
    assert sum(driver.execute_script(f"return {BARS}")) == pytest.approx(1.0, abs=2e-3)


def test_webcam_live_mode_rolls_its_history_and_stops(page, tmp_path):
    from clipbert_emo.serve.make_examples import moving_portrait

    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, moving_portrait(24, 160), fps=8)  # a real face (scikit-image's astronaut) moving in view
    driver = chromium(tmp_path, fake_video=y4m)
    try:
        open_page(driver, page)
        assert not driver.find_element("id", "rec").is_displayed()
        driver.find_element("id", "camera").click()
        wait_for(driver, "!document.getElementById('live').disabled", timeout=30)
        assert driver.find_element("id", "stop-camera").is_enabled()
        driver.find_element("id", "record").click()
        wait_for(driver, "!document.getElementById('rec').hidden", timeout=10)  # recording: the sign is up
        assert driver.find_element("id", "rec").is_displayed() and not driver.find_element("id", "live").is_enabled()
        wait_for(driver, "document.getElementById('rec').hidden", timeout=10)  # 3 s later: down again, scoring
        wait_for(driver, "document.getElementById('status').textContent.includes('clips over')", timeout=60)
        driver.find_element("id", "live").click()
        wait_for(driver, "!document.getElementById('rec').hidden", timeout=10)
        wait_for(driver, "parseInt(document.getElementById('updates').textContent) >= 3", timeout=120)
        probs = driver.execute_script(f"return {BARS}")
        assert sum(probs) == pytest.approx(1.0, abs=2e-3)
        # The history keeps every update (it is not redrawn from the latest alone).
        count = ("[parseInt(document.getElementById('updates').textContent),"
                 " parseInt(document.getElementById('history').dataset.points)]")
        updates, points = driver.execute_script("return " + count)
        assert points == updates >= 3
        assert driver.find_element("id", "history-box").is_displayed()
        assert int(driver.execute_script("return document.getElementById('timeline').dataset.clips")) >= 1
        assert "ms" in driver.find_element("id", "latency").text
        assert "error" not in driver.find_element("id", "status").get_attribute("class")
        driver.save_screenshot(str(tmp_path / "live.png"))
        driver.find_element("id", "stop-camera").click()
        wait_for(driver, "document.getElementById('rec').hidden", timeout=10)
        assert driver.execute_script("return document.getElementById('preview').srcObject") is None
        assert driver.find_element("id", "camera").is_enabled()
        assert not driver.find_element("id", "live").is_enabled()
        assert not driver.find_element("id", "record").is_enabled()
        updates, points_after = driver.execute_script("return " + count)
        assert points_after == updates >= points  # kept after the camera stops
    finally:
        driver.quit()
