"""`predict --out` over several processes (`accelerate launch`, 2 gloo ranks on CPU) and `--resume` after a killed
run: the same file, to the byte, as one process writes; each video scored once; broken videos reported.

Each launch costs 10-30 s of start-up here, so there are three: a fresh 2-rank run (JSONL), a 2-rank run killed
half-way and finished by one process (CSV), and a 1-process run stopped half-way and finished by 2 ranks (JSON).
"""

import csv
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from clipbert_emo.cli import main
from clipbert_emo.cli.predict_parts import batches_of, part_files, part_path
from support.launch import LAUNCH_DDP, ROOT, ddp_env

FAST = ["-q", "--batch-size", "2", "--workers", "0"]


@pytest.fixture(scope="module")
def corpus(synthemo_dir, tmp_path_factory):
    """Six SynthEmo videos in a nested folder, a zero-byte .mp4 and a text file named .mp4; and a missing path."""
    root = tmp_path_factory.mktemp("corpus")
    shutil.copytree(synthemo_dir / "videos" / "test", root / "a")
    (root / "a" / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("these are notes, not a video\n")
    return [str(root), str(root / "gone.mp4")]


def _launch(args, script=("-m", "clipbert_emo.cli"), env=None):
    cmd = [*LAUNCH_DDP, *script, "predict", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**ddp_env(), **(env or {})},
                          cwd=ROOT)


def _reference(checkpoint, corpus, out):
    """What one process writes."""
    assert main(["predict", str(checkpoint), *corpus, "--out", str(out), *FAST]) == 1  # 3 paths fail
    return out.read_bytes()


def _rows(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        return list(csv.DictReader(path.open(newline="")))
    return json.loads(path.read_text())


def _check_rows(rows, corpus):
    videos = Counter(r["video"] for r in rows)
    assert len(videos) == 9 and set(videos.values()) == {1}  # 6 videos + 3 broken paths, each once
    errors = {Path(r["video"]).name: r["error"] for r in rows if r.get("error")}
    assert set(errors) == {"empty.mp4", "notes.mp4", "gone.mp4"}
    assert "empty" in errors["empty.mp4"] and "not found" in errors["gone.mp4"]
    assert "cannot open video" in errors["notes.mp4"]


def test_two_processes_write_what_one_process_writes(tiny_checkpoint, corpus, tmp_path):
    want = _reference(tiny_checkpoint, corpus, tmp_path / "one.jsonl")
    out = tmp_path / "two.jsonl"
    proc = _launch([tiny_checkpoint, *corpus, "--out", out, *FAST])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == want
    _check_rows(_rows(out), corpus)
    assert part_files(out) == []  # removed once merged
    # the failures are named on the terminal, and rank 0 alone prints the table
    assert "cannot read" in proc.stderr and f"{corpus[1]}: file not found" in proc.stderr
    assert proc.stdout.count("6 of 9 videos scored, 3 failed; written:") == 1


def test_killed_run_is_finished_by_one_process(tiny_checkpoint, corpus, tmp_path, monkeypatch):
    from clipbert_emo.predict import Predictor

    want = _reference(tiny_checkpoint, corpus, tmp_path / "one.csv")
    out = tmp_path / "r.csv"
    killer = ROOT / "tests" / "support" / "predict_killer.py"
    proc = _launch([tiny_checkpoint, *corpus, "--out", out, *FAST], script=(str(killer),),
                   env={"PREDICT_KILL_RANK": "1"})
    assert proc.returncode != 0
    parts = part_files(out)
    assert part_path(out, 1) in parts
    held = [r for p in parts for r in _rows_jsonl(p)]
    assert len(_rows_jsonl(part_path(out, 1))) == 1  # rank 1 died after its first result, which was kept
    assert len(held) < 8 and len({r["video"] for r in held}) == len(held)
    assert _rows(out) == []  # never merged: rank 0 writes --out only when every rank is done

    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), *FAST]) == 2  # not silently redone

    real, calls = Predictor._result, []

    def counted(self, *a, **k):
        calls.append(a[0])
        return real(self, *a, **k)

    monkeypatch.setattr(Predictor, "_result", counted)
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), "--resume", *FAST]) == 1
    assert out.read_bytes() == want  # as if never killed
    assert part_files(out) == []
    scored_before = {r["video"] for r in held if "error" not in r}
    assert set(calls).isdisjoint(scored_before) and len(calls) == 6 - len(scored_before)


def test_stopped_run_is_finished_by_two_processes(tiny_checkpoint, corpus, tmp_path, monkeypatch, capsys):
    from clipbert_emo.predict import Predictor

    want = _reference(tiny_checkpoint, corpus, tmp_path / "one.json")
    out = tmp_path / "r.json"
    real, calls = Predictor._result, []

    def ctrl_c_at_the_third(self, *a, **k):
        calls.append(a[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Predictor, "_result", ctrl_c_at_the_third)
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), *FAST]) == 130
    assert len(_rows(out)) == 2
    proc = _launch([tiny_checkpoint, *corpus, "--out", out, "--resume", *FAST])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == want
    _check_rows(_rows(out), corpus)
    assert "already in" in proc.stdout and part_files(out) == []


