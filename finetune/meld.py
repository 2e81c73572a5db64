"""Recipe: fine-tune on MELD and print the numbers MELD papers report, weighted F1 first.

    python finetune/meld.py data.root=/path/to/MELD.Raw
    python finetune/meld.py --config meld_sentiment data.root=/path/to/MELD.Raw
    python finetune/meld.py data.root=/path/to/MELD.Raw data.use_video=false   # text-only baseline

The same run as `clipbert-emo finetune --config meld data.root=...`; afterwards it
sets the test numbers beside the published ones. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

from _recipe import run_recipe

PUBLISHED = "published weighted F1 (7 emotions): ~0.67 text+audio+video, ~0.64 text only"


def summary(cfg, test) -> None:
    print(f"MELD test ({test['n_test']} clips per utterance); {PUBLISHED}")
    for how, rep in test["reports"].items():
        print(f"  {how:>4}: weighted F1 {rep['weighted_f1']:.4f}  macro F1 {rep['macro_f1']:.4f}  "
              f"accuracy {rep['accuracy']:.4f}")
    rep = next(iter(test["reports"].values()))
    print("  per class F1: " + ", ".join(f"{c['label']} {c['f1']:.3f}" for c in rep["per_class"]))


if __name__ == "__main__":
    run_recipe(__doc__, "meld", "MELD", summary)
