"""The web page and its JSON API: upload a short video (or record one from the webcam) and see the emotions.

    clipbert-emo serve runs/demo/video+text/checkpoint          # then open http://127.0.0.1:8000

``POST /predict`` (multipart: ``file`` = the video, ``text`` = optional transcript) answers the predictor's
result: the top emotion, the distribution and the per-clip timeline. ``POST /api/frame`` (the body: one JPEG, PNG
or WebP still) answers the largest face's box and its emotions, for the page's per-frame live mode (live.py).
``GET /labels`` (with the limits, the model card's summary and the example videos), ``GET /health``;
``/openapi.json`` describes it all and ``/docs`` draws that in a page of our own (FastAPI's Swagger UI and ReDoc load
their scripts from a CDN: they are turned off).

What the server guarantees, whatever a request holds:
- the model is loaded once; scoring runs in a small thread pool, never on the event loop, and at most
  ``queue_limit`` uploads are read, wait or run at once: the slot is taken before the body is read, so more
  get 503 (try again) without a byte of theirs on disk;
- the body is counted as it arrives (upload.py): past ``max_upload_bytes`` it gets 413 at once, whatever its
  Content-Length or chunked encoding say; a body that stalls for ``read_timeout`` s gets 408, and a request
  that is not answered within ``request_timeout`` s gets 408 (still uploading) or 504 (still scoring);
- the video is judged by its header before it is decoded: frames over ``max_pixels``, a rate over ``max_fps``,
  more than ``max_frames`` frames or longer than ``max_seconds`` get 422; a content type that is not a video,
  415; a file that is not a readable video, 422 with the reason. A request never reaches a 500 through its
  content, and no answer carries a path or a traceback;
- a frame for /api/frame is held to limits of its own (``max_frame_bytes``: 413; ``max_frame_pixels``, read from
  the image's header before decoding: 422; a body that is no JPEG, PNG or WebP: 422, a content type that is no
  image: 415; ``frame_queue_limit`` frames at once: 503; ``frame_timeout``: 408/504) and scored in a thread of its
  own, so live frames never wait behind a video being scored;
- only requests naming this server by a known Host get in (400 otherwise): without the check, any web page
  could read the API through DNS rebinding (its own name made to resolve to 127.0.0.1);
- uploads are written to a private temporary folder (``mkdtemp``, mode 0700) under a fixed name and deleted
  once the request is over (after its scoring thread ends, if it ran out of time); nothing in a request (file
  name included) becomes part of a path;
- the page, its scripts, the API page and the example videos are served from the package (or an examples folder
  named by the server's owner, listed once at start); nothing is loaded from elsewhere (the
  Content-Security-Policy says so to the browser).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name types imported
# inside the functions that build the app (fastapi is an optional dependency).

import asyncio
import errno
import logging
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Sequence

from ..config import renamed_keyword, resolve_n_test
from .limits import ServeLimits
from .live import FrameScorer, check_frame_type, session_of, too_large
from .messages import plain_decode_message
from .page_info import find_examples, model_card_summary
from .upload import MAX_TEXT_CHARS, ClientGone, UploadRejected, probe_video, read_body, read_upload, size_text

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
       "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer")]
# The names a browser on this machine uses for it; serve() adds the address it binds and --allowed-host names.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "a short video (mp4, webm, mov, ...)"},
        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS, "description": "the transcript, if any"}}}}}}
FRAME_BODY = {"required": True, "content": {kind: {"schema": {
    "type": "string", "format": "binary", "description": "one still frame (the page sends its camera preview "
                                                         "scaled to 192 px wide)"}}
    for kind in ("image/jpeg", "image/png", "image/webp")}}


def host_name(header: str | None) -> str | None:
    """The name in a Host header, lower case and without its port ("[::1]:8000" -> "[::1]"); None if malformed."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        name, _, port = header.partition("]")
        name += "]"
    else:
        name, _, port = header.partition(":")
    return name if name and name != "]" and (not port or port.lstrip(":").isdigit()) else None


