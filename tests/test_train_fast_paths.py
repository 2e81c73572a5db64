"""Training precision and fast paths (train.mixed_precision, model.channels_last, optim.adamw_kernel): what each
changes in what a run computes, on the tiny model for 20 optimizer steps (16 SynthEmo videos, batch 4, 5 epochs,
no validation). Speed is measured by ``clipbert-emo bench train --fast-paths`` (docs/performance.md), never here.

- bf16 autocast really runs the forward in bf16 (convolutions and linear layers return bf16; weights stay fp32)
  and keeps every step's loss within BF16_ATOL of fp32's;
- a memory layout or an AdamW kernel changes only float rounding: every step's loss within FLOAT_ATOL of the
  plain run's (a real change of what is computed moves a loss by orders of magnitude more);
- train.mixed_precision=auto is bf16 only on a chip that computes bf16 natively, fp32 elsewhere; the default
  (no) is fp32 everywhere, so tests/test_engine.py's golden losses hold as recorded.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from clipbert_emo.config import load_config
from clipbert_emo.train.finetune import finetune
from clipbert_emo.train.observers import RunObserver
from support import TINY_OVERRIDES

STEPS = 20  # 16 training videos / batch 4 = 4 steps per epoch, 5 epochs
# bf16 keeps 8 bits of mantissa (~3 significant digits). Over these 20 steps (losses ~1.79) its per-step losses
# differed from fp32's by at most 7.5e-4 (AMD EPYC, AVX512-BF16); 0.01 (0.6% of the loss) leaves room for other
# CPUs' kernels, and a run that is not the same training (another batch, another dropout mask) moves more.
BF16_ATOL = 0.01
# fp32 in another layout or with another AdamW kernel sums in another order: measured here, channels_last 3.6e-7,
# fused 1.2e-7, foreach 0 (bit-identical to the loop) at most over the 20 steps. 1e-4 allows other CPUs' kernels
# and stays 7x below bf16's differences.
FLOAT_ATOL = 1e-4


class DtypeProbe(RunObserver):
    """Records the output dtype of the model's first convolution and first linear layer in the first training
    forward: what autocast (accelerate's, under train.mixed_precision=bf16) really computed in."""

    def __init__(self):
        self.seen: dict[str, torch.dtype] = {}
        self.param_dtypes: set[torch.dtype] = set()

    def on_start(self, engine):
        model = engine.model
        self.param_dtypes = {p.dtype for p in model.parameters()}
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        for name, module in (("conv", conv), ("linear", linear)):
            module.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args, out):  # returns None: the output is left as it is
            self.seen.setdefault(name, out.dtype)

        return hook


def _run(synthemo_dir, out, *more, observers=()):
    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={synthemo_dir / 'train.jsonl'}",
                             "data.val_manifest=", "data.test_manifest=", f"train.output_dir={out}",
                             "train.epochs=5", *more])
    return finetune(cfg, progress=False, observers=observers)


@pytest.fixture(scope="module")
def fp32_run(synthemo_dir, tmp_path_factory):
    probe = DtypeProbe()
    metrics = _run(synthemo_dir, tmp_path_factory.mktemp("fp32") / "run", observers=[probe])
    assert len(metrics["step_losses"]) == STEPS
    return metrics, probe


def _max_diff(a, b):
    assert len(a) == len(b) == STEPS
    return max(abs(x - y) for x, y in zip(a, b))


def test_bf16_autocasts_the_forward_and_tracks_the_fp32_losses(fp32_run, synthemo_dir, tmp_path):
    fp32, fp32_probe = fp32_run
    probe = DtypeProbe()
    bf16 = _run(synthemo_dir, tmp_path / "bf16", "train.mixed_precision=bf16", observers=[probe])
    assert fp32_probe.seen == {"conv": torch.float32, "linear": torch.float32}
    assert probe.seen == {"conv": torch.bfloat16, "linear": torch.bfloat16}, "accelerate did not autocast"
    assert probe.param_dtypes == {torch.float32}  # autocast: bf16 compute over fp32 weights and optimizer state
    diff = _max_diff(bf16["step_losses"], fp32["step_losses"])
    assert 0 < diff <= BF16_ATOL, f"bf16 vs fp32: max per-step loss difference {diff}"


@pytest.mark.parametrize("override", ["model.channels_last=true", "optim.adamw_kernel=foreach",
                                      "optim.adamw_kernel=fused"])
def test_a_layout_or_optimizer_kernel_changes_only_float_rounding(fp32_run, synthemo_dir, tmp_path, override):
    fp32, _ = fp32_run
    fast = _run(synthemo_dir, tmp_path / "fast", override)
    diff = _max_diff(fast["step_losses"], fp32["step_losses"])
    assert diff <= FLOAT_ATOL, f"{override}: max per-step loss difference {diff}"


