"""Export to ONNX and TorchScript: the exported graphs compute what PyTorch computes, at the chosen shape."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, make_random_checkpoint):
    # max_grid 2: the grid of 32 px frames (1 x 1) fits, a larger --size does not (the bad-argument test)
    return make_random_checkpoint(tmp_path_factory.mktemp("export") / "checkpoint", ["model.max_grid=2"])


def reference(checkpoint, inputs, aggregation=None):
    """PyTorch's per-clip and aggregated logits for export-style inputs (normalised frames), computed through the
    checkpoint's own model: the frames are mapped back to the 0-255 scale its normalisation expects."""
    from clipbert_emo.checkpoint import load_checkpoint
    from clipbert_emo.models.aggregation import aggregate_clip_logits

    model, cfg, _ = load_checkpoint(checkpoint)
    ids, mask, frames = inputs
    mean = torch.tensor(cfg.model.pixel_mean).view(1, 1, 1, 3, 1, 1)
    std = torch.tensor(cfg.model.pixel_std).view(1, 1, 1, 3, 1, 1)
    with torch.no_grad():
        clip = model.clip_logits(ids, mask, (frames * std + mean) * 255.0)  # (1, N, K)
    return clip.numpy(), aggregate_clip_logits(clip, aggregation or cfg.model.aggregation).numpy()


def random_inputs(n, t, size, length, real, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (1, length), generator=g)
    ids[0, real:] = 0
    mask = (torch.arange(length) < real).long()[None]  # (1, L)
    return [ids, mask, torch.randn(1, n, t, 3, size, size, generator=g)]


def run_onnx(out, inputs):
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["input_ids", "attention_mask", "frames"]
    return session.run(["clip_logits", "logits"], {n: x.numpy() for n, x in zip(names, inputs)})


def run_torchscript(out, inputs):
    module = torch.jit.load(str(out / "model.pt"))
    with torch.no_grad():
        return [y.numpy() for y in module(*inputs)]


@pytest.mark.parametrize("fmt,run", [("onnx", run_onnx), ("torchscript", run_torchscript)])
def test_exported_model_matches_pytorch(checkpoint, tmp_path, fmt, run, capsys):
    out = tmp_path / fmt
    rc = main(["export", str(checkpoint), "--format", fmt, "--out", str(out), "--n-test", "4", "--frames", "2",
               "--size", "32", "--text-len", "12", "--aggregation", "mean"])
    assert rc == 0, capsys.readouterr().err
    spec = json.loads((out / "model.json").read_text())
    assert spec["n_test"] == 4 and spec["num_frames"] == 2 and spec["frame_size"] == 32 and spec["text_len"] == 12
    assert spec["inputs"]["frames"]["shape"] == [1, 4, 2, 3, 32, 32]
    assert spec["labels"] == ["neutral", "happy", "sad", "angry", "surprised", "fearful"]
    assert spec["aggregation"] == "mean" and spec["verified_max_abs_diff"] < 1e-4
    assert (out / "tokenizer" / "tokenizer_config.json").exists()
    assert "## Task and labels" in (out / "README.md").read_text()  # the checkpoint's model card travels along
    for seed in (1, 2):  # not the inputs the graph was traced with
        inputs = random_inputs(4, 2, 32, 12, real=5 + seed, seed=seed)
        clip, agg = run(out, inputs)
        ref_clip, ref_agg = reference(checkpoint, inputs, "mean")
        assert clip.shape == (1, 4, 6) and agg.shape == (1, 6)
        np.testing.assert_allclose(clip, ref_clip, atol=1e-4, rtol=0)
        np.testing.assert_allclose(agg, ref_agg, atol=1e-4, rtol=0)
        assert np.abs(ref_clip - ref_clip.mean(1, keepdims=True)).max() > 1e-3  # the clips really differ


def test_dynamic_text_length_runs_at_two_lengths(checkpoint, tmp_path):
    out = tmp_path / "dyn"
    assert main(["export", str(checkpoint), "--out", str(out), "--text-len", "dynamic", "--n-test", "3"]) == 0
    assert json.loads((out / "model.json").read_text())["text_len"] == "dynamic"
    results = {}
    for length, real in ((5, 5), (17, 9)):
        inputs = random_inputs(3, 2, 32, length, real, seed=length)
        clip, agg = run_onnx(out, inputs)
        ref_clip, ref_agg = reference(checkpoint, inputs)
        np.testing.assert_allclose(clip, ref_clip, atol=1e-4, rtol=0)
        np.testing.assert_allclose(agg, ref_agg, atol=1e-4, rtol=0)
        results[length] = agg
    assert np.abs(results[5] - results[17]).max() > 1e-4  # the text reaches the output