def allowed_host_names(host: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """LOCAL_HOSTS, the bound address and ``extra`` as Host names (an IPv6 address in brackets)."""
    names = list(LOCAL_HOSTS)
    for name in (host, *extra):
        name = name.strip().lower()
        name = f"[{name}]" if ":" in name and not name.startswith("[") else name
        if name not in names:
            names.append(name)
    return tuple(names)


class _Guard:
    """ASGI middleware: refuses (400) a request whose Host is not one of ``allowed`` and puts the security
    headers on every answer."""

    def __init__(self, app, allowed: Sequence[str]):
        self.app, self.allowed = app, frozenset(allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        name = host_name(header)
        if name not in self.allowed:
            from fastapi.responses import JSONResponse

            detail = (f"this server answers only to its own host names, not {header[:100]!r} (the server can "
                      "add one with --allowed-host NAME)" if header else "the request has no Host header")
            return await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send_secured)
        await self.app(scope, receive, send_secured)


def create_app(predictor, limits: ServeLimits | None = None, n_test: int | None = None,
               allowed_hosts: Sequence[str] = LOCAL_HOSTS, num_clips: int | None = None,
               checkpoint: str | Path | None = None, examples: str | Path | None = None):
    """The FastAPI application around one loaded :class:`~clipbert_emo.predict.Predictor`. ``allowed_hosts``:
    the Host names it answers to (see :func:`allowed_host_names`); ``checkpoint``: its folder, whose model card
    the page summarises; ``examples``: a folder of videos the page offers to score with one click (default: the
    clips that ship in serve/static)."""
    from fastapi import FastAPI

    limits = limits or ServeLimits()
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="clipbert-emo-serve")
    frames = FrameScorer(predictor, limits)
    state = {"pending": 0, "served": 0, "started": time.time(), "folders": set(), "frames_pending": 0,
             "frames_served": 0, "frame_pool": None}

    @asynccontextmanager
    async def lifespan(_app):
        _frame_pool(state).submit(frames.warm)  # in the thread that will score the frames (its detector is its own)
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        if state["frame_pool"] is not None:
            state["frame_pool"].shutdown(wait=False, cancel_futures=True)
            state["frame_pool"] = None  # a later start of the same app (a test's second client) makes a new one
        for folder in list(state["folders"]):  # uploads whose scoring thread was still running
            shutil.rmtree(folder, ignore_errors=True)

    app = FastAPI(title="clipbert-emo", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Emotion recognition in short videos (video + optional transcript). POST a video "
                              "to /predict; the page at / does it from a browser, with a webcam live mode.")
    app.state.predictor, app.state.limits, app.state.pool, app.state.frames = predictor, limits, pool, frames
    app.add_middleware(_Guard, allowed=allowed_hosts)
    n_test = renamed_keyword(n_test, num_clips, "n_test", "num_clips", "create_app")  # num_clips: its old name
    page = {"card": model_card_summary(checkpoint or getattr(predictor, "checkpoint", None)),
            "examples": find_examples(examples)}
    page["frame_refusal"] = frames.refusal
    _add_page_and_info(app, predictor, limits, n_test, state, page)
    _add_predict(app, _scorer(predictor, limits, n_test), limits, pool, state)
    _add_frame(app, frames, limits, state)
    return app


