// The page behind `clipbert-emo serve`: choose, drop or record a video, POST it to /predict, draw the answer.
// Everything is drawn here (bars as divs, the timeline and the live history on canvases, charts.js); nothing is
// loaded from elsewhere. The server's limits and model card come from /labels, so the page checks a file's size
// and length before sending it and says what the model was trained on.

import { HISTORY_MAX, drawHistory, drawKey, drawTimeline, labelStyles } from "./charts.js";
import { Camera, LIVE_MODES } from "./camera.js";
import { download, resultCSV } from "./export.js";
import { cameraError, limitsText, plainError, tooBig, tooLong } from "./messages.js";
import { clearOverlay, drawFace } from "./overlay.js";

const $ = (id) => document.getElementById(id);
const RECORD_MS = 3000;
const ONE_COLUMN = window.matchMedia("(max-width: 760px)");  // the phone layout of style.css
const FRAME_POINT_MS = 500;  // the per-frame mode adds one point (the mean of its updates) to the history this often
const STATS_KEPT = 2000;     // round-trip and server times kept for window.__liveStats

const state = { info: null, styles: [], result: null, file: null, fileOk: false, busy: false, stopLive: null,
                history: [], liveStart: 0, updates: 0, spoken: "", window: null, statusAt: 0, clipFaces: null,
                session: Math.random().toString(36).slice(2, 12) };  // tells the server's face tracker our frames
// What the live modes measured, for anyone to read (the live benchmark does): updates, round-trip and server ms.
window.__liveStats = null;
const camera = new Camera($("preview"), (on) => { $("rec").hidden = !on; });

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function refreshButtons() {
  const idle = !state.busy && !state.stopLive;
  $("send").disabled = !(state.file && state.fileOk && idle);
  for (const b of $("examples").querySelectorAll("button")) b.disabled = !idle;
  $("camera").disabled = camera.on;
  $("stop-camera").disabled = !camera.on;
  $("record").disabled = !(camera.on && idle);
  for (const b of $("live-modes").querySelectorAll("button")) {
    const mine = state.stopLive && state.liveMode === b.dataset.mode;
    const refused = b.dataset.mode === "frame" && state.info && !state.info.frame_mode.available;
    b.disabled = !camera.on || state.busy || (state.stopLive && !mine) || refused;
    b.classList.toggle("on", Boolean(mine));
    b.textContent = mine ? "Stop live" : LIVE_MODES[b.dataset.mode].label;
  }
  $("download-json").disabled = $("download-csv").disabled = !state.result;
}

function buildBars() {
  $("bars").replaceChildren();
  $("legend").replaceChildren();
  for (const style of state.styles) {
    const row = document.createElement("div");
    row.className = "bar";
    row.setAttribute("role", "listitem");
    row.dataset.label = style.label;
    row.dataset.p = "0";
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: style.label });
    const track = Object.assign(document.createElement("div"), { className: "track" });
    const fill = Object.assign(document.createElement("div"), { className: "fill" });
    fill.style.background = style.color;
    track.appendChild(fill);
    const value = Object.assign(document.createElement("span"), { className: "value", textContent: "–" });
    row.append(name, track, value);
    $("bars").appendChild(row);
    const key = document.createElement("span");
    key.dataset.label = style.label;
    key.dataset.dash = style.dash.join(" ") || "solid";
    key.dataset.marker = style.marker;
    const swatch = document.createElement("canvas");
    drawKey(swatch, style);
    key.append(swatch, document.createTextNode(style.label));
    $("legend").appendChild(key);
  }
}

// Says the top emotion to screen readers: every time for a video, but in live mode only when it changes.
function announce(text, live) {
  if (live && text === state.spoken) return;
  state.spoken = text;
  $("announce").textContent = text;
}

// The bars, the top emotion and its confidence for one distribution; returns what a screen reader is told.
function setBars(probs, prediction) {
  for (const row of $("bars").children) {
    const p = probs[row.dataset.label] ?? 0;
    row.dataset.p = p.toFixed(4);
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".value").textContent = (100 * p).toFixed(1) + "%";
  }
  $("top").textContent = prediction;
  $("confidence").textContent = (100 * probs[prediction]).toFixed(1) + "% confidence";
  return `Top emotion: ${prediction}, ${(100 * probs[prediction]).toFixed(0)} percent.`;
}

function styleOf(label) {
  return state.styles.find((s) => s.label === label) || { color: "#1d232b" };
}

