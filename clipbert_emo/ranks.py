"""Inference across the processes of ``accelerate launch`` (or torchrun): whether this process is one of several,
the launch's process group (accelerate's PartialState, from the launcher's environment: no rendezvous of our
own), and each rank's device and share of the machine's CPU.

Used by ``predict`` (cli/predict_parts.py) and ``search`` (its feature cache); ``evaluate`` goes through an
Accelerator instead.
"""

from __future__ import annotations

import os
from datetime import timedelta

# How long a rank waits for the others at a barrier. torch's default (30 min) can be too short for rank 0's
# walk of a large corpus on a network file system while the others wait; a rank that dies ends the launch
# sooner anyway (the launcher stops the others).
BARRIER_TIMEOUT = timedelta(hours=2)


def launched() -> bool:
    """Whether this process is one rank of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_state(device: str | None = None):
    """accelerate's PartialState of this launch (its process group). On CPUs (no CUDA, or ``device`` cpu) it must
    be told so: otherwise accelerate leaves every process on its own, each doing all the work."""
    import torch
    from accelerate import PartialState

    cpu = not torch.cuda.is_available() or (device or "").startswith("cpu")
    return PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)


def rank_device(state, device: str | None = None) -> str:
    """``device`` when given, else this rank's own GPU (cuda:<local rank>) or the CPU."""
    if device:
        return device
    return "cpu" if state.device.type == "cpu" else str(state.device)


def _local_ranks() -> int:
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))


def rank_threads() -> int:
    """torch threads for one rank on CPU: the free cores (runtime.default_threads) shared among this machine's
    ranks, and no more than OMP_NUM_THREADS (which accelerate launch sets for each rank)."""
    from .runtime import default_threads

    share = max(1, default_threads() // _local_ranks())
    env = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(env)) if env.isdigit() and int(env) > 0 else share


def rank_workers() -> int:
    """Background decoding processes for one rank by default: predict's up to 4, within the rank's share of the
    cores."""
    from .runtime import available_cores

    return min(4, max(1, available_cores() // _local_ranks()))
