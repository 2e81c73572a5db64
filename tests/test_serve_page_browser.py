"""The page's other parts in a real headless Chromium: a phone's 390 px screen (results scrolled into view, a
legible timeline, nothing wider than the screen), one-click examples, Download JSON / CSV, the legend's dashes and
markers, the favicon, the plain error sentences and /docs drawn under the page's own Content-Security-Policy.

With CLIPBERT_EMO_SCREENSHOTS=docs/img set, test_screenshots_for_the_docs writes the screenshots docs/serving.md
shows (with the checkpoint in CLIPBERT_EMO_SCREENSHOT_CHECKPOINT, else the tests' tiny one); otherwise it skips.
Skipped, saying why, where Chromium is missing (install: apt-get install -y chromium chromium-driver)."""

import base64
import csv
import json
import os
import time
from pathlib import Path

import pytest
from support.browser import (BARS, INKED, as_phone, chromium, csp_errors, open_page, require_chromium,
                             serve_in_thread, text, wait_for, write_y4m)

require_chromium()


def start(checkpoint):
    from clipbert_emo import Predictor
    from clipbert_emo.serve import ServeLimits, create_app

    app = create_app(Predictor(checkpoint, device="cpu"), ServeLimits(max_seconds=30), checkpoint=checkpoint)
    return serve_in_thread(app)


@pytest.fixture(scope="module")
def page(tiny_checkpoint):
    server, thread, url = start(tiny_checkpoint)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def driver(tmp_path):
    d = chromium(tmp_path)
    yield d
    d.quit()


def click_example(driver, title):
    driver.execute_script("Array.from(document.querySelectorAll('#examples button'))"
                          ".find(b => b.textContent === arguments[0]).click()", title)
    wait_for(driver, "document.getElementById('timeline').dataset.clips !== '0' && "
                     "!document.getElementById('outputs').classList.contains('stale')")


def test_phone_screen_scrolls_to_results_and_keeps_the_timeline_legible(page, driver):
    as_phone(driver)
    open_page(driver, page)
    assert driver.execute_script("return [innerWidth, devicePixelRatio]") == [390, 3]
    in_view = ("(() => { const r = document.getElementById(arguments[0]).getBoundingClientRect();"
               " return r.top >= 0 && r.bottom <= innerHeight; })()")
    assert driver.execute_script("return window.scrollY") == 0
    assert not driver.execute_script("return " + in_view, "top")
    click_example(driver, "SynthEmo: happy")
    # The results sit below the inputs on a phone: the page brings them into view, top emotion and bars first.
    wait_for(driver, in_view.replace("arguments[0]", "'bars'"), timeout=10)
    assert driver.execute_script("return " + in_view, "top") and driver.execute_script("return window.scrollY") > 300
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    css_width, px_width, font = driver.execute_script(
        "const c = document.getElementById('timeline'); return [c.clientWidth, c.width, c.dataset.fontPx]")
    # Drawn at the screen's own resolution (3 device pixels per CSS pixel): 12 px text stays 12 px, not shrunk.
    assert 300 <= css_width <= 390 and abs(px_width - 3 * css_width) <= 3 and font == "12"
    assert driver.execute_script(f"return {INKED}") > 200
    legend = driver.execute_script("return document.getElementById('legend').getBoundingClientRect().width")
    assert legend <= css_width + 2


def test_examples_and_downloads(page, driver, tmp_path):
    open_page(driver, page)
    card = driver.find_element("id", "model-card")
    assert card.is_displayed() and "Trained on 16 SynthEmo videos" in card.text
    titles = driver.execute_script("return Array.from(document.querySelectorAll('#examples button'))"
                                   ".map(b => b.textContent)")
    assert titles == ["SynthEmo: happy", "SynthEmo: astonished", "Real face (astronaut photo)"]
    click_example(driver, "Real face (astronaut photo)")
    probs = driver.execute_script(f"return {BARS}")
    driver.find_element("id", "download-json").click()
    driver.find_element("id", "download-csv").click()
    folder = tmp_path / "downloads"
    deadline = time.time() + 20
    while time.time() < deadline and not ((folder / "clipbert-emo-result.json").exists()
                                          and (folder / "clipbert-emo-result.csv").exists()):
        time.sleep(0.2)
    result = json.loads((folder / "clipbert-emo-result.json").read_text())
    labels = list(result["probabilities"])
    assert [result["probabilities"][k] for k in labels] == pytest.approx(probs, abs=1e-4)
    assert result["prediction"] == text(driver, "top")
    rows = list(csv.DictReader((folder / "clipbert-emo-result.csv").open()))
    assert list(rows[0]) == ["scope", "start_s", "end_s", "prediction", *[f"p_{k}" for k in labels]]
    assert [r["scope"] for r in rows] == ["video", "clip 1", "clip 2", "clip 3"]
    assert rows[0]["prediction"] == result["prediction"]
    assert [float(rows[0][f"p_{k}"]) for k in labels] == pytest.approx(list(result["probabilities"].values()))
    timeline = result["timeline"]
    for j, row in enumerate(rows[1:]):
        assert float(row["start_s"]) == pytest.approx(timeline["start"][j])
        clip = [timeline["probabilities"][k][j] for k in labels]
        assert [float(row[f"p_{k}"]) for k in labels] == pytest.approx(clip)


