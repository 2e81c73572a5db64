"""Bad input, as a new user meets it: every kind gets a one-line error (exit 2, no traceback) that names what is
wrong and where, through the command line and the Python API, and nothing is written or lost."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipbert_emo.cli import main
from clipbert_emo.config import UserError
from conftest import TINY_OVERRIDES, data_overrides


@pytest.fixture(scope="module")
def run(synthemo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}",
                 "train.max_steps=2", "train.save_every_steps=1"]) == 0
    return out


@pytest.fixture(scope="module")
def text_run(synthemo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("text_run")
    assert main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}",
                 "train.max_steps=1", "data.use_video=false", "data.test_manifest="]) == 0
    return out


@pytest.fixture
def ckpt_copy(run, tmp_path):
    """A copy of the trained checkpoint to damage."""
    dst = tmp_path / "checkpoint"
    shutil.copytree(run / "checkpoint", dst)
    return dst


def _fails(capsys, argv, *needles):
    """Run the CLI; it must exit 2 with one error line holding every needle and no traceback."""
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 2, (rc, captured.err[-2000:])
    assert "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith(f"clipbert-emo {argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _video(synthemo_dir):
    return str(synthemo_dir / "videos" / "test" / "000000.mp4")


# ---- predict ------------------------------------------------------------------------------------------


def test_predict_bad_arguments(run, text_run, synthemo_dir, tmp_path, capsys):
    ckpt, video = str(run / "checkpoint"), _video(synthemo_dir)
    _fails(capsys, ["predict", ckpt, video, "--text", "caf\udce9"], "--text is not valid UTF-8")
    for bad in ("-1", "0"):
        with pytest.raises(SystemExit) as e:
            main(["predict", ckpt, video, "--n-test", bad])
        assert e.value.code == 2 and "--n-test must be >= 1" in capsys.readouterr().err
    _fails(capsys, ["predict", ckpt, video, "--device", "cuda"], "device 'cuda' is not usable here")
    _fails(capsys, ["predict", ckpt, video, "--plot", str(tmp_path)], "is a folder")
    _fails(capsys, ["predict", ckpt], "trained on video: give a video file")
    _fails(capsys, ["predict", str(text_run / "checkpoint"), "--text", "hi", "--plot", str(tmp_path / "t.png")],
           "--plot draws the per-clip class probabilities", "text only")
    _fails(capsys, ["predict", str(tmp_path / "nowhere"), video], "no such checkpoint folder")
    assert not (tmp_path / "t.png").exists()


def test_predictor_api_raises_user_errors(run, synthemo_dir):
    from clipbert_emo.predict import Predictor

    p = Predictor(run / "checkpoint")
    with pytest.raises(UserError, match="num_clips must be >= 1"):
        p(_video(synthemo_dir), num_clips=0)
    with pytest.raises(UserError, match="aggregation 'median'"):
        p(_video(synthemo_dir), aggregation="median")
    with pytest.raises(UserError, match="start 9.0 s is at or past the end of the video"):
        p(_video(synthemo_dir), start=9.0)
    with pytest.raises(UserError, match="end 1.0 s is not after start 1.5 s"):
        p(_video(synthemo_dir), start=1.5, end=1.0)
    with pytest.raises(UserError, match="a negative time"):
        p(_video(synthemo_dir), start=-1.0)
    assert p(_video(synthemo_dir), start=0.5, end=1.5, num_clips=2)["num_clips"] == 2


# ---- videos -------------------------------------------------------------------------------------------


def test_an_audio_only_file_says_it_has_no_video_stream(tmp_path):
    import av

    from clipbert_emo.data.decode import VideoDecodeError, open_video

    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000, dtype=np.float32) / 16000
        frame = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32),
                                           format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream .*audio"):
        open_video(path)


def test_a_truncated_video_uses_the_frames_that_decode(tmp_path, caplog):
    import av

    from clipbert_emo.config import DataConfig
    from clipbert_emo.data.dataset import load_clips
    from clipbert_emo.data.manifest import Sample

    full = tmp_path / "full.mp4"
    # The index up front (as streaming sites write mp4s), so the first half of a cut file still decodes.
    with av.open(str(full), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"x264-params": "keyint=4:bframes=0"}
        for i in range(80):  # noise: every frame is large, so half the file holds about half the frames
            pixels = np.random.default_rng(i).integers(0, 255, (48, 48, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cfg = DataConfig(frame_size=32, num_frames=2, clip_fps=4.0)
    with caplog.at_level("WARNING"):
        clips, spans = load_clips(Sample(video=str(cut), text=""), cfg, 4, training=False, rng=None)
    assert clips.shape == (4, 2, 3, 32, 32)
    assert "damaged video" in caplog.text and "cut.mp4" in caplog.text
    assert max(end for _, end in spans) < 0.75 * 80 / 8.0, "only the first part of the video is used"


# ---- manifests ------------------------------------------------------------------------------------------


def test_manifest_encoding_bom_and_spans(synthemo_dir, tmp_path):
    from clipbert_emo.config import DataConfig
    from clipbert_emo.data.manifest import ManifestError, read_manifest
    from clipbert_emo.tasks import get_task

    reader = get_task("single_label").target_reader(DataConfig())
    video = _video(synthemo_dir)
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps({"video": video, "label": "sad"}).encode() + b"\n"
                    + b'{"video": "' + video.encode() + b'", "text": "caf\xe9", "label": "sad"}\n')
    with pytest.raises(ManifestError, match=r"latin1.jsonl:2: not UTF-8"):
        read_manifest(bad, reader)
    csv_bad = tmp_path / "latin1.csv"
    csv_bad.write_bytes(b"video,text,label\n" + video.encode() + b",caf\xe9,sad\n")
    with pytest.raises(ManifestError, match=r"latin1.csv:2: not UTF-8"):
        read_manifest(csv_bad, reader)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbfvideo,text,label\n" + video.encode() + b",hello,sad\n")
    assert [s.text for s in read_manifest(bom, reader).samples] == ["hello"]
    for span, message in (({"start": 7.0}, "start 7.0 s is at or past the end"),
                          ({"start": 0.5, "end": 9.0}, "end 9.0 s is past the end"),
                          ({"start": -1}, "must be >= 0"), ({"start": 1.5, "end": 1.0}, "must be after start")):
        m = tmp_path / "span.jsonl"
        m.write_text(json.dumps({"video": video, "label": "sad", **span}) + "\n")
        with pytest.raises(UserError, match=r"span.jsonl:1: .*" + message):
            read_manifest(m, reader)


# ---- evaluate -------------------------------------------------------------------------------------------


def test_evaluate_bad_inputs(run, tmp_path, capsys):
    ckpt = str(run / "checkpoint")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    m = tmp_path / "all_bad.jsonl"
    m.write_text(json.dumps({"video": str(broken), "label": "sad"}) + "\n")
    _fails(capsys, ["evaluate", ckpt, str(m), "-q", "--out", str(tmp_path / "ev")],
           "no sample could be evaluated", "broken.mp4")
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    _fails(capsys, ["evaluate", ckpt, "test", "-q", "--out", str(a_file)], "is a file, not a folder")
    assert a_file.read_text() == "x"


def test_evaluate_json_stdout_is_only_json(run, capsys):
    assert main(["evaluate", str(run / "checkpoint"), "test", "-q", "--json", "--out", str(run / "ev")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["num_samples"] == 6


# ---- checkpoints -----------------------------------------------------------------------------------------


def test_damaged_checkpoints_are_named(ckpt_copy, synthemo_dir, capsys):
    video = _video(synthemo_dir)
    weights = ckpt_copy / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    _fails(capsys, ["predict", str(ckpt_copy), video], "model.safetensors: not a readable safetensors file")
    weights.write_bytes(b"garbage" * 100)
    _fails(capsys, ["predict", str(ckpt_copy), video], "model.safetensors: not a readable safetensors file")
    weights.write_bytes(good)

    cfg_text = (ckpt_copy / "config.yaml").read_text()
    (ckpt_copy / "config.yaml").write_text("data: [unclosed\n")
    _fails(capsys, ["predict", str(ckpt_copy), video], "config.yaml: cannot be read")
    (ckpt_copy / "config.yaml").write_text(cfg_text)
    meta = (ckpt_copy / "meta.json").read_text()
    (ckpt_copy / "meta.json").write_text("{oops")
    _fails(capsys, ["predict", str(ckpt_copy), video], "meta.json: not valid JSON")
    (ckpt_copy / "meta.json").write_text(meta)

    import yaml

    for labels, needed in ((["neutral", "happy", "sad", "angry", "surprised"], 5),
                           (["neutral", "happy", "sad", "angry", "surprised", "fearful", "bored"], 7)):
        edited = yaml.safe_load(cfg_text)
        edited["data"]["labels"] = labels
        (ckpt_copy / "config.yaml").write_text(yaml.safe_dump(edited))
        _fails(capsys, ["predict", str(ckpt_copy), video], "the classifier has 6 outputs", f"need {needed}")
    (ckpt_copy / "config.yaml").write_text(cfg_text)

    from clipbert_emo.data.text import build_wordpiece_tokenizer

    tok_dir = ckpt_copy / "tokenizer"
    shutil.rmtree(tok_dir)
    _fails(capsys, ["predict", str(ckpt_copy), video], "no tokenizer/ folder")
    build_wordpiece_tokenizer(["a much smaller vocabulary"], 10, tok_dir)  # a tokenizer that lost its words
    _fails(capsys, ["predict", str(ckpt_copy), video], "word embeddings have", "tokens")


def test_a_malicious_training_state_is_refused_without_advice_to_unpickle(run, synthemo_dir, tmp_path, capsys):
    import pickle

    out = tmp_path / "r"
    shutil.copytree(run, out)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (out / "last" / "training_state.pt").write_bytes(pickle.dumps({"step": Evil()}))
    line = _fails(capsys, ["finetune", "-q", "--resume", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                           f"train.output_dir={out}", "train.max_steps=2"], "training_state.pt: refused")
    assert "weights_only=False" not in line and not (tmp_path / "pwned").exists()


# ---- run folders: nothing lost -----------------------------------------------------------------------------


def test_a_second_run_into_a_run_folder_is_refused_and_changes_nothing(run, synthemo_dir, capsys):
    before = _snapshot(run)
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={run}"],
           "already holds a run", "--resume", "--overwrite")
    assert _snapshot(run) == before


def test_a_bad_manifest_with_overwrite_loses_nothing(run, synthemo_dir, tmp_path, capsys):
    out = tmp_path / "r"
    shutil.copytree(run, out)
    before = _snapshot(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": _video(synthemo_dir), "label": "joyful"}) + "\n")
    _fails(capsys, ["finetune", "-q", "--overwrite", *TINY_OVERRIDES, f"data.train_manifest={bad}",
                    f"train.output_dir={out}"], "bad.jsonl:1: unknown label 'joyful'")
    assert _snapshot(out) == before, "checkpoint/, last/ and config.yaml untouched"


def test_resume_without_a_run_is_refused(synthemo_dir, tmp_path, capsys):
    _fails(capsys, ["finetune", "-q", "--resume", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                    f"train.output_dir={tmp_path / 'new'}"], "nothing to continue")
    assert not (tmp_path / "new" / "config.yaml").exists()


def test_a_save_killed_between_its_renames_resumes_and_leftovers_are_cleaned(run, synthemo_dir, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(run, out)
    # The kill: last/ was renamed aside, the new folder not yet moved in; an older killed save left a temp folder.
    os.replace(out / "last", out / ".last.old")
    shutil.copytree(out / ".last.old", out / ".last.abc123")
    assert main(["finetune", "-q", "--resume", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={out}",
                 "train.max_steps=3", "train.epochs=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3, "continued from the restored last/, not from step 0"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_output_folder_problems(synthemo_dir, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={a_file / 'run'}"],
           "is a file, not a folder")
    import errno

    import clipbert_emo.checkpoint as ckpt

    def full_disk(state, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={tmp_path / 'r'}",
                    "train.max_steps=1"], "the disk is full")
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == [], "no half-written folder"


# ---- config values and synthemo ---------------------------------------------------------------------------


@pytest.mark.parametrize("override,needle", [("train.batch_size=0", "train.batch_size must be >= 1"),
                                             ("train.epochs=0", "train.epochs must be >= 1"),
                                             ("data.clip_fps=0", "data.clip_fps must be > 0")])
def test_config_values_that_cannot_run(override, needle, synthemo_dir, tmp_path, capsys):
    _fails(capsys, ["finetune", "-q", *data_overrides(synthemo_dir), f"train.output_dir={tmp_path / 'r'}", override], needle)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,needle", [(["--size", "0"], "size=0"), (["--fps", "0"], "fps=0.0"),
                                         (["--window-min", "0.6", "--window-max", "0.3"], "window_min=0.6"),
                                         (["--num-train", "-3"], "num_train=-3 must be >= 0")])
def test_synthemo_settings_that_cannot_work(args, needle, tmp_path, capsys):
    _fails(capsys, ["synthemo", "-q", "--out", str(tmp_path / "se"), *args], needle)
    assert not (tmp_path / "se").exists()


def test_synthemo_out_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    _fails(capsys, ["synthemo", "-q", "--out", str(tmp_path / "f")], "is a file, not a folder")


def test_verbose_and_debug_work_after_the_subcommand(capsys):
    with pytest.raises(UserError):
        main(["predict", "/nonexistent/checkpoint", "v.mp4", "--debug"])
    assert main(["predict", "/nonexistent/checkpoint", "v.mp4", "-v"]) == 2
