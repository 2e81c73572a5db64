"""The README's demo: does fusion beat each modality, and does dense inference pay off?

On SynthEmo it trains three models with the same budget (video only, text only,
video+text), evaluates each on the held-out test split with N_test = 1 and 16 clips and
every aggregation, prints the table and writes ``<out>/summary.json``::

    {"rows": [{"modalities": "video" | "text" | "video+text", "n_test": 1 | 16,
               "aggregation": "mean" | "max" | "lse", "accuracy": float, "macro_f1": float}, ...],
     "train_seconds": float, "eval_seconds": float, "checkpoint": "path"}

``checkpoint`` is the video+text model, ready for ``clipbert-emo predict``. A text-only
model has no clips, so its one row has n_test 1. More detail (per-class reports, the
benchmark's accuracy ceilings) goes to ``<out>/details.json`` and ``<out>/summary.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import load_config
from ..eval.plots import plot_modality_summary
from ..eval.report import format_table, write_json

MODALITIES = {
    "video": ["data.use_text=false"],
    "text": ["data.use_video=false"],
    "video+text": [],
}
# `clipbert-emo demo --audio` (make demo-audio): the audio variant of SynthEmo, where the voice is needed.
AUDIO_MODALITIES = {
    "video+text": [],
    "audio": ["data.use_video=false", "data.use_text=false", "data.use_audio=true"],
    "video+text+audio": ["data.use_audio=true"],
}
DEFAULT_CONFIG = "synthemo_cpu"  # configs shipped with the package (clipbert_emo/configs/)
DEFAULT_AUDIO_CONFIG = "synthemo_audio"


def _ensure_synthemo(data_dir: Path, progress: bool, audio: bool = False) -> dict:
    from ..synthemo import SynthEmoConfig, generate_synthemo

    info = data_dir / "synthemo.json"
    if info.exists() and all((data_dir / f"{s}.jsonl").exists() for s in ("train", "val", "test")):
        summary = json.loads(info.read_text())
        if bool(summary["config"].get("audio")) == audio:
            print(f"[demo] using SynthEmo in {data_dir}")
            return summary
        from ..config import UserError

        raise UserError(f"{data_dir} holds the {'plain' if audio else 'audio'} SynthEmo; give --data another folder")
    print(f"[demo] generating SynthEmo{' with sound' if audio else ''} in {data_dir} ...")
    return generate_synthemo(data_dir, SynthEmoConfig(audio=audio), progress=progress)


def run_demo(data_dir: str = "data/synthemo", out_dir: str = "runs/demo", config: str | None = None,
             overrides: list[str] | None = None, progress: bool = True, audio: bool = False) -> dict:
    from ..eval.evaluate import evaluate
    from ..train.finetune import finetune

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    synth = _ensure_synthemo(data_dir, progress, audio)
    config = config or (DEFAULT_AUDIO_CONFIG if audio else DEFAULT_CONFIG)
    # Decoded sound tracks are cached beside the data they come from (data.audio.cache_dir; unused without audio).
    cache = [f"data.audio.cache_dir={data_dir / 'audio_cache'}"] if audio else []
    rows, details = [], {"ceilings": synth.get("ceilings"), "models": {}}
    train_seconds = eval_seconds = 0.0
    for modality, extra in (AUDIO_MODALITIES if audio else MODALITIES).items():
        run_dir = out_dir / modality
        cfg = load_config(config, [
            f"data.train_manifest={data_dir / 'train.jsonl'}",
            f"data.val_manifest={data_dir / 'val.jsonl'}",
            "data.test_manifest=",  # tested below, at both N_test
            f"train.output_dir={run_dir}",
            f"name=demo-{modality}",
            "train.overwrite=true",  # a rerun of the demo replaces the previous one
            *cache, *extra, *(overrides or []),
        ])
        print(f"[demo] training {modality} ...")
        metrics = finetune(cfg, progress=progress)
        train_seconds += metrics["train_seconds"]
        details["models"][modality] = {"best_epoch": metrics["best_epoch"],
                                       "best_val_macro_f1": metrics["best_val_macro_f1"],
                                       "train_seconds": metrics["train_seconds"], "tests": {}}
        clipped = cfg.data.use_video or cfg.data.use_audio  # a text-only model has no clips
        for n_test in ((1, 16) if clipped else (1,)):
            res = evaluate(run_dir / "checkpoint", str(data_dir / "test.jsonl"), run_dir / f"test_n{n_test}",
                           n_test=n_test, progress=progress)
            eval_seconds += res["eval_seconds"]
            details["models"][modality]["tests"][n_test] = res["reports"]
            aggs = ("mean", "max", "lse") if clipped else (cfg.model.aggregation,)
            for how in aggs:
                rep = res["reports"][how]
                rows.append({"modalities": modality, "n_test": n_test, "aggregation": how,
                             "accuracy": float(rep["accuracy"]), "macro_f1": float(rep["macro_f1"])})
    summary = {"rows": rows, "train_seconds": train_seconds, "eval_seconds": eval_seconds,
               "checkpoint": str(out_dir / "video+text" / "checkpoint")}
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "details.json", details)
    plot_modality_summary(rows, out_dir / "summary.png", title="SynthEmo with sound: which modalities carry the answer"
                          if audio else None)
    print()
    print(format_table(rows, ["modalities", "n_test", "aggregation", "accuracy", "macro_f1"]))
    c = synth.get("ceilings") or {}
    if c:
        print("\nbest possible accuracy on this SynthEmo: " + ", ".join(f"{k.replace('_', ' ')} {v:.3f}"
                                                                    for k, v in c.items()))
    print(f"train {train_seconds:.0f} s, eval {eval_seconds:.0f} s; summary: {out_dir / 'summary.json'}")
    print(f"try: clipbert-emo predict {summary['checkpoint']} {data_dir / 'videos/test/000000.mp4'} --text \"wow\"")
    return summary
