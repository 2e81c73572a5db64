"""Taking in one upload: the request body read as it arrives, then the video's header checked before decoding.

The body is counted chunk by chunk as it comes off the connection, whatever its Content-Length says (a chunked
body can carry any amount under any declared length), and it goes straight into the upload's private file, so a
refused upload leaves at most the cap on disk. Each read waits at most ``read_timeout`` s and the whole request
at most ``request_timeout`` s: a client that stalls loses its queue slot in seconds, not never.

A small file can declare hours of 4K frames (one P-frame repeated compresses to nothing), and decoding is what
costs, so the video is judged by its header (frame size, rate, frame count, duration) and its packet index, read
without decoding; only its first frame is decoded, to be sure it is a video at all.
"""

from __future__ import annotations

import asyncio
import os
import time

from .limits import ServeLimits
from .messages import plain_av_error

# The upload's file name on disk comes from its declared type, never from the request's file name.
SUFFIX_BY_TYPE = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
                  "video/x-msvideo": ".avi", "video/mpeg": ".mpg", "video/ogg": ".ogv", "video/3gpp": ".3gp"}
MAX_TEXT_CHARS = 2000
# Between checks of the request's deadline while walking a video's packets (each packet is a read, no decode).
_PACKETS_PER_CHECK = 256


class UploadRejected(Exception):
    """A request refused: ``status`` and the message the client reads (never a path or a traceback)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class ClientGone(Exception):
    """The client closed the connection before its upload ended: nobody is left to answer."""


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def check_video_type(kind: str) -> None:
    """415 unless the declared type is a video (or unknown bytes: a file input's type for an unlisted suffix)."""
    if not (kind.startswith("video/") or kind == "application/octet-stream"):
        raise UploadRejected(415, f"expected a video file, got content type {kind or 'none'!r}")


async def read_upload(request, folder: str, limits: ServeLimits, deadline: float) -> tuple[str, str]:
    """The video's path (in ``folder``) and the transcript of a multipart upload (fields ``file`` and ``text``),
    read as the body arrives. ``deadline`` is a time.monotonic() value. UploadRejected with 413 the moment the
    body passes ``max_upload_bytes``, 408 when it stalls or runs out of time, 415 as soon as the file's part
    declares a type that is not a video, 422/400 for a body that holds no usable upload; ClientGone on a
    disconnect."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRejected(422, "send the video as multipart/form-data, in the field 'file' (the transcript in "
                                  "'text')")
    parts = _Parts(folder, parse_options_header)
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    received, more = 0, True
    try:
        while more:
            message = await _receive(request.receive, limits, deadline)
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limits.max_upload_bytes:
                raise UploadRejected(413, f"upload over the {size_text(limits.max_upload_bytes)} limit")
            parser.write(chunk)
            more = message.get("more_body", False)
        parser.finalize()
    except FormParserError:
        raise UploadRejected(400, "the multipart body is malformed") from None
    finally:
        parts.close()
    if parts.path is None:
        raise UploadRejected(422, "no video: send it in the multipart field 'file'")
    if not parts.file_complete:  # python-multipart does not object to a body that stops inside a part
        raise UploadRejected(400, "the upload ended inside the file (the multipart body is cut short)")
    if parts.size == 0:
        raise UploadRejected(422, "the uploaded file is empty")
    return parts.path, parts.text


async def read_body(request, limits: ServeLimits, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """A whole (small) request body, counted as it arrives: UploadRejected(413) the moment it passes ``max_bytes``,
    408 when it stalls for ``read_timeout`` s or is still arriving at ``deadline`` (``timeout`` s after the request
    began); ClientGone on a disconnect."""
    chunks, received, more = [], 0, True
    while more:
        message = await _receive(request.receive, limits, deadline, timeout)
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > max_bytes:
            raise UploadRejected(413, f"the body is over the {size_text(max_bytes)} limit")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _receive(receive, limits: ServeLimits, deadline: float, timeout: float | None = None) -> dict:
    """The next ASGI message of the request, waiting at most ``read_timeout`` s and never past ``deadline`` (which is
    ``timeout`` s, default ``request_timeout``, after the request began)."""
    timeout = limits.request_timeout if timeout is None else timeout
    left = deadline - time.monotonic()
    try:
        message = await asyncio.wait_for(receive(), max(0.0, min(limits.read_timeout, left)))
    except TimeoutError:
        # The client is still there but silent: close the connection, or it would hold a socket on our side.
        close = {"Connection": "close"}
        if left <= limits.read_timeout:
            raise UploadRejected(408, f"the upload did not arrive within {timeout:g} s, the limit "
                                      "of a request", close) from None
        raise UploadRejected(408, f"the upload stalled: nothing arrived for {limits.read_timeout:g} s",
                             close) from None
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message


class _Parts:
    """python-multipart's callbacks for one upload: the part named ``file`` is written to the upload's file as it
    arrives (its type refused as soon as its headers end), ``text`` is kept (at most MAX_TEXT_CHARS), any other
    part is dropped."""

    def __init__(self, folder: str, parse_options_header):
        self.folder, self._parse_options = folder, parse_options_header
        self.path: str | None = None
        self.text, self.size, self.file_complete = "", 0, False
        self._out = None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._part: str | None = None
        self._text = bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end}

    def on_part_begin(self) -> None:
        self._headers, self._part = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, disposition = self._parse_options(self._headers.get(b"content-disposition"))
        name = disposition.get(b"name")
        if name == b"file":
            if self.path is not None:
                raise UploadRejected(422, "send one video per request")
            kind = self._parse_options(self._headers.get(b"content-type"))[0].decode("latin-1").strip().lower()
            check_video_type(kind)
            self.path = os.path.join(self.folder, "upload" + SUFFIX_BY_TYPE.get(kind, ".bin"))
            self._out = open(self.path, "wb")
            self._part = "file"
        elif name == b"text":
            self._text.clear()
            self._part = "text"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self._out.write(data[start:end])
            self.size += end - start
        elif self._part == "text":
            self._text += data[start:end]
            if len(self._text) > 4 * MAX_TEXT_CHARS:  # no UTF-8 character takes more than 4 bytes
                raise UploadRejected(422, f"the text is over {MAX_TEXT_CHARS} characters")

    def on_part_end(self) -> None:
        if self._part == "file":
            self._out.close()
            self.file_complete = True
        elif self._part == "text":
            try:
                self.text = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadRejected(422, "the text is not valid UTF-8") from None
            if len(self.text) > MAX_TEXT_CHARS:
                raise UploadRejected(422, f"the text is over {MAX_TEXT_CHARS} characters")
        self._part = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def probe_video(path: str, limits: ServeLimits, deadline: float | None = None) -> float:
    """Seconds of video in an uploaded file, checked against ``limits`` before any frame but the first is decoded.

    The header's frame size, frame rate, frame count and duration are checked first; then the packets are
    walked without decoding them, counting the frames and reading their timestamps (a browser's WebM recording
    often has no duration in its header, and a header may understate), and the first frame is decoded to be
    sure the stream holds a video. UploadRejected(422) for a file that is no readable video or is over a limit;
    (504) once ``deadline`` (a time.monotonic() value) has passed, which only stops the work: the request has
    been answered by then."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise UploadRejected(422, "the file has no video stream")
            stream = container.streams.video[0]
            duration = _check_header(container, stream, limits)
            base = stream.time_base
            start = float(stream.start_time * base) if stream.start_time is not None and base is not None else 0.0
            frames, end, decoded = 0, start, False
            for packet in container.demux(stream):
                if not packet.size:  # the demuxer's closing empty packet
                    continue
                frames += 1
                if frames > limits.max_frames:
                    raise UploadRejected(422, f"the video has more than {limits.max_frames} frames, the limit")
                if packet.pts is not None and base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * base))
                    if end - start > limits.max_seconds:
                        raise UploadRejected(422, f"the video runs past {limits.max_seconds:g} s, the limit")
                if not decoded:
                    decoded = bool(packet.decode())
                if deadline is not None and frames % _PACKETS_PER_CHECK == 0 and time.monotonic() > deadline:
                    raise UploadRejected(504, "out of time")
            if not decoded:  # a decoder that holds frames back gives them up when flushed
                decoded = bool(stream.codec_context.decode(None))
            if not decoded:
                raise UploadRejected(422, "no frame of the video decodes")
            return duration if duration is not None and duration > 0 else end - start
    except av.error.FFmpegError as e:  # FFmpeg's own words ("[Errno 1094995529] ...") help no one uploading
        raise UploadRejected(422, plain_av_error(e)) from None


def _check_header(container, stream, limits: ServeLimits) -> float | None:
    """Refuse (422) a video whose header declares frames, a rate, a frame count or a duration over the limits;
    the declared duration in seconds, or None when the header has none."""
    width, height = stream.width or 0, stream.height or 0
    if width * height == 0:
        raise UploadRejected(422, "the video's header gives no frame size")
    if width * height > limits.max_pixels:
        raise UploadRejected(422, f"the video's frames are {width}x{height} ({width * height / 1e6:.1f} MP); the "
                                  f"limit is {limits.max_pixels / 1e6:.1f} MP")
    rate = stream.average_rate
    if rate and float(rate) > limits.max_fps:
        raise UploadRejected(422, f"the video's frame rate is {float(rate):.0f} fps; the limit is "
                                  f"{limits.max_fps:g} fps")
    if stream.frames > limits.max_frames:
        raise UploadRejected(422, f"the video has {stream.frames} frames; the limit is {limits.max_frames}")
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # microseconds (av.time_base)
    if duration is not None and duration > limits.max_seconds:
        raise UploadRejected(422, f"the video is {duration:.1f} s long; the limit is {limits.max_seconds:g} s")
    return duration
