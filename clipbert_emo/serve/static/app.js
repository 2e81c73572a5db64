"use strict";
// The page behind `clipbert-emo serve`: upload or record a video, POST it to /predict, draw the answer.
// Everything is drawn here (bars as divs, the timeline on a canvas); nothing is loaded from elsewhere.

const $ = (id) => document.getElementById(id);
const COLORS = ["#8e9aaf", "#f2b134", "#4a7fd4", "#d9483b", "#9b59b6", "#2aa876", "#e67e22", "#16a2b8",
                "#7f8c8d", "#c0392b"];
const LIVE_SEGMENT_MS = 2000;   // each live update scores the last 2 s of the webcam
const RECORD_MS = 3000;

let info = null;
let stream = null;
let live = false;
let inFlight = false;
let updates = 0;

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function color(i) { return COLORS[i % COLORS.length]; }

function buildBars(labels) {
  const bars = $("bars");
  const legend = $("legend");
  bars.replaceChildren();
  legend.replaceChildren();
  labels.forEach((label, i) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.label = label;
    row.dataset.p = "0";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.background = color(i);
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = "–";
    row.append(name, track, value);
    bars.appendChild(row);
    const key = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color(i);
    key.append(swatch, document.createTextNode(label));
    legend.appendChild(key);
  });
}

function showResult(result, ms) {
  const probs = result.probabilities;
  if (probs && typeof result.prediction === "string") {
    for (const row of $("bars").children) {
      const p = probs[row.dataset.label] ?? 0;
      row.dataset.p = p.toFixed(4);
      row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      row.querySelector(".value").textContent = (100 * p).toFixed(1) + "%";
    }
    $("top").textContent = result.prediction;
    $("confidence").textContent = (100 * probs[result.prediction]).toFixed(1) + "% confidence";
  } else {
    $("top").textContent = JSON.stringify(result.prediction);
    $("confidence").textContent = "";
  }
  drawTimeline(result.timeline || {});
  $("latency").textContent = Math.round(ms) + " ms";
  let note = `${result.n_test} clips over ${result.duration_s} s, scored in ${result.inference_s} s`;
  if (result.face_crop) {
    note += ` · no face in ${result.face_crop.no_face_frames} of ${result.face_crop.frames} frames`;
  }
  setStatus(note);
}

function drawTimeline(t) {
  const canvas = $("timeline");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const pad = { l: 40, r: 10, t: 10, b: 28 };
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  const starts = t.start || [];
  const n = starts.length;
  canvas.dataset.clips = String(n);
  if (!n || !t.probabilities) return;
  const mids = starts.map((s, i) => (s == null ? i : (s + t.end[i]) / 2));
  const lo = Math.min(...(t.start[0] == null ? mids : t.start));
  const hi = Math.max(...(t.end[0] == null ? mids : t.end), lo + 1e-6);
  const x = (v) => pad.l + (w - pad.l - pad.r) * (v - lo) / (hi - lo);
  const y = (p) => h - pad.b - (h - pad.t - pad.b) * p;
  ctx.strokeStyle = "#d0d5dd";
  ctx.fillStyle = "#5b6573";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    ctx.beginPath(); ctx.moveTo(pad.l, y(p)); ctx.lineTo(w - pad.r, y(p)); ctx.stroke();
    ctx.fillText(p.toFixed(2), 6, y(p) + 4);
  }
  const ticks = 5;
  for (let k = 0; k <= ticks; k++) {
    const v = lo + (hi - lo) * k / ticks;
    ctx.textAlign = k === 0 ? "left" : k === ticks ? "right" : "center";
    ctx.fillText(v.toFixed(1) + " s", x(v), h - 8);
  }
  ctx.textAlign = "left";
  info.labels.forEach((label, i) => {
    const ps = t.probabilities[label];
    if (!ps) return;
    ctx.strokeStyle = color(i);
    ctx.fillStyle = color(i);
    ctx.lineWidth = 2;
    ctx.beginPath();
    ps.forEach((p, j) => (j ? ctx.lineTo(x(mids[j]), y(p)) : ctx.moveTo(x(mids[j]), y(p))));
    ctx.stroke();
    ps.forEach((p, j) => { ctx.beginPath(); ctx.arc(x(mids[j]), y(p), 2.5, 0, 2 * Math.PI); ctx.fill(); });
  });
}

