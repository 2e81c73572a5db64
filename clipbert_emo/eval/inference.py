"""Running a model over a loader and turning clip logits into reports for every aggregation."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.aggregation import AGGREGATIONS, aggregate_clip_logits
from .metrics import classification_report, multilabel_report


@torch.no_grad()
def collect_clip_logits(model, loader, accelerator=None, progress: bool = True, desc: str = "eval") -> dict:
    """Clip logits (S, N, K), labels and dataset indices of every sample the loader yields.

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
        video = batch.get("video")
        out = net.clip_logits(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                                video.to(device) if video is not None else None)
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
    if not clip_logits:
        raise RuntimeError("no sample could be evaluated (all were skipped)")
    return {
        "clip_logits": torch.cat(clip_logits),  # (S, N, K)
        "labels": torch.cat(labels) if labels else None,
        "indices": torch.cat(indices),
        "skipped": skipped,
    }


# Validation metric chosen by default for each task; the ones in LOWER_IS_BETTER are minimised.
DEFAULT_SELECT_METRIC = {"single_label": "macro_f1", "multilabel": "macro_f1", "multitask": "mean_macro_f1",
                         "regression": "mae"}
LOWER_IS_BETTER = {"mae", "loss"}


def task_report(logits: torch.Tensor, labels: torch.Tensor, data) -> dict:
    """The report of one task kind from aggregated logits (S, K_out) and the labels the collator made."""
    task = data.task
    if task == "multilabel":
        return multilabel_report(labels.numpy(), torch.sigmoid(logits).numpy(), list(data.labels))
    if task == "regression":
        from .metrics import regression_report

        # CH-SIMS is annotated on [-1, 1] and reported with its own class intervals (acc3/acc5).
        return regression_report(labels.numpy(), logits[:, 0].numpy(), scale="sims" if data.format == "sims" else "mosi")
    if task == "multitask":
        from .metrics import multitask_report

        pred = logits.reshape(len(logits), len(data.heads), len(data.labels)).argmax(-1)  # (S, H*K) -> (S, H, K) -> (S, H)
        return multitask_report(labels.numpy(), pred.numpy(), list(data.heads), list(data.labels))
    return classification_report(labels.numpy(), logits.argmax(-1).numpy(), list(data.labels)).to_dict()


def reports_for_aggregations(clip_logits: torch.Tensor, labels: torch.Tensor, data,
                             aggregations=AGGREGATIONS) -> dict:
    """{aggregation: report dict} from the same clip logits; ``data`` is the run's DataConfig."""
    return {how: task_report(aggregate_clip_logits(clip_logits, how), labels, data) for how in aggregations}


def mean_loss(model, clip_logits: torch.Tensor, labels: torch.Tensor, how: str) -> float:
    """The model's own training loss on aggregated validation logits."""
    return float(model.loss(aggregate_clip_logits(clip_logits, how), labels))


def class_probabilities(logits: torch.Tensor, multilabel: bool) -> np.ndarray:
    return (torch.sigmoid(logits) if multilabel else logits.softmax(-1)).numpy()