def test_legend_tells_the_emotions_apart_without_colour(page, driver):
    open_page(driver, page)
    keys = driver.execute_script("return Array.from(document.querySelectorAll('#legend > span'))"
                                 ".map(k => [k.dataset.label, k.dataset.dash, k.dataset.marker])")
    assert len(keys) == 6 and len({(d, m) for _, d, m in keys}) == 6 and len({m for *_, m in keys}) == 6
    assert len({d for _, d, _ in keys}) == 6  # every emotion differs from every other in dash and in marker


def test_favicon_and_plain_error_sentences(page, driver):
    open_page(driver, page)
    size = driver.execute_async_script(
        "const done = arguments[0]; const img = new Image();"
        "img.onload = () => done(img.naturalWidth); img.onerror = () => done(-1);"
        "img.src = document.querySelector('link[rel=icon]').href;")
    assert size > 0
    cases = [[0, ""], [413, "upload over the 50.0 MiB limit"], [415, "expected a video file, got 'text/plain'"],
             [422, "not a readable video ([Errno 1094995529] Invalid data found when processing input)"],
             [422, "the video runs past 30 s, the limit"], [503, "busy: 8 uploads are being scored; retry shortly"],
             [504, "scoring did not finish within 120 s"], [500, "Internal Server Error"],
             [400, "this server answers only to its own host names, not 'evil.example'"]]
    said = driver.execute_async_script(
        "const [cases, done] = arguments; import('/static/messages.js').then(m => done(cases.map(([s, d]) =>"
        " m.plainError(s, d, {max_upload_bytes: 52428800, max_seconds: 30, request_timeout: 120}))));", cases)
    assert said[1] == "The video is too large: this server takes files up to 50 MB."
    assert said[3].startswith("The file could not be read as a video")
    assert said[4] == "The video runs past 30 s, the limit."
    assert said[6] == "Scoring took longer than the server allows (120 s). Try a shorter video."
    for sentence in said:
        assert sentence[0].isupper() and sentence[-1] in ".?" and "Errno" not in sentence and "{" not in sentence
    assert csp_errors(driver) == []


def test_docs_page_works_offline_under_the_csp(page, driver):
    driver.get(page + "/docs")
    wait_for(driver, "parseInt(document.body.dataset.operations || '0') >= 4", timeout=20)
    predict = driver.find_element("id", "op-post-predict").text
    assert "multipart/form-data" in predict and "file: string (binary)" in predict and "413" in predict
    assert "curl -s -F file=@video.mp4" in predict
    origins = driver.execute_script("return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert origins and set(origins) == {page}  # everything it loaded came from the server itself
    assert csp_errors(driver) == []


def test_screenshots_for_the_docs(request, tmp_path):
    out = os.environ.get("CLIPBERT_EMO_SCREENSHOTS")
    if not out:
        pytest.skip("set CLIPBERT_EMO_SCREENSHOTS=docs/img to write the docs' screenshots")
    from clipbert_emo.serve.make_examples import moving_portrait

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = os.environ.get("CLIPBERT_EMO_SCREENSHOT_CHECKPOINT") or request.getfixturevalue("tiny_checkpoint")
    server, thread, url = start(checkpoint)
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, moving_portrait(24, 160), fps=8)
    driver = chromium(tmp_path, fake_video=y4m, size=(1280, 1000))
    try:
        open_page(driver, url)
        click_example(driver, "SynthEmo: happy")
        time.sleep(0.5)  # the results' fade back from dimmed
        full_page_png(driver, out / "page_desktop.png")
        driver.find_element("id", "camera").click()
        wait_for(driver, "!document.getElementById('live').disabled", timeout=30)
        driver.find_element("id", "live").click()
        wait_for(driver, "parseInt(document.getElementById('updates').textContent) >= 8", timeout=180)
        full_page_png(driver, out / "page_live.png")
        driver.find_element("id", "stop-camera").click()
        as_phone(driver, scale=2)
        open_page(driver, url)
        click_example(driver, "SynthEmo: astonished")
        time.sleep(1)  # the smooth scroll to the results
        full_page_png(driver, out / "page_phone_390.png", viewport_only=True)
        driver.get(url + "/docs")
        wait_for(driver, "parseInt(document.body.dataset.operations || '0') >= 4", timeout=20)
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        full_page_png(driver, out / "docs_api.png", max_height=1400)
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(10)


def full_page_png(driver, path, viewport_only=False, max_height=2400):
    """A PNG of the whole page (or of what the screen shows), through the DevTools protocol."""
    params = {"format": "png"}
    if not viewport_only:
        width, height = driver.execute_script("return [document.documentElement.scrollWidth,"
                                              " document.documentElement.scrollHeight]")
        params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width,
                                                        "height": min(height, max_height), "scale": 1})
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", params)
    Path(path).write_bytes(base64.b64decode(shot["data"]))