def test_the_optimizer_kernels_are_the_ones_asked_for(monkeypatch):
    from clipbert_emo.train import optim
    from clipbert_emo.train.optim import adamw_kernel_kwargs

    assert adamw_kernel_kwargs("for_loop") == {"foreach": False, "fused": False}
    assert adamw_kernel_kwargs("foreach") == {"foreach": True}
    assert adamw_kernel_kwargs("fused") == {"fused": True}
    monkeypatch.setattr(optim.torch.cuda, "is_available", lambda: False)
    assert adamw_kernel_kwargs("auto") == {}  # torch's own choice on a CPU: the loop the golden losses ran
    monkeypatch.setattr(optim.torch.cuda, "is_available", lambda: True)
    assert adamw_kernel_kwargs("auto") == {"fused": True}


def test_auto_precision_is_bf16_only_where_the_cpu_computes_bf16(monkeypatch):
    from clipbert_emo.train import accelerator as acc

    monkeypatch.setattr(acc.torch.cuda, "is_available", lambda: False)
    cfg = load_config(None, ["train.mixed_precision=auto"])
    monkeypatch.setattr(acc, "_cpu_flags", lambda: {"avx2", "avx512_f", "avx512_bw"})  # AVX-512 without BF16
    assert not acc.cpu_bf16_supported()
    assert acc.resolve_mixed_precision("auto", cuda=False) == "no"
    assert acc.make_accelerator(cfg).mixed_precision == "no"
    for flag in ("avx512_bf16", "amx_bf16", "bf16"):  # x86's two, Arm's
        monkeypatch.setattr(acc, "_cpu_flags", lambda flag=flag: {"avx2", flag})
        assert acc.resolve_mixed_precision("auto", cuda=False) == "bf16"
    assert acc.make_accelerator(cfg).mixed_precision == "bf16"
    monkeypatch.setattr(acc.torch.backends.mkldnn, "is_available", lambda: False)  # no oneDNN: no bf16 kernels
    assert acc.resolve_mixed_precision("auto", cuda=False) == "no"
    # explicit values are taken as given, and the default stays fp32 whatever the CPU
    assert [acc.resolve_mixed_precision(v, cuda=False) for v in ("no", "bf16")] == ["no", "bf16"]
    assert load_config(None, []).train.mixed_precision == "no"


def test_auto_precision_on_a_gpu_follows_its_bf16_support(monkeypatch):
    from clipbert_emo.train import accelerator as acc

    monkeypatch.setattr(acc.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert acc.resolve_mixed_precision("auto", cuda=True) == "bf16"
    monkeypatch.setattr(acc.torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert acc.resolve_mixed_precision("auto", cuda=True) == "no"


def test_the_cpu_flags_come_from_torch_or_the_kernel(monkeypatch):
    from clipbert_emo.train import accelerator as acc

    monkeypatch.setattr(acc.torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": False,
                                                                    "num_sockets": 1}, raising=False)
    assert acc._cpu_flags() == {"avx512_bf16"}
    monkeypatch.delattr(acc.torch.cpu, "get_capabilities", raising=False)  # an older torch: /proc/cpuinfo's flags
    flags = acc._cpu_flags()
    assert isinstance(flags, set)


def test_bench_fast_paths_rows_and_curves(synthemo_dir, tmp_path):
    """The benchmark's own logic on the tiny model: a row per variant with its loss difference from fp32 (0 for
    a loader change, which must not change the batches), the JSON and the curves' PNG."""
    from clipbert_emo.experiments.bench_train import bench_train_fast_paths

    out = tmp_path / "fast.json"
    overrides = [*TINY_OVERRIDES, "model.pretrained=false", "train.batch_size=4"]
    args = argparse.Namespace(variants="bf16,fp32+workers2", warmup=1, steps=2, batch_size=4, repeat=1, threads=1,
                              data=str(synthemo_dir), config=None, overrides=overrides, curve_epochs=1,
                              out=str(out), quiet=True)
    bench_train_fast_paths(args)
    saved = json.loads(out.read_text())
    rows = {r["variant"]: r for r in saved["rows"]}
    assert list(rows) == ["fp32", "bf16", "fp32+workers2"]
    assert all(r["step_s"] > 0 and r["samples_per_s"] > 0 for r in rows.values())
    assert rows["fp32"]["speedup_vs_fp32"] == pytest.approx(1.0)
    assert rows["fp32+workers2"]["max_loss_diff"] == 0.0  # the same batches whichever process decodes them
    assert rows["bf16"]["max_loss_diff"] > 0  # bf16 ran (its size is test_bf16_autocasts_the_forward_...'s check)
    assert len(saved["runs"]["fp32"][0]["durations"]) == 3  # warm-up + timed steps
    assert (tmp_path / "fast_curves.png").stat().st_size > 0
    assert set(saved["curves"]) == {"fp32", "bf16", "fp32+channels_last"}
    assert saved["curves"]["bf16"]["max_step_loss_diff"] > 0 and saved["curves"]["bf16"]["step_losses"]
