"""Fusion strategies (model.fusion), modality dropout, the dropped-modality evaluation and compare-fusion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipbert_emo.build import build_model
from clipbert_emo.config import load_config
from clipbert_emo.models.registry import fusion_names, refusal
from support import TINY_OVERRIDES, data_overrides

VOCAB = 50
# Every strategy against every task kind and modality subset (shapes, gradients, chunked scoring, evaluation,
# prediction, checkpoint round trip, refusals): tests/test_fusion_contract.py. Here: what one strategy or the
# comparison does beyond that contract.


def _cfg(*extra):
    return load_config(None, [*TINY_OVERRIDES, "model.num_layers=1", *extra])


def test_early_is_todays_model_step_for_step(synthemo_dir, tmp_path):
    """model.fusion=early reproduces the golden per-step losses recorded before fusion strategies existed."""
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from support.golden import check_golden, finetune_record

    assert type(build_model(_cfg("model.fusion=early"), VOCAB)) is ClipBertForEmotion
    record = finetune_record("single_label_video_text", synthemo_dir, tmp_path, "model.fusion=early")
    check_golden("single_label_video_text", record)


def test_modality_dropout_drops_each_modality_at_the_expected_rate_and_never_all():
    from clipbert_emo.data.dataset import drop_modalities

    p, trials = 0.4, 4000
    rng = np.random.default_rng(0)
    counts = {"video": 0, "audio": 0, "text": 0}
    for _ in range(trials):
        item = {"video_present": True, "audio_present": True}
        drop_modalities(item, ["video", "audio"], True, p, rng)
        kept = [n for n in counts if item[f"{n}_present"]]
        assert kept, "every modality was dropped"
        for n in counts:
            counts[n] += not item[f"{n}_present"]
    # dropped alone with p, except that when all three drew a drop one of them (1 in 3) was kept
    expected = p - p ** 3 / 3
    for n, c in counts.items():
        assert abs(c / trials - expected) < 0.03, (n, c / trials, expected)
    # a sample that has one modality (no sound track, no text) keeps it
    item = {"video_present": True, "audio_present": False}
    for _ in range(50):
        drop_modalities(item, ["video", "audio"], False, 0.9, rng)
        assert item["video_present"]


def test_modality_dropout_reaches_the_batches_and_replays_on_resume(synthemo_dir, tmp_path):
    from clipbert_emo.data.loading import make_loader
    from clipbert_emo.data.text import build_wordpiece_tokenizer
    from clipbert_emo.tasks import get_task, load_split

    cfg = _cfg(*data_overrides(synthemo_dir), "data.modality_dropout=0.5")
    tok = build_wordpiece_tokenizer(["a face"], 50, tmp_path / "tok")
    task = get_task("single_label")

    def masks(epoch):
        loader = make_loader(load_split(cfg.data, "train"), cfg.data, tok, True, 8, 0, task=task)
        loader.dataset.set_epoch(epoch)
        loader.sampler.set_position(epoch, 0)
        return [(b["index"].tolist(), b["text_present"].tolist(), b["video_present"].tolist()) for b in loader]

    first, again = masks(1), masks(1)
    assert first == again  # a function of (seed, epoch, index): a resumed run drops the same modalities
    text = [t for _, ts, _ in first for t in ts]
    video = [v for _, _, vs in first for v in vs]
    assert all(t or v for t, v in zip(text, video))
    assert not all(text) and not all(video)
    # no dropout at evaluation
    loader = make_loader(load_split(cfg.data, "val"), cfg.data, tok, False, 8, 0, task=task)
    assert all(all(b["video_present"].tolist()) and "text_present" not in b for b in loader)


@pytest.fixture(scope="module")
def late_run(synthemo_dir, tmp_path_factory):
    """A tiny late-fusion model trained 2 steps with modality dropout, and its run folder."""
    from clipbert_emo.train.finetune import finetune

    out = tmp_path_factory.mktemp("late")
    cfg = _cfg(*data_overrides(synthemo_dir), f"train.output_dir={out}", "model.fusion=late", "train.max_steps=2",
               "data.modality_dropout=0.3")
    finetune(cfg, progress=False)
    return out


def test_evaluate_drop_scores_the_checkpoint_without_a_modality(late_run, synthemo_dir, tmp_path, capsys):
    from clipbert_emo.cli import main
    from clipbert_emo.eval.evaluate import evaluate

    test = str(synthemo_dir / "test.jsonl")
    full = evaluate(late_run / "checkpoint", test, num_clips=2, progress=False)
    for dropped in ("text", "video"):
        res = evaluate(late_run / "checkpoint", test, num_clips=2, progress=False, drop=(dropped,))
        assert res["dropped"] == [dropped]
        assert res["num_samples"] == full["num_samples"]
    # the CLI: repeatable --drop, and a modality the model does not read is a one-line error
    rc = main(["evaluate", str(late_run / "checkpoint"), test, "--n-test", "2", "--drop", "text", "--json", "-q",
               "--out", str(tmp_path / "e")])
    assert rc == 0 and json.loads(capsys.readouterr().out)["dropped"] == ["text"]
    rc = main(["evaluate", str(late_run / "checkpoint"), test, "--drop", "audio", "-q", "--out", str(tmp_path / "f")])
    assert rc == 2 and "--drop audio" in capsys.readouterr().err


def test_dropping_every_modality_but_one_matches_that_branch_alone(late_run, synthemo_dir):
    """Late fusion without text is its video head's logits: the weights renormalise over what is left."""
    from clipbert_emo.checkpoint import load_checkpoint
    from clipbert_emo.data.dataset import model_inputs
    from clipbert_emo.data.loading import make_loader
    from clipbert_emo.tasks import get_task, load_split

    model, cfg, tok = load_checkpoint(late_run / "checkpoint")
    batch = next(iter(make_loader(load_split(cfg.data, "test"), cfg.data, tok, False, 4, 0,
                                  task=get_task("single_label"), num_clips=2)))
    inputs = model_inputs(batch)
    with torch.no_grad():
        out = model(**inputs, text_present=torch.zeros(len(batch["index"]), dtype=torch.bool))
    assert torch.allclose(out.logits, out.modality_logits["video"], atol=1e-5)


