"""Recipe: fine-tune on your own videos described by JSONL manifests.

    python finetune/custom_dataset.py --train my/train.jsonl --val my/val.jsonl --test my/test.jsonl \
        --labels neutral happy sad angry surprised fearful -- train.epochs=10 data.frame_size=224

Each manifest line: {"video": "clips/0001.mp4", "text": "transcript", "label": "happy"}
(paths relative to the manifest). Everything after `--` is a config override.
"""

import argparse
import sys
from pathlib import Path

from clipbert_emo.cli import main

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--val", default="")
    p.add_argument("--test", default="")
    p.add_argument("--labels", nargs="+", required=True, help="class names, in a fixed order")
    p.add_argument("--config", default=str(ROOT / "configs" / "clipbert_base.yaml"))
    a = p.parse_args(argv)
    labels = "[" + ", ".join(a.labels) + "]"
    sys.exit(main(["finetune", "--config", a.config, f"data.train_manifest={a.train}", f"data.val_manifest={a.val}",
                   f"data.test_manifest={a.test}", f"data.labels={labels}", *overrides]))
