"""The process layout a run trains under, and what the training loop needs to stay correct in each.

The launcher chooses the layout; recipes and configs do not change:

- one process (``clipbert-emo finetune``): one GPU, or the CPU;
- several processes from ``accelerate launch --multi_gpu`` (DDP): NCCL on GPUs, gloo on CPUs;
- DeepSpeed ZeRO stage 1/2/3 from ``accelerate launch --use_deepspeed --deepspeed_config_file
  configs/deepspeed/zeroN.json`` (the launcher sets ``ACCELERATE_USE_DEEPSPEED=true``).

Values that exist both in our config and in DeepSpeed's JSON (micro-batch size, gradient
accumulation, gradient clipping, fp16/bf16) are "auto" in the JSON and filled from our config,
so each is set in one place.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, InitProcessGroupKwargs

logger = logging.getLogger(__name__)

DEEPSPEED_STATE = "deepspeed_state"  # folder beside output_dir/last with DeepSpeed's per-rank shards


def deepspeed_requested() -> bool:
    """True when the launcher asked for DeepSpeed (``--use_deepspeed`` or a DeepSpeed accelerate config)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def _cpu_fp16_supported() -> bool:
    # What DeepSpeed's CPU accelerator asks before it accepts fp16 (oneDNN half-precision kernels).
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except Exception:
        return False


def check_precision(mixed_precision: str, cuda: bool, deepspeed: bool) -> None:
    """Refuse precision settings that would not do what they say on this machine."""
    if mixed_precision != "fp16" or cuda:
        return
    if deepspeed and _cpu_fp16_supported():
        return  # DeepSpeed runs fp16 (with its own loss scaler) on CPUs whose oneDNN has fp16 kernels
    # accelerate turns fp16 on a CPU into plain fp32 without a word (no autocast, no grad scaler); a run
    # that claims fp16 must not silently be fp32.
    from ..config import ConfigError  # a ValueError; the CLI prints it as one line

    raise ConfigError(
        "train.mixed_precision=fp16 needs a GPU: on a CPU accelerate would silently train in fp32 (no autocast, "
        "no grad scaler)" + (" and this CPU has no fp16 kernels for DeepSpeed" if deepspeed else "") +
        ". Use train.mixed_precision=bf16 or train.mixed_precision=no on a CPU.")


def make_accelerator(cfg) -> Accelerator:
    """The Accelerator for the layout the launcher chose (see the module docstring).

    - DDP on CPUs needs ``cpu=True``: without it each process trains on its own, undistributed.
    - DeepSpeed must not get ``cpu=True`` (accelerate then drops DeepSpeed without a word); on a
      machine without CUDA its process group is gloo, which DeepSpeed runs ZeRO 1-3 over.
    """
    cuda = torch.cuda.is_available()
    deepspeed = deepspeed_requested()
    check_precision(cfg.train.mixed_precision, cuda, deepspeed)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # accelerate keeps one process-wide state and refuses a second Accelerator with another precision;
        # in a single process (a notebook, the test suite) each run starts from its own config instead.
        # Never under a launcher: there the state holds the process group.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    common = dict(mixed_precision=cfg.train.mixed_precision, gradient_accumulation_steps=cfg.train.grad_accum_steps)
    if deepspeed:
        handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
        accelerator = _Accelerator(kwargs_handlers=handlers, **common)
        _fill_deepspeed_auto(accelerator, cfg)
        return accelerator
    # A text-only model never touches the visual embeddings of the fusion transformer; DDP must be told,
    # or the second step fails waiting for their gradients. (The search costs a graph walk per step,
    # so it is off when every parameter is used.)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=not cfg.data.use_video)
    return Accelerator(cpu=not cuda, kwargs_handlers=[ddp], **common)


class _Accelerator(Accelerator):
    """accelerate's Accelerator, plus one fix for DeepSpeed's 16-bit modes (see ``_inputs_follow_weights``)."""

    def prepare(self, *args, device_placement=None):
        result = super().prepare(*args, device_placement=device_placement)
        if deepspeed_half_dtype(self) is not None:
            for obj in result if isinstance(result, tuple) else (result,):
                if isinstance(obj, torch.nn.Module):
                    _inputs_follow_weights(self.unwrap_model(obj))
        return result


def deepspeed_half_dtype(accelerator: Accelerator) -> torch.dtype | None:
    """float16/bfloat16 when DeepSpeed keeps the module's weights in that type; None otherwise."""
    if not uses_deepspeed(accelerator):
        return None
    cfg = accelerator.state.deepspeed_plugin.deepspeed_config
    for key, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if str(cfg.get(key, {}).get("enabled", False)).lower() == "true":
            return dtype
    return None


