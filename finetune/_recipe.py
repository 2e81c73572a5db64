"""What every benchmark recipe shares: run `clipbert-emo finetune` with the benchmark's config, then
print the test metrics from the run's metrics.json the way that benchmark's papers report them."""

import argparse
import json
import sys
from pathlib import Path

from clipbert_emo.cli import main
from clipbert_emo.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def run_recipe(doc: str, default_config: str, name: str, summary) -> None:
    """``summary(cfg, test)`` prints the numbers; ``test`` is metrics.json's "test" section.
    Everything on the command line except --config goes to finetune (overrides, --resume, -q)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / default_config))
    a, rest = p.parse_known_args()
    rc = main(["finetune", "--config", a.config, *rest])
    if rc == 0:
        cfg = load_config(a.config, [x for x in rest if "=" in x and not x.startswith("-")])
        path = Path(cfg.train.output_dir) / "metrics.json"
        test = json.loads(path.read_text()).get("test") if path.exists() else None
        if test:
            summary(cfg, test)
        else:
            print(f"{name}: no test numbers in {path}")
    sys.exit(rc)
