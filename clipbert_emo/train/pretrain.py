"""``clipbert-emo pretrain``: ClipBERT's image-text pretraining (ITM + MLM), under accelerate.

Writes into ``cfg.train.output_dir``: config.yaml, checkpoint/ (weights after the last epoch,
the folder ``finetune`` takes as ``train.init_checkpoint``), last/ (resumable state),
metrics.json (per-epoch losses and held-out ITM/MLM accuracy) and pretrain_curves.png.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import DataConfig, ExperimentConfig, save_config
from ..convert import PRETRAINING_HEADS
from ..data.manifest import Manifest
from ..data.pretraining import ImageTextCollator, ImageTextPairDataset
from ..eval.report import write_json
from ..models.pretraining import ClipBertForPretraining
from .checkpoint import TRAINING_STATE, WEIGHTS, load_weights, save_checkpoint
from .distributed import NonFiniteGuard, make_accelerator, model_for_saving, param_checksum, sync_buffers
from .loop import _tokenizer_for
from .optim import optimizer_and_schedule
from .resume import restore_training_state, save_training_state

logger = logging.getLogger(__name__)


def load_pairs(cfg: DataConfig, split: str) -> Manifest | None:
    """Image-text pairs of one split (no labels needed); None when the source has no such split."""
    from ..data.benchmarks import read_image_text_pairs
    from .builders import has_split

    if not has_split(cfg, split):
        if split == "train":
            raise ValueError("data.train_manifest is not set (a JSONL of {\"video\": image, \"text\": caption})")
        return None
    return read_image_text_pairs(cfg, split)


def load_pretraining_init(model: ClipBertForPretraining, folder: str | Path) -> dict:
    """Start pretraining from a checkpoint folder: a finished pretraining run, a fine-tuned model (its
    classifier is reported unused), or a converted original ClipBERT, whose MLM/ITM heads the converter
    keeps beside the weights. Returns load_weights' report of what did not match."""
    report = load_weights(model, Path(folder) / WEIGHTS)
    heads = Path(folder) / PRETRAINING_HEADS
    if heads.exists():
        head_report = load_weights(model, heads)
        report["missing"] = [k for k in report["missing"] if k in head_report["missing"]]
    return report


