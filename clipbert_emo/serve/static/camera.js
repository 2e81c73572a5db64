// The webcam: start and stop it, record fixed-length WebM files from it, and the live modes built on those.

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

// The live modes: each takes {camera, score(blob, name) -> Promise, fail(error), overlay} and returns the function
// that stops it. A per-frame mode (small frames scored one by one, the face box and top emotion drawn on the
// `overlay` canvas laid over the preview) registers here beside the clip mode; the page makes a button per mode.
export const LIVE_MODES = {
  clip: { label: "Live", title: "Score the last 2 s of the camera, about every 2 s", start: startClipMode },
};