function showResult(result, ms, live = false) {
  state.result = result;
  const probs = result.probabilities;
  let spoken;
  if (probs && typeof result.prediction === "string") {
    spoken = setBars(probs, result.prediction);
  } else {
    $("top").textContent = JSON.stringify(result.prediction);
    $("confidence").textContent = "";
    spoken = "Prediction: " + JSON.stringify(result.prediction);
  }
  drawTimeline($("timeline"), state.styles, result.timeline || {}, result.prediction);
  $("latency").textContent = Math.round(ms) + " ms";
  setOutputs("fresh");
  announce(spoken, live);
  let note = `${result.n_test} clips over ${result.duration_s} s, scored in ${result.inference_s} s`;
  if (result.face_crop) note += ` · no face in ${result.face_crop.no_face_frames} of ${result.face_crop.frames} frames`;
  setStatus(note);
  refreshButtons();
}

function clearResult() {
  state.result = null;
  followClipFaces(null);
  for (const row of $("bars").children) {
    row.dataset.p = "0";
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "–";
  }
  $("top").textContent = "–";
  $("confidence").textContent = "";
  drawTimeline($("timeline"), state.styles, {}, null);
  refreshButtons();
}

// "stale": the results shown are not those of the request under way (dimmed); "fresh": they are.
function setOutputs(kind) {
  $("outputs").classList.toggle("stale", kind === "stale");
  $("outputs").setAttribute("aria-busy", String(kind === "stale" && state.busy));
}

function setBusy(phase, fraction) {
  $("busy").hidden = !phase;
  $("busy").dataset.phase = phase || "";
  const bar = $("progress");
  if (phase === "upload") {
    bar.value = Math.round(100 * fraction);
    bar.dataset.fraction = fraction.toFixed(3);
    $("busy-text").textContent = `Uploading… ${Math.round(100 * fraction)}%`;
  } else if (phase === "scoring") {
    bar.removeAttribute("value");  // indeterminate: the server does not say how far it is
    bar.dataset.fraction = "1";
    $("busy-text").textContent = "Scoring…";
  }
}

// POST /predict with upload progress (fetch reports none); resolves {status, body, ms}, status 0 when the server
// could not be reached.
function post(blob, name, onProgress) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("file", blob, name);
    form.append("text", $("text").disabled ? "" : $("text").value);
    const xhr = new XMLHttpRequest();
    const t0 = performance.now();
    xhr.open("POST", "/predict");
    xhr.responseType = "json";
    if (onProgress) {
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.upload.onload = () => onProgress(1);
    }
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response, ms: performance.now() - t0 });
    xhr.onerror = xhr.ontimeout = () => resolve({ status: 0, body: null, ms: performance.now() - t0 });
    xhr.send(form);
  });
}

function failure(answer) {
  return plainError(answer.status, answer.body && answer.body.detail, state.info && state.info.limits);
}

// One video scored while the page waits: old results dimmed, progress shown, then the answer or a plain error
// (the old results cleared: they belong to another video). On a phone the results are scrolled into view.
async function scoreOnce(blob, name, what) {
  state.busy = true;
  refreshButtons();
  setOutputs("stale");
  setBusy("upload", 0);
  setStatus(`Sending ${what}…`);
  const answer = await post(blob, name, (f) => setBusy(f < 1 ? "upload" : "scoring", f));
  state.busy = false;
  setBusy(null);
  if (answer.status === 200 && answer.body) {
    showResult(answer.body, answer.ms);
    followClipFaces(answer.body);
    if (ONE_COLUMN.matches) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      $("outputs").scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    }
  } else {
    setOutputs("fresh");
    clearResult();
    setStatus(failure(answer), true);
  }
  refreshButtons();
}

async function scoreLive(blob, name) {
  const answer = await post(blob, name, null);
  if (!state.stopLive) return;  // stopped while this segment was being scored
  if (answer.status !== 200 || !answer.body) {
    setOutputs("stale");
    setStatus(failure(answer), true);
    return;
  }
  state.updates += 1;
  $("updates").textContent = String(state.updates);
  const r = answer.body;
  const stats = window.__liveStats;
  stats.updates += 1;
  stats.roundTrip.push(answer.ms);
  stats.server.push(1000 * r.inference_s);
  addHistory(r.probabilities || {}, r.prediction);
  showResult(r, answer.ms, true);
  drawClipFace(r);
}

