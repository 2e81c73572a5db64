"""Which way of fusing the modalities works best, and what does each cost? (``clipbert-emo compare-fusion``)

For each fusion strategy (``model.fusion``: every one registered in models/registry.py, or those asked for) and
each seed, one model is trained with the experiment config's budget, everything else unchanged (sparse training clips, dense N_test
inference, aggregation, task kind, imbalance settings); with ``baselines`` also one early-fusion model per single
modality. Each is then scored on the test split at N_test = ``n_test`` with every modality, and again with each
modality removed at test time (its ``<name>_present`` mask false), in one pass over the data. Per strategy the
table gives the test macro-F1 and accuracy (mean and spread over seeds; the task's own metric for other task
kinds), the parameters, the training time per step (forward + backward + optimizer step on one training batch,
median of a few) and the model's inference time per video at N_test (decoding excluded), and the score without
each modality. Written to ``<out>``: ``summary.json``, ``summary.png`` and each run's folder ``seed<S>/<name>/``.

``summary.json``::

    {"config", "seeds", "n_test", "aggregation", "metrics": [..], "removed": [modality, ..],
     "rows": [{"fusion", "<metric>", "<metric>_std", "<metric>_without_<m>", "<metric>_without_<m>_std",
               "params", "train_ms_per_step", "infer_ms_per_video", "seeds"}, ..],
     "runs": [{"fusion", "seed", "params", "train_ms_per_step", "infer_ms_per_video", "best_epoch",
               "reports": {"all" | "without_<m>": {metric: value}}}, ..]}
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..config import ExperimentConfig, ModelConfig, UserError, load_config
from ..eval.plots import plot_fusion_comparison
from ..eval.report import format_table, write_json
from ..models.registry import check_fusion, config_modalities, fusion_names, fusion_strategy

DEFAULT_CONFIG = "fusion_synthemo"  # shipped: SynthEmo with a voice, the demo's model, a shorter budget
BASELINE = ModelConfig().fusion  # the single-modality models: the default strategy, ClipBERT's early fusion


def variants(cfg: ExperimentConfig, strategies, baselines: bool) -> dict[str, list[str]]:
    """Run name -> its overrides: each strategy, then (with ``baselines``) early fusion on each single modality."""
    runs = {s: [f"model.fusion={s}"] for s in strategies}
    names = config_modalities(cfg)
    if baselines and len(names) > 1:
        for name in names:
            runs[f"{name} only"] = [f"model.fusion={BASELINE}"] + [f"data.use_{o}=false" for o in names if o != name]
    return runs


def _primary_metrics(report: dict, task) -> list[str]:
    found = [k for k in ("macro_f1", "accuracy") if isinstance(report.get(k), float)]
    return found or [task.select_metric]


def time_train_step(cfg: ExperimentConfig, tokenizer, repeats: int = 3) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) of a fresh model of ``cfg`` on its first training
    batch: the median of ``repeats`` after one warm-up step."""
    from ..build import build_model
    from ..data.dataset import model_inputs
    from ..data.loading import make_loader
    from ..tasks import get_task, load_split
    from ..train.optim import build_optimizer

    task = get_task(cfg.data.task)
    train = load_split(cfg.data, "train")
    weights = task.class_weights(train, cfg.data) if cfg.train.loss == "weighted_ce" else None
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=False,
                        criterion=task.criterion(cfg.data, cfg.train, weights))
    model.train()
    optimizer = build_optimizer(model, cfg.optim)
    loader = make_loader(train, cfg.data, tokenizer, True, cfg.train.batch_size, cfg.train.seed, task=task)
    batch = next(b for b in loader if "input_ids" in b)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = model(**model_inputs(batch), labels=batch["labels"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step pays for lazy initialisation
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def score_run(run_dir: Path, cfg: ExperimentConfig, n_test: int, progress: bool) -> dict:
    """Test reports of a trained run with every modality and with each one removed, and its costs."""
    from ..checkpoint import load_checkpoint
    from ..data.loading import make_loader
    from ..eval.inference import collect_dropped_clip_logits
    from ..models.aggregation import aggregate_clip_logits
    from ..tasks import get_task, load_split

    model, ckpt_cfg, tokenizer = load_checkpoint(run_dir / "checkpoint")
    task = get_task(ckpt_cfg.data.task)
    test = load_split(cfg.data, "test")
    loader = make_loader(test, ckpt_cfg.data, tokenizer, False, ckpt_cfg.train.eval_batch_size, ckpt_cfg.train.seed,
                         task=task, num_clips=n_test)
    names = config_modalities(ckpt_cfg)
    drop_sets = {"all": ()}
    if len(names) > 1:
        drop_sets.update({f"without_{m}": (m,) for m in names})
    res = collect_dropped_clip_logits(model, loader, drop_sets, progress=progress)
    how = ckpt_cfg.model.aggregation
    reports = {key: task.report(aggregate_clip_logits(logits, how), res["labels"], ckpt_cfg.data)
               for key, logits in res["clip_logits"].items()}
    return {"reports": reports, "params": sum(p.numel() for p in model.parameters()),
            "infer_ms_per_video": 1000 * res["model_seconds"]["all"] / res["num_samples"], "tokenizer": tokenizer,
            "metrics": _primary_metrics(reports["all"], task)}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict], metrics: list[str], removed: list[str]) -> list[dict]:
    """One row per strategy / baseline: each metric's mean and spread over seeds, costs averaged."""
    rows = []
    for name in dict.fromkeys(r["fusion"] for r in runs):
        mine = [r for r in runs if r["fusion"] == name]
        row = {"fusion": name, "seeds": len(mine), "params": mine[0]["params"]}
        for metric in metrics:
            row[metric], row[f"{metric}_std"] = _mean_std([r["reports"]["all"].get(metric) for r in mine])
            for m in removed:
                key = f"without_{m}"
                row[f"{metric}_{key}"], row[f"{metric}_{key}_std"] = _mean_std(
                    [r["reports"].get(key, {}).get(metric) for r in mine])
        row["train_ms_per_step"] = statistics.fmean(r["train_ms_per_step"] for r in mine)
        row["infer_ms_per_video"] = statistics.fmean(r["infer_ms_per_video"] for r in mine)
        rows.append(row)
    return rows


