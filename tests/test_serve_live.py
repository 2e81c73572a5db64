"""The per-frame live mode's endpoint, POST /api/frame (FastAPI's TestClient), with the ready face model: a real
face is boxed where it is and read as the model reads it through /predict; a frame without a face gets no box; the
face is tracked across one page's frames; non-images, oversized bodies, too many pixels, a damaged image and a bad
session token are refused in plain words; frames at once and their time are bounded; a model that is not a face
model refuses the mode and /labels says so. The page itself: tests/test_serve_live_browser.py."""

import io
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from clipbert_emo.serve import ServeLimits, create_app  # noqa: E402
from clipbert_emo.serve.live import LiveTracker  # noqa: E402

# The astronaut's face in scikit-image's 512 x 512 photograph, checked by eye (as experiments/bench_faces.py has it).
FACE = (177.0, 70.0, 95.0, 100.0)
LIMITS = ServeLimits(max_frame_bytes=300_000, max_frame_pixels=640 * 480)


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    from clipbert_emo.face_model import build_face_model

    return build_face_model(tmp_path_factory.mktemp("live") / "face_model")


@pytest.fixture(scope="module")
def predictor(face_model):
    from clipbert_emo import Predictor

    return Predictor(face_model, device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, LIMITS), base_url="http://localhost") as c:
        yield c


def encoded(image: np.ndarray, kind: str = "JPEG", **options) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, kind, **options)
    return out.getvalue()


def astronaut(side: int = 256) -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.BILINEAR))


def post(client, body, kind="image/jpeg", session=None):
    headers = {"content-type": kind}
    if session:
        headers["x-live-session"] = session
    return client.post("/api/frame", content=body, headers=headers)


