"""How many CPU threads inference uses: a process-wide policy that does not oversubscribe the cores.

torch starts one OpenMP thread per physical core. On a machine where other processes keep the cores busy,
every parallel region then waits for its slowest thread: on the project's 2 shared cores, prediction's forward
pass ran up to 42x slower with torch's 2 threads than with 1. The default here counts the cores this process
may run on and leaves out those the load average says are busy; ``--threads N`` (or OMP_NUM_THREADS) decides
instead.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores not already kept busy by other processes (1-minute load average), at least 1."""
    cores = available_cores()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads for this process: ``threads``, else OMP_NUM_THREADS when set, else
    ``default_threads()``. Returns the number set. Inter-op threads go to 1 (inference has no parallel
    branches to run) where torch still allows changing them."""
    import torch

    if threads is not None and threads < 1:
        from .config import UserError

        raise UserError(f"threads must be >= 1, got {threads}")
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else default_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before the first parallel work of the process
        pass
    return threads