function addHistory(probabilities, prediction) {
  state.history.push({ t: (performance.now() - state.liveStart) / 1000, probabilities, prediction });
  if (state.history.length > HISTORY_MAX) state.history.shift();
  $("history-box").hidden = false;
  drawHistory($("history"), state.styles, state.history);
}

// The clip mode's face: the box of the last scored clip (in the recorded video's pixels, the camera's own), where
// the result has one (the ready face model, or --face-crop).
function drawClipFace(r) {
  const clip = (r.clips || []).slice().reverse().find((c) => c.face_box);
  const video = $("preview");
  if (!clip || !video.videoWidth) return;
  drawFace($("overlay"), video, clip.face_box, video.videoWidth, video.videoHeight,
           typeof clip.prediction === "string" ? clip.prediction : "", styleOf(clip.prediction).color);
}

// A scored video playing in the preview: the face box of the clip at the moment shown, where the result has boxes
// (the clips' face_box, in the video's pixels); null stops following.
function followClipFaces(result) {
  const clips = result && !camera.on ? (result.clips || []).filter((c) => c.face_box && c.start != null) : [];
  state.clipFaces = clips.length ? clips : null;
  if (state.clipFaces) drawClipFaceAt($("preview").currentTime);
  else if (!state.stopLive) clearOverlay($("overlay"));
}

function drawClipFaceAt(t) {
  const video = $("preview");
  if (!state.clipFaces || camera.on || !video.videoWidth) return;
  const mid = (c) => (c.start + (c.end ?? c.start)) / 2;
  const clip = state.clipFaces.reduce((a, b) => (Math.abs(mid(b) - t) < Math.abs(mid(a) - t) ? b : a));
  const label = typeof clip.prediction === "string" ? clip.prediction : "";
  drawFace($("overlay"), video, clip.face_box, video.videoWidth, video.videoHeight, label, styleOf(label).color);
}

// POST /api/frame: one still of the camera; resolves {status, body, ms}, status 0 when the server was not reached.
async function sendFrame(blob) {
  const t0 = performance.now();
  try {
    const headers = { "Content-Type": "image/jpeg", "X-Live-Session": state.session };
    const response = await fetch("/api/frame", { method: "POST", body: blob, headers });
    const body = await response.json().catch(() => null);
    return { status: response.status, body, ms: performance.now() - t0 };
  } catch (e) {
    return { status: 0, body: null, ms: performance.now() - t0 };
  }
}

