"""`clipbert-emo predict` on many videos: folders, manifests, transcripts, --out, timelines, failures."""

import csv
import errno
import json
import os
import shutil
import signal

import pytest

from clipbert_emo.cli import main


@pytest.fixture(scope="module")
def videos(synthemo_dir, tmp_path_factory):
    """The six SynthEmo test videos in a nested folder, plus a truncated one."""
    root = tmp_path_factory.mktemp("videos")
    shutil.copytree(synthemo_dir / "videos" / "test", root / "a" / "b")
    good = sorted((root / "a" / "b").glob("*.mp4"))
    bad = root / "a" / "broken.mp4"
    bad.write_bytes(good[0].read_bytes()[:150])
    return root, good, bad


def test_folder_with_a_broken_video_scores_the_rest_and_exits_1(tiny_checkpoint, videos, tmp_path, capsys):
    root, good, bad = videos
    out = tmp_path / "r.jsonl"
    rc = main(["predict", str(tiny_checkpoint), str(root), str(tmp_path / "missing.mp4"), "--out", str(out), "-q",
               "--n-test", "4", "--batch-size", "4", "--workers", "2"])
    assert rc == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(good) + 2
    ok = {r["video"]: r for r in rows if "error" not in r}
    assert sorted(ok) == sorted(map(str, good))  # folder searched recursively, every readable video scored once
    for r in ok.values():
        t = r["timeline"]
        assert len(t["start"]) == len(t["end"]) == r["num_clips"] == 4
        assert t["start"] == sorted(t["start"]) and all(e > s for s, e in zip(t["start"], t["end"]))
        assert set(t["probabilities"]) == set(r["probabilities"])
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["prediction"] == max(r["probabilities"], key=r["probabilities"].get)
    errors = {r["video"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {str(bad), str(tmp_path / "missing.mp4")}
    assert "not found" in errors[str(tmp_path / "missing.mp4")]
    assert f"cannot read {bad}" in captured.err  # named on the terminal too
    assert "6 of 8 videos scored, 2 failed" in captured.out


def test_manifest_transcripts_csv_and_timeline_pngs(tiny_checkpoint, videos, tmp_path, capsys):
    root, good, _ = videos
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(v), "text": "from the manifest"}) + "\n" for v in good[:3]))
    transcripts = tmp_path / "t.jsonl"
    transcripts.write_text(json.dumps({"video": good[1].name, "text": "i feel so down"}) + "\n")
    out, pngs = tmp_path / "r.csv", tmp_path / "timelines"
    rc = main(["predict", str(tiny_checkpoint), str(manifest), str(good[4]), "--transcripts", str(transcripts),
               "--text", "default words", "--out", str(out), "--timeline-png", str(pngs), "-q"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["video"] for r in rows] == [str(v) for v in (*good[:3], good[4])]  # input order kept
    assert [r["text"] for r in rows] == ["from the manifest", "i feel so down", "from the manifest", "default words"]
    for r in rows:
        probs = [float(r[k]) for k in r if k.startswith("p_")]
        assert len(probs) == 6 and sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert len(json.loads(r["timeline"])["start"]) == 3  # the checkpoint's N_test
    assert sorted(p.name for p in pngs.iterdir()) == sorted(f"{v.stem}.png" for v in (*good[:3], good[4]))
    assert all(p.stat().st_size > 1000 for p in pngs.iterdir())


def test_predict_many_matches_one_call_and_keeps_order(tiny_checkpoint, videos):
    from clipbert_emo import Predictor

    _, good, bad = videos
    p = Predictor(tiny_checkpoint, device="cpu")
    order = [good[2], bad, good[0], good[5]]
    texts = ["wow", None, "so sad", "meh"]
    many = list(p.predict_many(order, texts, num_clips=4, batch_size=2, num_workers=0))
    assert [r["video"] for r in many] == [str(v) for v in order]
    assert "error" in many[1] and "prediction" not in many[1]
    for r, v, t in zip(many, order, texts):
        if v == bad:
            continue
        one = p(v, text=t, num_clips=4)
        assert r["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
        assert r["timeline"]["start"] == one["timeline"]["start"]
        assert r["timeline"]["probabilities"]["happy"] == pytest.approx(one["timeline"]["probabilities"]["happy"],
                                                                        abs=1e-5)


def test_batch_options_are_checked(tiny_checkpoint, videos, tmp_path, capsys):
    root, good, _ = videos
    assert main(["predict", str(tiny_checkpoint), str(root), "--out", str(tmp_path / "r.txt")]) == 2
    assert "ending in .jsonl, .csv or .json" in capsys.readouterr().err
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"video": "x.mp4"}\n')
    assert main(["predict", str(tiny_checkpoint), str(good[0]), "--transcripts", str(bad)]) == 2
    assert "t.jsonl:1" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(tiny_checkpoint), str(empty), "-q"]) == 1
    assert "no video files" in capsys.readouterr().err


