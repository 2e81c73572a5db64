"""Fusion strategies (model.fusion), modality dropout, the dropped-modality evaluation and compare-fusion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from einops import repeat

from clipbert_emo.build import build_model
from clipbert_emo.config import TASKS, load_config
from clipbert_emo.models.fusion_strategies import FUSION_STRATEGIES
from clipbert_emo.tasks import get_task  # importing the registry registers every built-in task kind in TASKS
from conftest import TINY_OVERRIDES, data_overrides

B, N, L, VOCAB = 2, 2, 6, 50
ENCODERS = {"text": ("transformer.", "text_transformer."), "video": ("cnn.",), "audio": ("audio_encoder.",)}


def _cfg(*extra):
    return load_config(None, [*TINY_OVERRIDES, "model.num_layers=1", *extra])


def _inputs(seed=0, modalities=("video", "audio")):
    g = torch.Generator().manual_seed(seed)
    inputs = {"input_ids": torch.randint(5, VOCAB, (B, L), generator=g),
              "attention_mask": torch.tensor([[1] * L, [1] * (L - 2) + [0, 0]])}
    if "video" in modalities:
        inputs["video"] = torch.randint(0, 255, (B, N, 1, 3, 32, 32), generator=g, dtype=torch.uint8)
    if "audio" in modalities:
        inputs["audio"] = torch.randn(B, N, 64, 201, generator=g)
    return inputs


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_each_strategy_gives_clip_and_video_logits_and_trains_every_encoder(fusion):
    cfg = _cfg("data.use_audio=true", f"model.fusion={fusion}", "model.visual_aux_weight=0.5")
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB)
    out = model(**_inputs(), labels=torch.tensor([1, 4]))
    assert out.logits.shape == (B, 6) and out.clip_logits.shape == (B, N, 6)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    # every parameter takes part (DDP without find_unused_parameters), and each encoder learns
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []
    for modality, prefixes in ENCODERS.items():
        grads = [p.grad.abs().sum() for n, p in model.named_parameters() if n.startswith(prefixes)]
        assert grads and float(sum(grads)) > 0, f"{fusion}: no gradient reaches the {modality} encoder"
    if fusion in ("late", "hybrid"):  # each modality's own logits stay available for analysis
        assert set(out.modality_logits) == {"text", "video", "audio"}
        assert all(v.shape == (B, 6) for v in out.modality_logits.values())
        assert torch.allclose(out.modality_weights.sum(dim=1), torch.ones(B))
    if fusion == "hybrid":
        assert out.loss_modality_aux is not None and out.loss_modality_aux > 0


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES[1:])
@pytest.mark.parametrize("subset,task", [("text", "single_label"), ("video", "regression"),
                                         ("audio+text", "multilabel")])
def test_each_strategy_reads_any_subset_of_modalities_for_any_task(fusion, subset, task):
    names = subset.split("+")
    cfg = _cfg(f"model.fusion={fusion}", f"data.use_text={'text' in names}", f"data.use_video={'video' in names}",
               f"data.use_audio={'audio' in names}", f"data.task={task}")
    from clipbert_emo.tasks import get_task

    t = get_task(task)
    model = build_model(cfg, VOCAB, criterion=t.criterion(cfg.data, cfg.train))
    labels = {"single_label": torch.tensor([0, 3]), "regression": torch.tensor([0.5, -1.0]),
              "multilabel": torch.tensor([[1.0, 0, 0, 1, 0, 0], [0, 1.0, 0, 0, 0, 0]])}[task]
    out = model(**_inputs(modalities=names), labels=labels)
    width = t.num_outputs(cfg.data)
    clips = 1 if names == ["text"] else N
    assert out.clip_logits.shape == (B, clips, width)
    out.loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    if fusion == "hybrid" and "video" not in names:
        # its early part keeps ClipBERT's visual embeddings in every model, as early fusion does (the
        # accelerator turns DDP's find_unused_parameters on without video)
        assert unused and all(n.startswith("transformer.bert.visual_embeddings.") for n in unused)
    else:
        assert unused == []


# ---- every strategy x every task kind -------------------------------------------------------------------------

TASK_KINDS = tuple(TASKS)  # the built-in kinds: one added to the library joins the matrix (and needs a spec here)
P = 3  # texts per video where a kind scores several: retrieval's caption and two negatives, qa_mc's candidates
# (overrides, labels as the kind's collate gives them for a batch of B = 2, whether it scores P texts per video)
TASK_SPECS = {
    "single_label": ([], torch.tensor([0, 3]), False),
    "multilabel": ([], torch.tensor([[1.0, 0, 0, 1, 0, 0], [0, 1.0, 0, 0, 0, 0]]), False),
    "multitask": (["data.heads=[boredom, engagement]", "data.labels=['0', '1', '2']"],
                  torch.tensor([[0, 2], [1, -1]]), False),  # -1: that head not annotated
    "regression": ([], torch.tensor([0.5, -1.0]), False),
    "qa": (["data.question_types=[feeling, mouth]"], torch.tensor([[0, 0], [-1, 1]]), False),  # -1: out of vocabulary
    "qa_mc": (["data.question_types=[feeling]"], torch.tensor([[0, 0], [2, -1]]), True),  # the right candidate
    "retrieval": ([], torch.tensor([[1, 0, 0], [1, 0, 0]]), True),  # the own caption first, then two negatives
}
# Late fusion has no text-video interaction: a pair's score is a video-only score plus a text-only one.
REFUSED = {("late", "retrieval"), ("late", "qa_mc")}
SPANS = [(0.0, 1.0), (1.0, 2.0)]


def _paired_inputs(seed=0, pairs=P, modalities=("video",)):
    """_inputs with P texts per video: input_ids and attention_mask (B, P, L)."""
    inputs = _inputs(seed, modalities)
    g = torch.Generator().manual_seed(seed + 100)
    inputs["input_ids"] = torch.randint(5, VOCAB, (B, pairs, L), generator=g)
    inputs["attention_mask"] = repeat(inputs["attention_mask"], "b l -> b p l", p=pairs)  # (B, L) -> (B, P, L)
    return inputs


def test_the_matrix_covers_every_task_kind():
    assert set(TASK_SPECS) == set(TASK_KINDS)


@pytest.mark.parametrize("task_kind", TASK_KINDS)
@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_every_strategy_trains_evaluates_and_predicts_every_task_kind(fusion, task_kind):
    """One training step, one evaluation pass and one prediction of a tiny video+text model, or the refusal at
    config validation naming both settings."""
    from clipbert_emo.config import ConfigError
    from clipbert_emo.models.aggregation import aggregate_clip_logits

    extra, labels, paired = TASK_SPECS[task_kind]
    overrides = [f"model.fusion={fusion}", f"data.task={task_kind}", *extra]
    if (fusion, task_kind) in REFUSED:
        with pytest.raises(ConfigError, match=rf"model\.fusion={fusion} cannot be used with data\.task={task_kind}:"):
            _cfg(*overrides)
        return
    cfg = _cfg(*overrides)
    task = get_task(task_kind)
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, criterion=task.criterion(cfg.data, cfg.train))
    inputs = _paired_inputs() if paired else _inputs(modalities=("video",))
    width = task.num_outputs(cfg.data) * (P if paired else 1)
    if task.build_head(cfg.model, 1) is not None and fusion != "late":  # the task's head where the model has one
        assert type(model.head) is type(task.build_head(cfg.model, 1))

    model.train()
    out = model(**inputs, labels=labels)
    assert out.logits.shape == (B, width) and out.clip_logits.shape == (B, N, width)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    grads = dict(model.named_parameters())
    for name in ("cnn.", "transformer.bert.embeddings.word_embeddings.weight"):
        assert sum(float(p.grad.abs().sum()) for n, p in grads.items() if n.startswith(name)) > 0, name
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()

    model.eval()
    clip_logits = model.clip_logits(**inputs, clips_per_pass=1)  # evaluation's bounded passes: the same logits
    torch.testing.assert_close(clip_logits, model.clip_logits(**inputs), atol=1e-5, rtol=1e-4)
    if task.recipe == "retrieval":  # evaluated by ranking every video for every caption
        from clipbert_emo.eval.retrieval import score_matrix
        from clipbert_emo.tasks.retrieval import match_margin, retrieval_metrics

        captions, mask = inputs["input_ids"][:, 0], inputs["attention_mask"][:, 0]  # (B, P, L) -> (B, L)
        with torch.no_grad():
            features = model.encode_features(inputs)
        scores = score_matrix(model, features, {"video": torch.ones(B, dtype=torch.bool)}, captions, mask, ("lse",),
                              progress=False)["lse"]  # (Q, V)
        one = model.clip_logits(captions[:1], mask[:1], inputs["video"][1:])  # caption 0 against video 1
        assert float(scores[0, 1]) == pytest.approx(float(match_margin(aggregate_clip_logits(one, "lse"))[0]),
                                                    abs=1e-5)
        assert 0 <= retrieval_metrics(scores, [0, 1])["r1"] <= 100
        # a prediction scores one text against a video
        clip_logits = model.clip_logits(captions, mask, inputs["video"])  # (B, N, 2)
    else:
        report = task.report(aggregate_clip_logits(clip_logits, cfg.model.aggregation), labels, cfg.data)
        assert task.select_metric in report
    prediction = task.prediction(aggregate_clip_logits(clip_logits, cfg.model.aggregation)[0], clip_logits[0], SPANS,
                                 cfg.data)
    assert "prediction" in prediction and len(prediction["clips"]) == N


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
def test_p_texts_per_video_score_as_each_text_alone(fusion):
    """Texts (B, P, L) give each text the logits it gets alone against the same clips, side by side (B, N, P*K)."""
    cfg = _cfg(f"model.fusion={fusion}", "data.use_audio=true", "model.initializer_range=0.2")
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB).eval()
    inputs = _paired_inputs(modalities=("video", "audio"))
    clips = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    paired = model.clip_logits(**inputs)  # (B, N, P*K)
    alone = torch.stack([model.clip_logits(inputs["input_ids"][:, p], inputs["attention_mask"][:, p], **clips)
                         for p in range(P)], dim=2)  # P x (B, N, K) -> (B, N, P, K)
    assert paired.shape == (B, N, P * 6)
    torch.testing.assert_close(paired.view(B, N, P, 6), alone, atol=1e-5, rtol=1e-4)  # (B, N, P*K) -> (B, N, P, K)
    with torch.no_grad():
        features = model.encode_features(clips)
    torch.testing.assert_close(model.clip_logits_from_features(inputs["input_ids"], inputs["attention_mask"], features),
                               paired, atol=1e-5, rtol=1e-4)


def test_late_fusion_answers_multiple_choice_from_text_alone():
    """Without clips late fusion is a text model, which can score candidate answers; the refusal says so."""
    from clipbert_emo.config import ConfigError

    with pytest.raises(ConfigError, match="data.use_video=false"):
        _cfg("model.fusion=late", "data.task=qa_mc")
    cfg = _cfg("model.fusion=late", "data.task=qa_mc", "data.use_video=false")
    task = get_task("qa_mc")
    model = build_model(cfg, VOCAB, criterion=task.criterion(cfg.data, cfg.train))
    inputs = _paired_inputs(modalities=())
    out = model(**inputs, labels=TASK_SPECS["qa_mc"][1])
    assert out.logits.shape == (B, P) and torch.isfinite(out.loss)
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("fusion", FUSION_STRATEGIES)
@pytest.mark.parametrize("dropped", ["video", "text", "audio"])
def test_a_dropped_modality_contributes_nothing(fusion, dropped):
    """With <name>_present false, what that modality's input holds no longer changes the logits."""
    cfg = _cfg("data.use_audio=true", f"model.fusion={fusion}", "model.initializer_range=0.2")
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB).eval()
    a, b = _inputs(seed=1), _inputs(seed=2)
    mixed = dict(a)  # b's content for the dropped modality, a's for the rest
    if dropped == "text":
        mixed["input_ids"] = torch.where(a["attention_mask"].bool(), b["input_ids"], a["input_ids"])
        mixed["input_ids"][:, 0] = a["input_ids"][:, 0]  # the [CLS] position is kept visible
    else:
        mixed[dropped] = b[dropped]
    absent = {f"{dropped}_present": torch.zeros(B, dtype=torch.bool)}
    with torch.no_grad():
        ref = model.clip_logits(**a, **absent)
        other = model.clip_logits(**mixed, **absent)
        changed = model.clip_logits(**mixed)
    assert torch.allclose(ref, other, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ref, changed, rtol=1e-2, atol=1e-6)  # present, the same change does move them


