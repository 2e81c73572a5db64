"""The per-frame live mode in a real headless Chromium, its fake webcam fed a real face moving in view (scikit-image's
astronaut, as the live benchmark feeds it): the face is boxed on the overlay over the preview, inside the picture,
with the top emotion beside it and on the bars; the history chart gets points; stopping clears the box. The clip
mode draws the face box of its last clip too, and a scored video the box of the clip playing. A model that cannot
score frames keeps the button disabled, saying why. With CLIPBERT_EMO_SCREENSHOTS=docs/img set, writes
docs/img/page_live_frame.png. Skipped, saying why, where Chromium is missing (install: apt-get install -y chromium
chromium-driver)."""

import os
import time
from pathlib import Path

import pytest
from support.browser import chromium, csp_errors, open_page, require_chromium, serve_in_thread, text, wait_for

require_chromium()

# Pixels of the overlay canvas that are not transparent: the box and its label.
DRAWN = ("(() => { const c = document.getElementById('overlay'); const d = c.getContext('2d')"
         ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
         " for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()")
STATS = "window.__liveStats"


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    from clipbert_emo.face_model import build_face_model

    return build_face_model(tmp_path_factory.mktemp("live_page") / "face_model")


@pytest.fixture(scope="module")
def page(face_model):
    from clipbert_emo import Predictor
    from clipbert_emo.serve import create_app

    server, thread, url = serve_in_thread(create_app(Predictor(face_model, device="cpu"), checkpoint=face_model))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    from clipbert_emo.experiments.bench_live import CAMERA_FPS, camera_frames, write_y4m

    return write_y4m(tmp_path_factory.mktemp("camera") / "face.y4m", camera_frames(2.0), CAMERA_FPS)


@pytest.fixture
def driver(tmp_path, camera):
    d = chromium(tmp_path, fake_video=camera)
    yield d
    d.quit()


def box_on_screen(driver):
    """The drawn box (CSS px, relative to the overlay) and the overlay's size."""
    box = driver.execute_script("return document.getElementById('overlay').dataset.box")
    size = driver.execute_script("const o = document.getElementById('overlay'); return [o.clientWidth, o.clientHeight]")
    return [float(v) for v in box.split(",")] if box else None, size


def test_per_frame_mode_boxes_the_face_and_names_its_emotion(page, driver):
    open_page(driver, page)
    labels = driver.execute_script("return Array.from(document.querySelectorAll('#bars .bar'))"
                                   ".map(b => b.dataset.label)")
    assert "happy" in labels
    driver.find_element("id", "camera").click()
    wait_for(driver, "!document.getElementById('live-frame').disabled", timeout=30)
    assert not driver.find_element("id", "overlay").is_displayed()
    driver.find_element("id", "live-frame").click()
    assert "on" in driver.find_element("id", "live-frame").get_attribute("class")
    assert not driver.find_element("id", "live").is_enabled()  # one live mode at a time
    wait_for(driver, f"{STATS}.faces >= 6", timeout=90)
    stats = driver.execute_script(f"return {STATS}")
    assert stats["mode"] == "frame" and stats["errors"] == 0
    last = stats["last"]
    x, y, w, h = last["box"]
    # The box lies in the frame sent (the page scales the 320 x 240 camera to 192 px wide) and around its middle,
    # where the moving portrait keeps the face.
    assert (last["width"], last["height"]) == (192, 144)
    assert 0 <= x and 0 <= y and x + w <= 192 + 1 and y + h <= 144 + 1
    assert 0.3 * 192 < x + w / 2 < 0.7 * 192 and 20 < w < 120
    assert driver.execute_script(f"return {DRAWN}") > 200  # the box and its label are drawn over the preview
    drawn, (ow, oh) = box_on_screen(driver)
    assert drawn and 0 <= drawn[0] and drawn[0] + drawn[2] <= ow + 2 and 0 <= drawn[1] and drawn[1] + drawn[3] <= oh + 2
    label = driver.execute_script("return document.getElementById('overlay').dataset.label")
    assert label.split()[0] in labels and label.endswith("%")
    assert text(driver, "top") in labels and text(driver, "top") == "happy"  # she smiles
    wait_for(driver, "parseInt(document.getElementById('history').dataset.points) >= 2", timeout=30)
    assert driver.find_element("id", "history-box").is_displayed()
    assert "updates/s" in text(driver, "status") and "face found" in text(driver, "status")
    assert "ms" in text(driver, "latency")
    driver.find_element("id", "live-frame").click()  # stop
    assert not driver.find_element("id", "overlay").is_displayed()
    assert driver.execute_script("return document.getElementById('overlay').dataset.box") == ""
    count = driver.execute_script(f"return {STATS}.updates")
    time.sleep(1.0)
    assert driver.execute_script(f"return {STATS}.updates") <= count + 1  # at most the frame already on its way
    assert driver.execute_script(f"return {DRAWN}") == 0
    assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert csp_errors(driver) == []


