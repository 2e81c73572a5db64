"""Recipe: fine-tune on CMU-MOSI, CMU-MOSEI or CH-SIMS and print what their papers report.

    python finetune/mosi.py data.root=/path/to/MOSI                                   # mosi
    python finetune/mosi.py --config mosei data.root=/path/to/MOSEI
    python finetune/mosi.py --config sims data.root=/path/to/SIMS
    python finetune/mosi.py --config mosei_emotions data.root=/path/to/MOSEI

The same run as `clipbert-emo finetune --config <config> data.root=...`; afterwards it
prints, for the sentiment score, MAE, Pearson correlation, Acc-2 / F1
(both the negative-vs-non-negative and the zeros-excluded conventions) and Acc-7 (MOSI/MOSEI) or
Acc-3 / Acc-5 (CH-SIMS); for MOSEI emotions, weighted accuracy per emotion. Everything except
--config is passed on (key.sub=value overrides, --resume, -q).
"""

from _recipe import run_recipe

NAMES = {"mosi": "CMU-MOSI", "mosei": "CMU-MOSEI", "sims": "CH-SIMS"}


def summary(cfg, test) -> None:
    name = NAMES.get(cfg.data.format, cfg.data.format)
    print(f"{name} test, target {cfg.data.target or 'sentiment'} ({test['n_test']} clips per sample)")
    for how, rep in test["reports"].items():
        if cfg.data.task == "regression":
            keys = ["mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0"]
            # Acc-5/Acc-7 round scores on [-3, 3]; CH-SIMS ([-1, 1]) reports binned Acc-3/Acc-5 instead.
            keys += ["acc3", "acc5"] if cfg.data.format == "sims" and "acc3" in rep else (
                [] if cfg.data.format == "sims" else ["acc5", "acc7"])
        elif cfg.data.task == "multilabel":
            keys = ["mean_weighted_accuracy", "micro_f1", "macro_f1"]
        else:
            keys = ["accuracy", "weighted_f1", "macro_f1"]
        print(f"  {how:>4}: " + "  ".join(f"{k} {rep[k]:.4f}" for k in keys if k in rep))
    rep = next(iter(test["reports"].values()))
    if cfg.data.task == "multilabel":
        print("  weighted accuracy per emotion: "
              + ", ".join(f"{r['label']} {r['weighted_accuracy']:.3f}" for r in rep["per_label"]))


if __name__ == "__main__":
    run_recipe(__doc__, "mosi", NAMES["mosi"], summary)
