"""Fine-tuning on a task kind's labels: the recipe the engine runs for ``clipbert-emo finetune`` (``finetune.py``
chooses it, or the retrieval recipe built on it).

One process by default; ``accelerate launch`` with a multi-GPU or DeepSpeed config changes the
process layout, not this code. Writes into ``train.output_dir``: config.yaml, checkpoint/ (the best
epoch by the validation metric), last/ (resumable), metrics.json, learning_curves.png and the test
split's figures.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..build import build_model
from ..checkpoint import WEIGHTS, load_weights, update_model_card
from ..config import DataConfig, ExperimentConfig, resolve_n_test
from ..data.benchmarks import has_split
from ..data.dataset import shared_video_key
from ..data.loading import make_loader, stratified_subset
from ..data.samplers import ClassBalancedSampler, EpochShuffleSampler
from ..eval.evaluate import evaluate
from ..eval.inference import collect_clip_logits, mean_loss, reports_for_aggregations
from ..eval.plots import plot_learning_curves
from ..model_card import summarise_evaluation
from ..tasks import get_task, load_split
from .engine import Engine, RecipeSetup, tokenizer_for

logger = logging.getLogger(__name__)


class FinetuneRecipe:
    kind = "finetune"

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.task = get_task(cfg.data.task)
        self.select_metric = cfg.train.select_metric or self.task.select_metric
        self.sign = -1.0 if self.task.lower_is_better(self.select_metric) else 1.0  # best = highest sign * metric

    def setup(self, engine: Engine, resuming: bool) -> RecipeSetup:
        cfg, data, task = self.cfg, self.cfg.data, self.task
        train_m = stratified_subset(load_split(data, "train"), data.train_fraction, cfg.train.seed,
                                    task.stratify_key)
        # What the training split decides (an answer vocabulary), before the model; the run's config keeps it.
        data = task.prepare(data, train_m)
        if not isinstance(data, DataConfig):  # a prepare() written when it changed the config in place
            raise TypeError(f"{type(task).__name__}.prepare(data, train) must return the data config, got {data!r}")
        cfg.data = data
        val_m = load_split(data, "val") if has_split(data, "val") else None
        tokenizer = tokenizer_for(cfg, [s.text for s in train_m.samples], engine.out_dir, engine.accelerator)
        class_weights = None
        if cfg.train.loss == "weighted_ce":
            class_weights = task.class_weights(train_m, data)
            if engine.main:
                logger.info("class weights from the training split: %s", class_weights.tolist())
        model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=not resuming,
                            criterion=task.criterion(data, cfg.train, class_weights))
        if cfg.train.init_checkpoint and not resuming:
            report = load_weights(model, Path(cfg.train.init_checkpoint) / WEIGHTS)
            if engine.main and any(report.values()):
                logger.warning("init_checkpoint %s: %s", cfg.train.init_checkpoint,
                               {k: len(v) for k, v in report.items()})
        if cfg.train.sampler == "class_balanced":
            sampler = ClassBalancedSampler(task.balance_labels(train_m, data, cfg.train.balance_head), cfg.train.seed)
        else:
            groups = [shared_video_key(s) or i for i, s in enumerate(train_m.samples)] if data.group_by_video else None
            sampler = EpochShuffleSampler(len(train_m.samples), cfg.train.seed, groups)
        train_loader = make_loader(train_m, data, tokenizer, True, cfg.train.batch_size, cfg.train.seed, task=task,
                                   sampler=sampler)
        val_loader = (make_loader(val_m, data, tokenizer, False, cfg.train.eval_batch_size, cfg.train.seed, task=task,
                                  num_clips=resolve_n_test(cfg, validation=True)) if val_m else None)
        # For the model card of every saved folder: how much data the model saw.
        self.split_sizes = {"train": len(train_m.samples), **({"val": len(val_m.samples)} if val_m else {})}
        per_rank = cfg.train.batch_size * engine.accelerator.num_processes  # samples one batch step consumes
        return RecipeSetup(model=model, tokenizer=tokenizer, train_loader=train_loader, val_loader=val_loader,
                           set_train_position=lambda epoch, batches: sampler.set_position(epoch, batches * per_rank),
                           skipped=list(train_m.skipped) + (list(val_m.skipped) if val_m else []))

    def train_step(self, model, batch):
        from ..data.dataset import model_inputs

        return model(**model_inputs(batch), labels=batch["labels"], **self.contrastive_inputs(batch))

    def contrastive_inputs(self, batch) -> dict:
        """What model.contrastive_weight's loss needs from the batch (the task kind's ``contrastive_targets``)."""
        if self.cfg.model.contrastive_weight <= 0:
            return {}
        return self.task.contrastive_targets(batch) or {}

    def step_logs(self, out) -> dict:
        logs = {"loss": out.loss.item()}
        if out.loss_visual_aux is not None:
            logs["loss_visual_aux"] = out.loss_visual_aux.item()
        if out.loss_contrastive is not None:
            logs["loss_itc"] = out.loss_contrastive.item()
        return logs

    def evaluate(self, engine: Engine, epoch: int) -> dict:
        data, agg, select = self.cfg.data, self.cfg.model.aggregation, self.select_metric
        res = collect_clip_logits(engine.model, engine.val_loader, engine.accelerator, progress=engine.progress,
                                  desc="val")
        rep = reports_for_aggregations(res["clip_logits"], res["labels"], data, [agg])[agg]
        entry = {"val_loss": mean_loss(engine.accelerator.unwrap_model(engine.model), res["clip_logits"],
                                       res["labels"], agg)}
        entry.update({f"val_{key}": value for key, value in self.task.history(rep).items()})
        if select != "loss" and select not in rep:
            raise ValueError(f"train.select_metric={select}: the {data.task} validation report has no such "
                             f"metric; choose one of {', '.join(k for k, v in rep.items() if isinstance(v, float))}")
        entry["val_" + select] = rep[select] if select != "loss" else entry["val_loss"]
        engine.skipped.extend(res["skipped"])
        self.last_validation = dict(entry)  # best_meta() of this epoch puts it on the model card
        return entry

    def score(self, entry: dict, validated: bool) -> tuple[float, float | None]:
        """(the epoch's value of the selection metric, its score, higher = better; None = always keep the
        newest, when there is no validation split)."""
        if not validated:
            return entry["train_loss"], None
        value = entry["val_" + self.select_metric]
        return value, self.sign * value

    def checkpoint_meta(self, epoch: int, step: int) -> dict:
        return {"epoch": epoch, "step": step, "split_sizes": dict(getattr(self, "split_sizes", {}))}

    def best_meta(self, value) -> dict:
        return {"select_metric": self.select_metric, "val_" + self.select_metric: value,
                "validation": getattr(self, "last_validation", None)}

    def plot(self, history: list[dict], out_dir: Path) -> None:
        plot_learning_curves(history, out_dir / "learning_curves.png")

    def finish(self, engine: Engine, metrics: dict) -> dict:
        validated = engine.val_loader is not None
        best_epoch = engine.best["epoch"]
        best = next((h for h in metrics["history"] if h["epoch"] == best_epoch), {})
        metrics.update({
            "select_metric": self.select_metric,
            "best_val_score": engine.best["value"] if validated else None,
            # Kept for the readers of metrics.json written before best_val_score (experiments/demo.py,
            # label_efficiency.py); None where the task reports no macro-F1.
            "best_val_macro_f1": best.get("val_macro_f1"),
        })
        if has_split(self.cfg.data, "test"):
            engine.accelerator.wait_for_everyone()
            metrics["test"] = evaluate(engine.out_dir / "checkpoint", "test", engine.out_dir,
                                       accelerator=engine.accelerator, progress=engine.progress)
            if engine.main:  # the card of the best checkpoint gets its test numbers
                update_model_card(engine.out_dir / "checkpoint", test=summarise_evaluation(metrics["test"], self.task),
                                  split_sizes={"test": metrics["test"]["num_samples"]})
        return metrics