def test_early_is_todays_model_step_for_step(synthemo_dir, tmp_path):
    """model.fusion=early reproduces the golden per-step losses recorded before fusion strategies existed."""
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from test_engine import _check, _finetune_record, FINETUNE_RUNS

    assert type(build_model(_cfg("model.fusion=early"), VOCAB)) is ClipBertForEmotion
    rewrite, extra = FINETUNE_RUNS["single_label_video_text"]
    FINETUNE_RUNS["early_explicit"] = (rewrite, [*extra, "model.fusion=early"])
    try:
        record = _finetune_record("early_explicit", synthemo_dir, tmp_path)
    finally:
        del FINETUNE_RUNS["early_explicit"]
    _check("single_label_video_text", record)


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
    assert names == [*FUSION_STRATEGIES, "text only", "video only"]
    assert summary["removed"] == ["text", "video"] and summary["metrics"] == ["macro_f1", "accuracy"]
    for row in summary["rows"]:
        assert 0 <= row["macro_f1"] <= 1 and row["macro_f1_std"] == 0.0  # one seed: no spread
        assert row["params"] > 0 and row["train_ms_per_step"] > 0 and row["infer_ms_per_video"] > 0
        # a strategy is scored without each modality; a one-modality baseline has nothing to remove
        assert (row["macro_f1_without_text"] is not None) == (row["fusion"] in FUSION_STRATEGIES)
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
               *TINY_OVERRIDES, *data_overrides(synthemo_dir), "model.contrastive_weight=0"])
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
    from test_accelerator import _run_ddp

    proc = _run_ddp(tmp_path, synthemo_dir, f"model.fusion={fusion}", "data.modality_dropout=0.5",
                    "model.num_layers=1", "train.max_steps=3", "data.val_manifest=", "data.test_manifest=")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2 and len(set(metrics["rank_param_checksums"])) == 1


def test_bad_fusion_settings_are_refused_by_name():
    from clipbert_emo.config import ConfigError

    for bad, key in (("model.fusion=mid", "model.fusion"), ("data.modality_dropout=1.0", "data.modality_dropout"),
                     ("model.cross_layers=0", "model.cross_layers")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _cfg(bad)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["late", "cross_attention", "hybrid"])
def test_zero3_bf16_trains_each_strategy(fusion, synthemo_dir, tmp_path):
    """DeepSpeed ZeRO-3 with 16-bit weights: partitioned parameters, the inputs cast to the weights' type."""
    pytest.importorskip("deepspeed")
    from test_deepspeed import _check_run, _launch

    out = tmp_path / fusion
    proc = _launch(3, out, synthemo_dir, "train.epochs=2", "train.mixed_precision=bf16", f"model.fusion={fusion}",
                   "model.num_layers=1", "data.modality_dropout=0.3")
    assert proc.returncode == 0, proc.stderr[-4000:]
    _check_run(out, "bf16")
