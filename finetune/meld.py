"""Recipe: fine-tune on MELD and print the numbers MELD papers report, weighted F1 first.

    python finetune/meld.py data.root=/path/to/MELD.Raw
    python finetune/meld.py --config configs/meld_sentiment.yaml data.root=/path/to/MELD.Raw
    python finetune/meld.py data.root=/path/to/MELD.Raw data.use_video=false   # text-only baseline

The same run as `clipbert-emo finetune --config configs/meld.yaml data.root=...`; afterwards it
reads the run's metrics.json and sets the test numbers beside the published ones. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

import argparse
import json
import sys
from pathlib import Path

from clipbert_emo.cli import main
from clipbert_emo.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = "published weighted F1 (7 emotions): ~0.67 text+audio+video, ~0.64 text only"


def summary(output_dir: str) -> None:
    path = Path(output_dir) / "metrics.json"
    test = json.loads(path.read_text()).get("test") if path.exists() else None
    if not test:
        print(f"MELD: no test numbers in {path}")
        return
    print(f"MELD test ({test['n_test']} clips per utterance); {PUBLISHED}")
    for how, rep in test["reports"].items():
        print(f"  {how:>4}: weighted F1 {rep['weighted_f1']:.4f}  macro F1 {rep['macro_f1']:.4f}  "
              f"accuracy {rep['accuracy']:.4f}")
    rep = next(iter(test["reports"].values()))
    print("  per class F1: " + ", ".join(f"{c['label']} {c['f1']:.3f}" for c in rep["per_class"]))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "meld.yaml"))
    a, rest = p.parse_known_args()
    rc = main(["finetune", "--config", a.config, *rest])
    if rc == 0:
        summary(load_config(a.config, [x for x in rest if "=" in x and not x.startswith("-")]).train.output_dir)
    sys.exit(rc)
