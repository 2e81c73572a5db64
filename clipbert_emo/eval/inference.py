"""Running a model over a loader and turning clip logits into reports for every aggregation."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..config import AGGREGATIONS
from ..data.dataset import model_inputs, without_modalities
from ..models.aggregation import aggregate_clip_logits
from ..tasks import get_task


@torch.no_grad()
def collect_clip_logits(model, loader, accelerator=None, progress: bool = True, desc: str = "eval",
                        drop=(), on_batch=None, allow_empty: bool = False) -> dict:
    """Clip logits (S, N, K), labels and dataset indices of every sample the loader yields; the modalities
    ``drop`` names (text, video, audio) are marked absent in every sample. ``on_batch(clip_logits, indices,
    labels)``: called with each batch once gathered (every rank gets every rank's samples), as it comes.
    ``allow_empty``: no sample scored is no error (the tensors are then None).

    Under several processes each rank scores its shard and the results are gathered once
    per sample (``gather_for_metrics`` drops the padding that evens out the last batch).
    """
    model.eval()
    device = accelerator.device if accelerator else next(model.parameters()).device
    # The DDP wrapper only forwards forward(); clip_logits lives on the module itself.
    net = accelerator.unwrap_model(model) if accelerator is not None else model
    clip_logits, labels, indices, skipped = [], [], [], []
    main = accelerator is None or accelerator.is_main_process
    for batch in tqdm(loader, desc=desc, disable=not (progress and main), leave=False):
        skipped.extend(batch["skipped"])
        if "input_ids" not in batch:
            continue
        inputs = without_modalities({k: v.to(device) for k, v in model_inputs(batch).items()}, drop)
        out = net.clip_logits(**inputs, clips_per_pass=net.cfg.inference_clips_per_pass)
        lab = batch.get("labels")
        idx = batch["index"].to(device)
        if accelerator is not None:
            out, idx = accelerator.gather_for_metrics((out, idx))
            if lab is not None:
                lab = accelerator.gather_for_metrics(lab.to(device))
        clip_logits.append(out.float().cpu())
        indices.append(idx.cpu())
        if lab is not None:
            labels.append(lab.cpu())
        if on_batch is not None:
            on_batch(clip_logits[-1], indices[-1], labels[-1] if lab is not None else None)
    if not clip_logits and allow_empty:
        return {"clip_logits": None, "labels": None, "indices": None, "skipped": skipped}
    if not clip_logits:
        from ..config import UserError

        shown = "; ".join(f"{w}: {r}" for w, r in skipped[:3]) + (f"; and {len(skipped) - 3} more"
                                                                   if len(skipped) > 3 else "")
        raise UserError(f"no sample could be evaluated: all {len(skipped)} were skipped ({shown})")
    return {
        "clip_logits": torch.cat(clip_logits),  # (S, N, K)
        "labels": torch.cat(labels) if labels else None,
        "indices": torch.cat(indices),
        "skipped": skipped,
    }


def reports_for_aggregations(clip_logits: torch.Tensor, labels: torch.Tensor, data,
                             aggregations=AGGREGATIONS) -> dict:
    """{aggregation: the task kind's report} from the same clip logits; ``data`` is the run's DataConfig."""
    task = get_task(data.task)
    return {how: task.report(aggregate_clip_logits(clip_logits, how), labels, data) for how in aggregations}


def mean_loss(model, clip_logits: torch.Tensor, labels: torch.Tensor, how: str) -> float:
    """The model's own training loss on aggregated validation logits."""
    return float(model.loss(aggregate_clip_logits(clip_logits, how), labels))


@torch.no_grad()
def collect_dropped_clip_logits(model, loader, drop_sets: dict, progress: bool = True) -> dict:
    """One pass over the loader (each batch decoded once), the model scored under every entry of ``drop_sets``
    ({key: modalities to remove}); one process. Returns {"clip_logits": {key: (S, N, K)}, "labels",
    "model_seconds": {key: seconds spent in the model alone}, "num_samples"}."""
    import time

    model.eval()
    device = next(model.parameters()).device
    logits = {key: [] for key in drop_sets}
    seconds = {key: 0.0 for key in drop_sets}
    labels = []
    for batch in tqdm(loader, desc="eval (modalities removed)", disable=not progress, leave=False):
        if "input_ids" not in batch:
            continue
        inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
        for key, drop in drop_sets.items():
            start = time.perf_counter()
            out = model.clip_logits(**without_modalities(inputs, drop), clips_per_pass=model.cfg.inference_clips_per_pass)
            seconds[key] += time.perf_counter() - start
            logits[key].append(out.float().cpu())
        if batch.get("labels") is not None:
            labels.append(batch["labels"])
    if not labels:
        from ..config import UserError

        raise UserError("no sample with a label could be evaluated")
    return {"clip_logits": {k: torch.cat(v) for k, v in logits.items()}, "labels": torch.cat(labels),
            "model_seconds": seconds, "num_samples": sum(len(x) for x in labels)}
