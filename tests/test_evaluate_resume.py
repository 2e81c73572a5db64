"""`evaluate --resume`: a killed evaluation goes on from the batches it saved, to the same report."""

import json

from clipbert_emo.cli import main


def _metrics(folder):
    m = json.loads((folder / "eval_metrics.json").read_text())
    return {k: v for k, v in m.items() if k != "eval_seconds"}


def test_killed_evaluation_resumes_from_its_saved_batches(tiny_checkpoint, synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.data import loading
    from clipbert_emo.eval import progress

    manifest = str(synthemo_dir / "train.jsonl")  # 16 samples: 4 batches of 4
    ref = tmp_path / "ref"
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(ref), "-q", "--batch-size", "4"]) == 0
    assert not (ref / progress.FOLDER).exists()  # removed with the report written

    out = tmp_path / "run"
    real_add, added = progress.EvalProgress.add, []

    def killed_after_two_batches(self, *a):
        real_add(self, *a)
        added.append(1)
        if len(added) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.EvalProgress, "add", killed_after_two_batches)
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(out), "-q", "--batch-size", "4"]) == 130
    assert len(list((out / progress.FOLDER).glob("*.pt"))) == 2 and not (out / "eval_metrics.json").exists()
    monkeypatch.setattr(progress.EvalProgress, "add", real_add)

    real_loader, sizes = loading.make_loader, []

    def counted(manifest, *a, **k):
        sizes.append(len(manifest.samples))
        return real_loader(manifest, *a, **k)

    monkeypatch.setattr("clipbert_emo.eval.evaluate.make_loader", counted)
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(out), "-q", "--batch-size", "4",
                 "--resume"]) == 0
    assert sizes == [8]  # only the samples not saved were scored
    assert _metrics(out) == _metrics(ref)
    assert _metrics(out)["num_samples"] == 16
    assert not (out / progress.FOLDER).exists()


def test_saved_batches_of_another_evaluation_are_not_mixed_in(tiny_checkpoint, synthemo_dir, tmp_path, monkeypatch,
                                                               capsys):
    from clipbert_emo.eval import progress

    manifest = str(synthemo_dir / "val.jsonl")
    out = tmp_path / "run"
    real_add = progress.EvalProgress.add

    def killed_after_one_batch(self, *a):
        real_add(self, *a)
        raise KeyboardInterrupt

    monkeypatch.setattr(progress.EvalProgress, "add", killed_after_one_batch)
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(out), "-q", "--batch-size", "4"]) == 130
    monkeypatch.setattr(progress.EvalProgress, "add", real_add)
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(out), "-q", "--n-test", "2",
                 "--resume"]) == 2
    assert "holds the progress of another evaluation" in capsys.readouterr().err
    # without --resume the old batches go and the evaluation starts over
    assert main(["evaluate", str(tiny_checkpoint), manifest, "--out", str(out), "-q", "--n-test", "2"]) == 0
    assert json.loads((out / "eval_metrics.json").read_text())["num_samples"] == 6
    assert not (out / progress.FOLDER).exists()
