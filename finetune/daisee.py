"""Recipe: fine-tune on DAiSEE (four affective states x four levels, video only) and print the
macro F1 per state, the number DAiSEE baselines are compared on.

    python finetune/daisee.py data.root=/path/to/DAiSEE
    python finetune/daisee.py data.root=/path/to/DAiSEE data.task=single_label data.target=engagement

The same run as `clipbert-emo finetune --config configs/daisee.yaml data.root=...`. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

import argparse
import json
import sys
from pathlib import Path

from clipbert_emo.cli import main
from clipbert_emo.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = "published VLM-feature baselines: macro F1 0.23-0.29 per state"


def summary(cfg) -> None:
    path = Path(cfg.train.output_dir) / "metrics.json"
    test = json.loads(path.read_text()).get("test") if path.exists() else None
    if not test:
        print(f"DAiSEE: no test numbers in {path}")
        return
    print(f"DAiSEE test ({test['n_test']} clips per video); {PUBLISHED}")
    for how, rep in test["reports"].items():
        if cfg.data.task == "multitask":
            states = "  ".join(f"{h} {rep['heads'][h]['macro_f1']:.4f}" for h in rep["heads_order"])
            print(f"  {how:>4}: macro F1 {states}  (mean {rep['mean_macro_f1']:.4f}, "
                  f"mean accuracy {rep['mean_accuracy']:.4f})")
        else:
            print(f"  {how:>4}: {cfg.data.target} macro F1 {rep['macro_f1']:.4f}  accuracy {rep['accuracy']:.4f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "daisee.yaml"))
    a, rest = p.parse_known_args()
    rc = main(["finetune", "--config", a.config, *rest])
    if rc == 0:
        summary(load_config(a.config, [x for x in rest if "=" in x and not x.startswith("-")]))
    sys.exit(rc)
