"""Text-to-video retrieval fine-tuning: a recipe on the engine (``clipbert-emo finetune`` with data.task=retrieval).

Each training record (a video and one of its captions) is scored against its own caption (label 1) and
``retrieval.num_negatives`` captions of other videos (label 0) with the image-text matching head, the
clip logits aggregated by model.aggregation, 2-way cross-entropy (ClipBERT: one random negative).
``retrieval.hard_negatives`` adds, per video, the caption of another video of the same batch that the
model currently scores highest. Each epoch ranks every validation video for every validation caption
(R@1/5/10, median rank; the best epoch by R@1+R@5+R@10 unless train.select_metric says otherwise); the
finished run ranks the test split at N_test with every aggregation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import safe_open

from ..build import build_model
from ..checkpoint import PRETRAINING_HEADS, WEIGHTS, load_checkpoint, load_weights
from ..config import resolve_n_test
from ..data.benchmarks import has_split
from ..data.dataset import model_inputs
from ..data.loading import stratified_subset
from ..data.retrieval import RetrievalCollator, RetrievalPairDataset
from ..data.samplers import EpochShuffleSampler
from ..eval.report import write_json
from ..eval.retrieval import rank_manifest
from ..models.aggregation import aggregate_clip_logits
from ..tasks import load_split
from ..tasks.retrieval import match_margin
from .engine import Engine, RecipeSetup, tokenizer_for
from .finetune_recipe import FinetuneRecipe

logger = logging.getLogger(__name__)

ITM_KEYS = {"weight": "transformer.cls.seq_relationship.weight", "bias": "transformer.cls.seq_relationship.bias"}


def load_itm_head(model, folder: str | Path) -> bool:
    """Start the retrieval head from a pretraining checkpoint's ITM head (ClipBERT's seq_relationship), found
    in its weights or, for a converted original ClipBERT, beside them. Returns whether it was found (never for a
    fusion strategy without a one-layer ``head``, e.g. one that declares no task head: ClipBERT's classifier MLP)."""
    head = getattr(model, "head", None)
    if not isinstance(getattr(head, "weight", None), torch.Tensor):
        return False
    for name in (WEIGHTS, PRETRAINING_HEADS):
        file = Path(folder) / name
        if not file.exists():
            continue
        with safe_open(str(file), framework="pt") as f:
            if all(k in f.keys() for k in ITM_KEYS.values()):
                state = {part: f.get_tensor(key) for part, key in ITM_KEYS.items()}
                if state["weight"].shape == head.weight.shape:
                    head.load_state_dict(state)
                    return True
    return False


class RetrievalRecipe(FinetuneRecipe):
    kind = "retrieval"

    def setup(self, engine: Engine, resuming: bool) -> RecipeSetup:
        cfg, data, task = self.cfg, self.cfg.data, self.task
        if not data.use_video:
            raise ValueError("retrieval ranks videos for a text: data.use_video must be true")
        train_m = stratified_subset(load_split(data, "train"), data.train_fraction, cfg.train.seed)
        self.val_m = load_split(data, "val") if has_split(data, "val") else None
        tokenizer = tokenizer_for(cfg, [s.text for s in train_m.samples], engine.out_dir, engine.accelerator)
        model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id or 0, pretrained=not resuming,
                            criterion=task.criterion(data, cfg.train))
        if cfg.train.init_checkpoint and not resuming:
            report = load_weights(model, Path(cfg.train.init_checkpoint) / WEIGHTS)
            itm = load_itm_head(model, cfg.train.init_checkpoint)
            if engine.main:
                logger.warning("init_checkpoint %s: %s; ITM head %s", cfg.train.init_checkpoint,
                               {k: len(v) for k, v in report.items()},
                               "from its pretraining head" if itm else "newly initialised")
        dataset = RetrievalPairDataset(train_m, data, training=True, num_negatives=cfg.retrieval.num_negatives,
                                       seed=cfg.train.seed)
        sampler = EpochShuffleSampler(len(dataset), cfg.train.seed, dataset.groups if data.group_by_video else None)
        collate = RetrievalCollator(tokenizer, data.max_text_len, lambda targets: task.collate(targets, data))
        train_loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler,
                                                   num_workers=data.num_workers, collate_fn=collate,
                                                   generator=torch.Generator().manual_seed(cfg.train.seed))
        self.tokenizer = tokenizer
        # The engine validates only when there is a val loader; the ranking builds its own from val_m.
        val_loader = [] if self.val_m is not None else None
        per_rank = cfg.train.batch_size * engine.accelerator.num_processes
        return RecipeSetup(model=model, tokenizer=tokenizer, train_loader=train_loader, val_loader=val_loader,
                           set_train_position=lambda epoch, batches: sampler.set_position(epoch, batches * per_rank),
                           skipped=list(train_m.skipped) + (list(self.val_m.skipped) if self.val_m else []))

    def train_step(self, model, batch):
        inputs = model_inputs(batch)
        labels = batch["labels"]
        if self.cfg.retrieval.hard_negatives:
            inputs, labels = self.add_hard_negatives(model, inputs, labels, batch["group"])
        return model(**inputs, labels=labels, **self.contrastive_inputs(batch))

    @torch.no_grad()
    def add_hard_negatives(self, model, inputs: dict, labels: torch.Tensor, group: torch.Tensor):
        """Append to each video the caption of another video of the batch that the model scores highest
        (scored without gradient, in eval mode: no dropout, no BatchNorm statistics update)."""
        net = getattr(model, "module", model)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (B, P, L), own caption first
        b = ids.shape[0]
        if b < 2 or bool((group == group[0]).all()):
            return inputs, labels  # no other video in the batch
        was_training = net.training
        net.eval()
        clips = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        features = net.encode_features(clips)  # {name: (B, N, ...)}
        present = {k.removesuffix("_present"): v for k, v in clips.items() if k.endswith("_present")}
        own_ids = ids[:, 0].unsqueeze(0).expand(b, -1, -1)  # (B, L) -> (B videos, B captions, L)
        own_mask = mask[:, 0].unsqueeze(0).expand(b, -1, -1)
        clip_logits = net.clip_logits_from_features(own_ids, own_mask, features, present)  # (B, N, B*2)
        margin = match_margin(aggregate_clip_logits(clip_logits.float(), self.cfg.model.aggregation)
                              .view(b, b, 2))  # (B, N, B*2) -> (B, B*2) -> (B, B, 2) -> (B, B)
        margin[group[:, None] == group[None, :]] = -torch.inf  # a caption of the same video is no negative
        hardest = margin.argmax(dim=1)  # (B,)
        usable = torch.isfinite(margin.max(dim=1).values)
        hardest = torch.where(usable, hardest, torch.arange(b, device=hardest.device))
        net.train(was_training)
        extra_ids = torch.where(usable[:, None], ids[hardest, 0], ids[:, 1])  # a random negative where none
        extra_mask = torch.where(usable[:, None], mask[hardest, 0], mask[:, 1])
        inputs = {**inputs, "input_ids": torch.cat([ids, extra_ids[:, None]], dim=1),  # (B, P+1, L)
                  "attention_mask": torch.cat([mask, extra_mask[:, None]], dim=1)}
        return inputs, torch.cat([labels, labels.new_zeros(b, 1)], dim=1)  # (B, P+1)

    def evaluate(self, engine: Engine, epoch: int) -> dict:
        net = engine.accelerator.unwrap_model(engine.model)
        res = rank_manifest(net, self.cfg, self.tokenizer, self.val_m, resolve_n_test(self.cfg, validation=True),
                            [self.cfg.model.aggregation], self.cfg.train.eval_batch_size, engine.accelerator.device,
                            progress=engine.progress)
        net.train()
        rep = res["reports"][self.cfg.model.aggregation]
        entry = {f"val_{k}": rep[k] for k in self.task.history_metrics}
        if "val_" + self.select_metric not in entry:
            raise ValueError(f"train.select_metric={self.select_metric}: retrieval validation reports "
                             f"{', '.join(k.removeprefix('val_') for k in entry)}")
        return entry

    def finish(self, engine: Engine, metrics: dict) -> dict:
        metrics.update({"select_metric": self.select_metric,
                        "best_val_score": engine.best["value"] if self.val_m is not None else None,
                        "best_val_macro_f1": None})
        if has_split(self.cfg.data, "test") and engine.main:
            model, cfg, tokenizer = load_checkpoint(engine.out_dir / "checkpoint", engine.accelerator.device)
            test_m = load_split(cfg.data, "test")
            result = rank_manifest(model, cfg, tokenizer, test_m, resolve_n_test(cfg),
                                   batch_size=cfg.train.eval_batch_size, device=engine.accelerator.device,
                                   progress=engine.progress)
            result["checkpoint"] = str(engine.out_dir / "checkpoint")
            write_json(engine.out_dir / "retrieval_metrics.json", result)
            metrics["test"] = result
        return metrics


__all__ = ["RetrievalRecipe", "load_itm_head"]
