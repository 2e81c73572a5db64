"""Recipe: fine-tune on DAiSEE (four affective states x four levels, video only) and print the
macro F1 per state, the number DAiSEE baselines are compared on.

    python finetune/daisee.py data.root=/path/to/DAiSEE
    python finetune/daisee.py data.root=/path/to/DAiSEE data.task=single_label data.target=engagement

The same run as `clipbert-emo finetune --config daisee data.root=...`. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

from _recipe import run_recipe

PUBLISHED = "published VLM-feature baselines: macro F1 0.23-0.29 per state"


def summary(cfg, test) -> None:
    print(f"DAiSEE test ({test['n_test']} clips per video); {PUBLISHED}")
    for how, rep in test["reports"].items():
        if cfg.data.task == "multitask":
            states = "  ".join(f"{h} {rep['heads'][h]['macro_f1']:.4f}" for h in rep["heads_order"])
            print(f"  {how:>4}: macro F1 {states}  (mean {rep['mean_macro_f1']:.4f}, "
                  f"mean accuracy {rep['mean_accuracy']:.4f})")
        else:
            print(f"  {how:>4}: {cfg.data.target} macro F1 {rep['macro_f1']:.4f}  accuracy {rep['accuracy']:.4f}")


if __name__ == "__main__":
    run_recipe(__doc__, "daisee", "DAiSEE", summary)
