"""Recipe: fine-tune on FER2013 (48x48 grey faces, 7 emotions) and print PrivateTest accuracy,
the number FER2013 papers report, with macro F1 beside it (disgust is 1.5% of the faces).

    python finetune/fer2013.py data.root=/path/to/fer2013      # the folder holding fer2013.csv

The same run as `clipbert-emo finetune --config configs/fer2013.yaml data.root=...`. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

import argparse
import json
import sys
from pathlib import Path

from clipbert_emo.cli import main
from clipbert_emo.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def summary(output_dir: str) -> None:
    path = Path(output_dir) / "metrics.json"
    test = json.loads(path.read_text()).get("test") if path.exists() else None
    if not test:
        print(f"FER2013: no test numbers in {path}")
        return
    # One image = one one-frame clip, so every aggregation gives the same numbers: show one.
    how, rep = next(iter(test["reports"].items()))
    print(f"FER2013 PrivateTest: accuracy {rep['accuracy']:.4f}  macro F1 {rep['macro_f1']:.4f}  "
          f"weighted F1 {rep['weighted_f1']:.4f}")
    print("  per class F1: " + ", ".join(f"{c['label']} {c['f1']:.3f}" for c in rep["per_class"]))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "fer2013.yaml"))
    a, rest = p.parse_known_args()
    rc = main(["finetune", "--config", a.config, *rest])
    if rc == 0:
        summary(load_config(a.config, [x for x in rest if "=" in x and not x.startswith("-")]).train.output_dir)
    sys.exit(rc)
