"""The commands that read a checkpoint: evaluate, serve, search, convert-clipbert and export (predict has its
own module). Each has its parser (``add_<command>_parser``) beside what it runs (``_cmd_<command>``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config.choices import AGGREGATIONS
from .common import OVERRIDES_HELP, add_speed_options, positive, print_eval_summary, say, utf8_text


def _cmd_evaluate(args) -> int:
    from ..checkpoint import read_checkpoint_config
    from ..config import AGGREGATIONS, check_output_folder
    from ..eval.evaluate import evaluate
    from ..eval.report import format_report
    from ..runtime import set_threads
    from ..tasks import get_task

    out_dir = Path(args.out or Path(args.checkpoint).parent)
    check_output_folder(out_dir, "--out")
    set_threads(args.threads)
    result = evaluate(args.checkpoint, args.manifest, out_dir, n_test=args.n_test,
                      aggregations=args.aggregation or AGGREGATIONS, batch_size=args.batch_size,
                      progress=not args.quiet, drop=tuple(args.drop or ()), seek=args.seek, resume=args.resume)
    if args.json:
        say(json.dumps(result, indent=2))
        return 0
    for how, rep in result["reports"].items():
        text = format_report(rep)
        if text:
            say(f"\n== N_test={result['n_test']}, aggregation={how} ==")
            say(text)
    say()
    print_eval_summary(result, get_task(read_checkpoint_config(args.checkpoint)[0].data.task))
    say(f"written: {out_dir / 'eval_metrics.json'}")
    return 0


def add_evaluate_parser(sub, common) -> None:
    """``clipbert-emo evaluate CHECKPOINT MANIFEST``."""
    s = sub.add_parser("evaluate", parents=[common], help="dense evaluation of a checkpoint on a manifest",
                       description="Accuracy, macro-F1, weighted-F1, per-class P/R/F1 and the confusion matrix for "
                                   "every aggregation, at the chosen N_test.")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("manifest", help="JSONL/CSV manifest with labels, or train | val | test: that split of the "
                   "checkpoint's own data config (how a benchmark read from data.root is scored)")
    s.add_argument("--n-test", type=positive("--n-test"), default=None,
                   help="clips per video (default: the config's data.n_test)")
    s.add_argument("--aggregation", action="append", choices=AGGREGATIONS,
                   help="repeatable; default: all three")
    s.add_argument("--batch-size", type=positive("--batch-size"), default=None,
                   help="videos per batch (default: the config's train.eval_batch_size)")
    s.add_argument("--out", help="folder for eval_metrics.json and confusion_matrix.png (default: the run folder)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.add_argument("--resume", action="store_true",
                   help="continue an evaluation that was killed: the batches it saved in OUT/eval_progress/ (each "
                        "batch's logits, as they come) are not scored again")
    s.add_argument("--drop", action="append", metavar="MODALITY",
                   help="score with this modality (text, video or audio) removed from every test sample, as if "
                        "the transcript, face or sound were missing; repeatable")
    s.add_argument("-q", "--quiet", action="store_true")
    add_speed_options(s, default_seek=None)
    s.set_defaults(func=_cmd_evaluate)


def _cmd_serve(args) -> int:
    from ..serve import ServeLimits, serve

    limits = ServeLimits(max_upload_bytes=max(1, round(args.max_upload_mb * 2**20)), max_seconds=args.max_seconds,
                         queue_limit=args.queue, workers=args.workers, max_pixels=args.max_resolution,
                         max_frames=args.max_frames, max_fps=args.max_fps, request_timeout=args.request_timeout,
                         read_timeout=args.read_timeout)
    checkpoint = args.checkpoint
    if checkpoint is None:  # the ready face model, built once (offline) into its cache folder
        from ..face_model import ensure_face_model

        checkpoint = ensure_face_model(args.face_model_dir)
    serve(checkpoint, host=args.host, port=args.port, device=args.device, limits=limits, n_test=args.n_test,
          face_crop=args.face_crop, face_detector=args.face_detector, seek=args.seek, threads=args.threads,
          allowed_hosts=args.allowed_host or (), examples=args.examples)
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


def add_serve_parser(sub, common) -> None:
    """``clipbert-emo serve [CHECKPOINT]``: the page and the JSON API, with their limits."""
    s = sub.add_parser("serve", parents=[common], help="a local web page (upload, webcam, live mode) and JSON API",
                       description="Load a checkpoint once and serve a page where you upload a short video or "
                                   "record from the webcam (with a live mode that rescores the last 2 s about every "
                                   "2 s, and with a face model a per-frame mode that boxes the face as it moves) and "
                                   "see the emotion bars and the timeline; POST /predict, POST /api/frame, GET "
                                   "/labels, GET /health; the OpenAPI schema is at /docs. Binds to 127.0.0.1 unless "
                                   "told.")
    s.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint folder (…/checkpoint); none: the ready face model (FER2013's 7 emotions on real "
                        "faces, `clipbert-emo face-model`), built once into --face-model-dir")
    s.add_argument("--face-model-dir", metavar="DIR", default=None,
                   help="where the ready face model is kept when no checkpoint is given (default: "
                        "~/.cache/clipbert_emo/face_model, or under $XDG_CACHE_HOME)")
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
    s.add_argument("--examples", metavar="DIR", default=None,
                   help="a folder of videos the page offers to score with one click, instead of the shipped examples "
                        "(at most 12, listed once at start, served under made-up names)")
    s.add_argument("--face-crop", action="store_true", help="crop frames to the largest face (see predict)")
    s.add_argument("--face-detector", metavar="NAME|ONNX", default=None,
                   help="mtcnn (default), haar, ssd or a YuNet .onnx file (implies --face-crop)")
    add_speed_options(s, default_seek="keyframe")
    s.set_defaults(func=_cmd_serve)


def _cmd_search(args) -> int:
    from ..eval.report import format_table
    from ..search import search

    result = search(args.checkpoint, args.folder, utf8_text(args.query, "the query"), top_k=args.top,
                    cache_dir=args.cache, n_test=args.n_test, device=args.device, progress=not args.quiet)
    if result is None:  # a rank of accelerate launch other than 0: its share of the cache is built
        return 0
    if args.json:
        say(json.dumps(result, indent=2, allow_nan=False))  # strict JSON: a NaN score is a skipped video, never printed
        return 0
    say(f"{result['num_videos']} videos ({result['from_cache']} features from the cache, {result['computed']} "
        f"computed), query {result['query']!r}:")
    say(format_table(result["results"], ["rank", "score", "video"], floatfmt=".3f"))
    for w, r in result["skipped"]:
        say(f"skipped {w}: {r}")
    return 0


def add_search_parser(sub, common) -> None:
    """``clipbert-emo search CHECKPOINT FOLDER QUERY``."""
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


def add_convert_clipbert_parser(sub, common) -> None:
    """``clipbert-emo convert-clipbert CKPT OUT``."""
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


def add_export_parser(sub, common) -> None:
    """``clipbert-emo export CHECKPOINT --out DIR``."""
    from ..export import FORMATS, MAX_FRAME_SIZE, MAX_FRAMES, MAX_N_TEST, MAX_TEXT_LEN

    s = sub.add_parser("export", parents=[common], help="export a checkpoint to ONNX or TorchScript",
                       description="Trace the model at a fixed shape (N_test clips of T frames of SIZE px, one video) "
                                   "into model.onnx or model.pt, with model.json (labels, preprocessing, the clip "
                                   "sampling rule, aggregation) and the tokenizer beside it, so it runs without "
                                   "clipbert-emo (see examples/onnx_predict.py and docs/export.md). Inputs: token "
                                   "ids and mask, normalised float frames (and log-mel audio for audio models); "
                                   "outputs: per-clip and aggregated logits.")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("--format", choices=FORMATS, default="onnx", help="default: %(default)s")
    s.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier export's, replaced)")

    s.add_argument("--n-test", type=_bounded("--n-test", MAX_N_TEST), default=None,
                   help=f"clips per video, fixed in the graph, 1-{MAX_N_TEST} (default: the config's "
                        "data.n_test)")
    s.add_argument("--frames", type=_bounded("--frames", MAX_FRAMES), default=None,
                   help=f"frames per clip T, 1-{MAX_FRAMES} (default: the config's data.num_frames)")
    s.add_argument("--size", type=_bounded("--size", MAX_FRAME_SIZE), default=None,
                   help=f"frame size in pixels, 1-{MAX_FRAME_SIZE} (default: the config's data.frame_size)")
    s.add_argument("--text-len", type=_text_len(MAX_TEXT_LEN), default=None,
                   help="tokens of text, fixed (pad to it), or 'dynamic' for any length (default: the config's "
                        "data.max_text_len, fixed)")
    s.add_argument("--aggregation", choices=AGGREGATIONS, default=None,
                   help="how the graph's `logits` aggregate the clips (default: the model's model.aggregation)")
    s.set_defaults(func=_cmd_export)

