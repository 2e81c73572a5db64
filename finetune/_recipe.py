"""What every benchmark recipe shares: load the benchmark's config (a shipped config name or a path) with the
command line's overrides, fine-tune through the Python API, then print the test metrics the way that
benchmark's papers report them."""

import argparse
import logging
import sys

from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.train.finetune import finetune


def run_recipe(doc: str, default_config: str, name: str, summary) -> None:
    """``summary(cfg, test)`` prints the numbers; ``test`` is the run's test section (as in metrics.json).
    The command line takes --config, --resume, -q/--quiet and key.sub=value overrides."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=default_config, help="a shipped config's name or a YAML path "
                   "(default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from train.output_dir/last")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="config overrides as key.sub=value")
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(a.config, a.overrides + (["train.resume=true"] if a.resume else []))
    except ConfigError as e:
        sys.exit(f"{name}: error: {e}")
    metrics = finetune(cfg, progress=not a.quiet)
    if metrics.get("test"):
        summary(cfg, metrics["test"])
    else:
        print(f"{name}: the config has no test split, so there are no test numbers "
              f"(run folder: {cfg.train.output_dir})")
