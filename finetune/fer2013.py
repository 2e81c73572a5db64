"""Recipe: fine-tune on FER2013 (48x48 grey faces, 7 emotions) and print PrivateTest accuracy,
the number FER2013 papers report, with macro F1 beside it (disgust is 1.5% of the faces).

    python finetune/fer2013.py data.root=/path/to/fer2013      # the folder holding fer2013.csv

The same run as `clipbert-emo finetune --config fer2013 data.root=...`. Everything
except --config is passed on (key.sub=value overrides, --resume, -q).
"""

from _recipe import run_recipe



def summary(cfg, test) -> None:
    # One image = one one-frame clip, so every aggregation gives the same numbers: show one.
    how, rep = next(iter(test["reports"].items()))
    print(f"FER2013 PrivateTest: accuracy {rep['accuracy']:.4f}  macro F1 {rep['macro_f1']:.4f}  "
          f"weighted F1 {rep['weighted_f1']:.4f}")
    print("  per class F1: " + ", ".join(f"{c['label']} {c['f1']:.3f}" for c in rep["per_class"]))


if __name__ == "__main__":
    run_recipe(__doc__, "fer2013", "FER2013", summary)