class MixedSourceBatchSampler:
    """Batches drawn from one source at a time, each source equally likely per batch.

    ClipBERT alternates COCO and Visual Genome 50/50 per step whatever their sizes; with one
    source this is a plain per-epoch shuffle. The order is a function of (seed, epoch), and
    ``set_position`` skips the batches a killed run already trained on.
    """

    def __init__(self, source_sizes: list[int], batch_size: int, seed: int):
        self.sizes = list(source_sizes)
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_position(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches

    def __len__(self) -> int:
        return math.ceil(sum(self.sizes) / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        orders = [torch.randperm(n, generator=g).tolist() for n in self.sizes]
        pos = [0] * len(self.sizes)
        for b in range(len(self)):
            s = int(torch.randint(len(self.sizes), (1,), generator=g)) if len(self.sizes) > 1 else 0
            batch = []
            for _ in range(self.batch_size):
                if pos[s] == len(orders[s]):  # a small source is reshuffled and reused within the epoch
                    orders[s], pos[s] = torch.randperm(self.sizes[s], generator=g).tolist(), 0
                batch.append(self.offsets[s] + orders[s][pos[s]])
                pos[s] += 1
            if b >= self.skip:
                yield batch


def _collator(cfg: ExperimentConfig, tokenizer) -> ImageTextCollator:
    return ImageTextCollator(tokenizer, cfg.data.max_text_len, len(cfg.data.labels), "single_label",
                             mlm_probability=cfg.pretrain.mlm_probability)


@torch.no_grad()
def evaluate_pretraining(model, loader, accelerator) -> dict:
    """Held-out ITM accuracy and MLM top-1 accuracy on masked tokens, and the mean losses."""
    model.eval()
    itm_correct = itm_total = mlm_correct = mlm_total = 0
    losses = {"loss": [], "loss_mlm": [], "loss_itm": []}
    for batch in loader:
        if "input_ids" not in batch:
            continue
        out = model(batch["input_ids"], batch["attention_mask"], batch["video"], batch["mlm_labels"],
                    batch["itm_labels"])
        itm_pred, itm_true = accelerator.gather_for_metrics((out.itm_logits.argmax(-1), batch["itm_labels"]))
        itm_correct += int((itm_pred == itm_true).sum())
        itm_total += int(itm_true.numel())
        picked = batch["mlm_labels"] != -100
        hits = (out.mlm_logits.argmax(-1)[picked] == batch["mlm_labels"][picked]).sum()
        counts = accelerator.reduce(torch.stack([hits, picked.sum()]).to(accelerator.device), "sum")
        mlm_correct += int(counts[0])
        mlm_total += int(counts[1])
        for k in losses:
            losses[k].append(float(accelerator.reduce(getattr(out, k).detach(), "mean")))
    model.train()
    return {"val_itm_accuracy": itm_correct / max(1, itm_total), "val_mlm_accuracy": mlm_correct / max(1, mlm_total),
            **{f"val_{k}": sum(v) / max(1, len(v)) for k, v in losses.items()}}


def pretrain(cfg: ExperimentConfig, progress: bool = True) -> dict:
    """Pretrain on image-text pairs; returns the metrics dict (also written to metrics.json)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.train.seed)
    main = accelerator.is_main_process
    out_dir = Path(cfg.train.output_dir)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    if not cfg.data.use_video:
        raise ValueError("pretraining matches images with captions: data.use_video must be true")

    sources = [cfg.data] + [dataclasses.replace(cfg.data, format=f, root=r)
                            for f, r in zip(cfg.pretrain.sources, cfg.pretrain.roots)]
    train_parts = [load_pairs(src, "train") for src in sources]
    train_m = Manifest(path=", ".join(m.path for m in train_parts), samples=[s for m in train_parts for s in m.samples],
                       skipped=[x for m in train_parts for x in m.skipped])
    val_m = load_pairs(cfg.data, "val")
    tokenizer = _tokenizer_for(cfg, [s.text for s in train_m.samples], out_dir, accelerator)

    last_dir = out_dir / "last"
    resuming = cfg.train.resume and (last_dir / TRAINING_STATE).exists()
    model = ClipBertForPretraining(cfg.model, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=not resuming,
                                   visual_words_weight=cfg.pretrain.visual_words_weight)
    if resuming:
        load_weights(model, last_dir / WEIGHTS, strict=True)
    elif cfg.train.init_checkpoint:
        report = load_pretraining_init(model, cfg.train.init_checkpoint)
        if main and any(report.values()):
            logger.warning("init_checkpoint %s: %s", cfg.train.init_checkpoint, {k: len(v) for k, v in report.items()})
    if cfg.train.gradient_checkpointing:
        model.enable_gradient_checkpointing()

    dataset = ImageTextPairDataset(train_m, cfg.data, seed=cfg.train.seed, negative_prob=cfg.pretrain.itm_negative_prob)
    batch_sampler = MixedSourceBatchSampler([len(m.samples) for m in train_parts], cfg.train.batch_size, cfg.train.seed)
    train_loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=cfg.data.num_workers,
                              collate_fn=_collator(cfg, tokenizer))
    val_loader = None
    if val_m is not None:
        # Held-out pairs keep training-time augmentation off; their negatives and masks are fixed by the seed.
        val_set = ImageTextPairDataset(val_m, cfg.data, seed=cfg.train.seed + 1,
                                       negative_prob=cfg.pretrain.itm_negative_prob, training=False)
        val_loader = DataLoader(val_set, batch_size=cfg.train.eval_batch_size, num_workers=cfg.data.num_workers,
                                collate_fn=_collator(cfg, tokenizer))

    optimizer, scheduler, total_steps = optimizer_and_schedule(model, cfg, len(train_loader), accelerator.num_processes)
    # Stepped below once per optimizer step; accelerate's scheduler wrapper would step it once per rank.
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)

    history: list[dict] = []
    step_losses: list[float] = []
    skipped: list = list(train_m.skipped)
    step = micro_step = 0
    first_epoch, batches_done = 1, 0
    guard = NonFiniteGuard(accelerator)
    if resuming:
        state = restore_training_state(last_dir, out_dir, accelerator, model, optimizer, scheduler, guard)
        step, micro_step = state["step"], state["micro_step"]
        first_epoch, batches_done = state["epoch"], state["batches_done"]
        history, step_losses = state["history"], state["step_losses"]

    def save_last(epoch: int, batches: int, to_save=...) -> None:
        counters = {"step": step, "micro_step": micro_step, "epoch": epoch, "batches_done": batches,
                    "history": history, "step_losses": step_losses}
        save_training_state(last_dir, out_dir, accelerator, model, optimizer, scheduler, guard, cfg, tokenizer,
                            counters, {"kind": "pretraining", "epoch": epoch, "step": step}, to_save)

    start = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"pretrain {cfg.name}", disable=not (progress and main))
    for epoch in range(first_epoch, cfg.train.epochs + 1):
        model.train()
        skip = batches_done if epoch == first_epoch else 0
        # Under several processes each rank takes every n-th batch, so the skip counts global batches.
        batch_sampler.set_position(epoch, skip * accelerator.num_processes)
        train_loader.set_epoch(epoch)
        batches = skip
        sums = {"loss": [], "loss_mlm": [], "loss_itm": []}
        if cfg.pretrain.visual_words_weight > 0:
            sums["loss_visual_words"] = []
        for batch in train_loader:
            batches += 1
            skipped.extend(batch["skipped"])
            if "input_ids" not in batch:
                continue
            micro_step += 1
            torch.manual_seed(cfg.train.seed * 1_000_003 + micro_step)  # dropout masks as a function of the step
            with accelerator.accumulate(model):
                out = model(batch["input_ids"], batch["attention_mask"], batch["video"], batch["mlm_labels"],
                            batch["itm_labels"])
                guard.check_loss(out.loss, epoch, step)  # all ranks stop on NaN/inf unless fp16 scaling skips it
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for k in sums:
                sums[k].append(getattr(out, k).item())
            if accelerator.sync_gradients:
                step += 1
                guard.after_step(optimizer, step)
                step_losses.append(out.loss.item())
                bar.update(1)
                recent = sums["loss"][-20:]
                bar.set_postfix(epoch=epoch, loss=f"{sum(recent) / len(recent):.3f}",
                                itm=f"{sums['loss_itm'][-1]:.3f}", mlm=f"{sums['loss_mlm'][-1]:.3f}")
                if cfg.train.save_every_steps and step % cfg.train.save_every_steps == 0:
                    save_last(epoch, batches)
            if cfg.train.max_steps and step >= cfg.train.max_steps:
                break
        entry = {"epoch": epoch, "step": step, "lr": scheduler.get_last_lr()[-1],
                 **{f"train_{k}": sum(v) / max(1, len(v)) for k, v in sums.items()}}
        if val_loader is not None:
            sync_buffers(accelerator, model)  # every rank evaluates with the BatchNorm statistics that get saved
            entry.update(evaluate_pretraining(model, val_loader, accelerator))
        history.append(entry)
        to_save = model_for_saving(accelerator, model)  # every rank: ZeRO-3 gathers the full weights here
        if main:
            logger.info("epoch %d: %s", epoch, {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()})
            save_checkpoint(out_dir / "checkpoint", to_save, cfg, tokenizer,
                            {"kind": "pretraining", "epoch": epoch, "step": step})
            _plot(history, out_dir / "pretrain_curves.png")
        save_last(epoch + 1, 0, to_save)
        accelerator.wait_for_everyone()
        if cfg.train.max_steps and step >= cfg.train.max_steps:
            break
    bar.close()
    checksum = param_checksum(accelerator, model)  # every rank; equal numbers = identical replicas
    rank_checksums = accelerator.gather(checksum.reshape(1).to(accelerator.device)).cpu().tolist()
    metrics = {"name": cfg.name, "history": history, "steps": step, "step_losses": step_losses,
               "rank_param_checksums": rank_checksums,
               "train_pairs": len(train_m.samples), "val_pairs": len(val_m.samples) if val_m else 0,
               "train_seconds": time.time() - start, "checkpoint": str(out_dir / "checkpoint"),
               "num_processes": accelerator.num_processes, "overflow_skipped_steps": len(guard.skipped_steps),
               "skipped": [list(s) for s in skipped]}
    if main:
        write_json(out_dir / "metrics.json", metrics)
    # All ranks leave together: a rank that tears down the process group while another still uses it
    # aborts the launch ("terminate called without an active exception").
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, style in (("train_loss_mlm", "-"), ("train_loss_itm", "-"), ("val_loss_mlm", "--"), ("val_loss_itm", "--")):
        if key in history[0]:
            axes[0].plot(epochs, [h[key] for h in history], style, marker="o", label=key)
    axes[0].set(xlabel="epoch", ylabel="loss", title="pretraining losses")
    axes[0].legend(fontsize=8)
    for key in ("val_itm_accuracy", "val_mlm_accuracy"):
        if key in history[0]:
            axes[1].plot(epochs, [h[key] for h in history], marker="o", label=key)
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="held-out pairs", ylim=(0, 1))
    if axes[1].lines:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
