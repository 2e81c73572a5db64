"""`clipbert-emo predict` on many videos: folders, manifests, transcripts, --out, timelines, failures."""

import csv
import json
import shutil

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
    assert "ending in .jsonl or .csv" in capsys.readouterr().err
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"video": "x.mp4"}\n')
    assert main(["predict", str(tiny_checkpoint), str(good[0]), "--transcripts", str(bad)]) == 2
    assert "t.jsonl:1" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(tiny_checkpoint), str(empty), "-q"]) == 1
    assert "no video files" in capsys.readouterr().err
