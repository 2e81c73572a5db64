// Download JSON / CSV of the result shown. JSON is the server's answer as it came (what POST /predict returns);
// CSV has one row for the whole video and one per scored clip: scope, start_s, end_s, prediction, then p_<label>
// per emotion (the column names of `clipbert-emo predict --out results.csv`).

function cell(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  return /[",\n\r]/.test(text) ? '"' + text.replaceAll('"', '""') + '"' : text;
}

function argmax(probs, labels) {
  return labels.reduce((a, b) => ((probs[b] ?? -1) > (probs[a] ?? -1) ? b : a), labels[0]);
}

export function resultCSV(result, labels) {
  const rows = [["scope", "start_s", "end_s", "prediction", ...labels.map((l) => "p_" + l)]];
  const probs = result.probabilities || {};
  rows.push(["video", 0, result.duration_s, result.prediction, ...labels.map((l) => probs[l])]);
  const t = result.timeline || {};
  (t.start || []).forEach((start, j) => {
    const clip = Object.fromEntries(labels.map((l) => [l, ((t.probabilities || {})[l] || [])[j]]));
    rows.push([`clip ${j + 1}`, start, t.end[j], t.probabilities ? argmax(clip, labels) : "",
               ...labels.map((l) => clip[l])]);
  });
  return rows.map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

export function download(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
