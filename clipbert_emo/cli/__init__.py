"""The ``clipbert-emo`` command line.

    clipbert-emo synthemo --out data/synthemo            # generate the built-in benchmark
    clipbert-emo finetune --config synthemo_cpu train.epochs=5      # a shipped config, by name or path
    clipbert-emo pretrain --config pretrain_coco_vg data.root=/data/coco
    clipbert-emo evaluate runs/synthemo_cpu/checkpoint data/synthemo/test.jsonl --n-test 16
    clipbert-emo predict runs/synthemo_cpu/checkpoint my_video.mp4 --text "no way!"
    clipbert-emo predict runs/synthemo_cpu/checkpoint videos/ --out results.jsonl --timeline-png timelines/
    clipbert-emo serve runs/synthemo_cpu/checkpoint     # the web page on http://127.0.0.1:8000
    clipbert-emo demo                                    # what `make demo` runs
    clipbert-emo compare-fusion --synthemo data/synthemo_audio --seeds 42 7   # docs/fusion.md
    clipbert-emo convert-clipbert clipbert_image_text_pretrained.pt runs/clipbert_original_init
    clipbert-emo export runs/synthemo_cpu/checkpoint --format onnx --out exported/   # run it without this library
    clipbert-emo bench decode                            # speed: decode | infer | train (docs/performance.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from .common import (OVERRIDES_HELP, add_common, add_speed_options, answer_stream, positive, say, set_stdout,
                         to_stdout, utf8_text)
from .predict import add_predict_parser

def _cmd_synthemo(args) -> int:
    from ..data.synthemo import SynthEmoConfig, generate_synthemo

    fields = {f.name for f in dataclasses.fields(SynthEmoConfig)}
    kwargs = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    summary = generate_synthemo(args.out, SynthEmoConfig(**kwargs), progress=not args.quiet)
    c = summary["ceilings"]
    say(f"SynthEmo written to {args.out}: {summary['counts']} videos in {summary['generation_seconds']:.1f} s")
    say(f"best possible accuracy: video only {c['video_only']:.3f}, text only {c['text_only']:.3f}, "
          f"video+text {c['video_text']:.3f}")
    return 0


def _run_overrides(args) -> list[str]:
    return (args.overrides + (["train.resume=true"] if args.resume else [])
            + (["train.overwrite=true"] if args.overwrite else []))


def _is_main_process() -> bool:
    # Under accelerate launch / torchrun every rank runs the command; one summary is enough.
    return int(os.environ.get("RANK", "0")) == 0


def _cmd_finetune(args) -> int:
    from ..config import load_config
    from ..train.finetune import finetune

    cfg = load_config(args.config, _run_overrides(args), preset=args.preset)
    metrics = finetune(cfg, progress=not args.quiet)
    if not _is_main_process():
        return 0
    say(f"best checkpoint: {metrics['checkpoint']} (epoch {metrics['best_epoch']}, "
        f"val {metrics['select_metric']} {metrics['best_val_score']})")
    if "test" in metrics:
        _print_eval_summary(metrics["test"])
    written = sorted(p.name for p in Path(cfg.train.output_dir).iterdir() if not p.name.startswith("."))
    say(f"run folder: {cfg.train.output_dir} ({', '.join(written)})")
    return 0


def _cmd_pretrain(args) -> int:
    from ..config import load_config
    from ..train.pretrain import pretrain

    cfg = load_config(args.config, _run_overrides(args), preset=args.preset)
    metrics = pretrain(cfg, progress=not args.quiet)
    if not _is_main_process():
        return 0
    last = metrics["history"][-1] if metrics["history"] else {}
    shown = {k: round(v, 4) for k, v in last.items() if k.startswith(("train_loss", "val_")) and isinstance(v, float)}
    say(f"pretrained on {metrics['train_pairs']} image-text pairs, {metrics['steps']} steps: {shown}")
    say(f"checkpoint: {metrics['checkpoint']}  (fine-tune from it with train.init_checkpoint={metrics['checkpoint']})")
    return 0


def _print_eval_summary(result: dict) -> None:
    from ..eval.report import format_table

    rows = []
    for how, rep in result["reports"].items():
        row = {"n_test": result["n_test"], "aggregation": how}
        # Whichever the task reports: classes, multi-label, multitask heads, or regression.
        # Whichever the task reports, with each benchmark's headline numbers: both Acc-2 conventions (with
        # and without zeros) for sentiment scores, each head of a multitask model (DAiSEE's four states).
        row.update({k: rep[k] for k in ("accuracy", "unweighted_accuracy", "macro_f1", "weighted_f1", "micro_f1",
                                        "subset_accuracy",
                                        "mean_weighted_accuracy", "mean_accuracy", "mean_macro_f1",
                                        "mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc3",
                                        "acc5", "acc7") if k in rep})
        # retrieval: recalls and median rank with a random ranking's; QA: accuracy per question type
        row.update({k: rep[k] for k in ("r1", "r5", "r10", "median_rank", "chance_r1", "chance_median_rank")
                    if k in rep})
        row.update({k: v for k, v in rep.items() if k.startswith("acc_")})
        for head, head_rep in rep.get("heads", {}).items():
            row[f"{head}_acc"] = head_rep["accuracy"]
            row[f"{head}_f1"] = head_rep["macro_f1"]
        rows.append(row)
    say(format_table(rows, list(rows[0].keys())))
    if result["skipped"]:
        say(f"skipped {len(result['skipped'])} sample(s): " + "; ".join(f"{w}: {r}" for w, r in result["skipped"][:5]))


def _cmd_evaluate(args) -> int:
    from ..config import check_output_folder
    from ..eval.evaluate import evaluate
    from ..eval.report import format_report

    from ..runtime import set_threads

    out_dir = Path(args.out or Path(args.checkpoint).parent)
    check_output_folder(out_dir, "--out")
    set_threads(args.threads)
    result = evaluate(args.checkpoint, args.manifest, out_dir, num_clips=args.n_test,
                      aggregations=args.aggregation or ("mean", "max", "lse"), batch_size=args.batch_size,
                      progress=not args.quiet, drop=tuple(args.drop or ()), seek=args.seek)
    if args.json:
        say(json.dumps(result, indent=2))
        return 0
    for how, rep in result["reports"].items():
        text = format_report(rep)
        if text:
            say(f"\n== N_test={result['n_test']}, aggregation={how} ==")
            say(text)
    say()
    _print_eval_summary(result)
    say(f"written: {out_dir / 'eval_metrics.json'}")
    return 0


def _cmd_serve(args) -> int:
    from ..serve import ServeLimits, serve

    limits = ServeLimits(max_upload_bytes=max(1, round(args.max_upload_mb * 2**20)), max_seconds=args.max_seconds,
                         queue_limit=args.queue, workers=args.workers, max_pixels=args.max_resolution,
                         max_frames=args.max_frames, max_fps=args.max_fps, request_timeout=args.request_timeout,
                         read_timeout=args.read_timeout)
    serve(args.checkpoint, host=args.host, port=args.port, device=args.device, limits=limits, num_clips=args.n_test,
          face_crop=args.face_crop, face_detector=args.face_detector, seek=args.seek, threads=args.threads,
          allowed_hosts=args.allowed_host or ())
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535 (0: any free port), got {port}")
    return port


def _positive_finite(text: str) -> float:
    from math import isfinite

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (isfinite(value) and value > 0):  # nan and inf are floats too, but no limit a server can keep
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _resolution(text: str) -> int:
    """WIDTHxHEIGHT as a pixel count, so the limit holds in either orientation."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}")
    return int(width) * int(height)


