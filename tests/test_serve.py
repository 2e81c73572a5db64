"""The served JSON API (FastAPI's TestClient): results, every kind of bad upload, limits, concurrency."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from clipbert_emo.serve import app as serve_app  # noqa: E402
from clipbert_emo.serve import ServeLimits, create_app  # noqa: E402


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    from clipbert_emo import Predictor

    return Predictor(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def video_bytes(synthemo_dir):
    return (synthemo_dir / "videos" / "test" / "000000.mp4").read_bytes()


@pytest.fixture
def uploads(monkeypatch):
    """Every upload folder the server makes, with its mode when it was made."""
    made = []
    real = serve_app.tempfile.mkdtemp

    def spy(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append((path, os.stat(path).st_mode & 0o777))
        return path

    monkeypatch.setattr(serve_app.tempfile, "mkdtemp", spy)
    return made


def _client(app):
    # The app answers only to this machine's names (DNS rebinding); TestClient's default Host is "testserver".
    return TestClient(app, base_url="http://localhost")


def _post(client, data, kind="video/mp4", name="clip.mp4", text="oh wow"):
    return client.post("/predict", files={"file": (name, data, kind)}, data={"text": text})


def test_labels_health_page_and_schema(predictor):
    with _client(create_app(predictor)) as client:
        labels = client.get("/labels").json()
        assert labels["labels"] == predictor.labels and labels["uses_text"] is True
        assert labels["modalities"] == ["video"]
        assert client.get("/health").json()["status"] == "ok"
        page = client.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "drawTimeline" in client.get("/static/app.js").text
        schema = client.get("/openapi.json").json()
        assert {"/predict", "/labels", "/health"} <= set(schema["paths"])
        assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_predict_an_upload_and_leave_nothing_behind(predictor, video_bytes, synthemo_dir, uploads):
    with _client(create_app(predictor)) as client:
        r = _post(client, video_bytes, name="../../../etc/passwd")  # the name never becomes a path
    assert r.status_code == 200, r.text
    result = r.json()
    direct = predictor(synthemo_dir / "videos" / "test" / "000000.mp4", text="oh wow")
    assert result["probabilities"] == pytest.approx(direct["probabilities"], abs=1e-5)
    assert result["video"] == "upload" and result["duration_s"] == pytest.approx(2.0, abs=0.2)
    assert len(result["timeline"]["start"]) == result["num_clips"] == 3
    ((folder, mode),) = uploads
    assert mode == 0o700 and not os.path.exists(folder)


@pytest.mark.parametrize("case", ["text_type", "corrupt", "empty", "audio_only", "too_long", "too_big", "no_file",
                                  "long_text"])
def test_bad_uploads_get_a_4xx_with_a_message(predictor, video_bytes, tmp_path, case, uploads, write_av):
    limits = ServeLimits(max_upload_bytes=200_000, max_seconds=10.0)
    expected = {"text_type": 415, "corrupt": 422, "empty": 422, "audio_only": 422, "too_long": 422, "too_big": 413,
                "no_file": 422, "long_text": 422}[case]
    with _client(create_app(predictor, limits)) as client:
        if case == "text_type":
            r = _post(client, b"hello", kind="text/plain", name="x.txt")
        elif case == "corrupt":
            r = _post(client, video_bytes[: len(video_bytes) // 3])
        elif case == "empty":
            r = _post(client, b"")
        elif case == "audio_only":
            r = _post(client, write_av(tmp_path / "a.mp4", video=False).read_bytes())
        elif case == "too_long":
            r = _post(client, write_av(tmp_path / "l.mp4", seconds=12, fps=4, audio=False, size=16).read_bytes())
        elif case == "too_big":
            r = _post(client, video_bytes * (250_000 // len(video_bytes) + 1))
        elif case == "no_file":
            r = client.post("/predict", data={"text": "hi"})
        else:
            r = _post(client, video_bytes, text="x" * 3000)
    assert r.status_code == expected, r.text
    detail = r.json()["detail"]
    assert detail and "Traceback" not in str(detail)
    assert all(folder not in str(detail) and not os.path.exists(folder) for folder, _ in uploads)
    words = {"text_type": "text/plain", "corrupt": "video", "empty": "empty", "audio_only": "no video stream",
             "too_long": "limit", "too_big": "limit"}
    if case in words:
        assert words[case] in detail


def test_twenty_concurrent_requests(predictor, video_bytes):
    limits = ServeLimits(queue_limit=32, workers=2)
    with _client(create_app(predictor, limits)) as client:
        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(lambda i: _post(client, video_bytes, text=f"take {i % 2}"), range(20)))
        assert client.get("/health").json()["served"] == 20
    assert [r.status_code for r in responses] == [200] * 20
    by_text = {}
    for i, r in enumerate(responses):  # the same input gives the same answer, whatever ran beside it
        by_text.setdefault(i % 2, []).append(r.json()["probabilities"])
    for runs in by_text.values():
        assert all(p == pytest.approx(runs[0], abs=1e-5) for p in runs)


def test_a_full_queue_answers_503(predictor, video_bytes, uploads):
    gate, entered = threading.Event(), threading.Event()

    class Slow:
        def __getattr__(self, name):
            return getattr(predictor, name)

        def __call__(self, *args, **kwargs):
            entered.set()
            gate.wait(30)
            return predictor(*args, **kwargs)

    with _client(create_app(Slow(), ServeLimits(queue_limit=1))) as client:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_post, client, video_bytes)
            assert entered.wait(30)
            refused = [_post(client, video_bytes) for _ in range(5)]
            gate.set()
            assert first.result().status_code == 200
    assert all(r.status_code == 503 and "busy" in r.json()["detail"] for r in refused)
    assert all(r.headers["retry-after"] == "2" for r in refused)
    assert len(uploads) == 1  # a refused upload gets no folder