def format_summary(rows: list[dict], metrics: list[str], removed: list[str]) -> str:
    shown = []
    for r in rows:
        line = {"fusion": r["fusion"]}
        for metric in metrics:
            line[metric] = f"{r[metric]:.3f} ± {r[f'{metric}_std']:.3f}" if r[metric] is not None else ""
        line["params_M"] = r["params"] / 1e6
        line["train_ms/step"] = r["train_ms_per_step"]
        line["infer_ms/video"] = r["infer_ms_per_video"]
        for m in removed:
            value = r.get(f"{metrics[0]}_without_{m}")
            line[f"-{m}"] = value
        shown.append(line)
    columns = ["fusion", *metrics, "params_M", "train_ms/step", "infer_ms/video", *[f"-{m}" for m in removed]]
    return format_table(shown, columns, floatfmt=".3f")


def run_compare_fusion(config: str | None = None, seeds=(42,), out_dir: str = "runs/compare_fusion",
                       overrides: list[str] | None = None, strategies=None, baselines: bool = True,
                       n_test: int = 16, synthemo: str | None = None, progress: bool = True,
                       preset: str | None = None) -> dict:
    """Train and score every strategy (and single-modality baseline) for every seed; print the table, write
    summary.json and summary.png into ``out_dir``. ``synthemo``: a SynthEmo-with-a-voice folder (generated when
    missing) whose manifests replace the config's; ``preset``: presets over the config, as finetune's --preset;
    ``strategies``: registered names (default: every one that reads the config's modalities)."""
    from ..train.finetune import finetune

    unknown = [s for s in strategies or () if s not in fusion_names()]
    if unknown:
        raise UserError(f"--strategies {' '.join(unknown)}: expected some of {', '.join(fusion_names())}")
    if not seeds:
        raise UserError("--seeds: give at least one seed")
    config = config or DEFAULT_CONFIG
    out = Path(out_dir)
    data_overrides = []
    if synthemo:
        from .demo import _ensure_synthemo

        _ensure_synthemo(Path(synthemo), progress, audio=True)
        data_overrides = [f"data.{split}_manifest={Path(synthemo) / f'{split}.jsonl'}" for split in
                          ("train", "val", "test")]
    base = load_config(config, [*data_overrides, *(overrides or [])], preset=preset)
    # By default every registered strategy that reads the config's modalities (not face_expression, which reads faces
    # alone); one that cannot serve the task kind is still refused below, before anything trains.
    strategies = list(strategies or [n for n in fusion_names() if fusion_strategy(n).reads is None
                                     or set(config_modalities(base)) <= set(fusion_strategy(n).reads)])
    runs_spec = variants(base, strategies, baselines)
    for name, extra in runs_spec.items():  # a variant the config cannot run is refused before any training
        check_fusion(load_config(config, [*data_overrides, *(overrides or []), *extra], preset=preset))
    removed = config_modalities(base) if len(config_modalities(base)) > 1 else []
    # The test split is scored below (with modalities removed); the run itself skips its own test pass.
    skip_test = ["data.test_manifest="] if base.data.format == "manifest" else []
    runs, metrics = [], None
    for seed in seeds:
        for name, extra in runs_spec.items():
            run_dir = out / f"seed{seed}" / name.replace(" ", "_")
            common = [*data_overrides, *(overrides or []), *extra, f"train.seed={seed}",
                      f"train.output_dir={run_dir}", f"name=fusion-{name.replace(' ', '_')}-{seed}"]
            cfg = load_config(config, [*common, "train.overwrite=true", *skip_test], preset=preset)
            print(f"[compare-fusion] seed {seed}: training {name} ...")
            result = finetune(cfg, progress=progress)
            scored = score_run(run_dir, load_config(config, common, preset=preset), n_test, progress)
            metrics = metrics or scored["metrics"]
            step = time_train_step(cfg, scored["tokenizer"])
            runs.append({"fusion": name, "seed": seed, "params": scored["params"], "train_ms_per_step": 1000 * step,
                         "infer_ms_per_video": scored["infer_ms_per_video"], "best_epoch": result["best_epoch"],
                         "train_seconds": result["train_seconds"],
                         "reports": {k: {m: v for m, v in rep.items() if isinstance(v, float)}
                                     for k, rep in scored["reports"].items()}})
            write_json(out / "runs.json", runs)  # kept up to date: a killed comparison keeps what it finished
    rows = summarize(runs, metrics, removed)
    summary = {"config": str(config), "preset": preset, "overrides": list(overrides or []), "seeds": list(seeds), "n_test": n_test,
               "aggregation": base.model.aggregation, "metrics": metrics, "removed": removed, "rows": rows,
               "runs": runs}
    write_json(out / "summary.json", summary)
    plot_fusion_comparison(rows, out / "summary.png", metric=metrics[0], removed=removed,
                           title=f"{base.name}: fusion strategies over {len(seeds)} seed(s), N_test={n_test}")
    print()
    print(format_summary(rows, metrics, removed))
    print(f"\n-<m>: {metrics[0]} with modality <m> removed at test time; summary: {out / 'summary.json'}, "
          f"chart: {out / 'summary.png'}")
    return summary
