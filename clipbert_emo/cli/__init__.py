"""The ``clipbert-emo`` command line.

    clipbert-emo synthemo --out data/synthemo            # generate the built-in benchmark
    clipbert-emo finetune --config synthemo_cpu train.epochs=5      # a shipped config, by name or path
    clipbert-emo tune --config synthemo_cpu --space configs/tune/space_synthemo.yaml --trials 8 --study lr   # Optuna
    clipbert-emo pretrain --config pretrain_coco_vg data.root=/data/coco
    clipbert-emo evaluate runs/synthemo_cpu/checkpoint data/synthemo/test.jsonl --n-test 16
    clipbert-emo predict runs/synthemo_cpu/checkpoint my_video.mp4 --text "no way!"
    clipbert-emo predict runs/synthemo_cpu/checkpoint videos/ --out results.jsonl --timeline-png timelines/
    clipbert-emo serve runs/synthemo_cpu/checkpoint     # the web page on http://127.0.0.1:8000
    clipbert-emo serve                                   # the same page with the ready face model (real faces)
    clipbert-emo face-model runs/face_model              # that model as a checkpoint folder (FER2013, no training)
    clipbert-emo demo                                    # what `make demo` runs
    clipbert-emo compare-fusion --synthemo data/synthemo_audio --seeds 42 7   # docs/fusion.md
    clipbert-emo convert-clipbert clipbert_image_text_pretrained.pt runs/clipbert_original_init
    clipbert-emo export runs/synthemo_cpu/checkpoint --format onnx --out exported/   # run it without this library
    clipbert-emo bench decode                            # speed: decode | infer | train (docs/performance.md)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .checkpoints import (add_convert_clipbert_parser, add_evaluate_parser, add_export_parser, add_search_parser,
                          add_serve_parser)
from .common import add_common, set_stdout, to_stdout
from .face_model import add_face_model_parser
from .predict import add_predict_parser
from .tune import add_tune_parser
from .training import (add_compare_fusion_parser, add_demo_parser, add_finetune_parser, add_pretrain_parser,
                       add_synthemo_parser, add_synthemo_tasks_parser, add_task_demo_parsers)

# The subcommands, in the order --help lists them.
COMMAND_PARSERS = (add_synthemo_parser, add_finetune_parser, add_tune_parser, add_pretrain_parser, add_evaluate_parser,
                   add_predict_parser, add_serve_parser, add_demo_parser, add_compare_fusion_parser, add_search_parser,
                   add_synthemo_tasks_parser, add_task_demo_parsers, add_convert_clipbert_parser, add_export_parser,
                   add_face_model_parser)


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
    for add_parser in COMMAND_PARSERS:
        add_parser(sub, common)
    from ..experiments.bench import add_parser as add_bench_parser

    s = add_bench_parser(sub, common)
    s.set_defaults(func=to_stdout(s.get_default("func")))  # the table is what it was asked for
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=log_format())
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


def log_format(env=os.environ) -> str:
    """The log line's format. Under a launcher every process of every machine writes to the job's log, so each line
    says which process wrote it: its global rank, the machine (node rank, host) and its rank on that machine."""
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return "%(levelname)s %(name)s: %(message)s"
    import socket

    # torchrun (accelerate launch) names the machine GROUP_RANK; DeepSpeed's own launcher CROSS_RANK
    node = env.get("GROUP_RANK") or env.get("CROSS_RANK") or env.get("NODE_RANK") or "?"
    where = (f"rank {env.get('RANK', '?')}/{env['WORLD_SIZE']} node {node} {socket.gethostname()} "
             f"local {env.get('LOCAL_RANK', '?')}")
    return f"%(levelname)s [{where.replace('%', '%%')}] %(name)s: %(message)s"


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
