"""Recipe: fine-tune on your own videos described by JSONL manifests.

    python finetune/custom_dataset.py --train my/train.jsonl --val my/val.jsonl --test my/test.jsonl \
        --labels neutral happy sad angry surprised fearful -- train.epochs=10 data.frame_size=224

Each manifest line: {"video": "clips/0001.mp4", "text": "transcript", "label": "happy"}
(paths relative to the manifest). Everything after `--` is a config override.
"""

import argparse
import sys

from clipbert_emo.config import load_config
from clipbert_emo.eval.report import format_table
from clipbert_emo.train.finetune import finetune

if __name__ == "__main__":
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--val", default="")
    p.add_argument("--test", default="")
    p.add_argument("--labels", nargs="+", required=True, help="class names, in a fixed order")
    p.add_argument("--config", default="clipbert_base", help="a shipped config's name or a YAML path")
    a = p.parse_args(argv)
    cfg = load_config(a.config, [f"data.train_manifest={a.train}", f"data.val_manifest={a.val}",
                                 f"data.test_manifest={a.test}", f"data.labels={a.labels}", *overrides])
    metrics = finetune(cfg)
    if metrics.get("test"):
        print(format_table([{"aggregation": how, **{k: rep[k] for k in ("accuracy", "macro_f1", "weighted_f1")}}
                            for how, rep in metrics["test"]["reports"].items()],
                           ["aggregation", "accuracy", "macro_f1", "weighted_f1"]))