def _add_page_and_info(app, predictor, limits: ServeLimits, n_test: int | None, state: dict, page: dict) -> None:
    """``/`` (the page), ``/static``, ``/docs``, ``/favicon.ico``, ``/examples/NAME``, ``/health`` and ``/labels``.
    ``page``: the model card's summary and the example videos (page_info.py)."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    examples = page["examples"]

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/examples/{name}", summary="An example video the page offers", responses={404: {
        "description": "no example of that name"}})
    def example(name: str):
        """One of the videos /labels lists under ``examples`` (its ``url``)."""
        if name not in examples:  # only names listed at start: the request's text never reaches a path
            raise HTTPException(404, "no example of that name; GET /labels lists them")
        found = examples[name]
        if not found["path"].is_file():  # removed from the examples folder since the server started
            raise HTTPException(404, "that example is no longer on the server")
        return FileResponse(found["path"], media_type=found["media_type"])

    @app.get("/health", summary="Liveness and load")
    def health() -> dict:
        """``status`` ("ok"), ``pending`` (uploads being read, scored or waiting), ``queue_limit``, ``served``
        (answered since start), ``frames_served`` (live frames answered) and ``uptime_s``."""
        return {"status": "ok", "pending": state["pending"], "queue_limit": limits.queue_limit,
                "served": state["served"], "frames_served": state["frames_served"],
                "uptime_s": round(time.time() - state["started"], 1)}

    @app.get("/labels", summary="What the model predicts, what it reads, the limits, its card and the examples")
    def labels() -> dict:
        """``labels``, ``task``, ``uses_text``, ``modalities``, ``face_crop``, ``n_test`` (clips scored per video),
        ``limits`` (``max_upload_bytes``, ``max_seconds``, ``max_pixels``, ``max_frames``, ``max_fps``,
        ``request_timeout``, ``max_frame_bytes``, ``max_frame_pixels``), ``model_card`` (``title``: its first line,
        ``trained_on``: a sentence, or null), ``examples`` (``name``, ``title``, ``url`` of each example video) and
        ``frame_mode`` (``available``: whether POST /api/frame scores frames with this model, ``reason`` if not)."""
        data = predictor.cfg.data
        n = resolve_n_test(data, n_test)
        return {"labels": predictor.labels, "task": predictor.task.name, "uses_text": bool(data.use_text),
                "modalities": list(predictor.model.modality_names), "face_crop": bool(data.face_crop),
                "n_test": n, "num_clips": n,  # num_clips: n_test's old name, kept a release for clients
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_seconds": limits.max_seconds,
                           "max_pixels": limits.max_pixels, "max_frames": limits.max_frames,
                           "max_fps": limits.max_fps, "request_timeout": limits.request_timeout,
                           "max_frame_bytes": limits.max_frame_bytes, "max_frame_pixels": limits.max_frame_pixels},
                "model_card": page["card"],
                "examples": [{"name": name, "title": ex["title"], "url": f"/examples/{name}"}
                             for name, ex in examples.items()],
                "frame_mode": {"available": page["frame_refusal"] is None, "reason": page["frame_refusal"]}}


def _scorer(predictor, limits: ServeLimits, n_test: int | None):
    """What a scoring thread runs on a saved upload: the header check, then the predictor; a video that cannot
    be scored is the upload's fault (UploadRejected), never the server's."""
    from ..config import UserError

    def score(path: str, text: str, deadline: float) -> dict:
        start = time.perf_counter()
        seconds = probe_video(path, limits, deadline)
        # Inference only reads the model (eval mode, no grad), so scoring threads may share it.
        try:
            result = predictor(path, text=text, n_test=n_test)
        except UserError as e:  # a video the decoders refuse: the user's file, not the server
            raise UploadRejected(422, plain_decode_message(str(e).replace(path, "the upload"))) from None
        except (RuntimeError, ValueError, OSError) as e:  # a file that fooled the probe: still the file's fault
            logger.warning("scoring an upload failed", exc_info=True)
            raise UploadRejected(422, "the video could not be scored: its frames did not decode (try converting "
                                      "it to MP4)") from None
        result.update(video="upload", duration_s=round(seconds, 3),
                      inference_s=round(time.perf_counter() - start, 3))
        return result

    return score


def _add_predict(app, score, limits: ServeLimits, pool: ThreadPoolExecutor, state: dict) -> None:
    """``POST /predict``: a queue slot, the upload read into a private folder, ``score`` in the pool within the
    request's deadline; the folder and slot are released when the scoring thread is done with them."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    def release(folder: str) -> None:
        state["pending"] -= 1
        state["folders"].discard(folder)
        shutil.rmtree(folder, ignore_errors=True)

    @app.post("/predict", summary="Emotions in an uploaded video", openapi_extra={"requestBody": UPLOAD_BODY},
              responses={400: {"description": "malformed request or unknown Host"},
                         408: {"description": "the upload stalled or took too long"},
                         413: {"description": "upload too large"}, 415: {"description": "not a video"},
                         422: {"description": "unreadable, empty, too long or too large video"},
                         503: {"description": "too many uploads at once; retry"},
                         504: {"description": "scoring took longer than a request may"}})
    async def predict(request: Request):
        deadline = time.monotonic() + limits.request_timeout
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes:
            return JSONResponse({"detail": f"upload of {size_text(int(length))} is over the "
                                           f"{size_text(limits.max_upload_bytes)} limit"}, status_code=413)
        if state["pending"] >= limits.queue_limit:
            return JSONResponse({"detail": f"busy: {state['pending']} uploads are being scored; retry shortly"},
                                status_code=503, headers={"Retry-After": "2"})
        state["pending"] += 1
        folder = tempfile.mkdtemp(prefix="clipbert-emo-upload-")  # mode 0700: private to this user
        state["folders"].add(folder)
        job = waiter = None
        try:
            path, text = await read_upload(request, folder, limits, deadline)
            job = pool.submit(score, path, text, deadline)
            waiter = asyncio.wrap_future(job)
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise UploadRejected(504, f"scoring did not finish within {limits.request_timeout:g} s, the limit "
                                          "of a request")
            result = waiter.result()
            state["served"] += 1
            return result
        except UploadRejected as e:
            return JSONResponse({"detail": e.message}, status_code=e.status, headers=e.headers)
        except ClientGone:
            return Response(status_code=400)  # nobody reads it; uvicorn drops it
        finally:
            if waiter is None or waiter.done() or job.cancel():
                release(folder)
            else:  # a thread is still reading the file: folder and slot stay its own until it ends
                waiter.add_done_callback(lambda w: (w.cancelled() or w.exception(), release(folder)))