function median(values, q = 0.5) {
  if (!values.length) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

// One answer of the per-frame mode: the box and top emotion over the preview, the bars, a history point every
// FRAME_POINT_MS (the mean of the updates since the last), the counts. False stops the mode (the server cannot
// score frames); any other failure is said and the mode goes on trying.
function showFrame(answer) {
  if (!state.stopLive) return false;
  const stats = window.__liveStats;
  if (answer.status !== 200 || !answer.body) {
    stats.errors += 1;
    setOutputs("stale");
    setStatus(failure(answer), true);
    if (answer.status === 409) { toggleLive("frame", failure(answer)); return false; }
    return true;
  }
  const r = answer.body;
  const now = performance.now();
  state.updates += 1;
  stats.updates += 1;
  stats.roundTrip.push(answer.ms);
  stats.server.push(r.ms);
  stats.detect.push(r.detected ? r.detect_ms : null);  // null: the server reused the box found before
  if (stats.roundTrip.length > STATS_KEPT) for (const k of ["roundTrip", "server", "detect"]) stats[k].shift();
  stats.last = { box: r.box, width: r.width, height: r.height, prediction: r.prediction, at: now };
  $("updates").textContent = String(state.updates);
  $("latency").textContent = Math.round(answer.ms) + " ms";
  const label = r.prediction ? `${r.prediction} ${Math.round(100 * r.probabilities[r.prediction])}%` : "";
  drawFace($("overlay"), $("preview"), r.box, r.width, r.height, label, styleOf(r.prediction).color);
  if (r.prediction) {
    stats.faces += 1;
    setOutputs("fresh");
    setBars(r.probabilities, r.prediction);
    announce(`Top emotion: ${r.prediction}.`, true);  // said when it changes, not ten times a second
    const w = state.window || (state.window = { start: now, n: 0, sums: {} });
    w.n += 1;
    for (const [k, p] of Object.entries(r.probabilities)) w.sums[k] = (w.sums[k] || 0) + p;
  } else {
    setOutputs("stale");
  }
  const w = state.window;
  if (w && now - w.start >= FRAME_POINT_MS) {
    const mean = Object.fromEntries(Object.entries(w.sums).map(([k, s]) => [k, s / w.n]));
    addHistory(mean, Object.keys(mean).reduce((a, b) => (mean[b] > mean[a] ? b : a)));
    state.window = null;
  }
  if (now - state.statusAt >= FRAME_POINT_MS) {  // a status that changes ten times a second cannot be read
    state.statusAt = now;
    const rate = stats.updates / Math.max(1e-3, (now - stats.started) / 1000);
    setStatus(`Live per frame: ${rate.toFixed(1)} updates/s, ${Math.round(median(stats.roundTrip))} ms round trip ` +
              (r.box ? "· face found" : "· no face in view: face the camera"));
  }
  return true;
}

function videoSeconds(file) {
  return new Promise((resolve) => {
    const v = document.createElement("video");
    const url = URL.createObjectURL(file);
    const done = (s) => { clearTimeout(timer); URL.revokeObjectURL(url); v.removeAttribute("src"); resolve(s); };
    const timer = setTimeout(() => done(null), 4000);  // a format this browser cannot open: the server checks it
    v.preload = "metadata";
    v.muted = true;
    v.onloadedmetadata = () => done(Number.isFinite(v.duration) ? v.duration : null);
    v.onerror = () => done(null);
    v.src = url;
  });
}

// Plays the video in the preview (a local blob: URL; nothing leaves the page until it is scored), unless the
// preview shows the camera.
function showPreview(blob) {
  if (camera.on) return;
  followClipFaces(null);  // the boxes of the video shown before
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.loop = true;
  preview.classList.add("shown");
  preview.play().catch(() => {});
}

// A file chosen, dropped or picked: checked against the server's limits before anything is sent.
async function chooseFile(file) {
  state.file = file;
  state.fileOk = false;
  $("chosen").textContent = file.name;
  refreshButtons();
  const limits = state.info.limits;
  let problem = tooBig(file, limits);
  if (!problem && file.type && !file.type.startsWith("video/")) {
    problem = "That file is not a video. Choose a video file (MP4, WebM, MOV, …).";
  }
  if (!problem) problem = tooLong(await videoSeconds(file), limits);
  if (state.file !== file) return;  // another file was chosen meanwhile
  if (problem) {
    setStatus(problem, true);
    return;
  }
  state.fileOk = true;
  showPreview(file);
  setStatus(`Ready to score ${file.name}: press Predict.`);
  refreshButtons();
}

function initDrop() {
  const zone = $("drop");
  const over = (on) => (e) => { e.preventDefault(); zone.classList.toggle("over", on); };
  zone.addEventListener("dragenter", over(true));
  zone.addEventListener("dragover", over(true));
  zone.addEventListener("dragleave", over(false));
  zone.addEventListener("drop", (e) => {
    over(false)(e);
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) chooseFile(file);
  });
  // A file dropped beside the zone would make the browser leave the page to show it.
  for (const kind of ["dragover", "drop"]) window.addEventListener(kind, (e) => e.preventDefault());
}

function initExamples(examples) {
  for (const ex of examples || []) {
    const b = Object.assign(document.createElement("button"), { type: "button", className: "secondary",
                                                                 textContent: ex.title });
    b.dataset.name = ex.name;
    b.addEventListener("click", async () => {
      const response = await fetch(ex.url).catch(() => null);
      if (!response || !response.ok) { setStatus(plainError(response ? response.status : 0, ""), true); return; }
      const blob = await response.blob();
      $("chosen").textContent = ex.title;
      showPreview(blob);
      await scoreOnce(blob, ex.name, `the example “${ex.title}”`);
    });
    $("examples").appendChild(b);
  }
  $("examples").hidden = !(examples && examples.length);
}