def test_hybrid_with_modality_dropout_resumes_exactly(synthemo_dir, tmp_path, monkeypatch):
    from clipbert_emo.train import engine as loop
    from clipbert_emo.train.finetune import finetune

    def cfg(out, *extra):
        return _cfg(f"data.train_manifest={synthemo_dir / 'train.jsonl'}", f"train.output_dir={out}",
                    "model.fusion=hybrid", "data.modality_dropout=0.5", "train.epochs=2", "train.save_every_steps=3",
                    *extra)

    full = finetune(cfg(tmp_path / "full"), progress=False)

    class Killed(Exception):
        pass

    def kill_at_5(step):
        if step == 5:
            raise Killed

    monkeypatch.setattr(loop, "_after_step", kill_at_5)
    with pytest.raises(Killed):
        finetune(cfg(tmp_path / "killed"), progress=False)
    monkeypatch.setattr(loop, "_after_step", lambda step: None)
    resumed = finetune(cfg(tmp_path / "killed", "train.resume=true"), progress=False)
    assert resumed["step_losses"] == pytest.approx(full["step_losses"], rel=0, abs=1e-6)


def test_compare_fusion_end_to_end(synthemo_dir, tmp_path):
    from clipbert_emo.cli import main

    out = tmp_path / "cmp"
    rc = main(["compare-fusion", "-q", "--seeds", "3", "--n-test", "2", "--out", str(out),
               *TINY_OVERRIDES, "data.use_audio=false", "model.pretrained=false", "model.num_layers=1", "train.max_steps=1",
               *data_overrides(synthemo_dir)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    names = [r["fusion"] for r in summary["rows"]]
    fusing = [f for f in fusion_names() if refusal(f, "single_label", ["text", "video"]) is None]  # not face_expression
    assert names == [*fusing, "text only", "video only"]
    assert summary["removed"] == ["text", "video"] and summary["metrics"] == ["macro_f1", "accuracy"]
    for row in summary["rows"]:
        assert 0 <= row["macro_f1"] <= 1 and row["macro_f1_std"] == 0.0  # one seed: no spread
        assert row["params"] > 0 and row["train_ms_per_step"] > 0 and row["infer_ms_per_video"] > 0
        # a strategy is scored without each modality; a one-modality baseline has nothing to remove
        assert (row["macro_f1_without_text"] is not None) == (row["fusion"] in fusion_names())
    by_name = {r["fusion"]: r for r in summary["rows"]}
    assert by_name["cross_attention"]["params"] != by_name["early"]["params"]
    assert (out / "summary.png").stat().st_size > 0
    assert (out / "seed3" / "late" / "checkpoint").is_dir()


def test_compare_fusion_refuses_a_strategy_before_training_any(synthemo_dir, tmp_path, monkeypatch, capsys):
    """On a multiple-choice config, late fusion is refused up front, not after early fusion has trained."""
    import clipbert_emo.train.finetune as finetune_module
    from clipbert_emo.cli import main

    def never(*args, **kwargs):
        raise AssertionError("nothing may train before every variant is checked")

    monkeypatch.setattr(finetune_module, "finetune", never)
    rc = main(["compare-fusion", "-q", "--config", "synthemo_qa_mc", "--out", str(tmp_path / "cmp"),
               *TINY_OVERRIDES, *data_overrides(synthemo_dir), "model.contrastive_weight=0",
               "model.contrastive_score_weight=0"])
    assert rc == 2
    assert "model.fusion=late cannot be used with data.task=qa_mc" in capsys.readouterr().err


@pytest.mark.parametrize("fusion", ["late", "cross_attention", "hybrid"])
def test_an_early_fusion_checkpoint_starts_the_shared_parts(fusion, tmp_path):
    """A ClipBERT-layout checkpoint (pretraining or early fine-tuning) fills the CNN and the text BERT of every
    strategy, and all of the early part of hybrid; the new parts are reported as missing."""
    from safetensors.torch import save_file

    from clipbert_emo.checkpoint import load_weights

    torch.manual_seed(0)
    early = build_model(_cfg(), VOCAB)
    save_file({k: v.contiguous() for k, v in early.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    model = build_model(_cfg(f"model.fusion={fusion}"), VOCAB)
    report = load_weights(model, tmp_path / "w.safetensors")
    assert report["shape_mismatch"] == []
    theirs, ours = early.state_dict(), model.state_dict()
    shared = ["cnn.", "transformer.bert.embeddings.", "transformer.bert.encoder."]
    if fusion == "hybrid":
        shared += ["transformer.bert.visual_embeddings.", "head."]
    for prefix in shared:
        keys = [k for k in theirs if k.startswith(prefix)]
        assert keys and all(torch.equal(ours[k], theirs[k]) for k in keys), prefix
    assert report["missing"] and all(not k.startswith(tuple(shared)) for k in report["missing"])


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["late", "cross_attention", "hybrid"])
def test_two_process_ddp_trains_each_strategy_with_modality_dropout(fusion, synthemo_dir, tmp_path):
    """Two gloo ranks: DDP raises on the second step if a parameter got no gradient in the first."""
    from support.launch import run_ddp

    proc = run_ddp(tmp_path, synthemo_dir, f"model.fusion={fusion}", "data.modality_dropout=0.5",
                   "model.num_layers=1", "train.max_steps=3", "data.val_manifest=", "data.test_manifest=")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2 and len(set(metrics["rank_param_checksums"])) == 1


def test_bad_fusion_settings_are_refused_by_name():
    from clipbert_emo.config import ConfigError

    # An unknown model.fusion is refused when the model is built (test_fusion_contract.py): the names are the registry's.
    for bad, key in (("data.modality_dropout=1.0", "data.modality_dropout"), ("model.cross_layers=0", "model.cross_layers")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _cfg(bad)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["late", "cross_attention", "hybrid"])
def test_zero3_bf16_trains_each_strategy(fusion, synthemo_dir, tmp_path):
    """DeepSpeed ZeRO-3 with 16-bit weights: partitioned parameters, the inputs cast to the weights' type."""
    pytest.importorskip("deepspeed")
    from support.launch import check_deepspeed_run, launch_deepspeed

    out = tmp_path / fusion
    proc = launch_deepspeed(3, out, synthemo_dir, "train.epochs=2", "train.mixed_precision=bf16",
                            f"model.fusion={fusion}", "model.num_layers=1", "data.modality_dropout=0.3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    check_deepspeed_run(out, "bf16")
