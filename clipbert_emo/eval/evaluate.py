"""Dense evaluation of a saved checkpoint: N_test clips, every aggregation, full report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..config import AGGREGATIONS, renamed_keyword, resolve_n_test
from ..data.loading import make_loader
from ..data.manifest import read_manifest
from ..models.aggregation import aggregate_clip_logits
from ..tasks import Recipe, get_task, load_split
from .inference import collect_clip_logits, reports_for_aggregations
from .plots import plot_report
from .report import format_report, write_json

SPLITS = ("train", "val", "test")


def check_droppable(cfg, model, drop) -> tuple[str, ...]:
    """The modalities ``drop`` names, checked against those the model reads (UserError naming the others)."""
    from ..config import UserError

    known = (["text"] if cfg.data.use_text else []) + list(model.modality_names)
    unknown = [name for name in drop if name not in known]
    if unknown:
        raise UserError(f"--drop {' '.join(unknown)}: this model reads {', '.join(known)}; only those can be removed")
    return tuple(dict.fromkeys(drop))


def evaluate(checkpoint: str | Path, manifest: str, out_dir: str | Path | None = None, n_test: int | None = None,
             aggregations=AGGREGATIONS, batch_size: int | None = None, accelerator=None, progress: bool = True,
             print_report: bool = False, drop=(), seek: str | None = None, *, num_clips: int | None = None,
             resume: bool = False) -> dict:
    """Score ``manifest`` with the checkpoint at N_test = ``n_test`` (default: the config's data.n_test;
    ``num_clips`` is its deprecated name).

    ``drop``: modalities (text, video, audio) removed from every sample at test time (their ``<name>_present``
    masks false), to score what the model does without them.

    ``manifest`` is a manifest file, or a split name (train | val | test) of the checkpoint's own data
    config, which is how benchmark releases read from data.root are evaluated. ``seek``: data.seek for this
    evaluation (default: the checkpoint's, ``accurate`` unless it was trained otherwise).

    Returns {"n_test", "eval_seconds", "num_samples", "skipped", "reports": {aggregation: report}}; with
    ``out_dir`` also writes eval_metrics.json and the task's figures (for the training aggregation), and saves
    each batch's logits in ``out_dir``/eval_progress/ as it comes (eval/progress.py), so that ``resume`` continues a
    killed evaluation with the samples it had not scored.
    """
    from accelerate import Accelerator

    from ..checkpoint import read_checkpoint_config

    n_test = renamed_keyword(n_test, num_clips, "n_test", "num_clips", "evaluate")
    if get_task(read_checkpoint_config(checkpoint)[0].data.task).recipe == Recipe.RETRIEVAL:
        from .retrieval import evaluate_retrieval  # every video ranked for every text

        if resume:
            from ..config import UserError

            raise UserError("--resume: a retrieval evaluation keeps no saved batches (every video is ranked for "
                            "every text at the end); run it without --resume")

        result = evaluate_retrieval(checkpoint, manifest, out_dir, n_test, aggregations, batch_size,
                                    accelerator.device if accelerator else None, progress)
        if out_dir is not None:  # also under the name every evaluation writes
            write_json(Path(out_dir) / "eval_metrics.json", result)
        return result
    accelerator = accelerator or Accelerator(cpu=not __import__("torch").cuda.is_available())
    model, cfg, tokenizer = load_checkpoint(checkpoint, accelerator.device)
    if seek is not None:
        cfg.data = dataclasses.replace(cfg.data, seek=seek)
    task = get_task(cfg.data.task)
    drop = check_droppable(cfg, model, drop)
    n_test = resolve_n_test(cfg, n_test)
    if manifest in SPLITS:
        m = load_split(cfg.data, manifest)
    else:
        m = read_manifest(manifest, task.target_reader(cfg.data), require_video=cfg.data.use_video,
                          strict=cfg.data.strict)
    saved, todo, keep = None, m, None
    if out_dir is not None:
        from .progress import EvalProgress, evaluation_key

        key = evaluation_key(checkpoint, m.samples, n_test, cfg.data.seek, drop)
        saved = EvalProgress(out_dir, key, resume, accelerator.is_main_process)
        todo, keep = saved.remaining(m)
    start = time.time()
    res = {"skipped": []}
    if todo.samples or saved is None or not saved.done:  # a run killed after its last batch was saved: none left
        loader = make_loader(todo, cfg.data, tokenizer, False, batch_size or cfg.train.eval_batch_size,
                             cfg.train.seed, task=task, num_clips=n_test)
        loader = accelerator.prepare(loader)
        # the indices saved are the manifest's, whatever was already scored
        on_batch = (lambda out, idx, lab: saved.add(out, torch.tensor([keep[i] for i in idx.tolist()]), lab)) \
            if saved is not None else None
        res = collect_clip_logits(model, loader, accelerator, progress=progress, desc=f"eval N_test={n_test}",
                                  drop=drop, on_batch=on_batch, allow_empty=saved is not None and bool(saved.done))
    if saved is not None and saved.results() is not None:  # what was saved before, and this run's batches
        res = {**res, **saved.results()}
    reports = reports_for_aggregations(res["clip_logits"], res["labels"], cfg.data, aggregations)
    result = {"checkpoint": str(checkpoint), "manifest": str(manifest), "n_test": n_test if model.modalities else 1,
              "seek": cfg.data.seek,
              "eval_seconds": time.time() - start, "num_samples": int(res["clip_logits"].shape[0]),
              "skipped": [list(s) for s in list(m.skipped) + res["skipped"]], "dropped": list(drop),
              "reports": reports}
    if accelerator.is_main_process:
        primary = cfg.model.aggregation if cfg.model.aggregation in reports else next(iter(reports))
        if out_dir is not None:
            out_dir = Path(out_dir)
            write_json(out_dir / "eval_metrics.json", result)
            truth = pred = None
            if res["labels"] is not None and res["labels"].ndim == 1 and res["clip_logits"].shape[-1] == 1:
                truth = res["labels"].numpy()  # a regression: its figure is predicted against true
                pred = aggregate_clip_logits(res["clip_logits"], primary)[:, 0].numpy()
            plot_report(reports[primary], out_dir, title=f"{Path(manifest).name}: N_test={n_test}, {primary}",
                        truth=truth, pred=pred)
        if print_report:
            for how, rep in reports.items():
                text = format_report(rep)
                if text:
                    print(f"\n== N_test={n_test}, aggregation={how} ==")
                    print(text)
    if saved is not None:  # the report is written: the saved batches are no longer needed
        saved.finish()
    return result
