"""Fine-tuning on emotion labels, under accelerate from the first line.

One process by default; ``accelerate launch`` with a multi-GPU or DeepSpeed config
changes the process layout, not this code.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..config import ExperimentConfig, save_config
from ..data.text import build_wordpiece_tokenizer, load_tokenizer
from ..eval.inference import (DEFAULT_SELECT_METRIC, LOWER_IS_BETTER, collect_clip_logits, mean_loss,
                              reports_for_aggregations)
from ..eval.plots import plot_learning_curves
from ..eval.report import write_json
from ..models.clipbert import ClipBertForEmotion
from .builders import class_counts, has_split, load_split, make_loader, make_train_sampler, stratified_subset
from .checkpoint import TOKENIZER, TRAINING_STATE, WEIGHTS, load_weights, save_checkpoint
from .distributed import NonFiniteGuard, make_accelerator, model_for_saving, param_checksum, sync_buffers
from .optim import optimizer_and_schedule
from .resume import restore_training_state, save_training_state

logger = logging.getLogger(__name__)


def _tokenizer_for(cfg: ExperimentConfig, train_texts: list[str], out_dir: Path, accelerator: Accelerator):
    if cfg.train.init_checkpoint:
        return load_tokenizer(Path(cfg.train.init_checkpoint) / TOKENIZER)
    if cfg.model.tokenizer or cfg.model.text_init:
        return load_tokenizer(cfg.model.tokenizer or cfg.model.text_init)
    tok_dir = out_dir / "tokenizer"
    if accelerator.is_main_process:
        build_wordpiece_tokenizer(train_texts, cfg.model.vocab_size, tok_dir)
    accelerator.wait_for_everyone()
    return load_tokenizer(tok_dir)


def _after_step(step: int) -> None:
    """Called after every optimizer step; tests replace it to simulate a run killed mid-training."""


def finetune(cfg: ExperimentConfig, progress: bool = True) -> dict:
    """Train, validate every epoch, keep the best checkpoint by validation macro-F1, test it.

    Writes into ``cfg.train.output_dir``: config.yaml, checkpoint/ (best), metrics.json,
    learning_curves.png and confusion_matrix.png. Returns the metrics dict.
    """
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.train.seed)
    out_dir = Path(cfg.train.output_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    main = accelerator.is_main_process

    data = cfg.data
    train_m = stratified_subset(load_split(data, "train"), data.train_fraction, cfg.train.seed, data.task)
    val_m = load_split(data, "val") if has_split(data, "val") else None
    tokenizer = _tokenizer_for(cfg, [s.text for s in train_m.samples], out_dir, accelerator)

    last_dir = out_dir / "last"
    resuming = cfg.train.resume and (last_dir / TRAINING_STATE).exists()
    model = ClipBertForEmotion(cfg.model, data.num_outputs, len(tokenizer), use_video=data.use_video,
                               task=data.task, num_heads=max(1, len(data.heads)),
                               pad_token_id=tokenizer.pad_token_id or 0, pretrained=not resuming)
    class_weights = None
    if cfg.train.loss == "weighted_ce":
        from ..models.losses import class_weights_from_counts

        counts = class_counts(train_m, data)
        if counts.ndim == 2:  # multitask: one weight vector per head
            empty = [h for h, c in zip(data.heads, counts) if int(c.sum()) == 0]
            if empty:
                raise ValueError(f"train.loss=weighted_ce: head(s) {', '.join(empty)} have no annotated sample in "
                                 "the training split; drop them from data.heads or use train.loss=ce")
            class_weights = torch.stack([class_weights_from_counts(c.tolist()) for c in counts])
        else:
            class_weights = class_weights_from_counts(counts.tolist())
        if main:
            logger.info("class weights from the training split: %s", class_weights.tolist())
    model.set_loss(cfg.train.loss, class_weights, cfg.train.focal_gamma)
    if resuming:
        load_weights(model, last_dir / WEIGHTS, strict=True)
    elif cfg.train.init_checkpoint:
        report = load_weights(model, Path(cfg.train.init_checkpoint) / WEIGHTS)
        if main and any(report.values()):
            logger.warning("init_checkpoint %s: %s", cfg.train.init_checkpoint,
                           {k: len(v) for k, v in report.items()})

    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()

    train_loader = make_loader(train_m, data, tokenizer, True, cfg.train.batch_size, cfg.train.seed,
                               sampler=make_train_sampler(train_m, data, cfg.train.sampler, cfg.train.seed,
                                                          cfg.train.balance_head))
    val_loader = (make_loader(val_m, data, tokenizer, False, cfg.train.eval_batch_size, cfg.train.seed,
                              num_clips=cfg.train.val_num_clips) if val_m else None)
    optimizer, scheduler, total_steps = optimizer_and_schedule(model, cfg, len(train_loader), accelerator.num_processes)
    train_sampler = train_loader.sampler
    # The scheduler counts optimizer steps and is stepped here, not by accelerate: accelerate's wrapper steps it
    # num_processes times per optimizer step, which under N ranks ran this schedule N times too fast.
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    history: list[dict] = []
    step_losses: list[float] = []
    skipped: list = list(train_m.skipped) + (list(val_m.skipped) if val_m else [])
    select = cfg.train.select_metric or DEFAULT_SELECT_METRIC[data.task]
    sign = -1.0 if select in LOWER_IS_BETTER else 1.0  # best = highest sign * metric
    best = {"epoch": 0, "metric": select, "score": -math.inf, "value": None}
    step = micro_step = 0
    first_epoch, batches_done = 1, 0
    guard = NonFiniteGuard(accelerator)  # stops on a NaN/inf loss; counts fp16 overflow steps the scaler skipped
    if resuming:
        state = restore_training_state(last_dir, out_dir, accelerator, model, optimizer, scheduler, guard)
        step, micro_step = state["step"], state["micro_step"]
        first_epoch, batches_done = state["epoch"], state["batches_done"]
        history, step_losses, best = state["history"], state["step_losses"], state["best"]
        if main:
            logger.warning("resuming %s from step %d (epoch %d, batch %d)", last_dir, step, first_epoch, batches_done)

    def save_last(epoch: int, batches: int, to_save=...) -> None:
        counters = {"step": step, "micro_step": micro_step, "epoch": epoch, "batches_done": batches,
                    "history": history, "step_losses": step_losses, "best": best}
        save_training_state(last_dir, out_dir, accelerator, model, optimizer, scheduler, guard, cfg, tokenizer,
                            counters, {"epoch": epoch, "step": step}, to_save)

    start = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"finetune {cfg.name}", disable=not (progress and main))
    for epoch in range(first_epoch, cfg.train.epochs + 1):
        model.train()
        # The sampler's order and each sample's clips and crops are functions of (seed, epoch[, index]).
        # On resume, the sampler drops the batches the killed run had already trained on
        # (accelerate's skip_first_batches rebuilds the loader with another sampler, losing the order).
        skip = batches_done if epoch == first_epoch else 0
        train_sampler.set_position(epoch, skip * cfg.train.batch_size * accelerator.num_processes)
        train_loader.set_epoch(epoch)  # accelerate passes it on to the dataset when it iterates
        loader = train_loader
        batches = skip
        losses, aux_losses = [], []
        for batch in loader:
            batches += 1
            skipped.extend(batch["skipped"])
            if "input_ids" not in batch:
                continue
            # Dropout draws from the global generator; reseeding it per micro-step makes the masks a
            # function of (seed, step), so a resumed run reproduces them exactly.
            micro_step += 1
            torch.manual_seed(cfg.train.seed * 1_000_003 + micro_step)
            with accelerator.accumulate(model):
                out = model(batch["input_ids"], batch["attention_mask"], batch.get("video"), labels=batch["labels"])
                guard.check_loss(out.loss, epoch, step)  # raises before backward unless an fp16 scaler skips it
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()  # once per optimizer step actually taken
                optimizer.zero_grad(set_to_none=True)
            losses.append(out.loss.item())
            if out.loss_visual_aux is not None:
                aux_losses.append(out.loss_visual_aux.item())
            if accelerator.sync_gradients:
                step += 1
                guard.after_step(optimizer, step)  # fp16: warn and count when the scaler skipped this step
                step_losses.append(out.loss.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
                if cfg.train.save_every_steps and step % cfg.train.save_every_steps == 0:
                    save_last(epoch, batches)  # on every rank (DeepSpeed shards, ZeRO-3 gather)
                _after_step(step)
            if cfg.train.max_steps and step >= cfg.train.max_steps:
                break
        entry = {"epoch": epoch, "step": step, "train_loss": sum(losses) / max(1, len(losses)),
                 "lr": scheduler.get_last_lr()[-1]}
        if aux_losses:
            entry["train_loss_visual_aux"] = sum(aux_losses) / len(aux_losses)
        sync_buffers(accelerator, model)  # every rank validates with the BatchNorm statistics that get saved
        if val_loader is not None:
            res = collect_clip_logits(model, val_loader, accelerator, progress=progress, desc="val")
            agg = cfg.model.aggregation
            rep = reports_for_aggregations(res["clip_logits"], res["labels"], data, [agg])[agg]
            entry["val_loss"] = mean_loss(accelerator.unwrap_model(model), res["clip_logits"], res["labels"], agg)
            for key in ("macro_f1", "weighted_f1", "accuracy", "mean_macro_f1", "mean_accuracy", "mae", "corr",
                        "acc2", "acc7", "micro_f1"):
                if key in rep:
                    entry[f"val_{key}"] = rep[key]
            if select != "loss" and select not in rep:
                raise ValueError(f"train.select_metric={select}: the {data.task} validation report has no such "
                                 f"metric; choose one of {', '.join(k for k, v in rep.items() if isinstance(v, float))}")
            entry["val_" + select] = rep[select] if select != "loss" else entry["val_loss"]
            skipped.extend(res["skipped"])
        history.append(entry)
        value = entry.get("val_" + select, entry["train_loss"])
        score = sign * value if val_loader is not None else -entry["train_loss"]
        to_save = model_for_saving(accelerator, model)  # every rank: ZeRO-3 gathers the full weights here
        # Every rank tracks the best epoch (the gathered metrics are the same everywhere); main saves it.
        improved = score > best["score"] or val_loader is None
        if improved:
            best = {"epoch": epoch, "metric": select, "score": score, "value": value}
        if main:
            logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()})
            if improved:
                save_checkpoint(out_dir / "checkpoint", to_save, cfg, tokenizer,
                                {"epoch": epoch, "step": step, "select_metric": select, "val_" + select: value})
            plot_learning_curves(history, out_dir / "learning_curves.png")
        save_last(epoch + 1, 0, to_save)
        accelerator.wait_for_everyone()
        if cfg.train.max_steps and step >= cfg.train.max_steps:
            break
    bar.close()
    train_seconds = time.time() - start

    # One number per rank: DDP keeps replicas identical, and this makes that checkable after the fact.
    checksum = param_checksum(accelerator, model)  # every rank (ZeRO-3 gathers the slices first)
    rank_checksums = accelerator.gather(checksum.reshape(1).to(accelerator.device)).cpu().tolist()
    metrics = {"name": cfg.name, "history": history, "best_epoch": best["epoch"],
               "num_processes": accelerator.num_processes, "rank_param_checksums": rank_checksums,
               "select_metric": select, "best_val_score": best["value"] if val_loader is not None else None,
               "best_val_macro_f1": next((h.get("val_macro_f1") for h in history if h["epoch"] == best["epoch"]), None),
               "train_seconds": train_seconds, "steps": step, "step_losses": step_losses,
               "overflow_skipped_steps": len(guard.skipped_steps), "overflow_skipped_step_ids": guard.skipped_steps,
               "checkpoint": str(out_dir / "checkpoint"),
               "skipped": [list(s) for s in skipped]}
    if has_split(data, "test"):
        from .evaluate import evaluate

        accelerator.wait_for_everyone()
        metrics["test"] = evaluate(out_dir / "checkpoint", "test", out_dir, accelerator=accelerator,
                                   progress=progress)
    if main:
        write_json(out_dir / "metrics.json", metrics)
    # All ranks leave together: a rank that tears down the process group while another still uses it
    # aborts the launch ("terminate called without an active exception").
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


__all__ = ["finetune", "make_accelerator"]  # make_accelerator lives in .distributed; re-exported for old callers
