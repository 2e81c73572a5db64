"""The commands that train or generate: synthemo, finetune, pretrain, demo, compare-fusion, synthemo-tasks,
demo-retrieval and demo-qa. Each has its parser (``add_<command>_parser``) beside what it runs (``_cmd_<command>``)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from .common import OVERRIDES_HELP, answer_stream, positive, print_eval_summary, say


def _cmd_synthemo(args) -> int:
    from ..synthemo import SynthEmoConfig, generate_synthemo

    fields = {f.name for f in dataclasses.fields(SynthEmoConfig)}
    kwargs = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    summary = generate_synthemo(args.out, SynthEmoConfig(**kwargs), progress=not args.quiet)
    c = summary["ceilings"]
    say(f"SynthEmo written to {args.out}: {summary['counts']} videos in {summary['generation_seconds']:.1f} s")
    say(f"best possible accuracy: video only {c['video_only']:.3f}, text only {c['text_only']:.3f}, "
          f"video+text {c['video_text']:.3f}")
    return 0


def add_synthemo_parser(sub, common) -> None:
    """``clipbert-emo synthemo``: one option per field of SynthEmoConfig."""
    s = sub.add_parser("synthemo", parents=[common], help="generate the SynthEmo benchmark (mp4 files + JSONL manifests)")
    s.add_argument("--out", default="data/synthemo", help="output folder (default: %(default)s)")
    from ..synthemo import SynthEmoConfig

    for f in dataclasses.fields(SynthEmoConfig):
        default = getattr(SynthEmoConfig(), f.name)
        if isinstance(default, bool):  # a flag: type=bool would read "--audio false" as True
            s.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=f"default: {'on' if default else 'off'}")
        else:
            s.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default), default=None,
                           help=f"default: {default}")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_synthemo)


def _run_overrides(args) -> list[str]:
    return (args.overrides + (["train.resume=true"] if args.resume else [])
            + (["train.overwrite=true"] if args.overwrite else [])
            + ([f"train.log_with={args.log_with}"] if args.log_with is not None else []))


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
        from ..tasks import get_task

        print_eval_summary(metrics["test"], get_task(cfg.data.task))
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
    from ..config.choices import TRACKERS

    s.add_argument("--log-with", default=None, metavar="NAME[,NAME]",
                   help="experiment trackers, through accelerate (train.log_with): " + ", ".join(TRACKERS) +
                        "; each needs its package installed. TensorBoard's logs go to train.output_dir, so "
                        "`tensorboard --logdir runs/` shows every run")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_finetune_parser(sub, common) -> None:
    """``clipbert-emo finetune --config C [overrides]``."""
    s = sub.add_parser("finetune", parents=[common], help="fine-tune on emotion labels from a config",
                       description="Fine-tune end to end. Writes config.yaml, checkpoint/, metrics.json and plots "
                                   "to train.output_dir.")
    s.add_argument("--config", "-c", help="experiment YAML: a path, or the name of a shipped config (meld, "
                   "synthemo_cpu, ...; see configs/) (default: built-in defaults)")
    _add_run_options(s)
    s.set_defaults(func=_cmd_finetune)


def add_pretrain_parser(sub, common) -> None:
    """``clipbert-emo pretrain --config C [overrides]``."""
    s = sub.add_parser("pretrain", parents=[common], help="image-text pretraining (ITM + MLM), ClipBERT's stage 1",
                       description="Pretrain the CNN and the fusion transformer on image-text pairs (COCO captions, "
                                   "Visual Genome regions, or a JSONL of {\"video\": image, \"text\": caption}) with "
                                   "image-text matching and masked language modeling. Writes checkpoint/ for "
                                   "finetune's train.init_checkpoint.")
    s.add_argument("--config", "-c", help="experiment YAML: a path or a shipped config's name, e.g. pretrain_coco_vg")
    _add_run_options(s)
    s.set_defaults(func=_cmd_pretrain)


def _cmd_demo(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.demo import run_demo

    with redirect_stdout(answer_stream()):  # the demo's progress lines and table are what it was asked for
        run_demo(data_dir=args.data or ("data/synthemo_audio" if args.audio else "data/synthemo"),
                 out_dir=args.out or ("runs/demo_audio" if args.audio else "runs/demo"), config=args.config,
                 overrides=args.overrides, progress=not args.quiet, audio=args.audio)
    return 0


def add_demo_parser(sub, common) -> None:
    """``clipbert-emo demo``: the README's table."""
    s = sub.add_parser("demo", parents=[common], help="the README's demo: SynthEmo, three models, the comparison table")
    s.add_argument("--data", default=None, help="SynthEmo folder, generated if missing (default: data/synthemo, "
                   "data/synthemo_audio with --audio)")
    s.add_argument("--out", default=None, help="run folder (default: runs/demo, runs/demo_audio with --audio)")
    s.add_argument("--audio", action="store_true",
                   help="SynthEmo with sound: train video+text, audio only and video+text+audio (make demo-audio)")
    s.add_argument("--config", default=None, help="base config, a path or a shipped config's name (default: "
                   "synthemo_cpu; synthemo_audio with --audio)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to all three models)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_demo)


def _cmd_compare_fusion(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.compare_fusion import run_compare_fusion

    with redirect_stdout(answer_stream()):  # the progress lines and the table are what it was asked for
        run_compare_fusion(config=args.config, seeds=args.seeds, out_dir=args.out, overrides=args.overrides,
                           strategies=args.strategies, baselines=not args.no_baselines, n_test=args.n_test,
                           synthemo=args.synthemo, progress=not args.quiet, preset=args.preset)
    return 0


def add_compare_fusion_parser(sub, common) -> None:
    """``clipbert-emo compare-fusion``: one model per fusion strategy and seed (docs/fusion.md)."""
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
    from ..models.registry import fusion_names  # the registered strategies: the one list of their names

    s.add_argument("--strategies", nargs="+", default=None, choices=fusion_names(),
                   help="default: every one that reads the config's modalities (%(choices)s)")
    s.add_argument("--no-baselines", action="store_true", help="skip the single-modality models")
    s.add_argument("--n-test", type=positive("--n-test"), default=16, help="test clips per video (default: 16)")
    s.add_argument("--synthemo", default=None, metavar="DIR",
                   help="use SynthEmo with a voice from DIR (generated when missing) instead of the config's manifests")
    s.add_argument("--preset", default=None, help="presets over the config, as for finetune (e.g. cpu,audio)")
    s.add_argument("--out", default="runs/compare_fusion", help="output folder (default: %(default)s)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (applied to every run)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_cmd_compare_fusion)


def _cmd_synthemo_tasks(args) -> int:
    from ..experiments.retrieval_qa import SIZES, ensure_task_data

    sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in SIZES.items()}
    if sizes != SIZES and not (Path(args.out) / "synthemo.json").exists():
        from ..synthemo import SynthEmoConfig, generate_synthemo

        generate_synthemo(args.out, SynthEmoConfig(**sizes), progress=not args.quiet)
    ensure_task_data(args.out, progress=not args.quiet)
    say(f"written: {args.out}/{{retrieval,qa,qa_mc}}_{{train,val,test}}.jsonl")
    return 0


def add_synthemo_tasks_parser(sub, common) -> None:
    """``clipbert-emo synthemo-tasks``: SynthEmo with retrieval captions and QA questions."""
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


def _cmd_task_demo(args) -> int:
    from contextlib import redirect_stdout

    from ..experiments.retrieval_qa import run_task_demo

    kind = "retrieval" if args.command == "demo-retrieval" else ("qa_mc" if args.multiple_choice else "qa")
    with redirect_stdout(answer_stream()):
        run_task_demo(kind, data_dir=args.data, out_dir=args.out, overrides=args.overrides, progress=not args.quiet)
    return 0


def add_task_demo_parsers(sub, common) -> None:
    """``clipbert-emo demo-retrieval`` and ``clipbert-emo demo-qa``."""
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

