"""What stays correct across processes: saving the full weights (ZeRO-3 gathers them), keeping every rank's
BatchNorm statistics the ones that get saved, and a checksum that shows the replicas are identical."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from .accelerator import zero_stage


class _SavedModel:
    """The unwrapped model for ``save_checkpoint``, whose ``state_dict()`` is the gathered full one.

    Under ZeRO-3 each rank holds a slice of every parameter, so ``module.state_dict()`` would write
    empty tensors; everything else (num_labels, config, uses_video) is read from the module itself.
    """

    def __init__(self, module: torch.nn.Module, state: dict):
        self._module = module
        self._state = state

    def state_dict(self) -> dict:
        return self._state

    def __getattr__(self, name):
        return getattr(self._module, name)


def model_for_saving(accelerator: Accelerator, model):
    """What to pass to ``save_checkpoint`` on the main process.

    Every rank must call this at the same point: under ZeRO-3 it gathers the full weights (a
    collective; DeepSpeed's ``stage3_gather_16bit_weights_on_model_save`` must be true, as in
    configs/deepspeed/zero3.json). Elsewhere it returns the unwrapped model at no cost. Ranks other
    than the main one get None under ZeRO-3 and must not save.
    """
    module = accelerator.unwrap_model(model)
    if zero_stage(accelerator) != 3:
        return module
    state = accelerator.get_state_dict(model)  # every rank joins the gather; rank 0 gets the weights
    if not accelerator.is_main_process:
        return None
    return _SavedModel(module, {k: v.detach().cpu() for k, v in state.items()})


@torch.no_grad()
def sync_buffers(accelerator: Accelerator, model) -> None:
    """Give every rank the main process's buffers (BatchNorm running statistics).

    In training mode BatchNorm normalises with the batch's own statistics, and each rank updates its
    running statistics from its own shard. DDP copies rank 0's buffers to the others at the start of
    each forward; DeepSpeed never does, so without this the ranks would validate with different
    running statistics than the checkpoint (written from rank 0) holds. Every rank must call it.
    """
    if accelerator.num_processes == 1:
        return
    for buf in accelerator.unwrap_model(model).buffers():
        torch.distributed.broadcast(buf.data, src=0)


@torch.no_grad()
def param_checksum(accelerator: Accelerator, model) -> torch.Tensor:
    """Sum of this rank's parameters and saved floating buffers in float64: equal across ranks when in sync.

    Under ZeRO-3 the parameters are gathered first (each rank would otherwise sum its own slice);
    every rank must call it.
    """
    module = accelerator.unwrap_model(model)
    params = list(module.parameters())
    # Persistent buffers only (BatchNorm statistics): exactly the floating tensors a checkpoint holds.
    buffers = [b for m in module.modules() for name, b in m._buffers.items()
               if b is not None and b.is_floating_point() and name not in m._non_persistent_buffers_set]

    def total() -> torch.Tensor:
        return torch.stack([t.detach().double().sum() for t in params + buffers]).sum()

    if zero_stage(accelerator) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return total()
    return total()
