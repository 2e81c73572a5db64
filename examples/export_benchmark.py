#!/usr/bin/env python3
"""Export a checkpoint to ONNX and TorchScript, then score the same videos with Predictor (PyTorch), the ONNX
file through examples/onnx_predict.py, and the TorchScript module; print agreement and time per video, write JSON.

    python examples/export_benchmark.py runs/demo/video+text/checkpoint data/synthemo/test.jsonl --videos 20 \\
        --out runs/export_bench

Times are per video after one warm-up, on this machine's CPU threads: for ONNX and TorchScript they include
decoding and preprocessing (done by the example's numpy/Pillow code), as for Predictor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_predict  # noqa: E402  (the standalone example, beside this file)

from clipbert_emo import Predictor  # noqa: E402
from clipbert_emo.export import export_checkpoint  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("manifest", help="JSONL manifest whose videos (and texts) are scored")
    p.add_argument("--videos", type=int, default=20)
    p.add_argument("--out", default="runs/export_bench")
    args = p.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in open(args.manifest) if line.strip()][: args.videos]
    items = [(str((Path(args.manifest).parent / r["video"]).resolve()), r.get("text", "")) for r in rows]
    export_seconds = {}
    for fmt in ("onnx", "torchscript"):
        start = time.perf_counter()
        export_checkpoint(args.checkpoint, out / fmt, fmt=fmt, text_len="dynamic" if fmt == "onnx" else None)
        export_seconds[fmt] = time.perf_counter() - start
    predictor = Predictor(args.checkpoint, device="cpu", seek="accurate")  # the exported pipeline places clips exactly
    spec = json.loads((out / "torchscript" / "model.json").read_text())
    module = torch.jit.load(str(out / "torchscript" / "model.pt"))
    tokenizer = predictor.tokenizer

    def run_torchscript(video, text):
        clips, _, _ = onnx_predict.decode(video, spec)
        enc = tokenizer([text], truncation=True, max_length=spec["text_len"], padding="max_length",
                        return_tensors="pt")
        with torch.no_grad():
            _, logits = module(enc["input_ids"], enc["attention_mask"],
                               torch.from_numpy(onnx_predict.preprocess(clips, spec)))
        return onnx_predict.probabilities(logits[0].numpy(), spec["task"])

    runners = {
        "pytorch (Predictor)": lambda v, t: np.array(list(predictor(v, text=t)["probabilities"].values())),
        "onnx (onnx_predict.py)": lambda v, t: np.array(list(
            onnx_predict.predict(str(out / "onnx"), v, t)["probabilities"].values())),
        "torchscript": run_torchscript,
    }
    results, table = {}, []
    for name, fn in runners.items():
        fn(*items[0])  # warm-up
        start = time.perf_counter()
        results[name] = np.stack([fn(v, t) for v, t in items])  # (videos, K)
        table.append({"runtime": name, "ms_per_video": 1000 * (time.perf_counter() - start) / len(items)})
    ref = results["pytorch (Predictor)"]
    for row in table:
        got = results[row["runtime"]]
        row["max_abs_prob_diff"] = float(np.abs(got - ref).max())
        row["same_top_label"] = f"{int((got.argmax(1) == ref.argmax(1)).sum())}/{len(items)}"
    print(f"{args.checkpoint}: {len(items)} videos, N_test={spec['n_test']}, T={spec['num_frames']}, "
          f"{spec['frame_size']} px, torch threads {torch.get_num_threads()}")
    print(f"{'runtime':<24} {'ms/video':>9} {'max |dp|':>10} {'same top':>9}")
    for row in table:
        print(f"{row['runtime']:<24} {row['ms_per_video']:>9.1f} {row['max_abs_prob_diff']:>10.2e} "
              f"{row['same_top_label']:>9}")
    print("export seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in export_seconds.items()))
    report = {"checkpoint": args.checkpoint, "videos": len(items), "n_test": spec["n_test"],
              "num_frames": spec["num_frames"], "frame_size": spec["frame_size"], "threads": torch.get_num_threads(),
              "export_seconds": export_seconds, "runtimes": table,
              "model_bytes": {f: (out / f / ("model.onnx" if f == "onnx" else "model.pt")).stat().st_size
                              for f in ("onnx", "torchscript")}}
    (out / "export_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out / 'export_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
