"""Recipe: fine-tune on SynthEmo (the built-in benchmark), generating it first if needed.

    python finetune/synthemo.py                       # CPU preset, the synthemo_cpu config
    python finetune/synthemo.py train.epochs=5        # any key.sub=value override

The same as `clipbert-emo synthemo` followed by `clipbert-emo finetune --config synthemo_cpu`.
"""

import sys
from pathlib import Path

from clipbert_emo.config import load_config
from clipbert_emo.synthemo import SynthEmoConfig, generate_synthemo
from clipbert_emo.train.finetune import finetune

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    data = ROOT / "data" / "synthemo"
    if not (data / "synthemo.json").exists():
        generate_synthemo(data, SynthEmoConfig())
    cfg = load_config("synthemo_cpu", [f"data.train_manifest={data / 'train.jsonl'}",
                                       f"data.val_manifest={data / 'val.jsonl'}",
                                       f"data.test_manifest={data / 'test.jsonl'}", *sys.argv[1:]])
    metrics = finetune(cfg)
    print(f"test macro-F1 ({cfg.model.aggregation}, N_test={metrics['test']['n_test']}): "
          f"{metrics['test']['reports'][cfg.model.aggregation]['macro_f1']:.3f}")