def _cast_floating_inputs(module: torch.nn.Module, args, kwargs):
    dtype = next(module.parameters(recurse=False)).dtype
    for name, buf in module.named_buffers(recurse=False):
        # DeepSpeed casts parameters, not buffers: BatchNorm's running statistics follow their weights too.
        if buf is not None and buf.is_floating_point() and buf.dtype != dtype:
            setattr(module, name, buf.to(dtype))

    def cast(x):
        return x.to(dtype) if torch.is_tensor(x) and x.is_floating_point() and x.dtype != dtype else x

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _inputs_follow_weights(module: torch.nn.Module) -> None:
    """Cast each weighted submodule's floating inputs to its weights' type, when they differ.

    DeepSpeed's fp16/bf16 modes turn the module's weights 16-bit (fp32 master copies stay in the
    optimizer) and cast nothing else, while the model makes fp32 tensors itself (pixels are normalised
    in fp32), so the first convolution would fail on mismatched types. Only modules that own floating
    parameters get the hook: the top-level forward (labels, masks) is left alone. Idempotent.
    """
    if getattr(module, "_clipbert_inputs_follow_weights", False):
        return
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if own and all(p.is_floating_point() for p in own):
            sub.register_forward_pre_hook(_cast_floating_inputs, with_kwargs=True)
    module._clipbert_inputs_follow_weights = True


