"""Does image-text pretraining pay off when labels are scarce? The SynthEmo experiment.

1. SynthEmo videos (``data/synthemo``) and captioned SynthEmo still frames
   (``data/synthemo_captions``; captions describe the face, never name the emotion).
2. One WordPiece vocabulary from the captions and the training transcripts, shared by
   every run so the arms differ only in their starting weights.
3. ``pretrain`` on the captions (ITM + MLM), ``configs/synthemo_pretrain.yaml``.
4. ``finetune`` on a stratified ``fraction`` of the training labels, twice per seed with the
   same steps: from the pretrained checkpoint and from scratch (the CNN is ImageNet
   initialised in both). The seed also picks the labelled subset.
5. Both checkpoints scored on the full held-out test split at N_test = 16; the table is
   printed and saved as ``<out>/comparison.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_config
from ..eval.report import format_table, write_json

PRETRAIN_CONFIG = "synthemo_pretrain"  # configs shipped with the package (clipbert_emo/configs/)
FINETUNE_CONFIG = "synthemo_10pct"


def run_label_efficiency(data_dir: str = "data/synthemo", captions_dir: str = "data/synthemo_captions",
                         out_dir: str = "runs/label_efficiency", fraction: float = 0.1, num_images: int = 3000,
                         pretrain_overrides: list[str] | None = None, finetune_overrides: list[str] | None = None,
                         seeds: tuple[int, ...] = (42,), progress: bool = True) -> dict:
    from ..synthemo import SynthEmoConfig, generate_captioned_frames, generate_synthemo
    from ..data.text import build_wordpiece_tokenizer
    from ..train.finetune import finetune
    from ..train.pretrain import pretrain

    data_dir, captions_dir, out_dir = Path(data_dir), Path(captions_dir), Path(out_dir)
    t0 = time.time()
    if not (data_dir / "train.jsonl").exists():
        print(f"[label-efficiency] generating SynthEmo in {data_dir} ...")
        generate_synthemo(data_dir, SynthEmoConfig(), progress=progress)
    if not (captions_dir / "captions.jsonl").exists():
        print(f"[label-efficiency] generating {num_images} captioned frames in {captions_dir} ...")
        generate_captioned_frames(captions_dir, num_images=num_images, size=64, seed=0, progress=progress)

    texts = [json.loads(line)["text"] for f in (captions_dir / "captions.jsonl", data_dir / "train.jsonl")
             for line in f.read_text().splitlines() if line.strip()]
    tok_dir = out_dir / "tokenizer"
    build_wordpiece_tokenizer(texts, 1000, tok_dir)
    shared = [f"model.tokenizer={tok_dir}"]

    pre_cfg = load_config(PRETRAIN_CONFIG, [*shared, f"data.train_manifest={captions_dir / 'captions.jsonl'}",
                                            f"data.val_manifest={captions_dir / 'val_captions.jsonl'}",
                                            f"train.output_dir={out_dir / 'pretrain'}", "train.overwrite=true",
                                            *(pretrain_overrides or [])])
    print(f"[label-efficiency] pretraining on captioned frames -> {out_dir / 'pretrain'}")
    pre = pretrain(pre_cfg, progress=progress)

    arms = {"from_scratch": [], "pretrained": [f"train.init_checkpoint={out_dir / 'pretrain' / 'checkpoint'}"]}
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm, extra in arms.items():
            run_dir = out_dir / f"{arm}_seed{seed}"
            cfg = load_config(FINETUNE_CONFIG, [
                *shared, f"data.train_fraction={fraction}", f"train.seed={seed}",
                f"data.train_manifest={data_dir / 'train.jsonl'}", f"data.val_manifest={data_dir / 'val.jsonl'}",
                f"data.test_manifest={data_dir / 'test.jsonl'}", f"train.output_dir={run_dir}", f"name={arm}",
                "train.overwrite=true",
                *extra, *(finetune_overrides or [])])
            print(f"[label-efficiency] fine-tuning {arm} on {fraction:.0%} of the labels (seed {seed}) -> {run_dir}")
            m = finetune(cfg, progress=progress)
            test = m["test"]["reports"][cfg.model.aggregation]
            runs[arm].append({"seed": seed, "test_macro_f1": test["macro_f1"], "test_accuracy": test["accuracy"],
                              "best_val_macro_f1": m["best_val_macro_f1"], "best_epoch": m["best_epoch"],
                              "steps": m["steps"], "train_seconds": m["train_seconds"], "n_test": m["test"]["n_test"],
                              "aggregation": cfg.model.aggregation})
    # The seed also draws which 10% of the videos are labelled, so seeds vary the labelled set too.
    results = {arm: {"runs": r, **{f"mean_{k}": sum(x[k] for x in r) / len(r)
                                   for k in ("test_macro_f1", "test_accuracy", "best_val_macro_f1")}}
               for arm, r in runs.items()}
    num_labelled = sum(1 for _ in open(data_dir / "train.jsonl")) * fraction
    summary = {
        "fraction": fraction, "approx_labelled_videos": round(num_labelled), "seeds": list(seeds),
        "pretraining": {"pairs": pre["train_pairs"], "steps": pre["steps"], "seconds": pre["train_seconds"],
                        "final": {k: v for k, v in pre["history"][-1].items() if k.startswith("val_")}},
        "arms": results,
        "gain_macro_f1": results["pretrained"]["mean_test_macro_f1"] - results["from_scratch"]["mean_test_macro_f1"],
        "gain_per_seed": [p["test_macro_f1"] - s["test_macro_f1"]
                          for p, s in zip(runs["pretrained"], runs["from_scratch"])],
        "total_seconds": time.time() - t0,
    }
    rows = [{"start": arm, "seed": r["seed"], **{k: r[k] for k in ("test_macro_f1", "test_accuracy",
                                                                  "best_val_macro_f1", "steps")}}
            for arm in arms for r in runs[arm]]
    print()
    n_test = runs["pretrained"][0]["n_test"]
    print(f"SynthEmo, {fraction:.0%} of the training labels, held-out test split (300 videos), N_test={n_test}:")
    print(format_table(rows, ["start", "seed", "test_macro_f1", "test_accuracy", "best_val_macro_f1", "steps"]))
    print(f"pretraining gain in test macro-F1: {summary['gain_macro_f1']:+.3f} on average "
          f"(per seed: {', '.join(f'{g:+.3f}' for g in summary['gain_per_seed'])})")
    write_json(out_dir / "comparison.json", summary)
    print(f"written: {out_dir / 'comparison.json'}")
    return summary
