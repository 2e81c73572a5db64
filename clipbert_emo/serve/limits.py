"""What one request may cost the server: the limits every upload is held to (serve/app.py enforces them,
serve/upload.py reads and checks the body and the video's header against them)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass
class ServeLimits:
    """``max_upload_bytes``: largest accepted upload; ``max_seconds``: longest video; ``max_pixels``: largest
    frame (width x height; 4096x2304 by default); ``max_frames``: most frames (a minute at 60 fps); ``max_fps``:
    highest frame rate; ``queue_limit``: uploads being read, scored or waiting at once (more get 503);
    ``workers``: scoring threads (one model, shared); ``request_timeout``: seconds from a request's headers to
    its answer; ``read_timeout``: longest silence of a client mid-request, and the time a connection has to send
    a request's headers.

    The per-frame live mode's still frames (``POST /api/frame``) have limits of their own, since a webcam page sends
    ten a second: ``max_frame_bytes``: largest image body; ``max_frame_pixels``: largest image (width x height,
    read from its header before it is decoded); ``frame_queue_limit``: frames read, scored or waiting at once (more
    get 503); ``frame_timeout``: seconds from a frame's headers to its answer."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 60.0
    queue_limit: int = 8
    workers: int = 1
    max_pixels: int = 4096 * 2304
    max_frames: int = 3600
    max_fps: float = 240.0
    request_timeout: float = 120.0
    read_timeout: float = 10.0
    max_frame_bytes: int = 2 * 1024 * 1024
    max_frame_pixels: int = 1920 * 1080
    frame_queue_limit: int = 4
    frame_timeout: float = 10.0

    def __post_init__(self):
        # nan passes every comparison, so a nan limit would be no limit at all.
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ServeLimits.{f.name} must be a positive finite number, got {value!r}")
