// The face box and its top emotion drawn on the #overlay canvas laid over the video preview.
//
// Boxes come in the pixels of the picture the server saw (a scaled-down still of the camera in the per-frame mode,
// the recorded video in the clip mode); the preview shows the camera letterboxed inside its element
// (object-fit: contain), so each box is scaled to the video's own pixels and then to where they are on screen.

const LINE = 3;
const FONT = "600 14px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const NO_FACE_BG = "#1d232b";  // the page's text colour: white on it is 15:1

// Sizes the overlay's pixel buffer to the preview it covers and returns a context drawing in CSS pixels.
function fit(overlay, video) {
  const w = video.clientWidth, h = video.clientHeight, dpr = window.devicePixelRatio || 1;
  overlay.hidden = false;
  if (overlay.width !== Math.round(w * dpr) || overlay.height !== Math.round(h * dpr)) {
    overlay.width = Math.round(w * dpr);
    overlay.height = Math.round(h * dpr);
  }
  const ctx = overlay.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = FONT;
  return { ctx, w, h };
}

// Where the video's picture lies inside its element: offset and CSS pixels per video pixel.
function pictureRect(video, w, h) {
  const vw = video.videoWidth || w, vh = video.videoHeight || h;
  const scale = Math.min(w / vw, h / vh);
  return { x: (w - vw * scale) / 2, y: (h - vh * scale) / 2, scale, vw, vh };
}

function tag(ctx, text, x, y, bg, maxX) {
  const pad = 5, height = 20, width = ctx.measureText(text).width + 2 * pad;
  const left = Math.max(0, Math.min(x, maxX - width));
  ctx.fillStyle = bg;
  ctx.fillRect(left, y, width, height);
  ctx.fillStyle = "#ffffff";
  ctx.textBaseline = "middle";
  ctx.fillText(text, left + pad, y + height / 2 + 1);
}

// Draws `box` ([x, y, w, h] in a picture of frameW x frameH pixels) with `label` above it in `color`; where the
// box is null, says that no face is in view. The overlay's dataset keeps what was drawn, in CSS pixels.
export function drawFace(overlay, video, box, frameW, frameH, label, color) {
  const { ctx, w, h } = fit(overlay, video);
  if (!box) {
    tag(ctx, "no face in view", 8, 8, NO_FACE_BG, w);
    overlay.dataset.box = "";
    overlay.dataset.label = "";
    return;
  }
  const pic = pictureRect(video, w, h);
  const k = pic.scale * pic.vw / frameW;  // frame pixels -> CSS pixels (the frame is the video scaled down)
  const ky = pic.scale * pic.vh / frameH;
  const x = pic.x + box[0] * k, y = pic.y + box[1] * ky, bw = box[2] * k, bh = box[3] * ky;
  ctx.strokeStyle = color;
  ctx.lineWidth = LINE;
  ctx.strokeRect(x, y, bw, bh);
  if (label) tag(ctx, label, x - LINE / 2, y >= 24 ? y - 22 : y + bh + 2, color, w);
  overlay.dataset.box = [x, y, bw, bh].map((v) => v.toFixed(1)).join(",");
  overlay.dataset.label = label || "";
}

export function clearOverlay(overlay) {
  const ctx = overlay.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  overlay.dataset.box = "";
  overlay.dataset.label = "";
  overlay.hidden = true;
}
