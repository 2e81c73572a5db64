"""The model card: a README.md in every checkpoint folder, saying what the model is for and how it did.

It is rendered from what the folder already holds (config.yaml and meta.json) and written with the
folder, so a checkpoint copied anywhere explains itself: the task and its labels, the data and the
size of each split, the validation metrics of the saved epoch, the test metrics (added when the run
scores its test split, at its end), the command that trained it, intended use and limits, and the
resolved config.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import yaml

from .config import TASK_KINDS, ExperimentConfig, resolve_n_test, to_dict
from .config.atomic import atomic_write_text
from .data.dataset import enabled_modalities

CARD = "README.md"


def current_command() -> str:
    """The command line of this process, as one shell-quoted string."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if program.parent.name == "clipbert_emo" and program.name in ("cli.py", "__main__.py"):
        program = Path("clipbert-emo")  # python -m clipbert_emo.cli is the same command
    return shlex.join([program.name, *sys.argv[1:]])


def summarise_evaluation(result: dict, task) -> dict:
    """What the card keeps of an evaluation result (eval/evaluate.py): sizes and each aggregation's scalar
    metrics that the task kind puts on its card (``Task.card_metrics``), with per-class F1 where the report has it."""
    from .tasks.base import pick_metrics

    reports = {}
    for how, rep in result.get("reports", {}).items():
        row = {k: v for k, v in pick_metrics(rep, task.card_metrics).items() if isinstance(v, (int, float))}
        if rep.get("per_class"):
            row["per_class_f1"] = {c["label"]: c["f1"] for c in rep["per_class"] if "f1" in c}
        reports[how] = row
    return {"n_test": result.get("n_test"), "num_samples": result.get("num_samples"),
            "skipped": len(result.get("skipped", [])), "reports": reports}


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _data_lines(cfg: ExperimentConfig, meta: dict) -> list[str]:
    d = cfg.data
    lines = []
    if d.format == "manifest":
        for split in ("train", "val", "test"):
            path = getattr(d, f"{split}_manifest")
            if path:
                lines.append(f"- {split} manifest: `{path}`")
    else:
        lines.append(f"- data.format `{d.format}` read from `{d.root or '(data.root not set)'}`")
    sizes = meta.get("split_sizes") or {}
    if sizes:
        lines += ["", "| split | videos |", "|---|---|"]
        lines += [f"| {split} | {n} |" for split, n in sizes.items()]
    if d.train_fraction < 1.0:
        lines.append(f"\nTrained on a stratified {d.train_fraction:.0%} of the training split (data.train_fraction).")
    if _is_synthetic(cfg):
        lines.append("\nThe data is **SynthEmo**, the library's generated benchmark of drawn faces and templated "
                     "captions: numbers on it say the pipeline works, not how the model does on real people.")
    return lines


def _is_synthetic(cfg: ExperimentConfig) -> bool:
    d = cfg.data
    manifests = [m for m in (d.train_manifest, d.val_manifest, d.test_manifest) if m]
    # `clipbert-emo synthemo` writes synthemo.json beside its manifests.
    if any((Path(m).parent / "synthemo.json").exists() for m in manifests):
        return True
    return "synthemo" in " ".join([cfg.name, d.root, *manifests]).lower()


def _card_columns(cfg: ExperimentConfig, rows: list[dict]) -> list[str]:
    """The metric columns of the test table: the task kind's card metrics that the rows have, in its order (every
    column the rows have where the kind is not registered in this process)."""
    task = TASK_KINDS.get(cfg.data.task)
    names = task.card_metrics if task is not None and task.card_metrics else dict.fromkeys(k for r in rows for k in r)
    return [k for k in names if k != "aggregation" and any(k in r for r in rows)]


def _metric_lines(meta: dict, cfg: ExperimentConfig) -> list[str]:
    lines = ["### Validation", ""]
    val = meta.get("validation")
    if val:
        lines.append(f"Epoch {meta.get('epoch', '?')} (the best by validation {meta.get('select_metric', '?')}), "
                     f"{resolve_n_test(cfg, validation=True)} clips per video, "
                     f"{cfg.model.aggregation} aggregation:")
        lines += ["", _table([{"metric": k.removeprefix("val_"), "value": v} for k, v in val.items()],
                             ["metric", "value"])]
    elif (meta.get("split_sizes") or {}).get("val"):
        lines.append(f"Not recorded here: these are the weights of epoch {meta.get('epoch', '?')} as saved to resume "
                     "the run; the best epoch's numbers are on the card of the run's checkpoint/ folder.")
    else:
        lines.append("No validation split: the saved weights are those of the last epoch.")
    lines += ["", "### Test", ""]
    test = meta.get("test")
    if test:
        lines.append(f"{test['num_samples']} videos, N_test = {test['n_test']} clips per video"
                     + (f" ({test['skipped']} unreadable, skipped)" if test.get("skipped") else "") + ":")
        rows = [{"aggregation": how, **{k: v for k, v in rep.items() if k != "per_class_f1"}}
                for how, rep in test["reports"].items()]
        columns = ["aggregation"] + _card_columns(cfg, rows)
        lines += ["", _table(rows, columns)]
        per_class = test["reports"].get(cfg.model.aggregation, {}).get("per_class_f1")
        if per_class:
            lines += ["", f"Per-class F1 ({cfg.model.aggregation}):", "",
                      _table([{"label": k, "f1": v} for k, v in per_class.items()], ["label", "f1"])]
    elif cfg.data.test_manifest or cfg.data.format != "manifest":
        lines.append("Not measured yet: the run scores its test split when it ends "
                     "(or: `clipbert-emo evaluate CHECKPOINT test`).")
    else:
        lines.append("The run had no test split; score one with `clipbert-emo evaluate CHECKPOINT manifest.jsonl`.")
    return lines


