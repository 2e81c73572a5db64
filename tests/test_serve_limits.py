"""What `clipbert-emo serve` does with hostile requests: bodies over the cap whatever their headers say, decode
bombs, stalled clients, foreign Host names, bad command-line numbers and a port in use. Each test looks at what the
client sees (status, message, no traceback) and at what was left on the disk."""

import http.client
import json
import os
import select
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from fastapi.testclient import TestClient  # noqa: E402

from clipbert_emo.cli import main  # noqa: E402
from clipbert_emo.serve import app as serve_app  # noqa: E402
from clipbert_emo.serve import ServeLimits, create_app  # noqa: E402

BOUNDARY = "clipbertemoboundary"


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    from clipbert_emo import Predictor

    return Predictor(tiny_checkpoint, device="cpu")


class Spy:
    """Wraps the predictor: counts calls, and can hold them until ``gate`` is set."""

    def __init__(self, predictor, hold=False):
        self.predictor, self.calls = predictor, 0
        self.gate, self.entered = threading.Event(), threading.Event()
        if not hold:
            self.gate.set()

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        self.gate.wait(30)
        return self.predictor(*args, **kwargs)


@pytest.fixture
def spooled(monkeypatch):
    """{upload folder: {file name: bytes}} as each upload folder was when the server removed it."""
    seen = {}
    real = serve_app.shutil.rmtree

    def spy(path, *args, **kwargs):
        if os.path.basename(str(path)).startswith("clipbert-emo-upload-"):
            seen[str(path)] = {f: os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)}
        return real(path, *args, **kwargs)

    monkeypatch.setattr(serve_app.shutil, "rmtree", spy)
    return seen


def _client(app, host="localhost"):
    return TestClient(app, base_url=f"http://{host}")


def _post(client, data, kind="video/mp4", text="oh wow"):
    return client.post("/predict", files={"file": ("clip.mp4", data, kind)}, data={"text": text})


def _video(path, size=16, frames=4, fps=8, fmt="mp4", codec="libx264"):
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * i % 255, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