def _fill_deepspeed_auto(accelerator: Accelerator, cfg) -> None:
    """Fill the "auto" values accelerate does not take from our config itself.

    accelerate fills the micro-batch size (from the train loader), gradient accumulation (from the
    Accelerator) and fp16/bf16 (from mixed_precision) in ``prepare``; gradient clipping it would set
    to 1.0, so it is taken from ``optim.grad_clip`` here (0 = no clipping, as without DeepSpeed).
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:  # accelerate fell back to another layout; nothing to fill
        return
    if plugin.is_auto("gradient_clipping"):
        plugin.fill_match("gradient_clipping", must_match=False, gradient_clipping=float(cfg.optim.grad_clip))
        plugin.gradient_clipping = float(cfg.optim.grad_clip)
    else:
        value = plugin.get_value("gradient_clipping")
        if value is not None and float(value) != float(cfg.optim.grad_clip) and accelerator.is_main_process:
            logger.warning("DeepSpeed config sets gradient_clipping=%s, overriding optim.grad_clip=%s; "
                           "set it to \"auto\" to use the experiment config", value, cfg.optim.grad_clip)


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator: Accelerator) -> int:
    """ZeRO stage of a DeepSpeed run; -1 without DeepSpeed."""
    if not uses_deepspeed(accelerator):
        return -1
    return int(accelerator.state.deepspeed_plugin.zero_stage)


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


def unwrapped_state_dict(accelerator: Accelerator, model) -> dict | None:
    """The full state dict on the main process (None on the others); every rank must call it."""
    saved = model_for_saving(accelerator, model)
    return None if saved is None else saved.state_dict()


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


# ---------------------------------------------------------------------------------------------------
# Resumable state. Without DeepSpeed the optimizer's state_dict is complete on every rank and goes into
# output_dir/last/training_state.pt. Under DeepSpeed each rank holds a shard of the optimizer state (and
# under ZeRO-3 of the weights), so each rank writes its shard with DeepSpeed's own checkpointing into
# output_dir/deepspeed_state/step_<N>; last/training_state.pt names the folder it belongs to.


def optimizer_state_for_resume(accelerator: Accelerator, model, optimizer, out_dir: Path, step: int) -> dict:
    """The optimizer part of training_state (``{"optimizer": ...}`` or ``{"deepspeed_state": name}``).

    Every rank must call it (under DeepSpeed every rank writes its shard). The folder is written under
    a temporary name and renamed once every rank has finished, so a folder named step_<N> is complete.
    """
    if not uses_deepspeed(accelerator):
        return {"optimizer": optimizer.state_dict()}
    root = Path(out_dir) / DEEPSPEED_STATE
    name = f"step_{step}"
    tmp = root / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    # The LambdaLR schedule stays in training_state.pt (DeepSpeed does not own it), so only the engine's
    # module and optimizer shards are written here.
    model.save_checkpoint(str(tmp), tag="state", save_latest=False)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return {"optimizer": None, "deepspeed_state": name}


def prune_deepspeed_states(accelerator: Accelerator, out_dir: Path, keep: str | None) -> None:
    """After last/ names ``keep``, drop older DeepSpeed shard folders (main process only)."""
    if not uses_deepspeed(accelerator) or not accelerator.is_main_process or not keep:
        return
    root = Path(out_dir) / DEEPSPEED_STATE
    for d in root.glob("step_*"):
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)


def load_optimizer_for_resume(accelerator: Accelerator, model, optimizer, state: dict, out_dir: Path) -> None:
    """Restore what ``optimizer_state_for_resume`` saved, in the same layout it was saved in."""
    ds_name = state.get("deepspeed_state")
    if uses_deepspeed(accelerator):
        if not ds_name:
            raise RuntimeError(
                f"{out_dir}/last was written without DeepSpeed; its optimizer state cannot be split into ZeRO "
                "shards. Resume it with the launcher it was started with, or start a new run from its weights "
                f"with train.init_checkpoint={out_dir}/last")
        folder = Path(out_dir) / DEEPSPEED_STATE / ds_name
        if not folder.exists():
            raise RuntimeError(f"{folder} is missing: last/ belongs to DeepSpeed shards that are not there")
        load_path, _ = model.load_checkpoint(str(folder), tag="state", load_optimizer_states=True,
                                             load_lr_scheduler_states=False)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load {folder} (was it written with another ZeRO stage "
                               "or number of processes?)")
        return
    if ds_name or state.get("optimizer") is None:
        raise RuntimeError(
            f"{out_dir}/last was written under DeepSpeed (optimizer shards in {DEEPSPEED_STATE}/); resume it "
            "under the same DeepSpeed launch, or start a new run from its weights with "
            f"train.init_checkpoint={out_dir}/last")
    optimizer.load_state_dict(state["optimizer"])


# ---------------------------------------------------------------------------------------------------
# Non-finite losses.


class NonFiniteLossError(FloatingPointError):
    pass


def loss_scaling(accelerator: Accelerator) -> bool:
    """True when a dynamic loss scaler is active (fp16): it skips steps whose gradients overflow."""
    if accelerator.scaler is not None:
        return True
    if uses_deepspeed(accelerator):
        return bool(str(accelerator.state.deepspeed_plugin.get_value("fp16.enabled", False)).lower() == "true")
    return False


class NonFiniteGuard:
    """Stops a run on a non-finite loss, or lets the fp16 loss scaler skip the step and counts it.

    Without a loss scaler a NaN/inf loss is raised before backward, so no weight, optimizer state or
    checkpoint is touched: output_dir/last keeps the state of the last save. With fp16 loss scaling an
    overflow is routine (the scaler lowers its scale and skips that optimizer step); each skip is
    logged with its step and counted (``overflow_skipped_steps`` in metrics.json).

    Under several processes the ranks agree on the verdict (one tiny all-gather per micro-step), so
    either all of them stop or none does: a rank that stopped alone would leave the others waiting in
    the next collective until the process group times out.
    """

    def __init__(self, accelerator: Accelerator, scaling: bool | None = None):
        self.accelerator = accelerator
        self.scaling = loss_scaling(accelerator) if scaling is None else scaling
        self.skipped_steps: list[int] = []

    def bad_ranks(self, loss: torch.Tensor) -> list[int]:
        """Ranks whose loss is NaN/inf at this micro-step (a collective under several processes)."""
        ok = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.accelerator.num_processes > 1:
            ok = self.accelerator.gather(ok.to(self.accelerator.device))
        return [rank for rank, flag in enumerate(ok.cpu().tolist()) if flag == 0]

    def check_loss(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        """Call before backward on every rank. ``step`` is the number of optimizer steps done so far."""
        if self.scaling:
            return  # the scaler sees the inf/NaN gradients and skips the step; after_step reports it
        bad = self.bad_ranks(loss)
        if not bad:
            return
        value = loss.detach().float().item()
        where = f" ({value})" if self.accelerator.num_processes == 1 else f" on rank(s) {bad} (this rank: {value})"
        raise NonFiniteLossError(
            f"non-finite loss{where} at epoch {epoch}, optimizer step "
            f"{step + 1}: the step was not taken and nothing was saved, so output_dir/last still holds the last "
            "saved state. Lower optim.lr_transformer / optim.lr_cnn (or raise optim.warmup_ratio), keep "
            "optim.grad_clip > 0, or use train.mixed_precision=no instead of bf16; with fp16 on a GPU the loss "
            "scaler skips such steps instead. Then rerun (train.resume=true continues from output_dir/last).")

    def after_step(self, optimizer, step: int) -> bool:
        """Call after the optimizer step at a gradient-sync boundary; True when the scaler skipped it."""
        if not getattr(optimizer, "step_was_skipped", False):
            return False
        self.skipped_steps.append(step)
        if self.accelerator.is_main_process:
            logger.warning("fp16 gradient overflow at optimizer step %d: the loss scaler skipped this step and "
                           "lowered its scale (%d step(s) skipped so far)", step, len(self.skipped_steps))
        return True


__all__ = ["make_accelerator", "deepspeed_requested", "check_precision", "uses_deepspeed", "zero_stage",
           "model_for_saving", "unwrapped_state_dict", "param_checksum", "sync_buffers", "optimizer_state_for_resume",
           "prune_deepspeed_states", "load_optimizer_for_resume", "NonFiniteGuard", "NonFiniteLossError",
           "loss_scaling", "DEEPSPEED_STATE"]
