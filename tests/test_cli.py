"""End to end through the command line on tiny SynthEmo data (open_clip-style ``main([...])``)."""

import json
import shutil

import numpy as np
import pytest

from clipbert_emo.cli import main
from support import TINY_OVERRIDES, data_overrides


@pytest.fixture(scope="module")
def trained_run(synthemo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}",
               "train.epochs=2"])
    assert rc == 0
    return out


def test_finetune_writes_config_metrics_checkpoint_and_plots(trained_run):
    for name in ("config.yaml", "metrics.json", "learning_curves.png", "confusion_matrix.png",
                 "checkpoint/model.safetensors", "checkpoint/config.yaml", "checkpoint/tokenizer/tokenizer_config.json"):
        assert (trained_run / name).exists(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(h["train_loss"] > 0 for h in metrics["history"])
    assert metrics["steps"] == 2 * 4  # 16 samples / batch 4
    test = metrics["test"]
    assert test["num_samples"] == 6 and test["n_test"] == 3
    for how in ("mean", "max", "lse"):
        rep = test["reports"][how]
        assert 0 <= rep["macro_f1"] <= 1 and len(rep["per_class"]) == 6
        assert sum(map(sum, rep["confusion"])) == 6


def test_evaluate_reports_every_aggregation(trained_run, synthemo_dir, tmp_path, capsys):
    rc = main(["evaluate", str(trained_run / "checkpoint"), str(synthemo_dir / "test.jsonl"), "--n-test", "4",
               "--out", str(tmp_path), "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "macro_f1" in printed and "weighted_f1" in printed and "confusion" in printed.lower()
    result = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert result["n_test"] == 4 and set(result["reports"]) == {"mean", "max", "lse"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0


def test_predict_gives_distribution_and_timeline(trained_run, synthemo_dir, tmp_path, capsys):
    video = synthemo_dir / "videos" / "test" / "000000.mp4"
    rc = main(["predict", str(trained_run / "checkpoint"), str(video), "--text", "oh wow", "--n-test", "5",
               "--json", "--plot", str(tmp_path / "timeline.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_clips"] == 5 and len(result["clips"]) == 5
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["prediction"] == max(result["probabilities"], key=result["probabilities"].get)
    starts = [c["start"] for c in result["clips"]]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert (tmp_path / "timeline.png").stat().st_size > 0


def test_python_one_call_predict_matches_cli_api(trained_run, synthemo_dir):
    from clipbert_emo import Predictor, predict

    video = synthemo_dir / "videos" / "test" / "000001.mp4"
    a = predict(trained_run / "checkpoint", video, text="i feel so down", num_clips=4)
    b = Predictor(trained_run / "checkpoint")(video, text="i feel so down", num_clips=4)
    assert a["probabilities"] == pytest.approx(b["probabilities"])
    assert set(a["probabilities"]) == {"neutral", "happy", "sad", "angry", "surprised", "fearful"}


def test_predict_reports_the_frames_of_each_seek_mode(trained_run, synthemo_dir):
    from clipbert_emo import Predictor
    from clipbert_emo.data.decode import keyframe_indices, open_video, video_info
    from clipbert_emo.data.sampling import keyframe_tolerance, sample_clip_indices

    video = synthemo_dir / "videos" / "test" / "000002.mp4"
    accurate = Predictor(trained_run / "checkpoint", seek="accurate")
    keyframe = Predictor(trained_run / "checkpoint")  # prediction's default
    a, k = accurate(video, num_clips=4), keyframe(video, num_clips=4)
    assert (a["seek"], k["seek"]) == ("accurate", "keyframe")
    info = video_info(open_video(video), str(video))
    data = accurate.cfg.data
    assert a["frames"] == sample_clip_indices(info.num_frames, info.fps, 4, data.num_frames, data.clip_fps,
                                              training=False).tolist()  # evaluation's frames, exactly
    keys = set(keyframe_indices(open_video(video)).tolist())
    tolerance = keyframe_tolerance(np.array(a["frames"]), 0, info.num_frames)
    starts = [row[0] for row in k["frames"]]
    assert len(set(starts)) == 4 and starts == sorted(starts)
    for placed, sampled in zip(starts, (row[0] for row in a["frames"])):
        assert placed == sampled or (placed in keys and abs(placed - sampled) <= tolerance)
    assert [c["start"] for c in k["clips"]] == pytest.approx([row[0] / info.fps for row in k["frames"]])


def test_keyframe_predict_on_a_one_keyframe_video_reads_the_accurate_clips(trained_run, tmp_path, write_gop_video):
    """A phone clip with a single keyframe: 16 clips at 16 places (not all on frame 0), reported as read, and the
    same answer as seek=accurate up to the decoder's scaling."""
    from clipbert_emo import Predictor

    video = write_gop_video(tmp_path / "one_key.mp4", num_frames=60, gop=1000, size=48)
    a = Predictor(trained_run / "checkpoint", seek="accurate")(video, num_clips=16)
    k = Predictor(trained_run / "checkpoint")(video, num_clips=16)
    assert k["seek"] == "keyframe" and k["frames"] == a["frames"]
    assert len({c["start"] for c in k["clips"]}) == 16 and k["timeline"]["start"] == a["timeline"]["start"]
    assert k["probabilities"] == pytest.approx(a["probabilities"], abs=0.05)


def test_corrupt_video_in_a_batch_is_skipped_and_reported(trained_run, synthemo_dir, tmp_path, capsys):
    lines = (synthemo_dir / "test.jsonl").read_text().splitlines()
    data = tmp_path / "data"
    shutil.copytree(synthemo_dir / "videos", data / "videos")
    bad = data / "videos" / "test" / "000002.mp4"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    (data / "videos" / "test" / "000003.mp4").write_bytes(b"")  # zero bytes
    (data / "test.jsonl").write_text("\n".join(lines) + "\n")
    rc = main(["evaluate", str(trained_run / "checkpoint"), str(data / "test.jsonl"), "--out", str(tmp_path), "-q",
               "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 4
    reasons = " ".join(r for _, r in result["skipped"])
    assert "000002.mp4" in reasons and "000003.mp4" in reasons and "empty" in reasons
    assert all(":" in where for where, _ in result["skipped"])  # file:line


def test_bad_input_gives_a_clear_cli_error(trained_run, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "x.mp4", "label": "joyful"}\n')
    rc = main(["evaluate", str(trained_run / "checkpoint"), str(manifest), "-q"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "m.jsonl:1: unknown label 'joyful'" in err
    rc = main(["finetune", "-q", "train.epoch=1"])
    assert rc == 2 and "train has no key 'epoch'" in capsys.readouterr().err
    rc = main(["predict", str(tmp_path), str(manifest)])
    assert rc == 2 and "not a clipbert-emo checkpoint" in capsys.readouterr().err


def test_help_explains_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("synthemo", "finetune", "evaluate", "predict", "demo"):
        assert cmd in text


def test_ctrl_c_outside_a_command_s_own_handling_is_one_line(monkeypatch, capsys, tmp_path):
    """Ctrl-C while a checkpoint loads (before predict opens --out): exit 130 and one line, not a traceback."""
    import importlib

    predict_module = importlib.import_module("clipbert_emo.predict")  # the module: the package exports a function

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "load_checkpoint", interrupted)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0")
    assert main(["predict", str(tmp_path), str(video)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "clipbert-emo predict: interrupted" and "Traceback" not in err
