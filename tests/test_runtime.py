"""The inference thread policy (clipbert_emo/runtime.py)."""

import pytest
import torch

from clipbert_emo.config import UserError
from clipbert_emo.runtime import available_cores, default_threads, set_threads


def test_default_leaves_busy_cores_out(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (1.2, 0.0, 0.0))
    monkeypatch.setattr("clipbert_emo.runtime.available_cores", lambda: 4)
    assert default_threads() == 3
    monkeypatch.setattr("os.getloadavg", lambda: (11.0, 0.0, 0.0))
    assert default_threads() == 1  # never fewer than one
    assert 1 <= available_cores()


def test_set_threads_explicit_env_and_policy(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert set_threads(None) == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr("clipbert_emo.runtime.default_threads", lambda: 1)
        assert set_threads(None) == 1
        with pytest.raises(UserError, match="threads"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
