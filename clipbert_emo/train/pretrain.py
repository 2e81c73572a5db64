"""``clipbert-emo pretrain``: ClipBERT's image-text pretraining (ITM + MLM), a recipe on the engine.

Writes into ``cfg.train.output_dir``: config.yaml, checkpoint/ (weights after the last epoch,
the folder ``finetune`` takes as ``train.init_checkpoint``), last/ (resumable state),
metrics.json (per-epoch losses and held-out ITM/MLM accuracy) and pretrain_curves.png.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from ..build import build_pretraining_model
from ..checkpoint import PRETRAINING_HEADS, WEIGHTS, load_weights
from ..config import DataConfig, ExperimentConfig
from ..data.benchmarks import has_split, read_image_text_pairs
from ..data.manifest import Manifest
from ..data.pretraining import ImageTextCollator, ImageTextPairDataset
from ..eval.plots import plot_pretraining_curves
from ..models.pretraining import ClipBertForPretraining
from .engine import Engine, RecipeSetup, tokenizer_for
from .observers import RunObserver

logger = logging.getLogger(__name__)


def load_pairs(cfg: DataConfig, split: str) -> Manifest | None:
    """Image-text pairs of one split (no labels needed); None when the source has no such split."""
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
    return ImageTextCollator(tokenizer, cfg.data.max_text_len, mlm_probability=cfg.pretrain.mlm_probability)


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


class PretrainRecipe:
    kind = "pretrain"
    select_metric = ""  # every epoch's weights are kept: pretraining has no selection metric

    def __init__(self, cfg: ExperimentConfig):
        if not cfg.data.use_video:
            raise ValueError("pretraining matches images with captions: data.use_video must be true")
        self.cfg = cfg

    def setup(self, engine: Engine, resuming: bool) -> RecipeSetup:
        cfg = self.cfg
        sources = [cfg.data] + [dataclasses.replace(cfg.data, format=f, root=r)
                                for f, r in zip(cfg.pretrain.sources, cfg.pretrain.roots)]
        train_parts = [load_pairs(src, "train") for src in sources]
        train_m = Manifest(path=", ".join(m.path for m in train_parts),
                           samples=[s for m in train_parts for s in m.samples],
                           skipped=[x for m in train_parts for x in m.skipped])
        val_m = load_pairs(cfg.data, "val")
        self.num_pairs = (len(train_m.samples), len(val_m.samples) if val_m else 0)
        tokenizer = tokenizer_for(cfg, [s.text for s in train_m.samples], engine.out_dir, engine.accelerator)
        model = build_pretraining_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=not resuming)
        if cfg.train.init_checkpoint and not resuming:
            report = load_pretraining_init(model, cfg.train.init_checkpoint)
            if engine.main and any(report.values()):
                logger.warning("init_checkpoint %s: %s", cfg.train.init_checkpoint,
                               {k: len(v) for k, v in report.items()})
        dataset = ImageTextPairDataset(train_m, cfg.data, seed=cfg.train.seed,
                                       negative_prob=cfg.pretrain.itm_negative_prob)
        batch_sampler = MixedSourceBatchSampler([len(m.samples) for m in train_parts], cfg.train.batch_size,
                                                cfg.train.seed)
        train_loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=cfg.data.num_workers,
                                  collate_fn=_collator(cfg, tokenizer))
        val_loader = None
        if val_m is not None:
            # Held-out pairs keep training-time augmentation off; their negatives and masks are fixed by the seed.
            val_set = ImageTextPairDataset(val_m, cfg.data, seed=cfg.train.seed + 1,
                                           negative_prob=cfg.pretrain.itm_negative_prob, training=False)
            val_loader = DataLoader(val_set, batch_size=cfg.train.eval_batch_size, num_workers=cfg.data.num_workers,
                                    collate_fn=_collator(cfg, tokenizer))
        nproc = engine.accelerator.num_processes
        # Under several processes each rank takes every n-th batch, so the skip counts global batches.
        return RecipeSetup(model=model, tokenizer=tokenizer, train_loader=train_loader, val_loader=val_loader,
                           set_train_position=lambda epoch, batches: batch_sampler.set_position(epoch, batches * nproc),
                           skipped=list(train_m.skipped))

    def train_step(self, model, batch):
        return model(batch["input_ids"], batch["attention_mask"], batch["video"], batch["mlm_labels"],
                     batch["itm_labels"])

    def step_logs(self, out) -> dict:
        logs = {"loss": out.loss.item(), "loss_mlm": out.loss_mlm.item(), "loss_itm": out.loss_itm.item()}
        if self.cfg.pretrain.visual_words_weight > 0:
            logs["loss_visual_words"] = out.loss_visual_words.item()
        return logs

    def evaluate(self, engine: Engine, epoch: int) -> dict:
        return evaluate_pretraining(engine.model, engine.val_loader, engine.accelerator)

    def score(self, entry: dict, validated: bool) -> tuple[None, None]:
        return None, None

    def checkpoint_meta(self, epoch: int, step: int) -> dict:
        return {"kind": "pretraining", "epoch": epoch, "step": step}

    def best_meta(self, value) -> dict:
        return {}

    def plot(self, history: list[dict], out_dir: Path) -> None:
        plot_pretraining_curves(history, out_dir / "pretrain_curves.png")

    def finish(self, engine: Engine, metrics: dict) -> dict:
        metrics["train_pairs"], metrics["val_pairs"] = self.num_pairs
        return metrics


def pretrain(cfg: ExperimentConfig, progress: bool = True, observers: Sequence[RunObserver] = ()) -> dict:
    """Pretrain on image-text pairs; returns the metrics dict (also written to metrics.json)."""
    return Engine(cfg, progress, observers).run(PretrainRecipe(cfg))