@contextmanager
def running(app, limits):
    """A real uvicorn server (the one `serve` runs) for ``app`` on a free port of 127.0.0.1."""
    sock = serve_app.bind("127.0.0.1", 0)
    server = serve_app.uvicorn_server(app, limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _request_head(port, headers):
    lines = ["POST /predict HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _file_part_head(kind="video/mp4"):
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n'
            f"Content-Type: {kind}\r\n\r\n").encode()


def _response(sock):
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.getheader("connection"), response.read().decode()


def _health(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    return json.loads(conn.getresponse().read())


def _wait_for(condition, seconds=10):
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.02)
    return condition()


# --- bodies over the cap ---------------------------------------------------------------------------------------

def test_chunked_body_under_a_lying_content_length_is_cut_at_the_cap(predictor, spooled):
    cap, piece = 256 * 1024, 64 * 1024
    limits = ServeLimits(max_upload_bytes=cap)
    spy = Spy(predictor)
    with running(create_app(spy, limits), limits) as port:
        with _connect(port) as sock:
            sock.sendall(_request_head(port, ["Content-Length: 10", "Transfer-Encoding: chunked"]))
            for chunk in [_file_part_head()] + [b"\0" * piece] * (cap // piece + 2):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            # The body has not ended (no last chunk): the answer must come from the count alone.
            status, _, text = _response(sock)
        assert _wait_for(lambda: _health(port)["pending"] == 0)
    assert status == 413 and "limit" in text and "Traceback" not in text
    ((folder, files),) = spooled.items()
    assert sum(files.values()) <= cap, files  # counted as it arrived: the file never passed the cap
    assert not os.path.exists(folder) and spy.calls == 0


def test_a_declared_length_over_the_cap_is_refused_unread(predictor, spooled):
    limits = ServeLimits(max_upload_bytes=1000)
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as sock:
            sock.sendall(_request_head(port, ["Content-Length: 5000000"]))
            status, _, text = _response(sock)
    assert status == 413 and "limit" in text
    assert spooled == {}  # no folder was even made


def test_a_full_queue_answers_503_before_the_body_arrives(predictor, spooled):
    limits = ServeLimits(queue_limit=1)
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as first, _connect(port) as second:
            first.sendall(_request_head(port, ["Content-Length: 100000"]) + _file_part_head())  # holds the slot
            assert _wait_for(lambda: _health(port)["pending"] == 1)
            second.sendall(_request_head(port, ["Content-Length: 100000"]))  # and not a byte of its body
            status, _, text = _response(second)
        assert _wait_for(lambda: _health(port)["pending"] == 0)
    assert status == 503 and "busy" in text
    assert len(spooled) == 1  # only the first upload had a folder


# --- decode bombs: refused from the header ---------------------------------------------------------------------

def test_a_decode_bomb_is_refused_from_its_header(predictor, tmp_path, spooled):
    data = bytearray(_video(tmp_path / "bomb.mp4", size=4096, frames=2, fps=25))
    # Zero the coded frames: a server that decoded before judging the header would answer "does not decode".
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    spy = Spy(predictor)
    with _client(create_app(spy)) as client:
        start = time.perf_counter()
        r = _post(client, bytes(data))
        took = time.perf_counter() - start
    assert r.status_code == 422, r.text
    assert "4096x4096" in r.json()["detail"] and "limit is 9.4 MP" in r.json()["detail"]
    assert spy.calls == 0 and took < 5
    assert all(not os.path.exists(folder) for folder in spooled)


@pytest.mark.parametrize("case", ["rate", "frames_in_header", "frames_counted", "size"])
def test_header_caps(predictor, tmp_path, case):
    limits = {"rate": ServeLimits(), "frames_in_header": ServeLimits(max_frames=10),
              "frames_counted": ServeLimits(max_frames=5), "size": ServeLimits(max_pixels=32 * 32)}[case]
    data = {"rate": lambda: _video(tmp_path / "v.mp4", frames=8, fps=300),
            "frames_in_header": lambda: _video(tmp_path / "v.mp4", frames=16),
            # WebM has no frame count in its header (as a browser's recording): the packets are counted
            "frames_counted": lambda: _video(tmp_path / "v.webm", frames=8, fps=30, fmt="webm", codec="libvpx"),
            "size": lambda: _video(tmp_path / "v.mp4", size=48)}[case]()
    spy = Spy(predictor)
    with _client(create_app(spy, limits)) as client:
        r = _post(client, data, kind="video/webm" if case == "frames_counted" else "video/mp4")
    detail = r.json()["detail"]
    assert r.status_code == 422 and spy.calls == 0, r.text
    assert {"rate": "frame rate is 300 fps; the limit is 240 fps", "frames_in_header": "16 frames; the limit is 10",
            "frames_counted": "more than 5 frames", "size": "48x48"}[case] in detail


def test_a_video_within_the_caps_is_scored(predictor, tmp_path):
    limits = ServeLimits(max_frames=8, max_pixels=16 * 16, max_fps=30)
    with _client(create_app(predictor, limits)) as client:
        r = _post(client, _video(tmp_path / "v.webm", frames=8, fps=30, fmt="webm", codec="libvpx"),
                  kind="video/webm")
    assert r.status_code == 200, r.text
    assert r.json()["duration_s"] == pytest.approx(8 / 30, abs=0.05)


# --- deadlines -------------------------------------------------------------------------------------------------

def test_a_stalled_body_gets_408_and_frees_its_slot(predictor, spooled):
    limits = ServeLimits(read_timeout=0.5, queue_limit=1)
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as sock:
            sock.sendall(_request_head(port, ["Content-Length: 100000"]) + _file_part_head() + b"\0" * 100)
            start = time.perf_counter()
            status, connection, text = _response(sock)
            took = time.perf_counter() - start
            assert sock.recv(1) == b""  # and the connection is closed
        assert _health(port)["pending"] == 0
    assert status == 408 and "stalled" in text and connection == "close"
    assert 0.4 < took < 5
    assert len(spooled) == 1 and not any(os.path.exists(folder) for folder in spooled)


def test_a_trickling_body_gets_408_at_the_request_deadline(predictor):
    limits = ServeLimits(read_timeout=5.0, request_timeout=1.0)
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as sock:
            sock.sendall(_request_head(port, ["Content-Length: 100000"]) + _file_part_head())
            start = time.perf_counter()
            # A byte every 0.2 s never stalls for read_timeout; the request's own deadline ends it.
            while time.perf_counter() - start < 5 and not select.select([sock], [], [], 0.2)[0]:
                sock.sendall(b"\0")
            status, _, text = _response(sock)
            took = time.perf_counter() - start
    assert status == 408 and "within 1 s" in text and took < 4


def test_slow_or_silent_connections_are_closed(predictor):
    limits = ServeLimits(read_timeout=0.5)
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as silent, _connect(port) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHo")
            start = time.perf_counter()
            for sock in (silent, slow):
                try:
                    assert sock.recv(1) == b""
                except ConnectionResetError:
                    pass
            assert time.perf_counter() - start < 5


def test_scoring_past_the_deadline_gets_504_and_its_folder_goes_when_it_ends(predictor, synthemo_dir, spooled):
    video = (synthemo_dir / "videos" / "test" / "000000.mp4").read_bytes()
    spy = Spy(predictor, hold=True)
    with _client(create_app(spy, ServeLimits(request_timeout=1.0))) as client:
        r = _post(client, video)
        assert r.status_code == 504 and "1 s" in r.json()["detail"]
        assert client.get("/health").json()["pending"] == 1  # its thread still holds the file
        spy.gate.set()
        assert _wait_for(lambda: client.get("/health").json()["pending"] == 0)
    assert len(spooled) == 1 and not any(os.path.exists(folder) for folder in spooled)


def test_a_client_that_leaves_mid_upload_leaves_nothing(predictor, spooled):
    limits = ServeLimits()
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as sock:
            sock.sendall(_request_head(port, ["Content-Length: 100000"]) + _file_part_head() + b"\0" * 1000)
            assert _wait_for(lambda: _health(port)["pending"] == 1)
        assert _wait_for(lambda: _health(port)["pending"] == 0)
    assert len(spooled) == 1 and not any(os.path.exists(folder) for folder in spooled)


# --- the multipart body ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["two_files", "bad_utf8", "cut_short", "not_multipart"])
def test_bad_multipart_bodies(predictor, case):
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n'
    file_part = (head % ("file", '; filename="a.mp4"\r\nContent-Type: video/mp4')).encode() + b"\0" * 10 + b"\r\n"
    bodies = {"two_files": file_part * 2 + f"--{BOUNDARY}--\r\n".encode(),
              "bad_utf8": (head % ("text", "")).encode() + b"\xff\xfe\r\n" + file_part + f"--{BOUNDARY}--\r\n".encode(),
              "cut_short": file_part[:-4],  # inside the file's data
              "not_multipart": b'{"file": "x"}'}
    kind = "application/json" if case == "not_multipart" else f"multipart/form-data; boundary={BOUNDARY}"
    with _client(create_app(predictor)) as client:
        r = client.post("/predict", content=bodies[case], headers={"Content-Type": kind})
    expected = {"two_files": (422, "one video"), "bad_utf8": (422, "UTF-8"), "cut_short": (400, "cut short"),
                "not_multipart": (422, "multipart/form-data")}[case]
    assert (r.status_code, expected[1] in r.json()["detail"]) == (expected[0], True), r.text


def test_a_non_video_part_is_refused_before_its_data(predictor, spooled):
    limits = ServeLimits()
    with running(create_app(predictor, limits), limits) as port:
        with _connect(port) as sock:
            # The declared body is far longer than what is sent: the answer must not wait for the rest.
            sock.sendall(_request_head(port, ["Content-Length: 1000000"]) + _file_part_head("text/html") + b"<p>")
            status, _, text = _response(sock)
    assert status == 415 and "text/html" in text


# --- Host names ------------------------------------------------------------------------------------------------

def test_only_known_host_names_get_in(predictor):
    names = serve_app.allowed_host_names("0.0.0.0", ["media.lan"])
    app = create_app(predictor, allowed_hosts=names)
    for host, expected in (("evil.example", 400), ("evil.example:8000", 400), ("localhost:8000", 200),
                           ("127.0.0.1:8000", 200), ("[::1]:8000", 200), ("media.lan", 200), ("MEDIA.LAN:80", 200)):
        with _client(app, host) as client:
            r = client.get("/labels")
        assert r.status_code == expected, (host, r.text)
        assert "default-src 'self'" in r.headers["content-security-policy"]
        if expected == 400:
            assert "--allowed-host" in r.json()["detail"] and "access-control-allow-origin" not in r.headers


def test_allowed_host_names():
    assert serve_app.allowed_host_names("::", ["Box.Lan"]) == ("localhost", "127.0.0.1", "[::1]", "[::]", "box.lan")
    assert serve_app.host_name("[::1]:8000") == "[::1]" and serve_app.host_name("a.b:x") is None


# --- the command line ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option,value", [("--port", "99999"), ("--port", "-1"), ("--port", "http"),
                                          ("--max-upload-mb", "nan"), ("--max-upload-mb", "inf"),
                                          ("--max-upload-mb", "-5"), ("--max-seconds", "nan"),
                                          ("--max-seconds", "0"), ("--request-timeout", "inf"),
                                          ("--read-timeout", "-1"), ("--max-fps", "nan"),
                                          ("--max-resolution", "4096"), ("--max-frames", "0"), ("--seek", "fast")])