def render_model_card(cfg: ExperimentConfig, meta: dict) -> str:
    """The README.md of a checkpoint folder with this config and meta.json."""
    from .version import __version__

    d, m = cfg.data, cfg.model
    modalities = meta.get("modalities")
    if modalities is None:
        modalities = enabled_modalities(d)
    inputs = " + ".join([*modalities, *(["text"] if d.use_text else [])]) or "text"
    pretraining = meta.get("kind") == "pretraining"
    card = meta.get("card") or {}  # what a model not trained here says of itself (the ready face model)
    kind = "pretrained video-and-language" if pretraining else "emotion"
    out = [f"# {cfg.name}: {card.get('title') or f'a ClipBERT-style {kind} model'}",
           "",
           f"Written by clipbert-emo {__version__} with the checkpoint; the folder's `config.yaml` and `meta.json` are "
           "the machine-readable versions of what follows.", ""]
    out += ["## Task and labels", ""]
    if pretraining:
        out.append("Image-text pretraining (masked language modelling + image-text matching). It has no emotion "
                   "head: fine-tune it with `train.init_checkpoint=` pointing here.")
    else:
        task = TASK_KINDS.get(d.task)
        out.append(f"- task: `{d.task}`, {getattr(task, 'description', '') or d.task}")
        out.append(f"- labels ({len(d.labels)}): " + ", ".join(f"`{lab}`" for lab in d.labels))
    pixels = f" at {d.frame_size} px" if "video" in modalities else ""
    out.append(f"- inputs: {inputs}; {resolve_n_test(d)} clips of {d.num_frames} frames{pixels} per video "
               f"at test time, scores aggregated by `{m.aggregation}`")
    out.append(f"- model: {card['model']}" if card.get("model") else
               f"- model: {m.backbone} ({m.backbone_stages} stages) + a {m.num_layers}-layer transformer of width "
               f"{m.hidden_size}" + (f", text weights from `{m.text_init}`" if m.text_init else ""))
    if meta.get("converted_from"):
        out.append(f"- converted from the original ClipBERT checkpoint `{meta['converted_from']}`")
    out += ["", "## Data", "", *(card.get("data") or _data_lines(cfg, meta)), ""]
    if card.get("metrics"):
        out += ["## Metrics", "", *card["metrics"], ""]
    elif not pretraining and not meta.get("converted_from"):
        out += ["## Metrics", "", *_metric_lines(meta, cfg), ""]
    for title, lines in (card.get("sections") or {}).items():
        out += [f"## {title}", "", *lines, ""]
    out += ["## Training", "", "```", meta.get("command", "(not recorded)"), "```", ""]
    facts = [f"epoch {meta['epoch']}" if "epoch" in meta else "", f"step {meta['step']}" if "step" in meta else "",
             f"seed {cfg.train.seed}", f"started from `{cfg.train.init_checkpoint}`" if cfg.train.init_checkpoint else ""]
    out += ["Saved at " + ", ".join(f for f in facts if f) + ".", ""]
    out += ["## Intended use and limits", "",
            "- For research and for trying emotion recognition on short clips (a few seconds, one person), in the "
            "conditions of the training data. Check the metrics above on data like yours before relying on it.",
            "- It labels the *expression* seen and the words read, not what a person feels: the same face can mean "
            "different things across people, cultures and situations.",
            "- Not for decisions about people (hiring, policing, health, education, access to services), nor for "
            "monitoring people without their informed consent.",
            "- Labels come from one dataset's annotators; classes rare in training are recognised worse (see the "
            "per-class numbers), and faces, lighting, languages or ages absent from the data are not covered.",
            *([f"- Clips are letterboxed to {d.frame_size} px; small faces in wide shots lose detail."]
              if "video" in modalities else [])]
    if _is_synthetic(cfg):
        out.append("- Trained on synthetic data (SynthEmo): a demonstration model, not one to run on real videos.")
    out += ["", "## How to use", "", "```bash",
            "clipbert-emo predict CHECKPOINT video.mp4 --text \"what was said\"",
            "clipbert-emo export CHECKPOINT --format onnx --out exported/   # run without clipbert-emo",
            "```", "", "## Config (resolved)", "", "```yaml",
            yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), "```", ""]
    return "\n".join(out)


def write_model_card(folder: str | os.PathLike, cfg: ExperimentConfig, meta: dict) -> Path:
    """Write (atomically) ``folder``/README.md for this config and meta."""
    path = Path(folder) / CARD
    atomic_write_text(path, render_model_card(cfg, meta))
    return path
