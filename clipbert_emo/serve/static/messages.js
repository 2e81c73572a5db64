// What the page says when something goes wrong, in sentences a person who has never seen the API can act on.
// The server's details are already plain (serve/messages.py turns FFmpeg's text into sentences); this maps each
// status to what to do about it and guards against any decoder text that still slips through.

// In units of 2^20 bytes, as --max-upload-mb counts them, so the page says "50 MB" for --max-upload-mb 50.
export function megabytes(bytes) {
  const mb = bytes / 1048576;
  return (mb >= 10 ? mb.toFixed(0) : mb >= 1 ? mb.toFixed(1) : mb.toFixed(2)) + " MB";
}

export function limitsText(limits) {
  return `Videos up to ${megabytes(limits.max_upload_bytes)} and ${limits.max_seconds} s.`;
}

function sentence(text) {
  text = String(text || "").trim();
  if (!text) return "";
  text = text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(text) ? text : text + ".";
}

// Decoder and system text (error numbers, C++ checks, hex codes, file paths) means nothing to a user.
const JARGON = /errno|\[\s*-?\d+\s*\]|check failed|0x[0-9a-f]{4,}|traceback|\/tmp\/|ffmpeg|avformat|decord/i;
const UNREADABLE = "The file could not be read as a video: it may be damaged, cut short, or in a format this " +
                   "server cannot decode. Try another file, or convert it to MP4.";

export function plainError(status, detail, limits) {
  detail = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : "";
  const seconds = limits ? limits.request_timeout : null;
  switch (status) {
    case 0:
      return "Could not reach the server. Is clipbert-emo serve still running?";
    case 413:
      return "The video is too large: this server takes files up to " +
             (limits ? megabytes(limits.max_upload_bytes) : "its size limit") + ".";
    case 415:
      return "That file is not a video. Choose a video file (MP4, WebM, MOV, …).";
    case 503:
      return "The server is busy with other videos. Try again in a few seconds.";
    case 408:
      return "The upload was too slow and the server stopped waiting. Try again, or try a smaller video.";
    case 504:
      return `Scoring took longer than the server allows${seconds ? ` (${seconds} s)` : ""}. Try a shorter video.`;
    case 400:
      if (/host/i.test(detail)) return "Open this page at the server's own address (for example http://127.0.0.1:8000).";
      return "The server could not read the upload. Try again.";
    default:
      if (status >= 500) return "The server failed on this video. Its log says why.";
      if (!detail || JARGON.test(detail)) return status === 422 ? UNREADABLE : `Something went wrong (HTTP ${status}).`;
      return sentence(detail);
  }
}

export function cameraError(e) {
  const name = (e && e.name) || "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "The browser did not allow the camera. Allow it (the camera icon in the address bar) and try again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return "No camera was found on this device.";
  if (name === "NotReadableError") return "The camera is in use by another program. Close it and try again.";
  if (name === "NoApi") return "This browser gives pages the camera only at http://localhost or over https.";
  return "The camera could not be started" + (e && e.message ? ": " + sentence(e.message) : ".");
}

export function tooBig(file, limits) {
  if (file.size <= limits.max_upload_bytes) return null;
  return `This file is ${megabytes(file.size)}; the server takes videos up to ${megabytes(limits.max_upload_bytes)}.`;
}

export function tooLong(seconds, limits) {
  if (!(seconds > limits.max_seconds) || !isFinite(seconds)) return null;
  return `This video is ${seconds.toFixed(1)} s long; the server takes videos up to ${limits.max_seconds} s.`;
}