def _frame_pool(state: dict) -> ThreadPoolExecutor:
    """The live frames' own thread: a frame takes tens of ms and a video seconds, and a page waits for each frame's
    answer before it sends the next, so frames never queue behind a video being scored."""
    if state["frame_pool"] is None:
        state["frame_pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipbert-emo-frame")
    return state["frame_pool"]


def _add_frame(app, frames: FrameScorer, limits: ServeLimits, state: dict) -> None:
    """``POST /api/frame``: one still frame (the request's body), scored in the frame thread within
    ``frame_timeout``; at most ``frame_queue_limit`` at once."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    def release(_=None) -> None:
        state["frames_pending"] -= 1

    @app.post("/api/frame", summary="The largest face in one still frame and its emotions (the per-frame live mode)",
              openapi_extra={"requestBody": FRAME_BODY, "parameters": [{
                  "name": "X-Live-Session", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "a token of the page's own (1-64 letters, digits, - or _): the face is tracked "
                                 "across the frames that carry it"}]},
              responses={200: {"description": "``box`` [x, y, w, h] in the frame's pixels or null (no face), "
                                              "``detected`` (the detector ran on this frame), ``tracked`` (the box "
                                              "was not found in this frame: carried from the frames before), "
                                              "``prediction`` and ``probabilities`` (null without a face), ``width``,"
                                              " ``height``, ``ms`` on the server (``decode_ms``, ``detect_ms``, "
                                              "``score_ms``)"},
                         400: {"description": "a malformed X-Live-Session, or an unknown Host"},
                         408: {"description": "the frame stalled or took too long to arrive"},
                         409: {"description": "this server's model cannot score single frames (not a face model)"},
                         413: {"description": "frame too large"}, 415: {"description": "not an image"},
                         422: {"description": "not a JPEG, PNG or WebP image, damaged, or too many pixels"},
                         503: {"description": "too many frames at once; retry"},
                         504: {"description": "scoring took longer than a frame may"}})
    async def frame(request: Request):
        """The body is the image itself (``Content-Type: image/jpeg``, ``image/png`` or ``image/webp``), not a
        form. Only the ready face model (or another face-expression checkpoint) scores frames; other models
        answer 409 and ``GET /labels`` says so under ``frame_mode``."""
        deadline = time.monotonic() + limits.frame_timeout
        job = waiter = None
        counted = False
        try:
            if frames.refusal is not None:
                raise UploadRejected(409, frames.refusal)
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limits.max_frame_bytes:
                raise too_large(int(length), limits)
            check_frame_type(request.headers.get("content-type", "").split(";")[0].strip().lower())
            session = session_of(request.headers.get("x-live-session"))
            if state["frames_pending"] >= limits.frame_queue_limit:
                raise UploadRejected(503, f"busy: {state['frames_pending']} frames are being scored; retry shortly",
                                     {"Retry-After": "1"})
            state["frames_pending"] += 1
            counted = True
            body = await read_body(request, limits, limits.max_frame_bytes, deadline, limits.frame_timeout)
            job = _frame_pool(state).submit(frames, body, session)
            waiter = asyncio.wrap_future(job)
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                raise UploadRejected(504, f"the frame was not scored within {limits.frame_timeout:g} s, the limit of "
                                          "a frame")
            result = waiter.result()
            state["frames_served"] += 1
            return result
        except UploadRejected as e:
            return JSONResponse({"detail": e.message}, status_code=e.status, headers=e.headers)
        except ClientGone:
            return Response(status_code=400)
        finally:
            if counted:
                if waiter is None or waiter.done() or job.cancel():
                    release()
                else:  # its thread is still scoring: the slot is its own until it ends
                    waiter.add_done_callback(lambda w: (w.cancelled() or w.exception(), release()))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free one); UserError, saying why, when the address
    cannot be had. Connections that come before the server runs wait in the backlog."""
    from ..config import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn: "localhost" is 127.0.0.1
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a recent run's TIME_WAIT is no user
    try:
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog; listening now, as two sockets may share a bound address until then
    except OSError as e:
        sock.close()
        why = {errno.EADDRINUSE: f"port {port} is in use on {host}: stop what holds it or choose another --port",
               errno.EACCES: f"port {port} needs more privileges than this user has: choose one above 1023",
               errno.EADDRNOTAVAIL: f"--host {host} is not an address of this machine"}
        raise UserError(why.get(e.errno, f"cannot listen on {host}:{port} ({e.strerror})")) from None
    sock.set_inheritable(True)
    return sock


