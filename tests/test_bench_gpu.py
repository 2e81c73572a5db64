"""``clipbert-emo bench gpu`` on tiny inputs: its smoke version on the CPU (every part's rows, the variants it was
told to skip), the original-ClipBERT part (no checkout, a checkout whose import fails, a stand-in that runs), and
the refusal without a CUDA device. The figures themselves belong in docs/performance.md, from a GPU."""

from __future__ import annotations

import argparse
import json
import textwrap

import pytest

from support import TINY_OVERRIDES

SMOKE = [*TINY_OVERRIDES, "model.num_layers=1"]


def _smoke_argv(synthemo_dir, tmp_path, *extra):
    return ["bench", "gpu", *SMOKE, "--device", "cpu", "--config", "synthemo_cpu",
            "--manifest", str(synthemo_dir / "train.jsonl"), "--shapes", "1x1", "--steps", "1", "--warmup", "1",
            "--batch-size", "2", "--workers", "0", "--peak-tflops", "100", "--videos", str(tmp_path / "videos"),
            "--out", str(tmp_path / "gpu.json"), "-q", *extra]


def test_smoke_run_has_every_part(synthemo_dir, tmp_path, monkeypatch, capsys):
    from clipbert_emo.cli import main

    monkeypatch.chdir(tmp_path)  # checkpoints, tokenizer and the like go under runs/bench
    assert main(_smoke_argv(synthemo_dir, tmp_path, "--variants", "fp32,bf16,bf16+channels_last")) == 0
    saved = json.loads((tmp_path / "gpu.json").read_text())
    assert saved["bench"] == "gpu" and saved["device"] == "cpu" and saved["smoke"] is True
    rows = saved["rows"]
    by = {(r["part"], r.get("variant")): r for r in rows}

    for variant in ("fp32", "bf16", "bf16+channels_last"):
        row = by[("train", variant)]
        assert row["status"] == "ok", row
        assert row["shape"] == "1x1" and row["workers"] == "cached"
        assert row["samples_per_s"] > 0 and row["step_s"] > 0 and row["warmup_s"] > 0
        assert row["gflop_per_step"] > 1e-3
        assert row["mfu_pct"] == pytest.approx(100 * row["gflop_per_s"] / (1000 * 100.0))
        assert "torch" in row["device"]
    assert by[("train", "fp32")]["precision"] == "no" and by[("train", "bf16")]["precision"] == "bf16"
    # the compile variant was left out by --variants: a row says so, nothing was timed
    compiled = by[("train", "bf16+channels_last+compile")]
    assert compiled["status"].startswith("skipped") and "samples_per_s" not in compiled
    assert any("skipped (--variants): bf16+channels_last+compile" in n for n in saved["notes"])

    wait = by[("data wait", "bf16+channels_last")]
    assert wait["status"] == "ok" and wait["workers"] == 0 and 0 <= wait["data_wait_pct"] <= 100
    assert wait["samples_per_s"] > 0

    for variant in ("fp32", "bf16", "bf16+channels_last"):
        infer = by[("infer", variant)]
        assert infer["status"] == "ok", infer
        assert infer["ms_per_video"] > 0 and infer["shape"].startswith("N_test=16, 15 s")

    (original,) = [r for r in rows if r["part"] == "original ClipBERT"]
    assert "git clone https://github.com/jayleicn/ClipBERT" in original["status"]
    assert "--clipbert-src" in original["status"]
    assert any("scaled_dot_product_attention" in n for n in saved["notes"])
    out = capsys.readouterr().out
    assert "original ClipBERT" in out and "ms_per_video" in out  # the table


def _args(tmp_path, src=None, python=None):
    return argparse.Namespace(clipbert_src=str(src) if src else None, clipbert_python=python,
                              out=str(tmp_path / "gpu.json"), quiet=True)


def _tiny_batches():
    import torch

    g = torch.Generator().manual_seed(0)
    return {"1x2": {"input_ids": torch.randint(1, 50, (2, 6), generator=g),
                    "attention_mask": torch.ones(2, 6, dtype=torch.long),
                    "video": torch.randint(0, 255, (2, 1, 2, 3, 32, 32), generator=g).to(torch.uint8),
                    "labels": torch.tensor([0, 3]), "index": torch.tensor([0, 1])}}


def _write(root, files: dict):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_original_row_names_the_missing_module(tmp_path):
    import torch

    from clipbert_emo.experiments.bench_gpu import original_rows
    from clipbert_emo.experiments.bench_model import bench_config

    cfg = bench_config("synthemo_cpu", SMOKE)
    # a checkout whose model module imports a package this interpreter lacks (as apex or horovod would be)
    src = _write(tmp_path / "ClipBERT", {"src/__init__.py": "", "src/modeling/e2e_model.py":
                                         "import clipbert_bench_missing_dependency\n"})
    (row,) = original_rows(_args(tmp_path, src), cfg, 100, _tiny_batches(), [], torch.device("cpu"), 1, 1, "cpu")
    assert row["missing"] == "clipbert_bench_missing_dependency"
    assert "missing: clipbert_bench_missing_dependency" in row["status"] and row["status"].startswith("not run")
    assert "ModuleNotFoundError" in row["error"]
    assert not (tmp_path / "gpu.batches.pt").exists(), "the batches handed to the child are removed"

    # a folder that is no checkout at all
    (row,) = original_rows(_args(tmp_path, tmp_path / "elsewhere"), cfg, 100, _tiny_batches(), [],
                           torch.device("cpu"), 1, 1, "cpu")
    assert "not a checkout" in row["status"] and "git clone" in row["status"]