def test_a_real_face_is_boxed_and_read_as_predict_reads_it(client, predictor, tmp_path):
    frame = astronaut(256)
    r = post(client, encoded(frame, "PNG"), "image/png")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"]) == (256, 256) and out["detected"] and not out["tracked"]
    x, y, w, h = out["box"]
    k = 256 / 512  # the reference box is in the 512 px photograph
    fx, fy, fw, fh = (v * k for v in FACE)
    assert fx <= x + w / 2 <= fx + fw and fy <= y + h / 2 <= fy + fh  # centred on the face
    assert 0.5 < (w * h) / (fw * fh) < 2.0
    assert out["prediction"] == "happy" and out["probabilities"]["happy"] > 0.9  # she smiles
    assert sum(out["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out["ms"] >= out["detect_ms"] > 0 and out["score_ms"] > 0
    # The same picture through the predictor (a still image is a one-frame video): the same box, the same answer.
    from PIL import Image

    Image.fromarray(frame).save(tmp_path / "still.png")
    whole = predictor(tmp_path / "still.png", n_test=1)
    assert whole["clips"][0]["face_box"] == pytest.approx(out["box"], abs=0.05)
    assert whole["probabilities"] == pytest.approx(out["probabilities"], abs=1e-5)
    # A JPEG of it, as the page sends, at the page's width: still the face, still happy.
    small = astronaut(192)
    r = post(client, encoded(small, quality=80))
    assert r.status_code == 200 and r.json()["prediction"] == "happy"
    assert r.json()["box"][0] == pytest.approx(x * 192 / 256, abs=6)


def test_a_frame_without_a_face_gets_no_box(client):
    from skimage import data

    r = post(client, encoded(data.coffee()[::2, ::2].copy()))  # a cup of coffee, 300 x 200
    assert r.status_code == 200
    out = r.json()
    assert out["box"] is None and out["prediction"] is None and out["probabilities"] is None
    assert (out["width"], out["height"]) == (300, 200)


def test_one_pages_face_is_tracked_across_its_frames(predictor, monkeypatch):
    from clipbert_emo.serve import live

    # Seconds rather than tenths, so that a loaded machine's slow requests still come "a moment later".
    monkeypatch.setattr(live, "REUSE_S", 30.0)
    monkeypatch.setattr(live, "CARRY_S", 60.0)
    client = TestClient(create_app(predictor, LIMITS), base_url="http://localhost")
    frame = encoded(astronaut(192))
    blank = encoded(np.full((192, 192, 3), 120, np.uint8))
    first = post(client, frame, session="page-1").json()
    assert first["detected"] and not first["tracked"]
    second = post(client, blank, session="page-1").json()  # the detector rests: the face seen a moment ago
    assert not second["detected"] and second["tracked"] and second["box"] == first["box"]
    third = post(client, blank, session="page-1").json()  # it looks again, finds nothing, keeps the box a while
    assert third["detected"] and third["tracked"] and third["box"] == first["box"]
    other = post(client, blank, session="page-2").json()  # another page's frames are its own
    assert other["detected"] and other["box"] is None
    lone = post(client, blank).json()  # no session: each frame alone
    assert lone["detected"] and lone["box"] is None


def test_tracker_smooths_carries_and_forgets():
    t = LiveTracker(carry_s=0.5, follow=0.5, max_sessions=2, detect_every=2, reuse_s=0.25)
    size = (192, 144)
    assert t.update("a", size, (10, 10, 40, 40), now=0.0) == ((10, 10, 40, 40), False)
    assert t.reuse("a", size, now=0.1) == (10, 10, 40, 40)
    assert t.reuse("a", size, now=0.15) is None  # one frame in two is detected
    box, carried = t.update("a", size, (20, 10, 40, 40), now=0.2)  # the same face, moved: half the way
    assert box == (15, 10, 40, 40) and not carried
    assert t.reuse("a", size, now=0.6) is None  # too long since the last detection to skip the detector
    assert t.update("a", size, None, now=0.6) == ((15, 10, 40, 40), True)  # a miss: carried
    assert t.update("a", size, None, now=0.8) == (None, False)  # past carry_s: gone
    assert t.update("a", size, (100, 80, 30, 30), now=0.9) == ((100, 80, 30, 30), False)
    assert t.update("a", size, (10, 10, 40, 40), now=1.0) == ((10, 10, 40, 40), False)  # another face: no blend
    assert t.update("a", (320, 240), None, now=1.1) == (None, False)  # another frame size: nothing carries over
    t.update("b", size, (1, 1, 5, 5), now=1.2)
    t.update("c", size, (1, 1, 5, 5), now=1.3)
    assert t.update("a", size, None, now=1.4)[0] is None and len(t._tracks) == 2  # "a" was forgotten first
    assert t.update(None, size, (3, 3, 9, 9)) == ((3, 3, 9, 9), False)


def test_the_api_says_what_it_takes(client):
    info = client.get("/labels").json()
    assert info["frame_mode"] == {"available": True, "reason": None}
    assert info["limits"]["max_frame_bytes"] == 300_000 and info["limits"]["max_frame_pixels"] == 640 * 480
    served = client.get("/health").json()["frames_served"]
    assert post(client, encoded(astronaut(128))).status_code == 200
    assert client.get("/health").json()["frames_served"] == served + 1
    op = client.get("/openapi.json").json()["paths"]["/api/frame"]["post"]
    assert {"image/jpeg", "image/png", "image/webp"} <= set(op["requestBody"]["content"])
    assert {"409", "413", "415", "422", "503"} <= set(op["responses"])


def _chunks(data: bytes, size: int = 65536):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("case", ["text_as_jpeg", "text_plain", "gif", "damaged", "too_many_pixels",
                                  "too_many_bytes", "too_many_bytes_chunked", "bad_session", "empty"])
def test_what_is_not_a_frame_is_refused_in_plain_words(client, case):
    rng = np.random.default_rng(0)
    jpeg = encoded(astronaut(256))
    noise = encoded(rng.integers(0, 255, (400, 600, 3), dtype=np.uint8), "PNG")  # ~700 KB that no codec shrinks
    status, body, kind, says = {
        "text_as_jpeg": (422, b"this is not a picture\n" * 20, "image/jpeg", "not a JPEG, PNG or WebP image"),
        "text_plain": (415, b"hello", "text/plain", "expected a JPEG, PNG or WebP image"),
        "gif": (422, encoded(astronaut(64), "GIF"), "image/gif", "not a JPEG, PNG or WebP image"),
        "damaged": (422, jpeg[: len(jpeg) // 2], "image/jpeg", "could not be decoded: it is damaged or cut short"),
        "too_many_pixels": (422, encoded(np.zeros((700, 700, 3), np.uint8), "PNG"), "image/png",
                            "700x700 (0.5 MP); the limit of a frame is 0.3 MP"),
        "too_many_bytes": (413, noise, "image/png", "over the 293.0 KiB limit"),
        "too_many_bytes_chunked": (413, _chunks(noise), "image/png", "over the 293.0 KiB limit"),
        "bad_session": (400, jpeg, "image/jpeg", "X-Live-Session"),
        "empty": (422, b"", "image/jpeg", "the request body is empty"),
    }[case]
    headers = {"content-type": kind}
    if case == "bad_session":
        headers["x-live-session"] = "../../etc/passwd"
    r = client.post("/api/frame", content=body, headers=headers)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert says in detail, detail
    assert "Traceback" not in detail and "/tmp" not in detail and "PIL" not in detail


def test_frames_at_once_and_their_time_are_bounded(predictor, monkeypatch):
    from clipbert_emo.serve import live

    entered, release = threading.Event(), threading.Event()

    class Slow:
        def __call__(self, frame):
            if frame.shape[:2] == (64, 64):  # the test's frames; the server's warm-up passes
                entered.set()
                release.wait(10)
            return None

    monkeypatch.setattr(live.FrameScorer, "detector", lambda self: Slow())
    limits = ServeLimits(frame_queue_limit=1, frame_timeout=1.0)
    with TestClient(create_app(predictor, limits), base_url="http://localhost") as c:
        frame = encoded(astronaut(64))
        answers = []
        first = threading.Thread(target=lambda: answers.append(post(c, frame)))
        first.start()
        try:
            assert entered.wait(10)
            busy = post(c, frame)  # the one slot is taken: refused before its body is read
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            first.join(10)
            assert answers[0].status_code == 504 and "within 1 s" in answers[0].json()["detail"]
            # Its thread is still at work: the slot stays taken until it ends, so the pool is never overcommitted.
            assert post(c, frame).status_code == 503
        finally:
            release.set()
        deadline = time.time() + 10
        while post(c, frame).status_code == 503 and time.time() < deadline:
            time.sleep(0.05)
        assert c.get("/health").json()["frames_served"] >= 1


def test_a_model_that_is_not_a_face_model_refuses_the_mode(make_random_checkpoint, tmp_path):
    from clipbert_emo import Predictor

    checkpoint = make_random_checkpoint(tmp_path / "video_text")
    with TestClient(create_app(Predictor(checkpoint, device="cpu")), base_url="http://localhost") as c:
        mode = c.get("/labels").json()["frame_mode"]
        assert mode["available"] is False and "face-expression model" in mode["reason"]
        r = post(c, encoded(astronaut(128)))
        assert r.status_code == 409 and r.json()["detail"] == mode["reason"]
        assert "clip mode" in mode["reason"] and "video and text" in mode["reason"]


def test_the_live_benchmarks_server_rows(face_model):
    from clipbert_emo.experiments.bench_live import server_alone

    every_frame, every_other = server_alone(face_model, 192, frames=12)
    assert every_frame["detected"] == 1.0 and every_other["detected"] == 0.5  # the tracker rests the detector
    for row in (every_frame, every_other):
        assert row["updates"] == 12 and row["face_found"] == 1.0 and row["top"] == "happy"
        assert row["server_ms_p90"] >= row["server_ms_median"] > 0 and row["detect_ms_median"] > 0