def test_padding_does_not_change_the_result(checkpoint, tmp_path):
    """A fixed text length pads short texts: the masked padding must not move the logits."""
    out = tmp_path / "fixed"
    assert main(["export", str(checkpoint), "--out", str(out), "--text-len", "4"]) == 0
    # An earlier export's folder is replaced whole.
    assert main(["export", str(checkpoint), "--out", str(out), "--text-len", "16"]) == 0
    assert json.loads((out / "model.json").read_text())["text_len"] == 16
    short = random_inputs(3, 2, 32, 6, 6, seed=3)
    padded = [torch.cat([short[0], torch.zeros(1, 10, dtype=torch.long)], 1),
              torch.cat([short[1], torch.zeros(1, 10, dtype=torch.long)], 1), short[2]]
    np.testing.assert_allclose(run_onnx(out, padded)[1], reference(checkpoint, short)[1], atol=1e-4, rtol=0)


def test_audio_model_exports_with_its_log_mel_input(tmp_path, capsys, make_random_checkpoint):
    ckpt = make_random_checkpoint(tmp_path / "checkpoint", ["data.use_audio=true"])
    out = tmp_path / "ts"
    assert main(["export", str(ckpt), "--out", str(out), "--format", "torchscript", "--n-test", "2"]) == 0
    spec = json.loads((out / "model.json").read_text())
    assert list(spec["inputs"]) == ["input_ids", "attention_mask", "frames", "audio", "audio_present"]
    assert spec["inputs"]["audio"]["shape"][:3] == [1, 2, 64]  # (1, N, n_mels, frames)
    assert spec["verified_max_abs_diff"] < 1e-4  # export itself compares the traced module with PyTorch
    # ONNX's exporter cannot write the audio encoder's adaptive pooling: a clear error pointing to TorchScript.
    assert main(["export", str(ckpt), "--out", str(tmp_path / "onnx"), "--n-test", "2"]) == 2
    assert "--format torchscript" in capsys.readouterr().err and not (tmp_path / "onnx").exists()


def test_bad_export_arguments_give_clear_errors(checkpoint, tmp_path, capsys):
    cases = [
        (["--format", "tflite"], "invalid choice: 'tflite'"),
        (["--n-test", "0"], "--n-test must be >= 1"),
        (["--text-len", "many"], "--text-len must be a whole number or 'dynamic'"),
        (["--text-len", "1"], "--text-len must be between 2"),
        (["--size", "128"], "exceeds the position tables"),
    ]
    for extra, message in cases:
        try:
            rc = main(["export", str(checkpoint), "--out", str(tmp_path / "x"), *extra])
        except SystemExit as e:  # argparse's own refusals
            rc = e.code
        assert rc == 2, extra
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "x").exists()  # nothing half-written
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["export", str(checkpoint), "--out", str(busy)]) == 2
    assert "holds other files" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "mine"
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


def test_export_shapes_beyond_any_model_are_refused_while_parsing(checkpoint, tmp_path, capsys):
    """--frames 100000 was a memory-allocation traceback: every size option is bounded before anything is loaded."""
    from clipbert_emo.config import UserError
    from clipbert_emo.export import MAX_FRAMES, MAX_VIDEO_PIXELS, export_checkpoint

    for extra, message in ((["--frames", "100000"], f"--frames must be at most {MAX_FRAMES}, got 100000"),
                           (["--n-test", "100000"], "--n-test must be at most"),
                           (["--size", "100000"], "--size must be at most"),
                           (["--text-len", "100000"], "--text-len must be between 2 ([CLS] [SEP]) and")):
        with pytest.raises(SystemExit) as e:
            main(["export", str(checkpoint), "--out", str(tmp_path / "x"), *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err, (extra, err[-500:])
    # each within its bound, together too large to trace: one line before anything is allocated
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "x"), "--n-test", "64", "--frames", "64",
                 "--size", "1024"]) == 2
    err = capsys.readouterr().err
    assert f"more than the {MAX_VIDEO_PIXELS:,}" in err.strip().splitlines()[-1] and "Traceback" not in err
    with pytest.raises(UserError, match="--frames must be at most"):  # the Python API checks the same bounds
        export_checkpoint(checkpoint, tmp_path / "x", num_frames=100_000)
    assert not (tmp_path / "x").exists()


def test_an_allocation_failure_while_tracing_is_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    import clipbert_emo.export as export

    def no_memory(self, *inputs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(export.ExportableModel, "forward", no_memory)
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not enough memory to trace the model at --n-test 3" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_export_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for word in ("onnx", "torchscript", "--text-len", "dynamic", "model.json", "onnx_predict.py"):
        assert word in text
