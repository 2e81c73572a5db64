"""Golden losses: short fixed-seed runs of every task kind and of pretraining reproduce recorded per-step losses.

The numbers in ``golden_losses.json`` were recorded before the engine/task redesign and pin the training
behaviour: a refactor that changes what a run computes (data order, clips, dropout masks, loss, schedule)
shows up here as a mismatch. Re-record only for a deliberate, named change:

    GOLDEN_UPDATE=1 .venv/bin/python -m pytest -q tests/test_engine.py

The runs, the recorded numbers' tolerances and the comparison: tests/support/golden.py.
"""

from __future__ import annotations

import pytest

from support.golden import FINETUNE_RUNS, check_golden, finetune_record, pretrain_record


@pytest.mark.parametrize("name", list(FINETUNE_RUNS))
def test_finetune_losses_match_golden(name, synthemo_dir, tmp_path):
    check_golden(name, finetune_record(name, synthemo_dir, tmp_path))


def test_pretrain_losses_match_golden(pairs_dir, tmp_path):
    check_golden("pretrain", pretrain_record(pairs_dir, tmp_path))