def _cmd_demo(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.demo import run_demo

    with redirect_stdout(answer_stream()):  # the demo's progress lines and table are what it was asked for
        run_demo(data_dir=args.data or ("data/synthemo_audio" if args.audio else "data/synthemo"),
                 out_dir=args.out or ("runs/demo_audio" if args.audio else "runs/demo"), config=args.config,
                 overrides=args.overrides, progress=not args.quiet, audio=args.audio)
    return 0


def _cmd_compare_fusion(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.compare_fusion import run_compare_fusion

    with redirect_stdout(answer_stream()):  # the progress lines and the table are what it was asked for
        run_compare_fusion(config=args.config, seeds=args.seeds, out_dir=args.out, overrides=args.overrides,
                           strategies=args.strategies, baselines=not args.no_baselines, n_test=args.n_test,
                           synthemo=args.synthemo, progress=not args.quiet, preset=args.preset)
    return 0


def _cmd_synthemo_tasks(args) -> int:
    from ..experiments.retrieval_qa import SIZES, ensure_task_data

    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in SIZES.items()}
    if sizes != SIZES and not (Path(args.out) / "synthemo.json").exists():
        from ..data.synthemo import SynthEmoConfig, generate_synthemo

        generate_synthemo(args.out, SynthEmoConfig(**sizes), progress=not args.quiet)
    ensure_task_data(args.out, progress=not args.quiet)
    say(f"written: {args.out}/{{retrieval,qa,qa_mc}}_{{train,val,test}}.jsonl")
    return 0


def _cmd_task_demo(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.retrieval_qa import run_task_demo

    kind = "retrieval" if args.command == "demo-retrieval" else ("qa_mc" if args.multiple_choice else "qa")
    with redirect_stdout(answer_stream()):
        run_task_demo(kind, data_dir=args.data, out_dir=args.out, overrides=args.overrides, progress=not args.quiet)
    return 0


def _cmd_search(args) -> int:
    from ..eval.report import format_table
    from ..search import search

    result = search(args.checkpoint, args.folder, utf8_text(args.query, "the query"), top_k=args.top,
                    cache_dir=args.cache, num_clips=args.n_test, device=args.device, progress=not args.quiet)
    if args.json:
        say(json.dumps(result, indent=2, allow_nan=False))  # strict JSON: a NaN score is a skipped video, never printed
        return 0
    say(f"{result['num_videos']} videos ({result['from_cache']} features from the cache, {result['computed']} "
        f"computed), query {result['query']!r}:")
    say(format_table(result["results"], ["rank", "score", "video"], floatfmt=".3f"))
    for w, r in result["skipped"]:
        say(f"skipped {w}: {r}")
    return 0


def _cmd_convert_clipbert(args) -> int:
    from ..convert import convert_clipbert
    from ..eval.report import format_table

    labels = [lab.strip() for lab in args.labels.split(",") if lab.strip()] if args.labels else None
    report = convert_clipbert(args.ckpt, args.out, tokenizer=args.tokenizer, labels=labels,
                              overrides=args.overrides, config=args.config)
    rows = []
    for status, key in (("loaded", "loaded"), ("kept aside", "kept_aside"), ("dropped", "dropped"),
                        ("initialised", "initialised")):
        for group, n in report[key].items():
            why = report["why"].get(group, "") if key == "dropped" else ""
            if key == "initialised":
                why = next((w for p, w in report["initialised_why"].items() if group.startswith(p)), "")
            if key == "kept_aside":
                why = f"pretraining heads, in {report['kept_aside_file']}"
            rows.append({"status": status, "group": group, "tensors": n, "note": why})
    say(format_table(rows, ["status", "group", "tensors", "note"]))
    t = report["tensors"]
    say(f"\n{t['file']} tensors in {args.ckpt}: {t['loaded']} loaded, {t['kept_aside']} kept aside, "
          f"{t['dropped']} dropped; {t['initialised']} model tensors start at their initialisation")
    say(f"written: {args.out} (fine-tune with train.init_checkpoint={args.out}; report in conversion_report.json)")
    return 0


def _bounded(name: str, most: int):
    """A whole number in [1, most], checked while the command line is parsed (before any model is loaded): a
    shape far beyond any model's is a typo, and would otherwise end in a memory-allocation failure."""
    parse_positive = positive(name)

    def parse(text: str) -> int:
        value = parse_positive(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"{name} must be at most {most}, got {value}")
        return value
    return parse


def _text_len(most: int):
    """--text-len: 'dynamic', or a whole number of tokens in [2, most] ([CLS] and [SEP] at least)."""
    def parse(text: str):
        if text == "dynamic":
            return text
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--text-len must be a whole number or 'dynamic', got {text!r}") from None
        if not 2 <= value <= most:
            raise argparse.ArgumentTypeError(f"--text-len must be between 2 ([CLS] [SEP]) and {most}, got {value}")
        return value
    return parse


def _cmd_export(args) -> int:
    from ..export import export_checkpoint

    spec = export_checkpoint(args.checkpoint, args.out, fmt=args.format, n_test=args.n_test, num_frames=args.frames,
                             frame_size=args.size, text_len=args.text_len, aggregation=args.aggregation)
    inputs = ", ".join(f"{k} {tuple(v['shape'])}" for k, v in spec["inputs"].items())
    say(f"exported {args.checkpoint} to {Path(args.out) / spec['model_file']} ({spec['format']}; PyTorch and the "
        f"export agree within {spec['verified_max_abs_diff']:.1e})")
    say(f"inputs: {inputs}; outputs: clip_logits {tuple(spec['outputs']['clip_logits']['shape'])}, logits "
        f"{tuple(spec['outputs']['logits']['shape'])} ({spec['aggregation']} over clips)")
    say(f"written beside it: model.json (labels, preprocessing, sampling), tokenizer/; run it with "
        f"examples/onnx_predict.py")
    return 0


def _add_run_options(s: argparse.ArgumentParser) -> None:
    """What finetune and pretrain share: overrides, resume or overwrite a run folder, presets, quiet."""
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    s.add_argument("--resume", action="store_true",
                   help="continue a killed run from train.output_dir/last (same config and seed)")
    s.add_argument("--overwrite", action="store_true",
                   help="start afresh in a train.output_dir that already holds a run (its checkpoints are replaced)")
    s.add_argument("--preset", default=None,
                   help="settings applied over the config, under the overrides (several: cpu,audio): cpu = a "
                        "laptop-sized model (ImageNet EfficientNet-lite0 shipped in a package, small transformer from "
                        "scratch); audio = the sound track as a third modality")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clipbert-emo",
        description="ClipBERT-style emotion recognition in short videos: sparse clips for training, "
                    "dense clips for inference, video and transcript fused in one BERT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    add_common(p, False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    add_common(common, argparse.SUPPRESS)  # after the subcommand too, without resetting what came before it

    s = sub.add_parser("synthemo", parents=[common], help="generate the SynthEmo benchmark (mp4 files + JSONL manifests)")
    s.add_argument("--out", default="data/synthemo", help="output folder (default: %(default)s)")
    from ..data.synthemo import SynthEmoConfig

    for f in dataclasses.fields(SynthEmoConfig):
        default = getattr(SynthEmoConfig(), f.name)
        s.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default), default=None,
                       help=f"default: {default}")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_synthemo)

    s = sub.add_parser("finetune", parents=[common], help="fine-tune on emotion labels from a config",
                       description="Fine-tune end to end. Writes config.yaml, checkpoint/, metrics.json and plots "
                                   "to train.output_dir.")
    s.add_argument("--config", "-c", help="experiment YAML: a path, or the name of a shipped config (meld, "
                   "synthemo_cpu, ...; see configs/) (default: built-in defaults)")
    _add_run_options(s)
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("pretrain", parents=[common], help="image-text pretraining (ITM + MLM), ClipBERT's stage 1",
                       description="Pretrain the CNN and the fusion transformer on image-text pairs (COCO captions, "
                                   "Visual Genome regions, or a JSONL of {\"video\": image, \"text\": caption}) with "
                                   "image-text matching and masked language modeling. Writes checkpoint/ for "
                                   "finetune's train.init_checkpoint.")
    s.add_argument("--config", "-c", help="experiment YAML: a path or a shipped config's name, e.g. pretrain_coco_vg")
    _add_run_options(s)
    s.set_defaults(func=_cmd_pretrain)

    s = sub.add_parser("evaluate", parents=[common], help="dense evaluation of a checkpoint on a manifest",
                       description="Accuracy, macro-F1, weighted-F1, per-class P/R/F1 and the confusion matrix for "
                                   "every aggregation, at the chosen N_test.")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("manifest", help="JSONL/CSV manifest with labels, or train | val | test: that split of the "
                   "checkpoint's own data config (how a benchmark read from data.root is scored)")
    s.add_argument("--n-test", type=positive("--n-test"), default=None,
                   help="clips per video (default: the config's N_test)")
    s.add_argument("--aggregation", action="append", choices=["mean", "max", "lse"],
                   help="repeatable; default: all three")
    s.add_argument("--batch-size", type=positive("--batch-size"), default=None,
                   help="videos per batch (default: the config's train.eval_batch_size)")
    s.add_argument("--out", help="folder for eval_metrics.json and confusion_matrix.png (default: the run folder)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--drop", action="append", metavar="MODALITY",
                   help="score with this modality (text, video or audio) removed from every test sample, as if "
                        "the transcript, face or sound were missing; repeatable")
    s.add_argument("-q", "--quiet", action="store_true")
    add_speed_options(s, default_seek=None)
    s.set_defaults(func=_cmd_evaluate)

    add_predict_parser(sub, common)

    s = sub.add_parser("serve", parents=[common], help="a local web page (upload, webcam, live mode) and JSON API",
                       description="Load a checkpoint once and serve a page where you upload a short video or "
                                   "record from the webcam (with a live mode that rescores the last 2 s about every "
                                   "2 s) and see the emotion bars and the timeline; POST /predict, GET /labels, "
                                   "GET /health; the OpenAPI schema is at /docs. Binds to 127.0.0.1 unless told.")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only; 0.0.0.0 opens it to the network)")
    s.add_argument("--port", type=_port, default=8000, help="0 = any free port (default: %(default)s)")
    s.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="a host name (or address) the page may be reached by, besides localhost, 127.0.0.1, [::1] "
                        "and --host; requests naming any other get 400, which stops DNS rebinding; repeatable")
    s.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    s.add_argument("--n-test", type=positive("--n-test"), default=None, help="clips per upload (default: the "
                   "config's N_test)")
    s.add_argument("--max-upload-mb", type=_positive_finite, default=50.0,
                   help="larger uploads get 413, counted as they arrive (default: %(default)s)")
    s.add_argument("--max-seconds", type=_positive_finite, default=60.0,
                   help="longer videos get 422 (default: %(default)s)")
    s.add_argument("--max-resolution", type=_resolution, default=4096 * 2304, metavar="WxH",
                   help="videos whose header declares larger frames (in pixels) get 422 (default: 4096x2304)")
    s.add_argument("--max-frames", type=positive("--max-frames"), default=3600,
                   help="videos of more frames get 422 (default: %(default)s, a minute at 60 fps)")
    s.add_argument("--max-fps", type=_positive_finite, default=240.0,
                   help="videos whose header declares a higher frame rate get 422 (default: %(default)s)")
    s.add_argument("--request-timeout", type=_positive_finite, default=120.0, metavar="SECONDS",
                   help="an upload not answered by then gets 408 (still arriving) or 504 (still scoring) "
                        "(default: %(default)s)")
    s.add_argument("--read-timeout", type=_positive_finite, default=10.0, metavar="SECONDS",
                   help="a client silent this long mid-upload gets 408, and a connection must send a request's "
                        "headers within it (default: %(default)s)")
    s.add_argument("--queue", type=positive("--queue"), default=8,
                   help="uploads being received, scored or waiting at once; more get 503 before their body is read "
                        "(default: %(default)s)")
    s.add_argument("--workers", type=positive("--workers"), default=1,
                   help="scoring threads sharing the one model (default: %(default)s)")
    s.add_argument("--face-crop", action="store_true", help="crop frames to the largest face (see predict)")
    s.add_argument("--face-detector", metavar="ONNX", default=None, help="a YuNet .onnx file (implies --face-crop)")
    add_speed_options(s, default_seek="keyframe")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("demo", parents=[common], help="the README's demo: SynthEmo, three models, the comparison table")
    s.add_argument("--data", default=None, help="SynthEmo folder, generated if missing (default: data/synthemo, "
                   "data/synthemo_audio with --audio)")
    s.add_argument("--out", default=None, help="run folder (default: runs/demo, runs/demo_audio with --audio)")
    s.add_argument("--audio", action="store_true",
                   help="SynthEmo with sound: train video+text, audio only and video+text+audio (make demo-audio)")
    s.add_argument("--config", default=None, help="base config, a path or a shipped config's name (default: synthemo_cpu)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to all three models)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("compare-fusion", parents=[common], help="early, late, cross-attention and hybrid fusion "
                       "trained with the same budget and compared (docs/fusion.md)",
                       description="Train one model per fusion strategy (model.fusion) and seed, plus one per single "
                                   "modality, with the config's budget; score each on the test split at N_test with "
                                   "every modality and with each one removed; print the table (mean ± spread over "
                                   "seeds, parameters, train time per step, inference time per video) and write "
                                   "summary.json and summary.png.")
    s.add_argument("--config", default=None, help="experiment config, a path or a shipped config's name (default: "
                   "fusion_synthemo)")
    s.add_argument("--seeds", nargs="+", type=int, default=[42], help="one run per strategy and seed (default: 42)")
    s.add_argument("--strategies", nargs="+", default=["early", "late", "cross_attention", "hybrid"],
                   choices=["early", "late", "cross_attention", "hybrid"], help="default: all four")
    s.add_argument("--no-baselines", action="store_true", help="skip the single-modality models")
    s.add_argument("--n-test", type=positive("--n-test"), default=16, help="test clips per video (default: 16)")
    s.add_argument("--synthemo", default=None, metavar="DIR",
                   help="use SynthEmo with a voice from DIR (generated when missing) instead of the config's manifests")
    s.add_argument("--preset", default=None, help="presets over the config, as for finetune (e.g. cpu,audio)")
    s.add_argument("--out", default="runs/compare_fusion", help="output folder (default: %(default)s)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to every run)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_compare_fusion)

    s = sub.add_parser("search", parents=[common], help="rank a folder of videos for a text query (retrieval checkpoint)",
                       description="Score every video of FOLDER against QUERY with a retrieval checkpoint "
                                   "(data.task=retrieval) and print the best matches. Each video's visual features "
                                   "are cached on disk (FOLDER/.clipbert-emo-cache unless --cache), so a second "
                                   "query over the same folder runs only the fusion transformer.")
    s.add_argument("checkpoint", help="retrieval checkpoint folder (…/checkpoint)")
    s.add_argument("folder", help="folder of videos (searched recursively)")
    s.add_argument("query", help='the text to search for, e.g. "someone laughing"')
    s.add_argument("--top", type=positive("--top"), default=10, help="results shown (default: %(default)s)")
    s.add_argument("--cache", default=None, help="feature cache folder (default: FOLDER/.clipbert-emo-cache)")
    s.add_argument("--n-test", type=positive("--n-test"), default=None, help="clips per video (default: N_test)")
    s.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_search)

    s = sub.add_parser("synthemo-tasks", parents=[common],
                       help="SynthEmo with retrieval captions and QA questions (manifests for demo-retrieval/demo-qa)",
                       description="Generate a SynthEmo (unless --out has one) and write retrieval_*.jsonl (captions), "
                                   "qa_*.jsonl (open-ended questions) and qa_mc_*.jsonl (multiple choice) next to it.")
    s.add_argument("--out", default="data/synthemo_rq", help="folder (default: %(default)s)")
    for key in ("num_train", "num_val", "num_test"):
        s.add_argument(f"--{key.replace('_', '-')}", dest=key, type=positive(key), default=None,
                       help="videos (default: 400 / 100 / 100)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_synthemo_tasks)

    for name, what in (("demo-retrieval", "text-to-video retrieval (R@1/5/10, median rank)"),
                       ("demo-qa", "video question answering (accuracy per question type)")):
        s = sub.add_parser(name, parents=[common], help=f"SynthEmo {what} on a CPU, with chance level beside it")
        s.add_argument("--data", default="data/synthemo_rq", help="SynthEmo task folder, made if missing "
                       "(default: %(default)s)")
        s.add_argument("--out", default=None, help="run folder (default: runs/demo_<task>)")
        if name == "demo-qa":
            s.add_argument("--multiple-choice", action="store_true", help="four candidates per question (qa_mc)")
        s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
        s.add_argument("-q", "--quiet", action="store_true")
        s.set_defaults(func=_cmd_task_demo)

    s = sub.add_parser("convert-clipbert", parents=[common], help="convert the original ClipBERT checkpoint into a checkpoint folder",
                       description="Map the original ClipBERT state dict (clipbert_image_text_pretrained.pt) onto "
                                   "this model (configs/clipbert_original.yaml); detector-only tensors are dropped "
                                   "and reported. Fine-tune from the result with train.init_checkpoint=OUT.")
    s.add_argument("ckpt", help="the original checkpoint (.pt; read as plain tensors, never as code)")
    s.add_argument("out", help="checkpoint folder to write")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to configs/clipbert_original.yaml)")
    s.add_argument("--tokenizer", default="bert-base-uncased",
                   help="the checkpoint's vocabulary: hub id or a local folder (offline) (default: %(default)s)")
    s.add_argument("--labels", default=None, help="comma-separated label names (default: the config's data.labels)")
    s.add_argument("--config", default=None, help="model config (default: configs/clipbert_original.yaml)")
    s.set_defaults(func=_cmd_convert_clipbert)

    s = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX or TorchScript",
                       description="Trace the model at a fixed shape (N_test clips of T frames of SIZE px, one video) "
                                   "into model.onnx or model.pt, with model.json (labels, preprocessing, the clip "
                                   "sampling rule, aggregation) and the tokenizer beside it, so it runs without "
                                   "clipbert-emo (see examples/onnx_predict.py and docs/export.md). Inputs: token "
                                   "ids and mask, normalised float frames (and log-mel audio for audio models); "
                                   "outputs: per-clip and aggregated logits.")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="default: %(default)s")
    s.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier export's, replaced)")
    from ..export import MAX_FRAME_SIZE, MAX_FRAMES, MAX_N_TEST, MAX_TEXT_LEN

    s.add_argument("--n-test", type=_bounded("--n-test", MAX_N_TEST), default=None,
                   help=f"clips per video, fixed in the graph, 1-{MAX_N_TEST} (default: the config's "
                        "data.num_clips_test)")
    s.add_argument("--frames", type=_bounded("--frames", MAX_FRAMES), default=None,
                   help=f"frames per clip T, 1-{MAX_FRAMES} (default: the config's data.num_frames)")
    s.add_argument("--size", type=_bounded("--size", MAX_FRAME_SIZE), default=None,
                   help=f"frame size in pixels, 1-{MAX_FRAME_SIZE} (default: the config's data.frame_size)")
    s.add_argument("--text-len", type=_text_len(MAX_TEXT_LEN), default=None,
                   help="tokens of text, fixed (pad to it), or 'dynamic' for any length (default: the config's "
                        "data.max_text_len, fixed)")
    s.add_argument("--aggregation", choices=["mean", "max", "lse"], default=None,
                   help="how the graph's `logits` aggregate the clips (default: the model's model.aggregation)")
    s.set_defaults(func=_cmd_export)

    from ..experiments.bench import add_parser as add_bench_parser

    s = add_bench_parser(sub, common)
    s.set_defaults(func=to_stdout(s.get_default("func")))  # the table is what it was asked for
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from contextlib import redirect_stdout

    from ..config import UserError
    from ..config.errors import describe_os_error

    set_stdout(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            return args.func(args)
    except UserError as e:
        if args.debug:
            raise
        print(f"clipbert-emo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk that filled up, a folder that became read-only, ... while writing
        if args.debug or e.filename is None:
            raise
        print(f"clipbert-emo {args.command}: error: {describe_os_error(e, e.filename)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C anywhere else (loading, a training step): what is on disk stays as it was
        if args.debug:
            raise
        print(f"clipbert-emo {args.command}: interrupted", file=sys.stderr)
        return 130


def _exit(code: int) -> None:
    """Leave with ``code``. A rank of a distributed launch skips the interpreter's teardown once its work is
    written and its streams are flushed: there, a gloo/OpenMP thread destroyed at exit aborts the process
    now and then ("terminate called without an active exception", SIGABRT) after a run that succeeded, and
    the launcher then reports the whole run as failed."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run() -> None:
    """The ``clipbert-emo`` console script."""
    _exit(main())