def http_protocol(header_timeout: float):
    """uvicorn's HTTP/1.1 protocol with one more deadline: a connection must finish sending a request's headers
    within ``header_timeout`` s of opening or of its last answer, else it is closed. uvicorn only times out idle
    keep-alive connections, so one that sends its headers a byte at a time, or keeps sending the rest of a body
    it was already refused, would hold a socket forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc):
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout, self._expire, self.cycle)

        def _expire(self, cycle):
            # A new request since arming means its headers came; one still being answered has its own deadlines.
            if self.cycle is cycle and (cycle is None or cycle.response_complete):
                self.transport.close()

    return Protocol


def uvicorn_server(app, limits: ServeLimits | None = None):
    """The uvicorn server for ``app``, with the header deadline of :func:`http_protocol`; run it with
    ``.run(sockets=[bind(host, port)])``."""
    import uvicorn

    limits = limits or ServeLimits()
    return uvicorn.Server(uvicorn.Config(app, http=http_protocol(limits.read_timeout), log_level="warning"))


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          limits: ServeLimits | None = None, n_test: int | None = None, face_crop: bool = False,
          face_detector: str | None = None, seek: str = "keyframe", threads: int | None = None,
          allowed_hosts: Sequence[str] = (), num_clips: int | None = None, examples: str | None = None) -> None:
    """Load the checkpoint once and serve the page and the API until interrupted. The port is taken before the
    checkpoint loads, so a port in use is said at once, and "serving on" is printed only once it is ours.
    ``allowed_hosts``: Host names to answer to besides this machine's own and ``host``; ``examples``: a folder of
    videos the page offers with one click instead of the shipped ones."""
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        from ..config import UserError

        raise UserError("serving needs fastapi, uvicorn and python-multipart: "
                        "pip install fastapi uvicorn python-multipart") from None
    from ..predict import Predictor
    from ..runtime import default_threads

    sock = bind(host, port)
    try:
        # torch's default of a thread per core is what costs most on a shared CPU: a live frame took 1.2 s with 2
        # threads beside a training run, 35 ms with 1 (docs/serving.md), so the cores not kept busy, as predict.
        threads = threads if threads is not None else default_threads()
        predictor = Predictor(checkpoint, device=device, seek=seek, threads=threads)
        if face_crop or face_detector:
            predictor.use_face_crop(True, detector=face_detector)
        names = allowed_host_names(host, allowed_hosts)
        app = create_app(predictor, limits, allowed_hosts=names, checkpoint=checkpoint, examples=examples,
                         n_test=renamed_keyword(n_test, num_clips, "n_test", "num_clips", "serve"))  # num_clips: old
        if host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("serving on %s: anyone who can reach this machine can use the page; there is no login. "
                           "Requests must name it as one of %s (add names with --allowed-host)",
                           host, ", ".join(names))
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"clipbert-emo: serving {checkpoint} on http://{shown}:{bound}  (API: /docs)", flush=True)
        uvicorn_server(app, limits).run(sockets=[sock])
    finally:
        sock.close()