def _rows_jsonl(path):
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


# ---- in one process: the plan, the part files of a merge killed half-way -----------------------------------------

def test_each_rank_takes_every_other_batch_of_the_one_process_plan():
    todo = [{"batch": b} for b in (0, 0, 1, 1, 2, 2, 3, 5, 5, 6)]  # batch 4 was done before
    shares = [batches_of(todo, r, 3) for r in range(3)]
    assert sorted(k for positions, _ in shares for k in positions) == list(range(len(todo)))  # each once
    assert shares[0] == ([0, 1, 6], [[0, 1], [2]])  # batches 0 and 3
    assert shares[1] == ([2, 3, 7, 8], [[0, 1], [2, 3]])  # batches 1 and 5
    assert shares[2] == ([4, 5, 9], [[0, 1], [2]])  # batches 2 and 6
    assert batches_of(todo) == (list(range(10)), [[0, 1], [2, 3], [4, 5], [6], [7, 8], [9]])
    assert batches_of([], 1, 2) == ([], [])


def test_a_merge_killed_half_way_is_finished_without_duplicates(tiny_checkpoint, corpus, tmp_path, monkeypatch):
    from clipbert_emo.predict import Predictor

    want = _reference(tiny_checkpoint, corpus, tmp_path / "one.jsonl")
    lines = want.decode().splitlines(keepends=True)
    out = tmp_path / "r.jsonl"
    # a 3-rank run whose rank 0 was killed while appending to --out: the part files hold 7 results (one line
    # cut short by the kill), --out the first 3 of them
    part_path(out, 0).write_text(lines[0] + lines[3] + lines[6])
    part_path(out, 1).write_text(lines[1] + lines[4] + lines[5][:30])
    part_path(out, 2).write_text(lines[2])
    out.write_text("".join(lines[:3]))
    calls = []
    real = Predictor._result
    monkeypatch.setattr(Predictor, "_result", lambda self, *a, **k: calls.append(a[0]) or real(self, *a, **k))
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), "--resume", *FAST]) == 1
    assert out.read_bytes() == want
    assert part_files(out) == []
    assert sorted(calls) == sorted(json.loads(line)["video"] for line in [lines[5], lines[7]]
                                   if "error" not in json.loads(line))


def test_part_files_are_neither_ignored_nor_silently_dropped(tiny_checkpoint, corpus, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    part_path(out, 3).write_text('{"video": "x.mp4", "error": "x"}\n')
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "part files" in err and "r.jsonl.part3.jsonl" in err and "--resume" in err and "--overwrite" in err
    part_path(out, 3).write_text("not json\n")
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), "--resume", *FAST]) == 2
    assert "r.jsonl.part3.jsonl: line 1 is not a predict result" in capsys.readouterr().err
    assert main(["predict", str(tiny_checkpoint), *corpus, "--out", str(out), "--overwrite", *FAST]) == 1
    assert part_files(out) == [] and len(_rows(out)) == 9


def test_rank_threads_share_the_free_cores(monkeypatch):
    from clipbert_emo import ranks, runtime

    monkeypatch.setattr(runtime, "default_threads", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ranks.rank_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what accelerate launch sets unless told otherwise
    assert ranks.rank_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert ranks.rank_threads() == 4  # never more than this rank's share
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert ranks.rank_threads() == 1


def test_under_a_launcher_predict_needs_an_out_file(tiny_checkpoint, corpus, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # checked before any process group is made
    assert main(["predict", str(tiny_checkpoint), *corpus]) == 2
    assert "give --out FILE" in capsys.readouterr().err


# ---- search: the feature cache built by two ranks ------------------------------------------------------------------

def test_two_ranks_build_the_search_cache_together(make_random_checkpoint, synthemo_dir, tmp_path, capsys):
    folder = tmp_path / "videos"
    shutil.copytree(synthemo_dir / "videos" / "test", folder)
    (folder / "broken.mp4").write_bytes(b"not a video")
    checkpoint = make_random_checkpoint(tmp_path / "retrieval", ["data.task=retrieval"])
    query = ["search", checkpoint, folder, "a face that smiles", "--json", "-q"]
    proc = subprocess.run([*LAUNCH_DDP, "-m", "clipbert_emo.cli", *map(str, query)], capture_output=True, text=True,
                          timeout=600, env=ddp_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout)  # rank 0 alone prints
    assert (two["computed"], two["from_cache"]) == (6, 0)  # each video computed once, by one of the ranks
    assert [Path(w).name for w, _ in two["skipped"]] == ["broken.mp4"]
    cache = Path(two["cache"])
    assert len(list(cache.glob("*.safetensors"))) == 6 and len(list(cache.glob("*.failed.json"))) == 1
    # one process now finds every video in the cache, and ranks them as the two ranks did
    assert main([*map(str, query)]) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["computed"], one["from_cache"]) == (0, 6)
    assert one["results"] == two["results"] and one["skipped"] == two["skipped"]