# ---- results written as they come, Ctrl-C, --resume, unwritable --out, full disk ------------------------------------

FAST = ["-q", "--n-test", "2", "--batch-size", "2", "--workers", "0"]


def _results(path):
    """The results in an --out file, whatever its format (each file must parse completely)."""
    if path.suffix == ".jsonl":
        text = path.read_text()
        assert text == "" or text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open(newline="")))
    return json.loads(path.read_text())


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".json"])
def test_ctrl_c_keeps_what_was_scored_and_resume_finishes_it(tiny_checkpoint, videos, tmp_path, capsys, monkeypatch,
                                                             suffix):
    from clipbert_emo.predict import Predictor

    _, good, _ = videos
    paths = [str(v) for v in good[:4]]
    reference = tmp_path / f"ref{suffix}"
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(reference), *FAST]) == 0
    capsys.readouterr()

    out = tmp_path / f"r{suffix}"
    real, calls, interrupt = Predictor._result, [], [3]

    def scorer(self, *a, **k):  # the third video is where the user presses Ctrl-C
        calls.append(a[0])
        if len(calls) == interrupt[0]:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Predictor, "_result", scorer)
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), *FAST]) == 130
    _one_line_error(capsys, "interrupted: 2 of 4 results are in", str(out), "--resume")
    assert [r["video"] for r in _results(out)] == paths[:2]  # valid, holding the two videos scored

    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), *FAST]) == 2  # not silently replaced
    _one_line_error(capsys, f"--out {out} already holds 2 result(s)", "--resume", "--overwrite")

    calls.clear()
    interrupt[0] = None
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), "--resume", *FAST]) == 0
    assert calls == paths[2:]  # only the rest scored
    assert "2 of 2 videos scored; 2 already in" in capsys.readouterr().out
    assert out.read_text() == reference.read_text()  # as if never interrupted

    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), "--overwrite", *FAST]) == 0
    assert len(calls) == 6 and out.read_text() == reference.read_text()


def test_a_line_cut_short_by_a_kill_is_dropped_on_resume(tiny_checkpoint, videos, tmp_path, capsys):
    _, good, _ = videos
    paths = [str(v) for v in good[:3]]
    out = tmp_path / "r.jsonl"
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), *FAST]) == 0
    whole = out.read_text()
    lines = whole.splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:40])  # killed in the middle of the second line
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), "--resume", *FAST]) == 0
    assert out.read_text() == whole


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_unwritable_out_fails_before_scoring_and_names_it(tiny_checkpoint, videos, tmp_path, capsys, monkeypatch,
                                                          suffix):
    from clipbert_emo.predict import Predictor

    root, _, _ = videos
    locked = tmp_path / "locked"
    locked.mkdir()
    real_open = os.open

    def no_write_in_locked(path, *a, **k):  # what chmod 555 does to anyone but root (the tests run as root)
        if os.path.dirname(os.fspath(path)) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", no_write_in_locked)
    monkeypatch.setattr(Predictor, "predict_many", lambda *a, **k: pytest.fail("scored before --out was checked"))
    out = locked / f"r{suffix}"
    assert main(["predict", str(tiny_checkpoint), str(root), "--out", str(out), "-q"]) == 2
    line = _one_line_error(capsys, f"cannot write --out {out}: permission denied")
    assert ".part" not in line
    assert main(["predict", str(tiny_checkpoint), str(root), "--out", str(tmp_path / "no" / "r.csv"), "-q"]) == 2
    _one_line_error(capsys, f"folder {tmp_path / 'no'} does not exist")


def test_full_disk_is_one_line_and_keeps_the_results_before(tiny_checkpoint, videos, tmp_path, capsys, monkeypatch):
    _, good, _ = videos
    paths = [str(v) for v in good[:4]]
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")  # every write: ENOSPC
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(full), *FAST]) == 2
    _one_line_error(capsys, f"cannot write --out {full}: the disk is full", "0 result(s)", "--resume")

    out = tmp_path / "r.csv"
    real_write, ours = os.write, []

    def fills_up(fd, data):  # the header and two rows fit; the third row stops half-way
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(out):
            ours.append(fd)
            if len(ours) == 4:
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", fills_up)
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), *FAST]) == 2
    _one_line_error(capsys, f"cannot write --out {out}: the disk is full", "the 2 result(s) written before it are kept")
    assert [r["video"] for r in _results(out)] == paths[:2]  # the half row was cut back off
    monkeypatch.setattr(os, "write", real_write)
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), "--resume", *FAST]) == 0
    assert [r["video"] for r in _results(out)] == paths


