"""The contract every fusion strategy keeps (transformers' ModelTesterMixin idea): every strategy registered in
models/registry.py, against every task kind and every subset of modalities, is checked the same way: output shapes,
a training step whose gradients reach every encoder it reads (and no parameter left without one), chunked = whole
clip scoring, evaluation and prediction through the task kind, a checkpoint save + load that gives the same logits,
and, for a combination the strategy's declarations refuse, the refusal naming both settings. A strategy added to the
registry joins every case here without a line of this file changing."""

from __future__ import annotations

import pytest
import torch
from einops import repeat

from clipbert_emo.build import build_model
from clipbert_emo.config import TASKS, ConfigError, load_config
from clipbert_emo.models.aggregation import aggregate_clip_logits
from clipbert_emo.models.registry import check_fusion, fusion_names, refusal
from clipbert_emo.tasks import get_task  # importing the registry registers every built-in task kind in TASKS
from support import TINY_OVERRIDES

B, N, L, P = 2, 2, 6, 3  # P: texts per video where a kind scores several (retrieval's caption + 2 negatives; qa_mc)
FUSIONS = fusion_names()
# The strategies that read text, video and audio together (face_expression reads faces alone: its refusal of the
# others is checked in the matrix below); the checks that swap one of the three need all of them.
READS_ALL_THREE = [f for f in FUSIONS if refusal(f, "single_label", ["text", "video", "audio"]) is None]
TASK_KINDS = tuple(TASKS)  # the built-in kinds: one added to the library joins the matrix (and needs a spec here)
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
SUBSETS = ("text", "video", "audio", "text+video", "text+audio", "video+audio", "text+video+audio", "face",
           "text+face")
# Every task kind with text and video; every subset of modalities once, each with another task kind; the face
# (FER2013's expression CNN on 64 px grey crops) alone and beside the text.
SUBSET_TASK = {"text": "qa_mc", "video": "regression", "audio": "multilabel", "text+video": "single_label",
               "text+audio": "qa", "video+audio": "multitask", "text+video+audio": "retrieval",
               "face": "single_label", "text+face": "multilabel"}
