"""Recipe: fine-tune on SynthEmo (the built-in benchmark), generating it first if needed.

    python finetune/synthemo.py                       # CPU preset, configs/synthemo_cpu.yaml
    python finetune/synthemo.py train.epochs=5        # any key.sub=value override

The same as `clipbert-emo synthemo` followed by `clipbert-emo finetune --config configs/synthemo_cpu.yaml`.
"""

import sys
from pathlib import Path

from clipbert_emo.cli import main

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    data = ROOT / "data" / "synthemo"
    if not (data / "synthemo.json").exists():
        main(["synthemo", "--out", str(data)])
    sys.exit(main(["finetune", "--config", str(ROOT / "configs" / "synthemo_cpu.yaml"),
                   f"data.train_manifest={data / 'train.jsonl'}", f"data.val_manifest={data / 'val.jsonl'}",
                   f"data.test_manifest={data / 'test.jsonl'}", *sys.argv[1:]]))
