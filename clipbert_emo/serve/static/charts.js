// The page's drawings: the per-clip timeline of one result and the rolling history of live updates, both on
// canvases sized to the pixels they take on screen (so the text stays 12 px on a 390 px phone as on a desktop).
//
// Every emotion has a colour, a dash pattern and a marker: the dashes and markers tell the lines apart for
// anyone who cannot tell the colours apart (WCAG 1.4.1). Each colour has a contrast of at least 3:1 against the
// white canvas and the bars' grey track (WCAG 1.4.11); tests/test_serve_page.py computes the ratios from this file.

export const CANVAS_BG = "#ffffff";
export const AXIS_TEXT = "#4f5966";
const GRID = "#d5d9e0";
export const COLORS = ["#5f6b7a", "#9a6700", "#1f5fbf", "#c0392b", "#8e44ad", "#1a7f4b", "#c05600", "#0b7285",
                       "#7c4a2d", "#b0307a"];
// A label that names a common emotion keeps the same colour in every model (happy is gold, sad is blue, ...).
const COLOR_OF = { neutral: 0, happy: 1, happiness: 1, joy: 1, sad: 2, sadness: 2, angry: 3, anger: 3,
                   fearful: 4, fear: 4, disgust: 5, disgusted: 5, surprised: 6, surprise: 6 };
const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3], [5, 5], [1, 4]];
const MARKERS = ["circle", "square", "triangle", "diamond", "cross", "down", "plus", "bar"];
const FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
export const HISTORY_MAX = 40;  // live updates kept in the rolling chart (about 80 s at one per 2 s)

// Colour, dash and marker of each label: named emotions take their own colour, the rest the unused ones in turn;
// the dash and marker follow the label's place, so no two labels share both.
export function labelStyles(labels) {
  const taken = new Set(labels.map((l) => COLOR_OF[l.toLowerCase()]).filter((c) => c !== undefined));
  const free = COLORS.map((_, i) => i).filter((i) => !taken.has(i));
  const used = new Set();
  return labels.map((label, i) => {
    let c = COLOR_OF[label.toLowerCase()];
    if (c === undefined || used.has(c)) c = free.length ? free.shift() : i % COLORS.length;
    used.add(c);
    return { label, color: COLORS[c], dash: DASHES[i % DASHES.length], marker: MARKERS[i % MARKERS.length] };
  });
}

// Sizes the canvas's pixel buffer to its size on screen (times the device's pixel ratio) and returns a context
// that draws in CSS pixels.
export function fitCanvas(canvas, minHeight = 160, maxHeight = 240) {
  const width = Math.max(200, canvas.clientWidth || canvas.parentElement.clientWidth);
  const height = Math.round(Math.min(maxHeight, Math.max(minHeight, width * 0.42)));
  const dpr = window.devicePixelRatio || 1;
  canvas.style.height = height + "px";
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = FONT;
  canvas.dataset.cssWidth = String(width);
  canvas.dataset.fontPx = "12";
  return { ctx, w: width, h: height };
}

export function drawMarker(ctx, kind, x, y, r = 3.5) {
  ctx.beginPath();
  if (kind === "circle") ctx.arc(x, y, r, 0, 2 * Math.PI);
  else if (kind === "square") ctx.rect(x - r, y - r, 2 * r, 2 * r);
  else if (kind === "triangle") { ctx.moveTo(x, y - r - 1); ctx.lineTo(x + r + 1, y + r); ctx.lineTo(x - r - 1, y + r); }
  else if (kind === "down") { ctx.moveTo(x, y + r + 1); ctx.lineTo(x + r + 1, y - r); ctx.lineTo(x - r - 1, y - r); }
  else if (kind === "diamond") { ctx.moveTo(x, y - r - 1); ctx.lineTo(x + r + 1, y); ctx.lineTo(x, y + r + 1); ctx.lineTo(x - r - 1, y); }
  if (["cross", "plus", "bar"].includes(kind)) {  // open shapes: stroked, not filled
    const d = kind === "cross" ? [[-r, -r, r, r], [-r, r, r, -r]] : kind === "plus" ? [[-r - 1, 0, r + 1, 0], [0, -r - 1, 0, r + 1]]
      : [[-r - 1, -r, -r - 1, r], [r + 1, -r, r + 1, r], [-r - 1, 0, r + 1, 0]];
    for (const [a, b, c, e] of d) { ctx.moveTo(x + a, y + b); ctx.lineTo(x + c, y + e); }
    ctx.save(); ctx.setLineDash([]); ctx.lineWidth = 2; ctx.stroke(); ctx.restore();
  } else {
    ctx.closePath();
    ctx.fill();
  }
}