def test_bad_serve_numbers_are_usage_errors(capsys, option, value):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "no/such/checkpoint", option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"clipbert-emo serve: error: argument {option}: " in err and "Traceback" not in err


def test_a_port_in_use_is_said_before_serving(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.perf_counter()
        code = main(["serve", "no/such/checkpoint", "--port", str(port)])  # the port is checked first
    out, err = capsys.readouterr()
    assert code == 2 and f"port {port} is in use" in err
    assert "serving" not in out + err and "Traceback" not in err and time.perf_counter() - start < 5


def test_serve_options_reach_the_server(monkeypatch):
    import clipbert_emo.serve

    calls = []
    monkeypatch.setattr(clipbert_emo.serve, "serve", lambda checkpoint, **kwargs: calls.append(kwargs))
    assert main(["serve", "ckpt"]) == 0
    assert main(["serve", "ckpt", "--seek", "accurate", "--allowed-host", "a.lan", "--allowed-host", "b.lan",
                 "--max-resolution", "1920x1080", "--max-upload-mb", "2", "--request-timeout", "30"]) == 0
    default, chosen = calls
    assert default["seek"] == "keyframe" and default["limits"] == ServeLimits()
    assert chosen["seek"] == "accurate" and chosen["allowed_hosts"] == ["a.lan", "b.lan"]
    assert (chosen["limits"].max_pixels, chosen["limits"].max_upload_bytes, chosen["limits"].request_timeout) == (
        1920 * 1080, 2 * 2**20, 30.0)


def test_serve_builds_its_predictor_with_the_seek_mode(monkeypatch):
    import sys

    from clipbert_emo.config import UserError

    made = []

    class Stop(UserError):
        pass

    def fake(checkpoint, **kwargs):
        made.append(kwargs)
        raise Stop("loaded")

    # the module, not clipbert_emo.predict, which the package's predict() function shadows
    monkeypatch.setattr(sys.modules["clipbert_emo.predict"], "Predictor", fake)
    with pytest.raises(Stop):
        serve_app.serve("ckpt", port=0, seek="accurate")
    assert made[0]["seek"] == "accurate"


def test_limits_refuse_nonsense():
    for bad in ({"max_seconds": float("nan")}, {"max_upload_bytes": -5}, {"request_timeout": float("inf")}):
        with pytest.raises(ValueError):
            ServeLimits(**bad)
