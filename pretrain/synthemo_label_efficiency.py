"""Recipe: image-text pretraining on captioned SynthEmo frames, then fine-tuning on 10% of the labels,
against the same fine-tuning from scratch. Prints the comparison and writes <out>/comparison.json.

    python pretrain/synthemo_label_efficiency.py                  # about half an hour on 2 CPU cores
    python pretrain/synthemo_label_efficiency.py --seeds 42 7      # two labelled subsets and seeds
    python pretrain/synthemo_label_efficiency.py --fraction 0.05 --out runs/le5
"""

import argparse

from clipbert_emo.experiments.label_efficiency import run_label_efficiency

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthemo", help="SynthEmo folder (generated if missing)")
    p.add_argument("--captions", default="data/synthemo_captions", help="captioned frames (generated if missing)")
    p.add_argument("--out", default="runs/label_efficiency")
    p.add_argument("--fraction", type=float, default=0.1, help="share of the training labels used (default 0.1)")
    p.add_argument("--num-images", type=int, default=3000, help="captioned frames to generate")
    p.add_argument("--pretrain", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for the pretraining run")
    p.add_argument("--finetune", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for both fine-tunes")
    p.add_argument("--seeds", type=int, nargs="+", default=[42],
                   help="fine-tuning seeds; each also draws its own labelled subset (default: 42)")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args()
    run_label_efficiency(a.data, a.captions, a.out, a.fraction, a.num_images, a.pretrain, a.finetune,
                         seeds=tuple(a.seeds), progress=not a.quiet)