// The legend's key of one label: a short stretch of its line with its marker, as the charts draw them.
export function drawKey(canvas, style) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = 34 * dpr; canvas.height = 14 * dpr;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.strokeStyle = ctx.fillStyle = style.color;
  ctx.lineWidth = 2;
  ctx.setLineDash(style.dash);
  ctx.beginPath(); ctx.moveTo(1, 7); ctx.lineTo(33, 7); ctx.stroke();
  drawMarker(ctx, style.marker, 17, 7);
}

function drawAxes(ctx, box, xTicks) {
  ctx.fillStyle = CANVAS_BG;
  ctx.fillRect(0, 0, box.w, box.h);
  ctx.strokeStyle = GRID;
  ctx.fillStyle = AXIS_TEXT;
  ctx.lineWidth = 1;
  ctx.setLineDash([]);
  ctx.textAlign = "right";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(box.l, box.y(p)); ctx.lineTo(box.w - box.r, box.y(p)); ctx.stroke();
    ctx.fillText(Math.round(100 * p) + "%", box.l - 5, box.y(p) + 4);
  }
  xTicks.forEach(([x, text], k) => {
    ctx.textAlign = k === 0 ? "left" : k === xTicks.length - 1 ? "right" : "center";
    ctx.fillText(text, x, box.h - 6);
  });
  ctx.textAlign = "left";
}

function plotBox(w, h) {
  const box = { l: 42, r: 12, t: 10, b: 26, w, h };
  box.y = (p) => h - box.b - (h - box.t - box.b) * p;
  return box;
}

function drawSeries(ctx, styles, xs, valuesOf, top) {
  const order = styles.filter((s) => s.label !== top).concat(styles.filter((s) => s.label === top));
  for (const s of order) {  // the top emotion last and thicker: on top of the others
    const ys = valuesOf(s.label);
    if (!ys) continue;
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = s.label === top ? 3 : 2;
    ctx.setLineDash(s.dash);
    ctx.beginPath();
    ys.forEach((p, j) => (j ? ctx.lineTo(xs[j], p) : ctx.moveTo(xs[j], p)));
    ctx.stroke();
    ys.forEach((p, j) => drawMarker(ctx, s.marker, xs[j], p));
  }
  ctx.setLineDash([]);
}

function ticksFor(lo, hi, x, plotWidth, unit) {
  const n = Math.max(1, Math.min(5, Math.floor(plotWidth / 70)));
  return Array.from({ length: n + 1 }, (_, k) => {
    const v = lo + (hi - lo) * k / n;
    return [x(v), unit(v)];
  });
}

// The per-clip probabilities of one result (its "timeline": start/end seconds and probabilities per label).
export function drawTimeline(canvas, styles, t, top) {
  const { ctx, w, h } = fitCanvas(canvas);
  const box = plotBox(w, h);
  const starts = (t && t.start) || [];
  const n = t && t.probabilities ? starts.length : 0;
  canvas.dataset.clips = String(n);
  if (!n) { drawAxes(ctx, box, []); return; }
  const mids = starts.map((s, i) => (s == null ? i : (s + t.end[i]) / 2));
  const lo = Math.min(...(starts[0] == null ? mids : starts));
  const hi = Math.max(...(t.end[0] == null ? mids : t.end), lo + 1e-6);
  const x = (v) => box.l + (w - box.l - box.r) * (v - lo) / (hi - lo);
  drawAxes(ctx, box, ticksFor(lo, hi, x, w - box.l - box.r, (v) => v.toFixed(1) + " s"));
  drawSeries(ctx, styles, mids.map(x), (label) => (t.probabilities[label] || null) && t.probabilities[label].map(box.y), top);
}

// The rolling chart of live updates: each entry is {t: seconds since live began, probabilities}; the newest at
// the right, at most HISTORY_MAX of them.
export function drawHistory(canvas, styles, entries) {
  const { ctx, w, h } = fitCanvas(canvas, 140, 200);
  const box = plotBox(w, h);
  canvas.dataset.points = String(entries.length);
  if (!entries.length) { drawAxes(ctx, box, []); return; }
  const last = entries[entries.length - 1].t;
  const lo = Math.min(entries[0].t, last - 10);  // at least 10 s wide, so the first updates do not fill it
  const x = (v) => box.l + (w - box.l - box.r) * (v - lo) / (last - lo);
  drawAxes(ctx, box, ticksFor(lo, last, x, w - box.l - box.r, (v) => (v === last ? "now" : "−" + (last - v).toFixed(0) + " s")));
  const top = entries[entries.length - 1].prediction;
  drawSeries(ctx, styles, entries.map((e) => x(e.t)),
             (label) => entries.map((e) => box.y(e.probabilities[label] ?? 0)), top);
}