CASES = sorted({(t, "text+video") for t in TASK_KINDS} | {(t, s) for s, t in SUBSET_TASK.items()})
SPANS = [(0.0, 1.0), (1.0, 2.0)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from more threads, and lose a lot to their synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_matrix_covers_every_task_kind_and_modality_subset():
    assert set(TASK_SPECS) == set(TASK_KINDS) == set(SUBSET_TASK.values()) and set(SUBSET_TASK) == set(SUBSETS)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A tiny WordPiece tokenizer: a checkpoint carries one, and the model's vocabulary is its size."""
    from clipbert_emo.data.text import build_wordpiece_tokenizer

    return build_wordpiece_tokenizer(["a face smiling", "a frowning face", "what is the feeling"], 60,
                                     tmp_path_factory.mktemp("tok"))


def _cfg(fusion: str, task_kind: str, subset: str, *extra):
    names = subset.split("+")
    return load_config(None, [*TINY_OVERRIDES, "model.num_layers=1", f"model.fusion={fusion}", f"data.task={task_kind}",
                              *TASK_SPECS[task_kind][0],
                              *(f"data.use_{m}={m in names}" for m in ("text", "video", "audio", "face")),
                              *extra])


def _inputs(vocab_size: int, subset: str = "text+video+audio", paired: bool = False, seed: int = 0) -> dict:
    """Texts (B, L), or (B, P, L) for P per video, and the clips of each per-clip modality in ``subset``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1] * L, [1] * (L - 2) + [0, 0]])  # one padded text: both mask paths
    inputs = {"input_ids": torch.randint(5, vocab_size, (B, P, L) if paired else (B, L), generator=g),
              "attention_mask": repeat(mask, "b l -> b p l", p=P) if paired else mask}  # (B, L) -> (B, P, L)
    if "video" in subset:
        inputs["video"] = torch.randint(0, 255, (B, N, 1, 3, 32, 32), generator=g, dtype=torch.uint8)
    if "audio" in subset:
        inputs["audio"] = torch.randn(B, N, 64, 201, generator=g)
    if "face" in subset:
        inputs["face"] = torch.randint(0, 255, (B, N, 1, 64, 64), generator=g, dtype=torch.uint8)  # (B, N, T, S, S)
    return inputs


def _build(cfg, vocab_size: int):
    torch.manual_seed(0)
    task = get_task(cfg.data.task)
    return build_model(cfg, vocab_size, criterion=task.criterion(cfg.data, cfg.train))


@pytest.mark.parametrize("task_kind,subset", CASES)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_strategy_keeps_the_contract(fusion, task_kind, subset, vocab, tmp_path):
    """One training step, chunked scoring, one evaluation and one prediction, a checkpoint round trip; or the
    refusal at build time naming both settings."""
    _, labels, paired = TASK_SPECS[task_kind]
    why = refusal(fusion, task_kind, subset.split("+"))
    if why is not None:
        _check_refusal(fusion, task_kind, subset, len(vocab))
        return
    # The visual auxiliary classifier trains only where one text per video is scored.
    cfg = _cfg(fusion, task_kind, subset, *([] if paired else ["model.visual_aux_weight=0.5"]))
    model = _build(cfg, len(vocab))
    inputs = _inputs(len(vocab), subset, paired)
    _check_training_step(model, cfg, inputs, labels, subset, paired)
    model.eval()
    clip_logits = _check_chunked_scoring(model, inputs)
    _check_evaluation_and_prediction(model, cfg, inputs, labels, clip_logits)
    _check_checkpoint_round_trip(model, cfg, vocab, inputs, tmp_path)


def _check_refusal(fusion, task_kind, subset, vocab_size):
    cfg = _cfg(fusion, task_kind, subset)  # the config alone is fine: the strategy refuses, when it is built
    named = rf"model\.fusion={fusion} cannot .*data\.(task={task_kind}|use_)"
    with pytest.raises(ConfigError, match=named):
        check_fusion(cfg)
    with pytest.raises(ConfigError, match=named):
        build_model(cfg, vocab_size)


def _check_training_step(model, cfg, inputs, labels, subset, paired):
    """Shapes; a finite loss; gradients reach every encoder the model reads and every parameter takes part."""
    task = get_task(cfg.data.task)
    width = task.num_outputs(cfg.data) * (P if paired else 1)
    clips = N if {"video", "audio", "face"} & set(subset.split("+")) else 1
    model.train()
    out = model(**inputs, labels=labels)
    assert out.logits.shape == (B, width) and out.clip_logits.shape == (B, clips, width)
    assert torch.isfinite(out.loss)
    if out.modality_logits is not None:  # strategies with a head per modality report each one's logits
        assert set(out.modality_logits) == set(subset.split("+"))
        assert all(v.shape == (B, width) for v in out.modality_logits.values())
        assert torch.allclose(out.modality_weights.sum(dim=1), torch.ones(B))
    if out.loss_modality_aux is not None:
        assert out.loss_modality_aux > 0
    out.loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if "video" not in subset:
        # ClipBERT's visual embeddings are in every early-layout model, video or not (the accelerator turns DDP's
        # find_unused_parameters on without video)
        unused = [n for n in unused if not n.startswith("transformer.bert.visual_embeddings.")]
    assert unused == []
    reached = {"text": "embeddings.word_embeddings.", "video": "cnn.", "audio": "audio_encoder.",
               "face": "face_encoder."}
    for modality in subset.split("+"):
        grads = [float(p.grad.abs().sum()) for n, p in model.named_parameters()
                 if reached[modality] in n and p.grad is not None]
        assert grads and sum(grads) > 0, f"no gradient reaches the {modality} encoder"
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()


def _check_chunked_scoring(model, inputs) -> torch.Tensor:
    """Evaluation scores a bounded number of clips at a time: the same logits as all at once."""
    chunked = model.clip_logits(**inputs, clips_per_pass=1)
    torch.testing.assert_close(chunked, model.clip_logits(**inputs), atol=1e-5, rtol=1e-4)
    return chunked


def _check_evaluation_and_prediction(model, cfg, inputs, labels, clip_logits):
    task, how = get_task(cfg.data.task), cfg.model.aggregation
    if cfg.data.task == "retrieval":  # evaluated by ranking every video for every caption
        from clipbert_emo.eval.retrieval import score_matrix
        from clipbert_emo.tasks.retrieval import match_margin, retrieval_metrics

        captions, mask = inputs["input_ids"][:, 0], inputs["attention_mask"][:, 0]  # (B, P, L) -> (B, L)
        clips = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        with torch.no_grad():
            features = model.encode_features(clips)
        present = {name: torch.ones(B, dtype=torch.bool) for name in clips}
        scores = score_matrix(model, features, present, captions, mask, ("lse",), progress=False)["lse"]  # (Q, V)
        one = model.clip_logits(captions[:1], mask[:1], **{k: v[1:] for k, v in clips.items()})  # caption 0, video 1
        assert float(scores[0, 1]) == pytest.approx(float(match_margin(aggregate_clip_logits(one, "lse"))[0]),
                                                    abs=1e-5)
        assert 0 <= retrieval_metrics(scores, [0, 1])["r1"] <= 100
        clip_logits = model.clip_logits(captions, mask, **clips)  # a prediction scores one text: (B, N, 2)
    else:
        assert task.select_metric in task.report(aggregate_clip_logits(clip_logits, how), labels, cfg.data)
    prediction = task.prediction(aggregate_clip_logits(clip_logits, how)[0], clip_logits[0],
                                 SPANS[:clip_logits.shape[1]], cfg.data)
    assert "prediction" in prediction and len(prediction["clips"]) == clip_logits.shape[1]


def _check_checkpoint_round_trip(model, cfg, tokenizer, inputs, tmp_path):
    """Saved and loaded through the fast inference build (no random init): the same weights and logits."""
    from clipbert_emo.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "checkpoint", model, cfg, tokenizer)
    loaded, _, _ = load_checkpoint(tmp_path / "checkpoint")
    assert type(loaded) is type(model)
    theirs = loaded.state_dict()
    assert set(theirs) == set(model.state_dict())
    assert all(torch.equal(theirs[k], v) for k, v in model.state_dict().items())
    torch.testing.assert_close(loaded.clip_logits(**inputs), model.clip_logits(**inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", READS_ALL_THREE)
def test_p_texts_per_video_score_as_each_text_alone(fusion, vocab):
    """Texts (B, P, L) give each text the logits it gets alone against the same clips, side by side (B, N, P*K);
    from encoder outputs computed earlier (retrieval ranking, cached search) too."""
    cfg = _cfg(fusion, "single_label", "text+video+audio", "model.initializer_range=0.2")
    model = _build(cfg, len(vocab)).eval()
    inputs = _inputs(len(vocab), paired=True)
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


@pytest.mark.parametrize("fusion", READS_ALL_THREE)
@pytest.mark.parametrize("dropped", ["video", "text", "audio"])
def test_a_dropped_modality_contributes_nothing(fusion, dropped, vocab):
    """With <name>_present false, what that modality's input holds no longer changes the logits."""
    cfg = _cfg(fusion, "single_label", "text+video+audio", "model.initializer_range=0.2")
    model = _build(cfg, len(vocab)).eval()
    a, b = _inputs(len(vocab), seed=1), _inputs(len(vocab), seed=2)
    mixed = dict(a)  # b's content for the dropped modality, a's for the rest
    if dropped == "text":
        mixed["input_ids"] = torch.where(a["attention_mask"].bool(), b["input_ids"], a["input_ids"])
        mixed["input_ids"][:, 0] = a["input_ids"][:, 0]  # the [CLS] position is kept visible
    else:
        mixed[dropped] = b[dropped]
    absent = {f"{dropped}_present": torch.zeros(B, dtype=torch.bool)}
    ref = model.clip_logits(**a, **absent)
    assert torch.allclose(ref, model.clip_logits(**mixed, **absent), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ref, model.clip_logits(**mixed), rtol=1e-2, atol=1e-6)  # present, it moves them


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_face_without_a_face_contributes_nothing(fusion, vocab):
    """face_present false: what the face crops hold no longer changes the logits (the sample has no face)."""
    subset = "face" if fusion == "face_expression" else "text+face"
    cfg = _cfg(fusion, "single_label", subset, "model.initializer_range=0.2")
    model = _build(cfg, len(vocab)).eval()
    a, b = _inputs(len(vocab), subset, seed=1), _inputs(len(vocab), subset, seed=2)
    absent = {"face_present": torch.zeros(B, dtype=torch.bool)}
    ref = model.clip_logits(**a, **absent)
    assert torch.allclose(ref, model.clip_logits(**{**a, "face": b["face"]}, **absent), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ref, model.clip_logits(**{**a, "face": b["face"]}), rtol=1e-2, atol=1e-6)


def test_the_built_in_refusals_are_late_fusion_where_texts_are_compared():
    """Late fusion has no text-video interaction (a pair's score is a video-only score plus a text-only one): it
    cannot rank videos for a query, nor pick a candidate answer by the clips; text alone it may answer them."""
    refused = {(f, t, s) for f in ("early", "late", "cross_attention", "hybrid") for t in TASK_KINDS for s in SUBSETS
               if refusal(f, t, s.split("+")) is not None}
    assert refused == ({("late", "retrieval", s) for s in SUBSETS}
                       | {("late", "qa_mc", s) for s in SUBSETS if s != "text"})
    with pytest.raises(ConfigError, match="data.use_video=false") as e:
        check_fusion(_cfg("late", "qa_mc", "text+video"))
    assert "use model.fusion=early, cross_attention or hybrid" in str(e.value)
    assert check_fusion(_cfg("late", "qa_mc", "text")).__name__ == "LateFusionForEmotion"


def test_an_unknown_strategy_or_an_auxiliary_loss_it_lacks_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"model\.fusion='mid': expected one of early, late"):
        build_model(_cfg("mid", "single_label", "text+video"), 50)
    for fusion in ("cross_attention", "hybrid"):  # the video-text contrastive loss is early fusion's (late: refused)
        with pytest.raises(ConfigError, match=rf"model\.contrastive_weight=0\.5: model\.fusion={fusion} has no"):
            check_fusion(_cfg(fusion, "qa_mc", "text+video", "model.contrastive_weight=0.5"))
    assert check_fusion(_cfg("early", "qa_mc", "text+video", "model.contrastive_weight=0.5")).__name__ == \
        "ClipBertForEmotion"
