"""What the page needs from the server, without a browser (FastAPI's TestClient): the model card's summary, the
example videos, the limits in /labels, /docs drawn by our own script (no CDN), the favicon, plain 422 messages in
place of FFmpeg's text; and the WCAG contrast of every colour the page draws with, computed from its files."""

import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from clipbert_emo.serve import ServeLimits, create_app  # noqa: E402
from clipbert_emo.serve.messages import UNREADABLE, plain_decode_message  # noqa: E402
from clipbert_emo.serve.page_info import find_examples, model_card_summary  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "clipbert_emo" / "serve" / "static"


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    from clipbert_emo import Predictor

    return Predictor(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(predictor, tiny_checkpoint):
    app = create_app(predictor, ServeLimits(max_upload_bytes=5 * 2**20, max_seconds=20), checkpoint=tiny_checkpoint)
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def test_labels_carry_limits_card_and_examples(client):
    info = client.get("/labels").json()
    assert info["limits"]["max_upload_bytes"] == 5 * 2**20 and info["limits"]["max_seconds"] == 20
    card = info["model_card"]
    assert card["title"].endswith("a ClipBERT-style emotion model")
    assert card["trained_on"].startswith("Trained on 16 SynthEmo videos") and "/" not in card["trained_on"]
    assert [e["url"] for e in info["examples"]] == [f"/examples/{e['name']}" for e in info["examples"]]
    assert len(info["examples"]) == 3 and {e["title"] for e in info["examples"]} >= {"Real face (astronaut photo)"}


def test_examples_are_small_real_videos_the_model_scores(client, predictor):
    examples = find_examples()
    assert sum(e["path"].stat().st_size for e in examples.values()) < 300_000
    for name in examples:
        r = client.get(f"/examples/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        scored = client.post("/predict", files={"file": (name, r.content, "video/mp4")})
        assert scored.status_code == 200, scored.text
        assert sum(scored.json()["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    for bad in ("nope.mp4", "..%2Fapp.js", "%2e%2e%2f%2e%2e%2fsetup.py", "1.mp4"):
        r = client.get(f"/examples/{bad}")
        assert r.status_code == 404 and "/" not in r.json()["detail"].replace("GET /labels", "")


def test_an_examples_folder_is_listed_by_made_up_names(predictor, tmp_path, synthemo_dir):
    from clipbert_emo.config import UserError

    for i, name in enumerate(["b clip.mp4", "a_clip.webm", "notes.txt"]):
        (tmp_path / name).write_bytes((synthemo_dir / "videos" / "test" / f"00000{i}.mp4").read_bytes())
    found = find_examples(tmp_path)
    assert list(found) == ["1.webm", "2.mp4"]  # by file name; the URL names are numbers, not the files' names
    assert [e["title"] for e in found.values()] == ["a clip", "b clip"]
    with TestClient(create_app(predictor, examples=tmp_path), base_url="http://localhost") as c:
        assert c.get("/examples/2.mp4").content == (tmp_path / "b clip.mp4").read_bytes()
        first = c.get("/labels").json()["examples"][0]
        assert first == {"name": "1.webm", "title": "a clip", "url": "/examples/1.webm"}
    with pytest.raises(UserError, match="not a folder"):
        find_examples(tmp_path / "missing")


def test_serve_takes_an_examples_folder_from_the_command_line(monkeypatch, tmp_path):
    import clipbert_emo.serve
    from clipbert_emo.cli import main

    calls = []
    monkeypatch.setattr(clipbert_emo.serve, "serve", lambda checkpoint, **kwargs: calls.append(kwargs))
    assert main(["serve", "ckpt", "--examples", str(tmp_path)]) == 0 and main(["serve", "ckpt"]) == 0
    assert calls[0]["examples"] == str(tmp_path) and calls[1]["examples"] is None  # None: the shipped ones


def test_model_card_summary_reads_the_first_line_and_what_it_was_trained_on(tmp_path):
    assert model_card_summary(None) is None and model_card_summary(tmp_path) is None  # no README.md
    (tmp_path / "README.md").write_text("# fer-mini: a face-expression model\n\n- trained on FER2013 (35,887 faces)\n")
    assert model_card_summary(tmp_path) == {"title": "fer-mini: a face-expression model",
                                            "trained_on": "Trained on FER2013 (35,887 faces)."}
    (tmp_path / "README.md").write_text("# meld: a model\n\n- data.format `meld` read from `/data/MELD.Raw`\n\n"
                                        "| split | videos |\n|---|---|\n| train | 9989 |\n")
    assert model_card_summary(tmp_path)["trained_on"] == "Trained on meld (9989 training videos)."


def test_docs_is_our_own_page_with_no_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) and all(
        u.startswith("/") for u in re.findall(r'(?:src|href)="([^"]+)"', page.text))
    assert "/static/docs.js" in page.text and "cdn" not in page.text.lower()
    assert client.get("/static/docs.js").status_code == 200
    assert client.get("/redoc").status_code == 404 and client.get("/docs/oauth2-redirect").status_code == 404
    assert "/examples/{name}" in client.get("/openapi.json").json()["paths"]


def test_favicon(client):
    for url in ("/favicon.ico", "/static/favicon.svg"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.startswith("<svg") and "href" not in r.text  # draws itself, links nothing
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/").text


def test_nothing_in_the_page_comes_from_elsewhere(client):
    for name in [p.name for p in STATIC.iterdir() if p.suffix in (".html", ".js", ".css")]:
        body = client.get(f"/static/{name}").text
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", body), name
        assert not re.search(r"""(?:import|fetch)\s*\(?\s*["'](?:https?:)?//""", body), name
        assert "@import" not in body and "url(http" not in body, name


@pytest.mark.parametrize("damage", ["truncated", "garbage", "header_only"])
def test_a_damaged_video_gets_a_plain_422(client, synthemo_dir, damage):
    data = (synthemo_dir / "videos" / "test" / "000000.mp4").read_bytes()
    body = {"truncated": data[: len(data) // 3], "garbage": b"hello" * 200, "header_only": data[:200]}[damage]
    r = client.post("/predict", files={"file": ("x.mp4", body, "video/mp4")})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert not re.search(r"errno|\[|\]|ffmpeg|check failed|/tmp", detail, re.IGNORECASE), detail
    assert detail.startswith("the file ") and "video" in detail


def test_plain_decode_message():
    assert plain_decode_message("the upload: video has no frames") == "the upload: video has no frames"
    assert plain_decode_message("the upload: cannot open video (Check failed: st_nb >= 0; [Errno 1094995529] "
                                "Invalid data found when processing input)") == UNREADABLE


# WCAG 2.x relative luminance and contrast ratio (https://www.w3.org/TR/WCAG22/#dfn-contrast-ratio).
def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    h = "".join(c * 2 for c in h) if len(h) == 3 else h
    channels = [int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def page_colours() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The chart colours and constants of charts.js, and the custom properties of style.css's :root."""
    charts = (STATIC / "charts.js").read_text()
    palette = re.findall(r"#[0-9a-fA-F]{6}", re.search(r"COLORS = \[(.*?)\]", charts, re.S).group(1))
    consts = dict(re.findall(r'export const (\w+) = "(#[0-9a-fA-F]{3,6})"', charts))
    css = (STATIC / "style.css").read_text()
    root = re.search(r":root \{(.*?)\}", css, re.S).group(1)
    return palette, consts, dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{3,6})", root))


def test_the_issue_s_old_colours_fail_as_reported():
    assert contrast("#f2b134", "#fff") == pytest.approx(1.9, abs=0.05)  # the old yellow
    assert contrast("#8e9aaf", "#fff") == pytest.approx(2.8, abs=0.05)  # the old grey


def test_graphics_and_text_contrast():
    palette, consts, css = page_colours()
    assert len(palette) == 10 and len(set(palette)) == 10
    backgrounds = {"canvas": consts["CANVAS_BG"], "card": css["card"], "bar track": css["track"]}
    low = [(c, where, round(contrast(c, bg), 2)) for c in palette for where, bg in backgrounds.items()
           if contrast(c, bg) < 3.0]
    assert not low, low  # WCAG 1.4.11: graphics >= 3:1 against what they are drawn on
    for fg, bg in [("fg", "bg"), ("fg", "card"), ("muted", "bg"), ("muted", "card"), ("error", "card"),
                   ("accent", "card"), ("rec", "card")]:
        assert contrast(css[fg], css[bg]) >= 4.5, (fg, bg)  # text: WCAG 1.4.3
    assert contrast("#ffffff", css["accent"]) >= 4.5 and contrast("#ffffff", css["rec"]) >= 4.5  # button labels
    assert contrast(consts["AXIS_TEXT"], consts["CANVAS_BG"]) >= 4.5
    assert contrast(css["edge"], css["card"]) >= 3.0  # the drop zone's border


def test_each_emotion_has_its_own_dash_and_marker():
    charts = (STATIC / "charts.js").read_text()
    dashes = re.search(r"const DASHES = (\[.*?\]);\n", charts).group(1)
    markers = re.findall(r'"(\w+)"', re.search(r"const MARKERS = \[(.*?)\]", charts).group(1))
    n_dashes = dashes.count("[") - 1
    # Label i gets dash i % len(DASHES) and marker i % len(MARKERS): distinct pairs for lcm(6, 8) = 24 labels.
    pairs = {(i % n_dashes, i % len(markers)) for i in range(24)}
    assert n_dashes == 6 and len(markers) == len(set(markers)) == 8 and len(pairs) == 24
