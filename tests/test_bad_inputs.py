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
from support import TINY_OVERRIDES, data_overrides, rewrite_manifest


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
    with pytest.raises(UserError, match="n_test must be a whole number >= 1"):
        p(_video(synthemo_dir), n_test=0)
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


# ---- adversarial round: configs, checkpoints, saves ---------------------------------------------------------


def _deep_yaml(levels: int) -> str:
    return "data:\n  labels: " + "[" * levels + "]" * levels + "\n"


def test_yaml_nested_too_deep_names_the_file(ckpt_copy, synthemo_dir, tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text(_deep_yaml(20_000))
    _fails(capsys, ["finetune", "-q", "--config", str(deep), f"train.output_dir={tmp_path / 'r'}"],
           "deep.yaml", "nested too deeply")
    deep.write_text(_deep_yaml(300))  # parses, but deeper than any config: refused before it is copied or merged
    _fails(capsys, ["finetune", "-q", "--config", str(deep), f"train.output_dir={tmp_path / 'r'}"],
           "deep.yaml", "nested too deeply")
    assert not (tmp_path / "r").exists()
    good = (ckpt_copy / "config.yaml").read_text()
    (ckpt_copy / "config.yaml").write_text(_deep_yaml(20_000))
    _fails(capsys, ["predict", str(ckpt_copy), _video(synthemo_dir)], "config.yaml: cannot be read",
           "nested too deeply")
    (ckpt_copy / "config.yaml").write_text(good)


def _evil_tokenizer(tok_dir: Path, marker: Path, tokenizer_class="EvilTokenizer", auto_map=True) -> None:
    """What an attacker ships in a checkpoint's tokenizer/: a tokenizer_config.json whose auto_map names a Python
    file of the folder, which touches ``marker`` when imported."""
    (tok_dir / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                     "from transformers import BertTokenizer\n"
                                     "class EvilTokenizer(BertTokenizer):\n    pass\n")
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = tokenizer_class
    if auto_map:
        config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(config))
    (tok_dir / "tokenizer.json").unlink(missing_ok=True)  # no fast path around transformers