def test_full_disk_while_rewriting_json_keeps_the_last_whole_document(tiny_checkpoint, videos, tmp_path, capsys,
                                                                      monkeypatch):
    from pathlib import Path

    from clipbert_emo.cli import results_file

    _, good, _ = videos
    paths = [str(v) for v in good[:4]]
    out = tmp_path / "r.json"
    monkeypatch.setattr(results_file, "JSON_REWRITE_S", 0.0)  # a rewrite per result
    real_write_text, rewrites = Path.write_text, []

    def fills_up(self, *a, **k):  # "[]", then one result, then two; the third result finds the disk full
        if self.name.startswith(".r.json."):
            rewrites.append(self)
            if len(rewrites) == 4:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", fills_up)
    assert main(["predict", str(tiny_checkpoint), *paths, "--out", str(out), *FAST]) == 2
    line = _one_line_error(capsys, f"cannot write --out {out}: the disk is full",
                           "the 2 result(s) written before it are kept")
    assert ".part" not in line and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left
    assert [r["video"] for r in _results(out)] == paths[:2]


def test_non_utf8_file_name_decodes_like_a_plain_one_and_is_written(tiny_checkpoint, videos, tmp_path, capsys,
                                                                      caplog):
    _, good, _ = videos
    folder = tmp_path / "v"
    folder.mkdir()
    odd = os.fsdecode(str(folder).encode() + b"/vid\xff.mp4")  # bytes a Linux file name may hold
    shutil.copy(good[0], odd)
    shutil.copy(good[0], folder / "plain.mp4")
    for suffix in (".csv", ".jsonl", ".json"):
        out = tmp_path / f"r{suffix}"
        assert main(["predict", str(tiny_checkpoint), str(folder), "--out", str(out), *FAST]) == 0
        rows = {r["video"]: r for r in _results(out)}
        assert set(rows) == {str(folder / "plain.mp4"), f"{folder}/vid\\xff.mp4"}  # the odd byte as \xff
        a, b = rows.values()
        assert {k: v for k, v in a.items() if k != "video"} == {k: v for k, v in b.items() if k != "video"}
        assert main(["predict", str(tiny_checkpoint), str(folder), "--out", str(out), "--resume", *FAST]) == 0
        assert "0 of 0 videos scored; 2 already in" in capsys.readouterr().out  # matched by the name as written
    assert "damaged" not in caplog.text


def test_fifo_and_unlistable_folder_are_reported_not_hung_or_hidden(tiny_checkpoint, videos, tmp_path, capsys,
                                                                    monkeypatch):
    _, good, _ = videos
    folder = tmp_path / "v"
    (folder / "locked").mkdir(parents=True)
    shutil.copy(good[0], folder / "locked" / "hidden.mp4")
    shutil.copy(good[1], folder / "ok.mp4")
    fifo = folder / "pipe.mp4"
    os.mkfifo(fifo)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": str(fifo)}) + "\n" + json.dumps({"video": str(good[2])}) + "\n")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 on the subfolder, which root would not feel
        if os.fspath(path) == str(folder / "locked"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    before = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("opened the FIFO: blocked"))
    signal.alarm(120)
    try:
        out = tmp_path / "r.jsonl"
        assert main(["predict", str(tiny_checkpoint), str(folder), str(manifest), str(fifo), "--out", str(out),
                     *FAST]) == 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
    err = capsys.readouterr().err
    assert f"cannot read {folder / 'locked'}: cannot list this folder: permission denied" in err
    rows = _results(out)
    scored = [r["video"] for r in rows if "error" not in r]
    assert scored == [str(folder / "ok.mp4"), str(good[2])]
    errors = {r["video"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {str(folder / "locked"), str(fifo)} and len(rows) == 6  # the FIFO: folder, manifest, PATH
    assert sum("not a regular file (a FIFO); not opened" in r["error"] for r in rows if "error" in r) == 3


@pytest.mark.parametrize("option,value,message", [("--workers", "-1", "--workers must be >= 0, got -1"),
                                                  ("--batch-size", "0", "--batch-size must be >= 1, got 0"),
                                                  ("--n-test", "0", "--n-test must be >= 1, got 0"),
                                                  ("--threads", "x", "--threads must be a whole number")])
def test_bad_numbers_are_refused_when_parsed(tiny_checkpoint, videos, capsys, option, value, message):
    root, _, _ = videos
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tiny_checkpoint), str(root), option, value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resume_and_overwrite_need_an_out_file(tiny_checkpoint, videos, tmp_path, capsys):
    root, _, _ = videos
    assert main(["predict", str(tiny_checkpoint), str(root), "--resume"]) == 2
    _one_line_error(capsys, "give --out FILE")
    assert main(["predict", str(tiny_checkpoint), str(root), "--resume", "--overwrite", "--out",
                 str(tmp_path / "r.jsonl")]) == 2
    _one_line_error(capsys, "--resume and --overwrite exclude each other")
