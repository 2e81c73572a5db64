"""The benchmark commands' own logic on tiny inputs: shape parsing, the test videos --match selects, and a training
bench row (steps timed, FLOPs counted) for a config given by name with overrides. The figures themselves live in docs/performance.md."""

from __future__ import annotations

import argparse
import json

import pytest

from support import TINY_OVERRIDES


def test_parse_shapes():
    from clipbert_emo.experiments.bench_model import parse_shapes

    assert parse_shapes("1x2, 8X2") == [(1, 2), (8, 2)]
    for bad in ("", "1x", "2x0", "axb", "1x2x3"):
        with pytest.raises(ValueError, match="--shapes"):
            parse_shapes(bad)


def test_match_writes_and_returns_only_the_matching_test_videos(tmp_path):
    import decord

    from clipbert_emo.experiments.bench import test_videos

    gops = {"default": None, "short": 5}
    videos = test_videos(tmp_path, durations=(1,), heights=(32, 48), gops=gops, progress=False, match="48p_short")
    assert [(v["seconds"], v["height"], v["gop"]) for v in videos] == [(1, 48, "short")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1s_48p_shortgop.mp4"], "the others were not written"
    reader = decord.VideoReader(videos[0]["path"])
    assert len(reader) == 25 and reader[0].shape == (48, 84, 3)
    assert list(reader.get_key_indices()) == [0, 5, 10, 15, 20], "the short GOP's keyframe interval"


def test_bench_train_row_for_a_named_config(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.experiments.bench_model import bench_train

    monkeypatch.chdir(tmp_path)  # the bench writes its tokenizer under runs/bench
    out = tmp_path / "train.json"
    args = argparse.Namespace(steps=1, full=False, config="synthemo_cpu",
                              overrides=[*TINY_OVERRIDES, "model.num_layers=1", "train.mixed_precision=bf16"],
                              device="cpu", peak_tflops=100.0, manifest=str(synthemo_dir / "train.jsonl"),
                              shapes="1x2", workers="0", batch_size=2, out=str(out), quiet=True)
    bench_train(args)
    saved = json.loads(out.read_text())
    (row,) = saved["rows"]
    assert row["n_train x T"] == "1x2" and row["workers"] == 0 and row["samples_per_s"] > 0
    # A ResNet-18 to res4 on 2 x 2 frames of 32 px plus a 32-wide transformer: well above a megaFLOP per step.
    assert row["gflop_per_step"] > 1e-3
    assert row["mfu_pct"] == pytest.approx(100 * row["gflop_per_s"] / (1000 * 100.0))
    assert saved["config"] == "synthemo_cpu" and saved["device"] == "cpu"


@pytest.mark.parametrize("gop", ["default", "short"])
def test_decode_rows_report_where_the_clips_sat(tmp_path, gop):
    """Beside each time, a row says how many distinct positions the clips had and how far they moved: keyframe
    reads keep all 16 positions within the tolerance, with one keyframe (default GOP here) or one every 5 frames."""
    from clipbert_emo.experiments.bench import _clips_seconds, test_videos

    video = test_videos(tmp_path, durations=(2,), heights=(32,), gops={"default": None, "short": 5},
                        progress=False, match=gop)[0]
    for seek in ("accurate", "keyframe"):
        seconds, placed = _clips_seconds(video["path"], 16, seek, threads=1)
        assert seconds > 0 and placed["positions"] == 16
        assert placed["max_shift"] <= placed["tolerance"]
        if seek == "accurate":
            assert placed["max_shift"] == 0
    if gop == "short":  # keyframes every 5 frames, clips 3 frames apart, tolerance 1 frame: some clips move
        assert _clips_seconds(video["path"], 16, "keyframe", threads=1)[1]["max_shift"] == 1