// Starts `mode`, or stops the mode running; `why`: the error that stopped it, said instead of the count.
function toggleLive(mode, why) {
  if (state.stopLive) {
    state.stopLive();
    state.stopLive = null;
    clearOverlay($("overlay"));
    $("outputs").classList.remove("per-frame");
    if (why) setStatus(why, true);
    else setStatus(`Live stopped after ${state.updates} update(s).`);
  } else {
    state.history = [];
    state.window = null;
    state.liveStart = performance.now();
    state.liveMode = mode;
    window.__liveStats = { mode, started: state.liveStart, updates: 0, faces: 0, errors: 0, roundTrip: [],
                           server: [], detect: [], last: null };
    state.stopLive = LIVE_MODES[mode].start({
      camera, score: scoreLive, sendFrame, showFrame,
      fail: (e) => setStatus("Recording stopped: " + (e.message || e), true),
    });
    $("outputs").classList.toggle("per-frame", mode === "frame");
    setStatus(LIVE_MODES[mode].status);
  }
  refreshButtons();
}

function stopCamera() {
  if (state.stopLive) toggleLive(state.liveMode);
  camera.stop();
  setStatus("Camera off.");
  refreshButtons();
}

function initCamera() {
  for (const [mode, spec] of Object.entries(LIVE_MODES)) {
    const b = Object.assign(document.createElement("button"), { type: "button", title: spec.title });
    if (mode === "frame" && !state.info.frame_mode.available) b.title = plainError(409, state.info.frame_mode.reason);
    b.id = mode === "clip" ? "live" : "live-" + mode;
    b.dataset.mode = mode;
    b.addEventListener("click", () => toggleLive(mode));
    $("live-modes").appendChild(b);
  }
  $("camera").addEventListener("click", async () => {
    try {
      followClipFaces(null);  // the preview is the camera's now
      await camera.start(state.info.modalities.includes("audio"));
      setStatus(state.info.frame_mode.available
        ? "Camera on: record 3 s, go live (an update every ~2 s), or live per frame (the face boxed as it moves)."
        : "Camera on: record 3 s, or go live (an update every ~2 s).");
    } catch (e) {
      setStatus(cameraError(e), true);
    }
    refreshButtons();
  });
  $("stop-camera").addEventListener("click", stopCamera);
  $("preview").addEventListener("timeupdate", () => drawClipFaceAt($("preview").currentTime));
  $("record").addEventListener("click", async () => {
    state.busy = true;
    refreshButtons();
    setStatus("Recording 3 s…");
    try {
      const blob = await camera.record(RECORD_MS);
      state.busy = false;
      if (!camera.on) { refreshButtons(); return; }  // the camera was stopped mid-recording: nothing to score
      await scoreOnce(blob, "recording.webm", "the recording");
    } catch (e) {
      state.busy = false;
      setStatus("Recording failed: " + (e.message || e), true);
      refreshButtons();
    }
  });
}

function showInfo(info) {
  state.info = info;
  state.styles = labelStyles(info.labels);
  buildBars();
  drawTimeline($("timeline"), state.styles, {}, null);
  $("limits").textContent = limitsText(info.limits);
  const card = info.model_card;
  if (card && card.title) {
    $("model-card").textContent = "Model: " + card.title + (card.trained_on ? ". " + card.trained_on : "");
    $("model-card").hidden = false;
  }
  if (!info.uses_text) {
    $("text").disabled = true;
    $("text").placeholder = "this model does not read text";
  }
}

async function init() {
  let info;
  try {
    const response = await fetch("/labels");
    if (!response.ok) throw Object.assign(new Error(), { status: response.status });
    info = await response.json();
  } catch (e) {
    setStatus(plainError(e.status || 0, ""), true);
    return;
  }
  showInfo(info);
  initDrop();
  initExamples(info.examples);
  initCamera();
  $("file").addEventListener("change", () => $("file").files[0] && chooseFile($("file").files[0]));
  $("send").addEventListener("click", () => state.file && scoreOnce(state.file, state.file.name, state.file.name));
  $("download-json").addEventListener("click", () =>
    download(JSON.stringify(state.result, null, 2), "clipbert-emo-result.json", "application/json"));
  $("download-csv").addEventListener("click", () =>
    download(resultCSV(state.result, state.info.labels), "clipbert-emo-result.csv", "text/csv"));
  let redraw = null;
  window.addEventListener("resize", () => {  // the canvases follow the width they are given
    clearTimeout(redraw);
    redraw = setTimeout(() => {
      drawTimeline($("timeline"), state.styles, (state.result && state.result.timeline) || {},
                   state.result && state.result.prediction);
      if (state.history.length) drawHistory($("history"), state.styles, state.history);
    }, 100);
  });
  refreshButtons();
  setStatus(`Ready: ${info.labels.length} emotions, ${info.n_test} clips per video.`);
}

init();