# A stand-in for the original's modules with its interface (ClipBert(config, input_format, detectron2_model_cfg,
# transformer_cls), called with a dict; its AdamW): the child's timing loop runs end to end on a CPU.
_STAND_IN = {
    "src/__init__.py": "",
    "src/configs/base_model.json": json.dumps({"hidden_size": 768, "num_hidden_layers": 12, "vocab_size": 30522,
                                               "num_attention_heads": 12, "intermediate_size": 3072}),
    "src/modeling/modeling.py": """
        class ClipBertForSequenceClassification:
            pass
        """,
    "src/optimization/adamw.py": "from torch.optim import AdamW\n",
    "src/modeling/e2e_model.py": """
        import torch
        from torch import nn


        class ClipBert(nn.Module):
            def __init__(self, config, input_format="BGR", detectron2_model_cfg=None, transformer_cls=None):
                super().__init__()
                assert detectron2_model_cfg.endswith("R-50-grid.yaml") and input_format == "BGR"
                self.cnn = nn.Conv2d(3, config.hidden_size, 3)
                self.words = nn.Embedding(config.vocab_size, config.hidden_size)
                self.classifier = nn.Linear(config.hidden_size, config.num_labels)

            def forward(self, batch):
                b, t = batch["visual_inputs"].shape[:2]
                assert batch["n_examples_list"] == [1] * b and batch["labels"] is None
                grid = self.cnn(batch["visual_inputs"].flatten(0, 1)).mean((2, 3)).view(b, t, -1).mean(1)
                text = self.words(batch["text_input_ids"]).mean(1)
                return {"logits": self.classifier(grid + text), "loss": 0}
        """,
}


def test_original_rows_from_a_stand_in_checkout(tmp_path):
    import torch

    from clipbert_emo.experiments.bench_gpu import original_rows
    from clipbert_emo.experiments.bench_model import bench_config

    cfg = bench_config("synthemo_cpu", SMOKE)
    src = _write(tmp_path / "ClipBERT", _STAND_IN)
    ours = [{"part": "train", "variant": "fp32", "shape": "1x2", "samples_per_s": 10.0},
            {"part": "infer", "variant": "bf16", "shape": "1x2", "samples_per_s": 99.0}]  # not a training row
    rows = original_rows(_args(tmp_path, src), cfg, 100, _tiny_batches(), ours, torch.device("cpu"), 1, 1, "cpu")
    assert [(r["variant"], r["shape"]) for r in rows] == [("fp32", "1x2"), ("bf16", "1x2")]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["samples_per_s"] > 0 and row["step_s"] > 0 and row["params_m"] > 0
    assert rows[0]["ours_speedup"] == pytest.approx(10.0 / rows[0]["samples_per_s"])
    assert "ours_speedup" not in rows[1], "no bf16 row of ours to compare with"

    # a model that fails to build (detectron2 refusing its config, say): one row with the error, no crash
    _write(src, {"src/modeling/e2e_model.py": """
        class ClipBert:
            def __init__(self, *args, **kwargs):
                raise RuntimeError("no such backbone")
        """})
    (row,) = original_rows(_args(tmp_path, src), cfg, 100, _tiny_batches(), ours, torch.device("cpu"), 1, 1, "cpu")
    assert row["status"] == "error: building it failed: RuntimeError: no such backbone"


def test_no_cuda_stops_with_a_clear_message(monkeypatch, capsys):
    import torch

    from clipbert_emo.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device: bench gpu measures a GPU; --device cpu runs its smoke version" in err


def test_unknown_variant_is_refused():
    from clipbert_emo.config import UserError
    from clipbert_emo.experiments.bench_gpu import VARIANTS, selected_variants

    assert selected_variants("") == list(VARIANTS)
    assert selected_variants("fp32, bf16") == ["fp32", "bf16"]
    with pytest.raises(UserError, match="bench gpu's variants are fp32, bf16"):
        selected_variants("fp32,fp8")


@pytest.mark.gpu
def test_every_variant_on_cuda(synthemo_dir, tmp_path, monkeypatch):
    """On a CUDA machine (-m gpu): the same tiny run on the GPU with all four variants, compile included."""
    import torch

    from clipbert_emo.cli import main

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    monkeypatch.chdir(tmp_path)
    argv = _smoke_argv(synthemo_dir, tmp_path)
    argv[argv.index("--device") + 1] = "cuda"
    assert main(argv) == 0
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    train = {r["variant"]: r for r in rows if r["part"] == "train"}
    assert set(train) == {"fp32", "bf16", "bf16+channels_last", "bf16+channels_last+compile"}
    for row in train.values():
        assert row["status"] == "ok", row
        assert row["peak_mem_mb"] > 0 and torch.cuda.get_device_name() in row["device"]
    assert train["bf16+channels_last+compile"]["gflop_per_step"] == train["fp32"]["gflop_per_step"]
