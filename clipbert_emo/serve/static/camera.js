// The webcam: start and stop it, record fixed-length WebM files from it, and the live modes built on it (2 s clips,
// or still frames one by one).

export const LIVE_SEGMENT_MS = 2000;   // the clip mode scores the last 2 s of the camera

function recorderType() {
  for (const t of ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp8", "video/webm", "video/mp4"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(t)) return t;
  }
  return "";
}

export class Camera {
  // onRecording(on): called when recording starts and when the last recording ends (the page's REC sign).
  constructor(preview, onRecording) {
    this.preview = preview;
    this.onRecording = onRecording;
    this.stream = null;
    this.recorders = new Set();
  }

  get on() { return this.stream !== null; }

  async start(wantAudio) {
    if (this.stream) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw Object.assign(new Error("no camera API"), { name: "NoApi" });
    }
    this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: wantAudio });
    this.preview.removeAttribute("src");
    this.preview.srcObject = this.stream;
    this.preview.classList.add("shown");
    await this.preview.play().catch(() => {});
  }

  // Ends the recordings (each still resolves, with what it holds), releases the camera (its light goes off).
  stop() {
    this.stopRecording();
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.preview.pause();
    this.preview.srcObject = null;
    this.preview.classList.remove("shown");
  }

  stopRecording() {
    for (const r of this.recorders) if (r.state !== "inactive") r.stop();
  }

  // One standalone file: a fresh recorder each time, so every upload carries its own header.
  record(ms) {
    return new Promise((resolve, reject) => {
      if (!this.stream) { reject(new Error("the camera is off")); return; }
      const type = recorderType();
      const recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : {});
      const chunks = [];
      const finish = () => {
        this.recorders.delete(recorder);
        if (!this.recorders.size) this.onRecording(false);
      };
      recorder.ondataavailable = (e) => { if (e.data && e.data.size) chunks.push(e.data); };
      recorder.onstop = () => { finish(); resolve(new Blob(chunks, { type: recorder.mimeType || "video/webm" })); };
      recorder.onerror = (e) => { finish(); reject(e.error || new Error("recording failed")); };
      this.recorders.add(recorder);
      recorder.start();
      this.onRecording(true);
      setTimeout(() => recorder.state !== "inactive" && recorder.stop(), ms);
    });
  }
}

// Clip mode: 2 s segments back to back, each scored by the full model. A segment that ends while the previous one
// is still being scored is skipped rather than queued, so the results follow the camera with about one segment's
// delay plus the server's latency.
function startClipMode({ camera, score, fail }) {
  let running = true;
  let inFlight = false;
  (async () => {
    while (running && camera.on) {
      let blob;
      try {
        blob = await camera.record(LIVE_SEGMENT_MS);
      } catch (e) {
        if (running) fail(e);
        break;
      }
      if (!running || inFlight || !blob.size) continue;
      inFlight = true;
      score(blob, "live.webm").finally(() => { inFlight = false; });
    }
  })();
  return () => { running = false; camera.stopRecording(); };
}

// Per-frame mode: a still of the preview, scaled down to FRAME_WIDTH px wide, sent as a JPEG; the next one is taken
// as soon as the answer to this one comes. One request in flight: the rate is what the server can score, the box
// drawn is never more than one answer old, and nothing queues up when the server slows down.
export const FRAME_WIDTH = 192;  // the face detector's working size (it scales smaller frames up to 192 px)
// ?frame_width=N in the page's address tries another size (the live benchmark compares them), within reason.
const ASKED_WIDTH = parseInt(new URLSearchParams(location.search).get("frame_width"), 10);
const SEND_WIDTH = ASKED_WIDTH >= 64 && ASKED_WIDTH <= 640 ? ASKED_WIDTH : FRAME_WIDTH;
const FRAME_QUALITY = 0.8;
const RETRY_MS = 1000;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startFrameMode({ camera, sendFrame, showFrame }) {
  let running = true;
  const canvas = document.createElement("canvas");
  (async () => {
    while (running && camera.on) {
      const video = camera.preview;
      if (!video.videoWidth) { await pause(50); continue; }  // the first camera frame is not there yet
      const width = Math.min(SEND_WIDTH, video.videoWidth);
      const height = Math.round(video.videoHeight * width / video.videoWidth);
      if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
      canvas.getContext("2d").drawImage(video, 0, 0, width, height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", FRAME_QUALITY));
      if (!running) break;
      const answer = await sendFrame(blob);
      if (!running) break;
      if (!showFrame(answer)) break;  // the page gave up on this mode (the server cannot score frames)
      if (answer.status !== 200) await pause(RETRY_MS);  // said on the page; tried again a second later
    }
  })();
  return () => { running = false; };
}

// The live modes: each takes {camera, score(blob, name) -> Promise, sendFrame(blob) -> Promise, showFrame(answer)
// -> whether to go on, fail(error)} and returns the function that stops it; the page makes a button per mode.
export const LIVE_MODES = {
  clip: { label: "Live", title: "Score the last 2 s of the camera, about every 2 s", start: startClipMode,
          status: "Live: scoring the last 2 s, about every 2 s…" },
  frame: { label: "Live per frame", title: "Find the face in each camera frame and score it, about 10 times a second",
           start: startFrameMode, status: "Live per frame: finding the face…" },
};
