"""Every checkpoint folder carries a README.md model card; a fine-tuning run's names its data, labels and metrics."""

import json
import re
import sys

import pytest
import yaml

from clipbert_emo.cli import main
from support import TINY_OVERRIDES, data_overrides


@pytest.fixture(scope="module")
def run(synthemo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("card_run")
    argv = ["clipbert-emo", "finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}"]
    saved, sys.argv = sys.argv, argv  # the card records the process's command line
    try:
        assert main(argv[1:]) == 0
    finally:
        sys.argv = saved
    return out


def section(card: str, title: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher level."""
    level = title.split(" ")[0]
    match = re.search(rf"^{re.escape(title)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)", card, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_finetune_writes_a_card_with_labels_sizes_and_metrics(run):
    card = (run / "checkpoint" / "README.md").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    task = section(card, "## Task and labels")
    for label in ("neutral", "happy", "sad", "angry", "surprised", "fearful"):
        assert f"`{label}`" in task
    assert "labels (6)" in task and "single_label" in task
    data = section(card, "## Data")
    assert "| train | 16 |" in data and "| val | 6 |" in data and "| test | 6 |" in data
    assert "SynthEmo" in data  # says the numbers are on synthetic data
    val = section(card, "### Validation")
    best = next(h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"])
    assert f"| macro_f1 | {best['val_macro_f1']:.4f} |" in val
    assert f"| loss | {best['val_loss']:.4f} |" in val
    test = section(card, "### Test")
    assert "6 videos, N_test = 3" in test
    for how in ("mean", "max", "lse"):
        rep = metrics["test"]["reports"][how]
        assert f"| {how} | {rep['accuracy']:.4f} |" in test and f"{rep['macro_f1']:.4f}" in test
    lse_f1 = {c["label"]: c["f1"] for c in metrics["test"]["reports"]["lse"]["per_class"]}
    assert all(f"| {lab} | {f1:.4f} |" in test for lab, f1 in lse_f1.items())
    assert meta["test"]["num_samples"] == 6 and meta["split_sizes"] == {"train": 16, "val": 6, "test": 6}
    assert "clipbert-emo finetune -q data.frame_size=32" in section(card, "## Training")
    assert "Not for decisions about people" in section(card, "## Intended use and limits")
    config = yaml.safe_load(section(card, "## Config (resolved)").split("```yaml\n")[1].split("```")[0])
    assert config == yaml.safe_load((run / "checkpoint" / "config.yaml").read_text())
    assert not list((run / "checkpoint").glob(".*"))  # the card and meta.json were replaced atomically


def test_resumable_state_folder_has_a_card_too(run):
    card = (run / "last" / "README.md").read_text()
    assert "| train | 16 |" in card and "labels (6)" in card
    assert "card of the run's checkpoint/ folder" in section(card, "### Validation")


def test_card_of_a_folder_without_test_or_validation(tmp_path):
    from clipbert_emo.config import load_config
    from clipbert_emo.model_card import render_model_card

    cfg = load_config(None, [*TINY_OVERRIDES, "data.train_manifest=/data/mine/train.jsonl", "data.labels=[calm,tense]"])
    card = render_model_card(cfg, {"epoch": 3, "step": 30, "split_sizes": {"train": 40}, "command": "x"})
    assert "`calm`, `tense`" in card and "| train | 40 |" in card
    assert "No validation split" in card and "had no test split" in card and "SynthEmo" not in card
    card = render_model_card(cfg, {"kind": "pretraining", "epoch": 1})
    assert "no emotion head" in card and "## Metrics" not in card