async function send(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  form.append("text", $("text").value);
  const t0 = performance.now();
  const response = await fetch("/predict", { method: "POST", body: form });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) {
    throw new Error(`${response.status}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`);
  }
  return [body, performance.now() - t0];
}

function recorderType() {
  for (const t of ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp8", "video/webm", "video/mp4"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(t)) return t;
  }
  return "";
}

// One standalone file per segment: a fresh recorder each time, so every upload carries its own header.
function recordFor(ms) {
  return new Promise((resolve, reject) => {
    const type = recorderType();
    const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const chunks = [];
    recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
    recorder.onstop = () => resolve(new Blob(chunks, { type: recorder.mimeType || "video/webm" }));
    recorder.onerror = (e) => reject(e.error || new Error("recording failed"));
    recorder.start();
    setTimeout(() => recorder.state !== "inactive" && recorder.stop(), ms);
  });
}

async function startCamera() {
  if (stream) return;
  const wantAudio = info.modalities.includes("audio");
  stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: wantAudio });
  const preview = $("preview");
  preview.removeAttribute("src");
  preview.srcObject = stream;
  preview.classList.add("shown");
  await preview.play().catch(() => {});
  $("record").disabled = false;
  $("live").disabled = false;
  $("camera").disabled = true;
  setStatus("Camera on: record 3 s, or go live (an update every ~2 s).");
}

async function liveLoop() {
  while (live) {
    const blob = await recordFor(LIVE_SEGMENT_MS);
    if (!live) break;
    if (inFlight) continue;  // the server is still on the previous segment: skip this one rather than queue it
    inFlight = true;
    send(blob, "live.webm")
      .then(([result, ms]) => {
        updates += 1;
        $("updates").textContent = String(updates);
        showResult(result, ms);
      })
      .catch((e) => setStatus(e.message, true))
      .finally(() => { inFlight = false; });
  }
}

async function init() {
  try {
    const response = await fetch("/labels");
    info = await response.json();
  } catch (e) {
    setStatus("The server did not answer /labels: " + e.message, true);
    return;
  }
  buildBars(info.labels);
  if (!info.uses_text) {
    $("text").disabled = true;
    $("text").placeholder = "this model does not read text";
  }
  setStatus(`Ready: ${info.labels.length} emotions, ${info.n_test} clips per video.`);

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    $("send").disabled = !file;
    if (file && !stream) {  // show the chosen video (a local blob: URL; nothing leaves the page until Predict)
      const preview = $("preview");
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = URL.createObjectURL(file);
      preview.loop = true;
      preview.classList.add("shown");
      preview.play().catch(() => {});
    }
  });
  $("send").addEventListener("click", async () => {
    const file = $("file").files[0];
    if (!file) return;
    setStatus("Scoring " + file.name + "…");
    $("send").disabled = true;
    try {
      const [result, ms] = await send(file, file.name);
      showResult(result, ms);
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      $("send").disabled = false;
    }
  });
  $("camera").addEventListener("click", () => startCamera().catch((e) => setStatus("Camera: " + e.message, true)));
  $("record").addEventListener("click", async () => {
    setStatus("Recording 3 s…");
    try {
      const blob = await recordFor(RECORD_MS);
      setStatus("Scoring the recording…");
      const [result, ms] = await send(blob, "recording.webm");
      showResult(result, ms);
    } catch (e) {
      setStatus(e.message, true);
    }
  });
  $("live").addEventListener("click", () => {
    live = !live;
    $("live").classList.toggle("on", live);
    $("live").textContent = live ? "Stop live" : "Live";
    if (live) {
      setStatus("Live: scoring the last 2 s, about every 2 s…");
      liveLoop();
    }
  });
}

init();
