"""``clipbert-emo predict``: one video's tables, or many videos (files, folders, manifests) in batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config.choices import AGGREGATIONS
from .common import add_speed_options, non_negative, png_path, positive, say, utf8_text
from .predict_rows import TimelinePngs, summarise_run, table_row


def _cmd_predict(args) -> int:
    from ..config import UserError
    from ..predict import Predictor, is_manifest, plot_timeline, transcribe
    from ..runtime import set_threads
    from ..ranks import launch_state, launched, rank_device, rank_threads

    text = utf8_text(args.text, "--text")
    plot = png_path(args.plot, "--plot")
    paths = args.paths
    many = (len(paths) > 1 or args.out or args.transcripts or args.timeline_png
            or any(Path(p).is_dir() or is_manifest(p) for p in paths))
    if (args.resume or args.overwrite) and not args.out:
        raise UserError("--resume and --overwrite are about an --out file; give --out FILE")
    if many and (plot or args.transcribe):
        raise UserError("--plot and --transcribe are for one video; with several use --timeline-png DIR and "
                        "--transcripts FILE")
    state = None
    if launched():  # one rank of `accelerate launch`: a share of the videos, written to a part file beside --out
        if not many or not args.out:
            raise UserError("under accelerate launch, predict scores many videos (a folder, a manifest or several "
                            "files) into one --out file; give --out FILE")
        if plot or args.transcribe:
            raise UserError("--plot and --transcribe are for one video, in one process")
        state = launch_state(args.device)
    set_threads(args.threads if args.threads is not None or state is None else rank_threads())
    device = rank_device(state, args.device) if state is not None else args.device
    predictor = Predictor(args.checkpoint, device=device, seek=args.seek)
    if args.face_crop or args.face_detector:
        predictor.use_face_crop(True, detector=args.face_detector)
    if many:
        return _predict_many(args, predictor, text, state)
    args.video = paths[0] if paths else None
    if args.transcribe and not text and args.video:
        text = transcribe(args.video, args.transcribe)
        print(f"transcript ({args.transcribe}): {text!r}", file=sys.stderr)
    if plot and not predictor.draws_timelines:
        raise UserError("--plot draws the per-clip class probabilities over time: it needs a model with video and "
                        f"class labels (this checkpoint: {predictor.task.name}, "
                        f"{'+'.join(predictor.model.modality_names) or 'text only'})")
    result = predictor(args.video, text=text, n_test=args.n_test, aggregation=args.aggregation)
    if plot:
        plot_timeline(result, predictor.labels, plot)
    if args.json or not isinstance(result["prediction"], str):  # regression / multitask: nested values
        say(json.dumps(result, indent=2))
        return 0
    from ..eval.report import format_table

    from .results_file import shown_path

    say(f"{shown_path(result['video'])}  text={result['text']!r}")  # a name that is not UTF-8 would not print
    say(f"prediction: {result['prediction']}  ({result['aggregation']} over {result['n_test']} clips)")
    say(format_table([{"label": k, "probability": v} for k, v in
                      sorted(result["probabilities"].items(), key=lambda kv: -kv[1])], ["label", "probability"]))
    if result["clips"] and result["clips"][0]["start"] is not None:
        rows = [{"clip": i, "start_s": c["start"], "end_s": c["end"], "top": c["prediction"],
                 "p_top": c["probabilities"][c["prediction"]]} for i, c in enumerate(result["clips"])]
        say("\nper clip:")
        say(format_table(rows, ["clip", "start_s", "end_s", "top", "p_top"], floatfmt=".2f"))
    if "face_crop" in result:
        f = result["face_crop"]
        say(f"face crop: no face in {f['no_face_frames']} of {f['frames']} frames; "
            f"{f['full_frame_clips']} of {f['clips']} clips used the full frame")
    return 0


def _predict_many(args, predictor, text: str | None, state=None) -> int:
    """Batch prediction: gather the videos, score them in batches, write each result to --out (and its timeline
    PNG) as it comes, then print a table. Ctrl-C stops with what was written kept (exit 130). ``state``: the
    launch's PartialState when this is one of several processes (cli/predict_parts.py)."""
    from ..config import UserError
    from .results_file import ResultsFile

    png_dir = Path(args.timeline_png) if args.timeline_png else None
    if png_dir is not None:
        if png_dir.exists() and not png_dir.is_dir():
            raise UserError(f"--timeline-png {png_dir} is a file; give a folder")
        if not predictor.task.clip_probabilities:
            raise UserError(f"--timeline-png draws class probabilities; this checkpoint's task is {predictor.task.name}")
    if state is not None:
        from .predict_parts import run_sharded

        return run_sharded(args, predictor, text, png_dir, state)
    # Opened (created) before anything is scored: a folder that cannot be written fails now, not at the end.
    out = ResultsFile(args.out, predictor.labels, resume=args.resume, overwrite=args.overwrite) if args.out else None
    run = _ManyRun(args, predictor, text, out, png_dir)
    try:
        run.score()
    except KeyboardInterrupt:
        if out is not None:
            out.close()  # .json: the results not yet in the file go in now
        where = (f"{out.written} of {run.total} results are in {out.path}; rerun the same command with --resume to "
                 "score the rest") if out is not None else f"{len(run.rows)} of {run.total} videos scored, none kept " \
                                                            "(no --out)"
        print(f"clipbert-emo predict: interrupted: {where}", file=sys.stderr)
        return 130
    finally:
        if out is not None:
            out.close()
    return summarise_run(args, run.rows, run.held, out.path if out is not None else None, png_dir)


