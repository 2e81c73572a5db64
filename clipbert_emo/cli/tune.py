"""``clipbert-emo tune``: hyperparameter search on Optuna (clipbert_emo/train/tune.py; docs/tuning.md)."""

from __future__ import annotations

from .common import OVERRIDES_HELP, non_negative, positive, say


def _cmd_tune(args) -> int:
    from ..train.tune import TuneSettings, run_tune

    settings = TuneSettings(space=args.space, study=args.study, trials=args.trials, storage=args.storage or "",
                            config=args.config, out=args.out or "", overrides=list(args.overrides),
                            preset=args.preset, pruner=args.pruner, pruner_startup_trials=args.pruner_startup_trials,
                            pruner_warmup_epochs=args.pruner_warmup_epochs, direction=args.direction,
                            sampler=args.sampler, seed=args.seed, heartbeat_seconds=args.heartbeat,
                            max_failures=args.max_failures, test_split=args.test_split, progress=not args.quiet)
    report = run_tune(settings)
    say(report["table"])
    counts = ", ".join(f"{n} {state.lower()}" for state, n in report["counts"].items())
    say(f"\nstudy {report['study']} ({report['storage']}): {counts or 'no trials'}")
    if report["best"]:
        b = report["best"]
        say(f"best: trial {b['number']}, val {report['metric']} {b['value']:.4f}, {b['params']}")
        say(f"run it again (with the test split): clipbert-emo finetune --config {b['config']}")
    for name, why in report["plots_skipped"].items():
        say(f"{name}.png not drawn: {why}")
    say(f"written: {', '.join(report['files'])}")
    return 0


def add_tune_parser(sub, common) -> None:
    """``clipbert-emo tune --config C --space S --trials N --study NAME [--storage URL] [overrides]``."""
    from ..train.tune import DIRECTIONS, PRUNERS, SAMPLERS

    s = sub.add_parser("tune", parents=[common], help="hyperparameter search on Optuna: one fine-tuning run per trial, "
                       "pruned, resumable, several workers on one study (docs/tuning.md)",
                       description="Search the settings a space file lists (each key a config override path with a "
                                   "distribution) with Optuna: one fine-tuning run per trial in OUT/trial_NNNN, scored "
                                   "by the selection metric on the validation split and pruned epoch by epoch. The "
                                   "study lives in --storage, so a killed worker's trial is queued again and resumed, "
                                   "and several workers (run the same command again, here or on another machine) share "
                                   "it. At the end: the table of trials (printed, trials.csv, trials.json), Optuna's "
                                   "plots as PNG and best.yaml, which clipbert-emo finetune --config runs as is.")
    s.add_argument("--config", "-c", help="the config to tune: a path or a shipped config's name (default: built-in "
                   "defaults)")
    s.add_argument("--space", required=True, help="search space YAML, e.g. configs/tune/space_synthemo.yaml")
    s.add_argument("--trials", type=non_negative("--trials"), required=True,
                   help="complete + pruned trials the study should hold, counting every worker's (a second run "
                        "with the same number only writes the report)")
    s.add_argument("--study", required=True, help="the study's name in the storage")
    s.add_argument("--storage", default=None, help="database URL shared by the workers: sqlite:///study.db on one "
                   "machine, postgresql://user:password@host/db or mysql+pymysql://... on several (default: "
                   "sqlite:///OUT/study.db)")
    s.add_argument("--out", default=None, help="trial folders, table, plots and best.yaml (default: "
                   "runs/tune/STUDY)")
    s.add_argument("--pruner", choices=PRUNERS, default="median", help="stop unpromising trials after an epoch's "
                   "validation (default: %(default)s)")
    s.add_argument("--pruner-startup-trials", type=non_negative("--pruner-startup-trials"), default=3,
                   help="median: finished trials before any is pruned (default: %(default)s)")
    s.add_argument("--pruner-warmup-epochs", type=non_negative("--pruner-warmup-epochs"), default=0,
                   help="median: epochs a trial trains before it may be pruned (default: %(default)s)")
    s.add_argument("--direction", choices=DIRECTIONS, default="auto", help="auto: the selection metric's "
                   "(maximize F1 and accuracy, minimize mae and loss) (default: %(default)s)")
    s.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: %(default)s")
    s.add_argument("--seed", type=int, default=None, help="the sampler's seed (one worker: a repeatable search; "
                   "give several workers different seeds or none)")
    s.add_argument("--heartbeat", type=positive("--heartbeat"), default=60, metavar="SECONDS",
                   help="a running trial's heartbeat; one silent for twice as long belonged to a dead worker and "
                        "is queued again (default: %(default)s)")
    s.add_argument("--max-failures", type=positive("--max-failures"), default=3,
                   help="stop after this many failed trials in a row (default: %(default)s)")
    s.add_argument("--test-split", action="store_true", help="also score every trial on the test split (default: "
                   "the search never sees it; finetune --config OUT/best.yaml does)")
    s.add_argument("--preset", default=None, help="presets over the config, as for finetune (e.g. cpu)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (fixed for every trial)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_tune)
