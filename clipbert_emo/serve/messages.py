"""Plain sentences for what the video decoders say about a file they cannot read.

FFmpeg (through PyAV and decord) reports "[Errno 1094995529] Invalid data found when processing input" or "Check
failed: st_nb >= 0"; a person uploading a video can do nothing with that. These functions turn it into what went
wrong with the file and what to try, for the 422 answers of /predict (the server's log keeps the original).
"""

from __future__ import annotations

import re

UNREADABLE = ("the file could not be read as a video: it may be damaged, cut short or in a format this server "
              "cannot decode (try converting it to MP4)")
# Text in a message that comes from a decoder or the system rather than from this project.
_JARGON = re.compile(r"errno|\[\s*-?\d+\s*\]|check failed|0x[0-9a-f]{4,}|avformat|avcodec|decord|ffmpeg",
                     re.IGNORECASE)


def plain_av_error(error: Exception) -> str:
    """The sentence for a PyAV error raised while opening or walking an upload."""
    import av

    unsupported = tuple(getattr(av.error, name) for name in ("DecoderNotFoundError", "DemuxerNotFoundError",
                                                             "PatchWelcomeError") if hasattr(av.error, name))
    if isinstance(error, av.error.EOFError):
        return "the file ends before its video does: it is cut short (upload the whole file)"
    if isinstance(error, unsupported):
        return "the video is in a format or codec this server cannot decode (try converting it to MP4, H.264)"
    return UNREADABLE


def plain_decode_message(message: str) -> str:
    """A decoder's message with its decoder text replaced by a plain sentence; a message that is already plain
    ("the upload: video has no frames") is kept."""
    if not _JARGON.search(message):
        return message
    return UNREADABLE