class _ManyRun:
    """One predict run over many videos; what it has done so far stays readable when it is interrupted."""

    def __init__(self, args, predictor, text, out, png_dir):
        self.args, self.predictor, self.text, self.out, self.png_dir = args, predictor, text, out, png_dir
        self.rows: list[dict] = []  # the table: a few fields per video, not the whole result
        self.total = self.held = 0

    def score(self) -> None:
        from tqdm.auto import tqdm

        from .predict_parts import batches_of, make_plan, remove_parts
        from .results_file import shown_path

        args, out = self.args, self.out
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
        pngs = TimelinePngs(self.predictor.labels, self.png_dir, out) if self.png_dir is not None else None
        # --resume: what --out holds is not scored again, and what the part files of an interrupted run with
        # several processes hold goes into --out in its place (cli/predict_parts.py).
        plan = make_plan(args.paths, self.text, args.transcripts, out,
                         args.batch_size or self.predictor.cfg.train.eval_batch_size, args.resume, args.overwrite,
                         pngs)
        self.total, self.held = plan.total, plan.held
        todo = plan.todo
        scored = self.predictor.predict_many(
            [t["video"] for t in todo], [t["text"] for t in todo], n_test=args.n_test, aggregation=args.aggregation,
            batch_size=args.batch_size, num_workers=args.workers, spans=[(t["start"], t["end"]) for t in todo],
            progress=not args.quiet, batches=batches_of(todo)[1]) if todo else None
        try:
            for kind, what in plan.entries:
                if kind == "done":
                    out.add(what)
                    continue
                r = next(scored) if kind == "todo" else dict(what)
                r["video"] = shown_path(r["video"])  # a file name that is not UTF-8: written with \xNN escapes
                if "error" in r:
                    r["error"] = shown_path(r["error"])
                    tqdm.write(f"clipbert-emo predict: cannot read {r['video']}: {r['error']}", file=sys.stderr)
                if pngs is not None and kind == "todo":
                    pngs.draw(r, todo[what]["png"])
                if out is not None:
                    out.add(r)
                if args.json:
                    say(json.dumps(r))
                self.rows.append(table_row(r))
        finally:
            if scored is not None:
                scored.close()  # closes predict_many too: its decoding workers stop here
        if plan.parts:  # their results are in --out now: once it is complete on disk, they go
            out.close()
            remove_parts(out.path)


def add_predict_parser(sub, common) -> None:
    s = sub.add_parser("predict", parents=[common], help="predict the emotion of videos (+ optional transcripts)",
                       description="Per-clip scores (the timeline) and the aggregated distribution for each video. "
                                   "One video file: its tables (or --json). Several PATHs, a folder or a manifest: "
                                   "decoded in background workers, scored in batches, one table row per video; a "
                                   "video that cannot be read is reported and the rest go on (exit code 1 if any "
                                   "failed).")
    s.add_argument("checkpoint", help="checkpoint folder (…/checkpoint)")
    s.add_argument("paths", nargs="*", metavar="PATH",
                   help="video files (any format decord reads), folders (searched recursively for video files) or "
                        "JSONL/CSV manifests with a video and an optional text per line")
    s.add_argument("--text", default=None, help="transcript or caption")
    s.add_argument("--transcribe", metavar="WHISPER", default=None,
                   help="without --text: transcribe the video's speech with this Whisper checkpoint (a local folder "
                        "or hub id) and use that as the text")
    s.add_argument("--n-test", type=positive("--n-test"), default=None,
                   help="clips (default: the config's data.n_test)")
    s.add_argument("--aggregation", choices=AGGREGATIONS, default=None)
    s.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.add_argument("--plot", metavar="PNG", help="also draw the per-clip timeline to this PNG (one video)")
    s.add_argument("--transcripts", metavar="JSONL", help='transcripts of many videos: lines of {"video": path or '
                   'file name, "text": ...}; they take precedence over a manifest\'s text and --text')
    s.add_argument("--out", metavar="FILE", help="write every video's result (distribution, timeline, errors) to a "
                   ".jsonl, .csv or .json file, each as soon as it is scored (an interrupted run keeps them)")
    s.add_argument("--resume", action="store_true",
                   help="with --out: keep the results the file holds and score only the videos it lacks (to continue "
                        "an interrupted run)")
    s.add_argument("--overwrite", action="store_true", help="with --out: replace a file that holds results")
    s.add_argument("--timeline-png", metavar="DIR", help="draw each video's per-clip timeline to DIR/<name>.png")
    s.add_argument("--face-crop", action="store_true",
                   help="crop each sampled frame to the largest face (MTCNN, tracked across frames, smoothed over "
                        "the clip); "
                        "clips without a face keep the full frame and are counted in the output")
    s.add_argument("--face-detector", metavar="NAME|ONNX", default=None,
                   help="the face detector: mtcnn (the default), haar (OpenCV's Haar cascade), ssd (OpenCV's "
                        "ResNet-10 SSD) or a YuNet .onnx file (cv2.FaceDetectorYN) (implies --face-crop)")
    s.add_argument("--batch-size", type=positive("--batch-size"), default=None,
                   help="videos per batch (default: the config's train.eval_batch_size)")
    s.add_argument("--workers", type=non_negative("--workers"), default=None,
                   help="background decoding processes (default: up to 4, one per core; 0 = decode in this process)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_speed_options(s, default_seek="keyframe")
    s.set_defaults(func=_cmd_predict)
