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

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, InitProcessGroupKwargs

logger = logging.getLogger(__name__)


def deepspeed_requested() -> bool:
    """True when the launcher asked for DeepSpeed (``--use_deepspeed`` or a DeepSpeed accelerate config)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def _cpu_fp16_supported() -> bool:
    # What DeepSpeed's CPU accelerator asks before it accepts fp16 (oneDNN half-precision kernels).
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except Exception:
        return False


# The CPU flags of native bf16 arithmetic: x86's AVX512-BF16 and AMX-BF16, Arm's BF16 (NEON or SVE). Without them
# oneDNN still runs bf16 (AVX-512 CPUs convert in software), but slower than fp32: "auto" must not pick it there.
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as torch sees them (torch.cpu.get_capabilities, torch >= 2.8), else the kernel's."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return {name for name, value in get().items() if value is True}
        except Exception:  # a platform cpuinfo does not know: fall back to the kernel's list
            pass
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("flags", "Features"))]
    except OSError:
        return set()
    return {flag for line in lines[:1] for flag in line.split(":", 1)[-1].split()}


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 in hardware and torch's oneDNN kernels (which autocast's bf16 convolutions
    and matrix products run on) are built in: detected from the CPU's flags, never assumed."""
    return torch.backends.mkldnn.is_available() and bool(_cpu_flags() & set(_CPU_BF16_FLAGS))


def resolve_mixed_precision(mixed_precision: str, cuda: bool) -> str:
    """train.mixed_precision as accelerate takes it: "auto" becomes bf16 where the device computes bf16 natively
    (a GPU that reports bf16 support, a CPU with cpu_bf16_supported()), "no" (fp32) elsewhere; other values
    pass through."""
    if mixed_precision != "auto":
        return mixed_precision
    supported = torch.cuda.is_bf16_supported() if cuda else cpu_bf16_supported()
    return "bf16" if supported else "no"


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
    precision = resolve_mixed_precision(cfg.train.mixed_precision, cuda)
    if cfg.train.mixed_precision == "auto":
        logger.info("train.mixed_precision=auto: %s on this %s", "bf16 autocast" if precision == "bf16" else "fp32",
                    "GPU" if cuda else "CPU")
    elif precision == "bf16" and not cuda and not cpu_bf16_supported():
        logger.warning("train.mixed_precision=bf16 on a CPU without bf16 instructions (AVX512-BF16, AMX-BF16, Arm "
                       "BF16): oneDNN emulates them, which is usually slower than fp32")
    check_precision(precision, cuda, deepspeed)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # accelerate keeps one process-wide state and refuses a second Accelerator with another precision;
        # in a single process (a notebook, the test suite) each run starts from its own config instead.
        # Never under a launcher: there the state holds the process group.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    # On a CPU, accelerate's bf16 wraps the model's forward in torch.autocast("cpu", torch.bfloat16): convolutions
    # and matrix products run in bf16, weights, gradients and optimizer state stay fp32.
    common = dict(mixed_precision=precision, gradient_accumulation_steps=cfg.train.grad_accum_steps)
    if cfg.train.log_with:  # accelerate's trackers (train/tracking.py starts them); file-writing ones log here
        from ..config import tracker_names
        from .tracking import tracking_dir

        common.update(log_with=tracker_names(cfg.train.log_with), project_dir=str(tracking_dir(cfg)))
    if deepspeed:
        handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]
        accelerator = _Accelerator(kwargs_handlers=handlers, **common)
        _fill_deepspeed_auto(accelerator, cfg)
        return _joined(accelerator)
    # A text-only model never touches the visual embeddings of the fusion transformer; DDP must be told,
    # or the second step fails waiting for their gradients. (The search costs a graph walk per step,
    # so it is off when every parameter is used.) The other fusion strategies (model.fusion) use every parameter
    # in every step, modality dropout included (a dropped modality is masked, not skipped); hybrid carries the
    # early model's visual embeddings and needs the search in the same case (tests/test_fusion_strategies.py).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=not cfg.data.use_video)
    # Batches come from pinned memory on a GPU (data/loading.py): copied without blocking, the copy overlaps the
    # previous step's kernels.
    from accelerate.utils import DataLoaderConfiguration

    return _joined(Accelerator(cpu=not cuda, kwargs_handlers=[ddp],
                               dataloader_config=DataLoaderConfiguration(non_blocking=cuda), **common))


def _joined(accelerator: Accelerator) -> Accelerator:
    """Every process of a launch says, in the log, that it joined (the log format names its rank and machine)."""
    if accelerator.num_processes > 1:
        logger.info("joined a %s run of %d processes, on %s", accelerator.distributed_type.value,
                    accelerator.num_processes, accelerator.device)
    return accelerator


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

    accelerate fills gradient accumulation (from the Accelerator) and fp16/bf16 (from mixed_precision) in
    ``prepare``; the micro-batch size it would read from the train loader (not every loader has one), and gradient
    clipping it would set to 1.0, so they are taken from ``train.batch_size`` and ``optim.grad_clip`` here
    (0 = no clipping, as without DeepSpeed).
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:  # accelerate fell back to another layout; nothing to fill
        return
    # accelerate reads the micro-batch from the train loader's batch_size, which a loader built on a batch sampler
    # (pretraining's mixed-source batches) does not have, and then refuses to start; it is train.batch_size.
    plugin.fill_match("train_micro_batch_size_per_gpu", must_match=False,
                      train_micro_batch_size_per_gpu=int(cfg.train.batch_size))
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
