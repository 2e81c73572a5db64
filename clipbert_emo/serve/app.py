"""The web page and its JSON API: upload a short video (or record one from the webcam) and see the emotions.

    clipbert-emo serve runs/demo/video+text/checkpoint          # then open http://127.0.0.1:8000

``POST /predict`` (multipart: ``file`` = the video, ``text`` = optional transcript) answers the predictor's
result: the top emotion, the distribution and the per-clip timeline. ``GET /labels``, ``GET /health``;
``/docs`` and ``/openapi.json`` describe it all (FastAPI).

What the server guarantees, whatever a request holds:
- the model is loaded once; scoring runs in a small thread pool, never on the event loop, and at most
  ``queue_limit`` uploads wait or run at once: more get 503 (try again) instead of piling up;
- an upload larger than ``max_upload_bytes`` gets 413 before its body is read; longer than ``max_seconds``,
  422; a content type that is not a video, 415; a file that is not a readable video, 422 with the reason.
  A request never reaches a 500 through its content;
- uploads are written to a private temporary folder (``mkdtemp``, mode 0700) under a fixed name and deleted
  after scoring; nothing in a request (file name included) becomes part of a path;
- the page and its script are served from the package; nothing is loaded from elsewhere (the
  Content-Security-Policy says so to the browser).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name types imported
# inside create_app (fastapi is an optional dependency).

import asyncio
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# The upload's file name on disk comes from its declared type, never from the request's file name.
SUFFIX_BY_TYPE = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
                  "video/x-msvideo": ".avi", "video/mpeg": ".mpg", "video/ogg": ".ogv", "video/3gpp": ".3gp"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
       "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'")


@dataclass
class ServeLimits:
    """``max_upload_bytes``: largest accepted upload; ``max_seconds``: longest video; ``queue_limit``: uploads
    being scored or waiting at once (more get 503); ``workers``: scoring threads (one model, shared)."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 60.0
    queue_limit: int = 8
    workers: int = 1


class UploadRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def probe_video(path: str, max_seconds: float) -> float:
    """Seconds of video in an uploaded file; UploadRejected(422) if it has no readable video stream or runs
    longer than ``max_seconds``. Browser recordings (MediaRecorder's WebM) often carry no duration in their
    header: then the frames are counted, stopping as soon as the limit is passed."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise UploadRejected(422, "the file has no video stream")
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000  # microseconds (av.time_base)
            if duration is not None and duration > max_seconds:
                raise UploadRejected(422, f"the video is {duration:.1f} s long; the limit is {max_seconds:g} s")
            frames, last = 0, 0.0
            for frame in container.decode(stream):
                frames += 1
                if frame.time is not None:
                    last = float(frame.time)
                if last > max_seconds:
                    raise UploadRejected(422, f"the video runs past {max_seconds:g} s, the limit")
            if frames == 0:
                raise UploadRejected(422, "no frame of the video decodes")
            return duration if duration is not None and duration > 0 else last
    except av.error.FFmpegError as e:
        raise UploadRejected(422, f"not a readable video ({str(e).split(':')[0][:120]})") from None


def create_app(predictor, limits: ServeLimits | None = None, num_clips: int | None = None):
    """The FastAPI application around one loaded :class:`~clipbert_emo.predict.Predictor`."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    from ..config import UserError

    limits = limits or ServeLimits()
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="clipbert-emo-serve")
    state = {"pending": 0, "served": 0, "started": time.time()}

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="clipbert-emo", version="1", lifespan=lifespan,
                  description="Emotion recognition in short videos (video + optional transcript). POST a video "
                              "to /predict; the page at / does it from a browser, with a webcam live mode.")
    app.state.predictor, app.state.limits, app.state.pool = predictor, limits, pool

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # The size cap acts before FastAPI reads the multipart body into memory or a spool file.
        if request.method == "POST" and request.url.path == "/predict":
            length = request.headers.get("content-length")
            if length is None:
                return JSONResponse({"detail": "send the upload with a Content-Length"}, status_code=411)
            if not length.isdigit():
                return JSONResponse({"detail": "bad Content-Length"}, status_code=400)
            if int(length) > limits.max_upload_bytes:
                return JSONResponse({"detail": f"upload of {_size(int(length))} is over the "
                                               f"{_size(limits.max_upload_bytes)} limit"}, status_code=413)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", summary="Liveness and load")
    def health() -> dict:
        return {"status": "ok", "pending": state["pending"], "queue_limit": limits.queue_limit,
                "served": state["served"], "uptime_s": round(time.time() - state["started"], 1)}

    @app.get("/labels", summary="What the model predicts and what it reads")
    def labels() -> dict:
        data = predictor.cfg.data
        return {"labels": predictor.labels, "task": predictor.task.name, "uses_text": bool(data.use_text),
                "modalities": list(predictor.model.modality_names), "face_crop": bool(data.face_crop),
                "num_clips": num_clips or data.num_clips_test,
                "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_seconds": limits.max_seconds}}

    def score(path: str, text: str) -> dict:
        start = time.perf_counter()
        seconds = probe_video(path, limits.max_seconds)
        # Inference only reads the model (eval mode, no grad), so scoring threads may share it.
        try:
            result = predictor(path, text=text, num_clips=num_clips)
        except UserError as e:  # a video the decoders refuse: the user's file, not the server
            raise UploadRejected(422, str(e).replace(path, "the upload")) from None
        except (RuntimeError, ValueError, OSError) as e:  # a file that fooled the probe: still the file's fault
            logger.warning("scoring an upload failed", exc_info=True)
            raise UploadRejected(422, f"could not score the video ({type(e).__name__})") from None
        result.update(video="upload", duration_s=round(seconds, 3),
                      inference_s=round(time.perf_counter() - start, 3))
        return result

    @app.post("/predict", summary="Emotions in an uploaded video",
              responses={413: {"description": "upload too large"}, 415: {"description": "not a video"},
                         422: {"description": "unreadable, empty or too long video"},
                         503: {"description": "too many uploads at once; retry"}})
    async def predict(file: UploadFile = File(..., description="a short video (mp4, webm, mov, ...)"),
                      text: str = Form("", description="the transcript, if any", max_length=2000)):
        kind = (file.content_type or "").split(";")[0].strip().lower()
        if not (kind.startswith("video/") or kind == "application/octet-stream"):
            return JSONResponse({"detail": f"expected a video file, got content type {kind or 'none'!r}"},
                                status_code=415)
        if state["pending"] >= limits.queue_limit:
            return JSONResponse({"detail": f"busy: {state['pending']} uploads are being scored; retry shortly"},
                                status_code=503, headers={"Retry-After": "2"})
        state["pending"] += 1
        folder = tempfile.mkdtemp(prefix="clipbert-emo-upload-")  # mode 0700: private to this user
        try:
            path = os.path.join(folder, "upload" + SUFFIX_BY_TYPE.get(kind, ".bin"))
            size = 0
            with open(path, "wb") as out:
                while chunk := await file.read(1 << 20):
                    size += len(chunk)
                    if size > limits.max_upload_bytes:  # a body longer than its Content-Length said
                        return JSONResponse({"detail": "upload over the size limit"}, status_code=413)
                    out.write(chunk)
            if size == 0:
                return JSONResponse({"detail": "the uploaded file is empty"}, status_code=422)
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(pool, score, path, text)
            except UploadRejected as e:
                return JSONResponse({"detail": e.message}, status_code=e.status)
            state["served"] += 1
            return result
        finally:
            state["pending"] -= 1
            await file.close()
            shutil.rmtree(folder, ignore_errors=True)

    return app


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          limits: ServeLimits | None = None, num_clips: int | None = None, face_crop: bool = False,
          face_detector: str | None = None) -> None:
    """Load the checkpoint once and serve the page and the API until interrupted."""
    try:
        import uvicorn
    except ImportError:
        from ..config import UserError

        raise UserError("serving needs fastapi, uvicorn and python-multipart: "
                        "pip install fastapi uvicorn python-multipart") from None
    from ..predict import Predictor

    predictor = Predictor(checkpoint, device=device)
    if face_crop or face_detector:
        predictor.use_face_crop(True, detector=face_detector)
    app = create_app(predictor, limits, num_clips=num_clips)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this machine can use the page; there is no login", host)
    print(f"clipbert-emo: serving {checkpoint} on http://{host}:{port}  (API: /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