def test_clip_mode_draws_the_face_box_of_its_last_clip(page, driver):
    open_page(driver, page)
    driver.find_element("id", "camera").click()
    wait_for(driver, "!document.getElementById('live').disabled", timeout=30)
    driver.find_element("id", "live").click()
    wait_for(driver, "document.getElementById('overlay').dataset.box", timeout=90)
    drawn, (ow, oh) = box_on_screen(driver)
    assert 0 <= drawn[0] and drawn[0] + drawn[2] <= ow + 2 and 0 <= drawn[1] and drawn[1] + drawn[3] <= oh + 2
    assert 0.3 * ow < drawn[0] + drawn[2] / 2 < 0.7 * ow
    assert driver.execute_script(f"return {DRAWN}") > 200
    assert driver.execute_script("return document.getElementById('overlay').dataset.label") == text(driver, "top")
    driver.find_element("id", "stop-camera").click()
    assert not driver.find_element("id", "overlay").is_displayed()


def test_a_scored_video_shows_each_clips_face_box_as_it_plays(page, driver):
    open_page(driver, page)
    driver.execute_script("Array.from(document.querySelectorAll('#examples button'))"
                          ".find(b => b.textContent.startsWith('Real face')).click()")
    wait_for(driver, "document.getElementById('overlay').dataset.box", timeout=90)
    seen = set()
    deadline = time.time() + 10
    while time.time() < deadline and len(seen) < 3:  # the portrait moves over its 2 s loop: so does the box
        drawn, (ow, oh) = box_on_screen(driver)
        if drawn:
            assert 0 <= drawn[0] and drawn[0] + drawn[2] <= ow + 2 and 0 <= drawn[1] and drawn[1] + drawn[3] <= oh + 2
            seen.add(tuple(drawn))
        time.sleep(0.2)
    assert len(seen) >= 3
    assert driver.execute_script("return document.getElementById('overlay').dataset.label") in ("happy", "neutral")


def test_a_model_that_cannot_score_frames_keeps_the_mode_off(make_random_checkpoint, tmp_path):
    from clipbert_emo import Predictor
    from clipbert_emo.serve import create_app

    checkpoint = make_random_checkpoint(tmp_path / "video_text")
    server, thread, url = serve_in_thread(create_app(Predictor(checkpoint, device="cpu")))
    d = chromium(tmp_path)
    try:
        open_page(d, url)
        d.find_element("id", "camera").click()
        wait_for(d, "!document.getElementById('live').disabled", timeout=30)
        button = d.find_element("id", "live-frame")
        assert not button.is_enabled()
        assert button.get_attribute("title").startswith("The per-frame mode needs a face-expression model")
    finally:
        d.quit()
        server.should_exit = True
        thread.join(10)


def test_screenshot_of_the_per_frame_mode(page, driver):
    out = os.environ.get("CLIPBERT_EMO_SCREENSHOTS")
    if not out:
        pytest.skip("set CLIPBERT_EMO_SCREENSHOTS=docs/img to write the docs' screenshots")
    import base64

    driver.set_window_size(1280, 1000)
    open_page(driver, page)
    driver.find_element("id", "camera").click()
    wait_for(driver, "!document.getElementById('live-frame').disabled", timeout=30)
    driver.find_element("id", "live-frame").click()
    wait_for(driver, "parseInt(document.getElementById('history').dataset.points) >= 12", timeout=120)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "page_live_frame.png").write_bytes(base64.b64decode(shot["data"]))
