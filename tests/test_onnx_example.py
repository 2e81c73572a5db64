"""examples/onnx_predict.py runs an ONNX export where clipbert-emo cannot be imported, and agrees with Predictor."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipbert_emo.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "onnx_predict.py"

# Runs the example as __main__ after making `import clipbert_emo` fail (the package is installed in this venv in
# editable mode, so -I alone would still find it), and checks that it does fail.
BOOTSTRAP = """
import runpy, sys
sys.modules["clipbert_emo"] = None
try:
    import clipbert_emo
except ImportError:
    pass
else:
    raise SystemExit("clipbert_emo is importable: the example would not be tested standalone")
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
assert not any(m == "clipbert_emo" or m.startswith("clipbert_emo.") for m in sys.modules if sys.modules[m])
"""


def write_video(path, height, width, frames=24, fps=8.0):
    """A gradient with a bright square moving across it, so that clips and resized pixels differ."""
    from clipbert_emo.synthemo import write_mp4

    y, x = np.mgrid[0:height, 0:width]
    video = np.zeros((frames, height, width, 3), np.uint8)
    for i in range(frames):
        video[i, ..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
        video[i, ..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
        video[i, ..., 2] = 40 + 8 * i
        c = int(i * (width - 8) / max(1, frames - 1))
        video[i, height // 3:height // 3 + 8, c:c + 8] = 255
    write_mp4(path, video, fps)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, make_random_checkpoint):
    root = tmp_path_factory.mktemp("onnx_example")
    ckpt = make_random_checkpoint(root / "checkpoint", ["data.n_test=4", "data.num_frames=3"])
    assert main(["export", str(ckpt), "--out", str(root / "onnx"), "--text-len", "dynamic"]) == 0
    return ckpt, root / "onnx"


def run_example(export_dir, video, cwd, *extra):
    proc = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, str(EXAMPLE), str(export_dir), str(video), "--json",
                           *extra], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("height,width,atol", [
    (32, 32, 1e-4),  # the frame size already: no resize, the same pixels reach both
    (36, 48, 2e-2),  # letterboxed: Pillow's antialiased bilinear vs torch's may round a pixel differently
])
def test_example_without_the_library_matches_predictor(exported, tmp_path, height, width, atol):
    from clipbert_emo import Predictor

    ckpt, export_dir = exported
    video = write_video(tmp_path / "clip.mp4", height, width)
    text = "no way that is incredible"
    got = run_example(export_dir, video, tmp_path, "--text", text)
    want = Predictor(ckpt, device="cpu", seek="accurate")(video, text=text)  # the example places clips exactly
    assert got["num_clips"] == want["num_clips"] == 4
    assert [c["start"] for c in got["clips"]] == pytest.approx([c["start"] for c in want["clips"]])
    assert [c["end"] for c in got["clips"]] == pytest.approx([c["end"] for c in want["clips"]])
    labels = list(want["probabilities"])
    np.testing.assert_allclose([got["probabilities"][k] for k in labels], [want["probabilities"][k] for k in labels],
                               atol=atol, rtol=0)
    for g, w in zip(got["clips"], want["clips"]):
        np.testing.assert_allclose([g["probabilities"][k] for k in labels],
                                   [w["probabilities"][k] for k in labels], atol=atol, rtol=0)
    spread = np.ptp([want["probabilities"][k] for k in labels])
    assert spread > 10 * atol  # the comparison can tell the labels apart
    if atol <= 1e-4:
        assert got["prediction"] == want["prediction"]


def test_example_aggregations_follow_the_library(exported, tmp_path):
    from clipbert_emo import Predictor

    ckpt, export_dir = exported
    video = write_video(tmp_path / "clip.mp4", 32, 32)
    predictor = Predictor(ckpt, device="cpu", seek="accurate")  # the example places clips exactly
    for how in ("mean", "max"):
        got = run_example(export_dir, video, tmp_path, "--aggregation", how)
        want = predictor(video, text="", aggregation=how)
        assert got["aggregation"] == how
        np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()),
                                   atol=1e-4, rtol=0)


def test_example_reports_a_file_it_cannot_decode_in_one_line(exported, tmp_path, write_av):
    _, export_dir = exported
    good = write_video(tmp_path / "good.mp4", 32, 32)
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    write_av(tmp_path / "voice.m4a", video=False)
    cases = {"notes.mp4": "not a video file", "empty.mp4": "the file is empty", "truncated.mp4": "",
             "voice.m4a": "no video stream", "missing.mp4": "no such file"}
    for name, reason in cases.items():
        video = tmp_path / name
        proc = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, str(EXAMPLE), str(export_dir), str(video)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and proc.stdout == "", (name, proc.stderr[-2000:])
        lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith(f"onnx_predict.py: error: {video}: cannot decode it: "), lines
        assert reason in lines[0], (name, lines[0])
    (tmp_path / "not_an_export").mkdir()
    proc = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, str(EXAMPLE), str(tmp_path / "not_an_export"),
                           str(good)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "no readable model.json" in proc.stderr