def test_a_checkpoint_never_runs_its_tokenizer_code(ckpt_copy, synthemo_dir, tmp_path, capsys, monkeypatch):
    import io
    import sys

    marker = tmp_path / "pwned"
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))  # a "y" typed or piped at any prompt
    _evil_tokenizer(ckpt_copy / "tokenizer", marker)
    _fails(capsys, ["predict", str(ckpt_copy), _video(synthemo_dir)], "tokenizer_config.json: refused", "auto_map")
    # as the init checkpoint of a new run: refused while setting up, before anything is written
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                    f"train.init_checkpoint={ckpt_copy}", f"train.output_dir={tmp_path / 'r'}"],
           "tokenizer_config.json: refused", "auto_map")
    # a user's own tokenizer folder (model.tokenizer, convert-clipbert --tokenizer): the same refusal
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                    f"model.tokenizer={ckpt_copy / 'tokenizer'}", f"train.output_dir={tmp_path / 'r2'}"],
           "tokenizer_config.json: refused", "auto_map")
    # below every check, transformers itself is told never to trust the folder's code
    from clipbert_emo.data.text import load_tokenizer

    with pytest.raises(UserError, match="cannot load tokenizer"):
        load_tokenizer(ckpt_copy / "tokenizer")
    # no auto_map, but a class this library never writes: refused too
    config = json.loads((ckpt_copy / "tokenizer" / "tokenizer_config.json").read_text())
    del config["auto_map"]
    (ckpt_copy / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
    _fails(capsys, ["predict", str(ckpt_copy), _video(synthemo_dir)], "tokenizer_class 'EvilTokenizer' is not one")
    assert not marker.exists(), "the checkpoint's Python file ran"
    assert not (tmp_path / "r" / "checkpoint").exists() and not (tmp_path / "r2" / "checkpoint").exists()


def test_checkpoint_files_are_readable_by_other_accounts(run, tmp_path, synthemo_dir, capsys, monkeypatch):
    import builtins
    import errno
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    for folder in (run / "checkpoint", run / "last"):
        for p in folder.rglob("*"):
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (0o777 if p.is_dir() else 0o666) & ~mask, (p, oct(mode))
    # A file that exists but this account may not read (simulated: the tests may run as root, who reads anything)
    ckpt = tmp_path / "checkpoint"
    shutil.copytree(run / "checkpoint", ckpt)
    real_open = builtins.open

    def no_access(file, *args, **kwargs):
        if str(file).endswith("model.safetensors"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_access)
    line = _fails(capsys, ["predict", str(ckpt), _video(synthemo_dir)], "model.safetensors: permission denied")
    assert "damaged" not in line


def _full_disk(calls: dict, fail_at: int):
    """safetensors' save_file, failing as a full disk does from its ``fail_at``-th call on."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file as real

    def save_file(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] >= fail_at:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, metadata=metadata)
    return save_file


@pytest.mark.parametrize("fail_at", [1, 2])  # the new run's checkpoint/, or its last/ just after it
def test_a_full_disk_while_overwriting_keeps_the_old_run(fail_at, run, synthemo_dir, tmp_path, capsys, monkeypatch):
    import clipbert_emo.checkpoint as ckpt

    out = tmp_path / "r"
    shutil.copytree(run, out)
    before = _snapshot(out)
    calls = {"n": 0}
    monkeypatch.setattr(ckpt, "save_file", _full_disk(calls, fail_at))
    _fails(capsys, ["finetune", "-q", "--overwrite", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                    f"train.output_dir={out}", "train.max_steps=1", "data.test_manifest="],
           "no space left while saving", "the disk is full", f"the previous run in {out}", "is intact")
    assert calls["n"] == fail_at
    after = _snapshot(out)
    kept = [k for k in before if k.startswith(("checkpoint/", "last/")) or k in ("metrics.json", "config.yaml")]
    assert kept and {k: after.get(k) for k in kept} == {k: before[k] for k in kept}, "the old run is as it was"
    assert not [k for k in after if k.startswith(("checkpoint/", "last/")) and k not in before], "nothing new mixed in"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    monkeypatch.undo()
    metrics = json.loads((out / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).name == "checkpoint" and (out / "checkpoint" / "model.safetensors").is_file()
    model, _, _ = ckpt.load_checkpoint(out / "checkpoint")  # still loadable
    assert model.num_labels == 6


def test_a_full_disk_in_a_new_run_is_one_line(synthemo_dir, tmp_path, capsys, monkeypatch):
    import clipbert_emo.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "save_file", _full_disk({"n": 0}, 1))
    _fails(capsys, ["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir),
                    f"train.output_dir={tmp_path / 'r'}", "train.max_steps=1", "data.test_manifest="],
           "no space left while saving", "checkpoint", "nothing was left there")
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == [], "no half-written folder"
    assert not (tmp_path / "r" / "checkpoint").exists()


def test_a_target_out_of_range_is_one_line_and_loses_nothing(run, synthemo_dir, tmp_path, capsys):
    def huge(i, row):
        row.pop("label")
        row["target"] = 1e308 if i == 0 else float(i % 3)
        return row

    train = rewrite_manifest(synthemo_dir / "train.jsonl", tmp_path / "train.jsonl", huge)
    out = tmp_path / "r"
    shutil.copytree(run, out)
    before = _snapshot(out)
    _fails(capsys, ["finetune", "-q", "--overwrite", *TINY_OVERRIDES, "data.task=regression",
                    f"data.train_manifest={train}", f"train.output_dir={out}"],
           "non-finite loss", "target value out of range")
    kept = [k for k in before if k.startswith(("checkpoint/", "last/")) or k in ("metrics.json", "config.yaml")]
    assert {k: _snapshot(out).get(k) for k in kept} == {k: before[k] for k in kept}
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_synthemo_flags_are_switches_not_strings():
    from clipbert_emo.cli import build_parser

    parse = lambda *a: build_parser().parse_args(["synthemo", *a])  # noqa: E731
    assert parse("--audio").audio is True
    assert parse("--no-audio").audio is False, "--no-audio turns it off (a bool-typed string would read True)"
    assert parse().audio is None, "unset keeps SynthEmoConfig's default"
    with pytest.raises(SystemExit):
        parse("--audio", "false")
