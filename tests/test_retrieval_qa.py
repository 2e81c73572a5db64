"""Retrieval and QA task kinds: ranking metrics (ties included), batched scoring, negative sampling, the answer
vocabulary, the benchmark readers, SynthEmo's captions and questions, and tiny end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.data.manifest import Manifest, ManifestError, Sample
from clipbert_emo.tasks import get_task, load_split
from clipbert_emo.tasks.qa import answer_vocabulary
from clipbert_emo.tasks.retrieval import ranks_from_scores, retrieval_metrics
from support import TINY_OVERRIDES
from support.benchmarks import write_didemo, write_msrvtt, write_msrvtt_qa, write_tgif_qa


# ---- ranking metrics -------------------------------------------------------------------------------------------

def test_ranks_match_a_hand_computed_ranking_with_ties():
    scores = torch.tensor([
        [0.9, 0.1, 0.5, 0.3],  # true video 0: best -> rank 1
        [0.2, 0.2, 0.9, 0.2],  # true video 1 ties with videos 0 and 3, video 2 above: 1 + 3 tied (itself) -> rank 4
        [0.4, 0.8, 0.4, 0.1],  # true video 2 ties with video 0, video 1 above -> rank 3
        [0.0, 0.0, 0.0, 0.7],  # true video 3: best -> rank 1
        [0.3, 0.6, 0.6, 0.6],  # true video 2 (a second caption of it) ties with 1 and 3 -> rank 3
    ])
    truth = [0, 1, 2, 3, 2]
    assert ranks_from_scores(scores, truth).tolist() == [1, 4, 3, 1, 3]
    m = retrieval_metrics(scores, truth)
    assert m["r1"] == pytest.approx(40.0)  # 2 of 5 queries
    assert m["r5"] == m["r10"] == pytest.approx(100.0)
    assert m["median_rank"] == 3.0 and m["mean_rank"] == pytest.approx(12 / 5)
    assert m["chance_r1"] == pytest.approx(25.0) and m["chance_median_rank"] == 2.5


def test_a_constant_score_ranks_every_true_video_last():
    # Ties count against the query: a model that cannot tell videos apart gets no credit.
    m = retrieval_metrics(torch.zeros(6, 6), list(range(6)))
    assert m["r1"] == 0.0 and m["r5"] == 0.0 and m["median_rank"] == 6.0


def test_recall_at_k_on_100_videos():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(100, 100, generator=g)
    truth = torch.randperm(100, generator=g)
    top = scores.max(dim=1).values
    scores[:40, :].scatter_(1, truth[:40, None], (top[:40] + 1)[:, None])  # 40 queries rank their video first
    ranks = ranks_from_scores(scores, truth)
    assert (ranks[:40] == 1).all()
    expected = {k: float(np.mean(ranks <= k) * 100) for k in (1, 5, 10)}
    m = retrieval_metrics(scores, truth)
    assert m["r1"] >= 40.0 and [m["r1"], m["r5"], m["r10"]] == [expected[1], expected[5], expected[10]]


# ---- the model scores P texts per video, and the batched ranking ----------------------------------------------

@pytest.fixture(scope="module")
def tiny_retrieval_model():
    from clipbert_emo.build import build_model

    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=retrieval", "model.num_layers=1", "model.dropout=0"])
    torch.manual_seed(0)
    return build_model(cfg, 50, pretrained=False).eval(), cfg


def test_pair_scoring_equals_one_text_at_a_time(tiny_retrieval_model):
    model, _ = tiny_retrieval_model
    video = torch.randint(0, 255, (2, 3, 2, 3, 32, 32), dtype=torch.uint8)  # (B, N, T, 3, H, W)
    ids = torch.randint(5, 50, (2, 4, 7))  # (B, P, L)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        paired = model.clip_logits(ids, mask, video)  # (B, N, P*2)
        single = torch.stack([model.clip_logits(ids[:, p], mask[:, p], video) for p in range(4)], dim=2)  # (B, N, P, 2)
    assert paired.shape == (2, 3, 8)
    torch.testing.assert_close(paired.view(2, 3, 4, 2), single, atol=1e-5, rtol=1e-4)


def test_score_matrix_is_the_same_at_any_block_size_100_by_100(tiny_retrieval_model):
    from clipbert_emo.eval.retrieval import score_matrix

    model, _ = tiny_retrieval_model
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        feats = model.encode_features({"video": torch.randint(0, 255, (100, 2, 2, 3, 32, 32), dtype=torch.uint8,
                                                              generator=g)})  # {"video": (V, N, D, h, w)}
    present = {"video": torch.ones(100, dtype=torch.bool)}
    ids = torch.randint(5, 50, (100, 6), generator=g)
    mask = torch.ones_like(ids)
    small = score_matrix(model, feats, present, ids, mask, ("lse", "mean"), pairs_per_pass=64, progress=False)
    large = score_matrix(model, feats, present, ids, mask, ("lse", "mean"), pairs_per_pass=100_000, progress=False)
    assert small["lse"].shape == (100, 100)
    torch.testing.assert_close(small["lse"], large["lse"], atol=1e-5, rtol=1e-4)
    # One entry by hand: query 7 against video 42, the model's own single-text pass.
    with torch.no_grad():
        logits = model.clip_logits_from_features(ids[7:8], mask[7:8], {"video": feats["video"][42:43]})  # (1, N, 2)
    direct = torch.logsumexp(logits, dim=1)[0]
    assert small["lse"][7, 42] == pytest.approx(float(direct[1] - direct[0]), abs=1e-5)


def test_itc_then_itm_reranks_the_top_k_and_keeps_itcs_order_below_them(tiny_retrieval_model):
    from clipbert_emo.eval.retrieval import contrastive_scores, rerank_top_k, score_matrix

    model, _ = tiny_retrieval_model
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        feats = model.encode_features({"video": torch.randint(0, 255, (30, 2, 2, 3, 32, 32), dtype=torch.uint8,
                                                              generator=g)})  # {"video": (V, N, D, h, w)}
    present = {"video": torch.ones(30, dtype=torch.bool)}
    ids = torch.randint(5, 50, (12, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    itc = contrastive_scores(model, feats, ids, mask)
    # the cosine of the loss's own embeddings, by hand for one pair
    with torch.no_grad():
        v = feats["video"][5].mean(dim=(0, 2, 3))
        t = model.transformer.bert.embeddings.word_embeddings(ids[0, :4]).mean(0)
        expected = float(torch.nn.functional.cosine_similarity(v, t, dim=0))
    assert float(itc[0, 5]) == pytest.approx(expected, abs=1e-5)
    itm = score_matrix(model, feats, present, ids, mask, ("lse",), progress=False)["lse"]
    k = 5
    out = rerank_top_k(model, feats, present, ids, mask, itc, k, ("lse",), pairs_per_pass=16, progress=False)["lse"]
    for q in range(12):
        top = set(itc[q].topk(k).indices.tolist())
        order = out[q].argsort(descending=True).tolist()
        assert set(order[:k]) == top, "the top k by ITC come first"
        assert order[:k] == sorted(top, key=lambda j: -float(itm[q, j])), "ordered among themselves by ITM"
        assert order[k:] == [j for j in itc[q].argsort(descending=True).tolist() if j not in top], "the rest: ITC's"
        torch.testing.assert_close(out[q, order[:k]], itm[q, order[:k]], atol=1e-5, rtol=1e-4)
    every = rerank_top_k(model, feats, present, ids, mask, itc, 30, ("lse",), progress=False)["lse"]
    assert torch.equal(every.argsort(dim=1), itm.argsort(dim=1)), "k = V is the plain ITM ranking"


def test_ranking_by_the_contrastive_embeddings_needs_the_contrastive_loss():
    from clipbert_emo.config import ConfigError

    with pytest.raises(ConfigError, match="retrieval.rank_by=itc_itm: .*model.contrastive_weight"):
        load_config(None, [*TINY_OVERRIDES, "data.task=retrieval", "retrieval.rank_by=itc_itm"])
    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=retrieval", "retrieval.rank_by=itc",
                             "model.contrastive_weight=1"])
    assert cfg.retrieval.rank_by == "itc"


# ---- the auxiliary video-text contrastive loss (model.contrastive_weight) ---------------------------------------

def test_contrastive_loss_matches_a_hand_computation_and_drops_same_video_rows():
    from clipbert_emo.models.losses import video_text_contrastive_loss

    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 1.0]])
    cos = torch.tensor([[1.0, 0.0, -0.5 ** 0.5], [0.0, 1.0, 0.5 ** 0.5], [0.5 ** 0.5, 0.5 ** 0.5, 0.0]]) / 0.1
    by_hand = 0.5 * sum(-(cos[i, i] - torch.logsumexp(cos[i], 0)) - (cos[i, i] - torch.logsumexp(cos[:, i], 0))
                        for i in range(3)) / 3
    assert video_text_contrastive_loss(v, t, temperature=0.1) == pytest.approx(float(by_hand), abs=1e-5)
    # Rows 0 and 2 are two captions of one video: neither is the other's negative, so a caption whose own
    # video matches it far worse than the twin row does no longer pays for the twin.
    group = torch.tensor([0, 1, 0])
    keep = torch.tensor([[True, True, False], [True, True, True], [False, True, True]])
    masked = cos.masked_fill(~keep, float("-inf"))
    by_hand = 0.5 * sum(-(masked[i, i] - torch.logsumexp(masked[i], 0)) - (masked[i, i] - torch.logsumexp(masked[:, i], 0))
                        for i in range(3)) / 3
    assert video_text_contrastive_loss(v, t, group, temperature=0.1) == pytest.approx(float(by_hand), abs=1e-5)


def test_contrastive_weight_adds_a_loss_that_reaches_the_cnn():
    from clipbert_emo.build import build_model

    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=retrieval", "model.num_layers=1",
                             "model.contrastive_weight=0.5"])
    torch.manual_seed(0)
    task = get_task("retrieval")
    model = build_model(cfg, 50, pretrained=False, criterion=task.criterion(cfg.data, cfg.train)).train()
    video = torch.randint(0, 255, (3, 2, 2, 3, 32, 32), dtype=torch.uint8)  # (B, N, T, 3, H, W)
    ids = torch.randint(5, 50, (3, 2, 7))  # (B, P, L): own caption first, one negative
    labels = torch.tensor([[1, 0]] * 3)
    out = model(ids, torch.ones_like(ids), video, labels=labels, positive=torch.zeros(3, dtype=torch.long),
                group=torch.tensor([0, 1, 2]))
    assert out.loss_contrastive is not None and out.loss_contrastive > 0
    itm_only = model.loss(out.logits, labels)
    assert float(out.loss.detach()) == pytest.approx(float((itm_only + 0.5 * out.loss_contrastive).detach()), rel=1e-5)
    out.loss_contrastive.backward()
    cnn = [p.grad for n, p in model.named_parameters() if n.startswith("cnn.") and p.grad is not None]
    assert cnn and any(g.abs().sum() > 0 for g in cnn), "the contrastive loss trains the visual encoder"
    model.zero_grad()
    # The positive text is the one named: a video's second text as its description gives another loss.
    other = model(ids, torch.ones_like(ids), video, labels=labels, positive=torch.ones(3, dtype=torch.long))
    assert float(other.loss_contrastive.detach()) != pytest.approx(float(out.loss_contrastive.detach()))
    # Rows whose texts are worded alike are not each other's negatives: with every text the same, nothing is left
    # to contrast and the loss is zero (each row's only candidate is its own).
    same = ids.clone()
    same[:, 0] = ids[0, 0]
    alike = model(same, torch.ones_like(same), video, labels=labels, positive=torch.zeros(3, dtype=torch.long))
    assert float(alike.loss_contrastive.detach()) == pytest.approx(0.0, abs=1e-6)
    assert model(ids, torch.ones_like(ids), video, labels=labels).loss_contrastive is None  # no positive given
    with pytest.raises(ConfigError, match="contrastive_weight"):
        load_config(None, [*TINY_OVERRIDES, "model.contrastive_weight=1"])  # classification: not allowed
    load_config(None, [*TINY_OVERRIDES, "data.task=qa_mc", "model.contrastive_weight=1"])  # the question + right answer


def test_contrastive_score_weight_adds_each_clips_similarity_to_its_candidates_score():
    import dataclasses

    import torch.nn.functional as F

    from clipbert_emo.build import build_model

    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=qa_mc", "model.num_layers=1", "model.dropout=0",
                             "model.contrastive_weight=1", "model.contrastive_score_weight=0.5"])
    torch.manual_seed(0)
    model = build_model(cfg, 50, pretrained=False).eval()
    video = torch.randint(0, 255, (2, 3, 2, 3, 32, 32), dtype=torch.uint8)  # (B, N, T, 3, H, W)
    ids = torch.randint(5, 50, (2, 4, 6))  # (B, P, L): four candidates per question
    mask = torch.ones_like(ids)
    mask[:, :, 4:] = 0  # padding is left out of the text's embedding
    with torch.no_grad():
        both = model.clip_logits(ids, mask, video)  # (B, N, P)
        grids = model.encode_features({"video": video})["video"]  # (B, N, D, h, w)
        model.cfg = dataclasses.replace(model.cfg, contrastive_score_weight=0.0)
        head = model.clip_logits(ids, mask, video)
        words = model.transformer.bert.embeddings.word_embeddings(ids[:, :, :4])  # (B, P, 4, D)
    clip = F.normalize(grids.mean(dim=(-2, -1)), dim=-1)  # (B, N, D)
    text = F.normalize(words.mean(2), dim=-1)  # (B, P, D)
    by_hand = head + 0.5 * torch.einsum("bnd,bpd->bnp", clip, text) / 0.07
    torch.testing.assert_close(both, by_hand, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="contrastive_score_weight=1.0: .*qa_mc and model.contrastive_weight"):
        load_config(None, [*TINY_OVERRIDES, "data.task=qa_mc", "model.contrastive_score_weight=1"])
    with pytest.raises(ConfigError, match="contrastive_score_weight"):
        load_config(None, [*TINY_OVERRIDES, "data.task=retrieval", "model.contrastive_weight=1",
                           "model.contrastive_score_weight=1"])


# ---- negative sampling --------------------------------------------------------------------------------------

def _pairs(n_videos=5, captions=2):
    samples = [Sample(video=f"/v/{v}.mp4", text=f"caption {c} of video {v}", source=f"m:{v}.{c}")
               for v in range(n_videos) for c in range(captions)]
    samples.append(Sample(video="/v/9.mp4", text="caption 0 of video 0", source="m:dup"))  # same words, other video
    return Manifest(path="m", samples=samples, skipped=[])


def test_negatives_come_from_other_videos_and_are_reproducible():
    from clipbert_emo.data.retrieval import RetrievalPairDataset

    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=retrieval"]).data
    ds = RetrievalPairDataset(_pairs(), cfg, num_negatives=3, seed=5)
    for i, s in enumerate(ds.samples):
        negs = ds.negatives(i)
        assert len(negs) == 3
        for t in negs:
            owner = [j for j, x in enumerate(ds.samples) if x.text == t]
            assert all(ds.groups[j] != ds.groups[i] for j in owner), "a caption of the same video is no negative"
            assert t != s.text, "a caption worded like the positive would be a false negative"
    again = RetrievalPairDataset(_pairs(), cfg, num_negatives=3, seed=5)
    assert [again.negatives(i) for i in range(len(again))] == [ds.negatives(i) for i in range(len(ds))]
    first = [ds.negatives(i) for i in range(len(ds))]
    ds.set_epoch(1)
    assert [ds.negatives(i) for i in range(len(ds))] != first, "each epoch draws new negatives"


def test_retrieval_needs_two_videos():
    from clipbert_emo.data.retrieval import RetrievalPairDataset

    cfg = load_config(None, ["data.task=retrieval"]).data
    one = Manifest(path="m", samples=[Sample(video="/v/0.mp4", text="a", source="m:1")] * 2, skipped=[])
    with pytest.raises(ValueError, match="two distinct videos"):
        RetrievalPairDataset(one, cfg)


# ---- question answering ---------------------------------------------------------------------------------------

def test_answer_vocabulary_keeps_the_top_k_and_out_of_vocabulary_counts_wrong():
    answers = ["man", "dog", "man", "cat", "dog", "man", "bird", "ant"]
    assert answer_vocabulary(answers, 3) == ["man", "dog", "ant"]  # ties (1 each) alphabetical
    cfg = load_config(None, ["data.task=qa", "data.answer_vocab_size=3", "data.question_types=[what, who]"])
    task = get_task("qa")
    labels = task.collate([("man", "what"), ("bird", "who"), ("ant", "other")], cfg.data.__class__(
        task="qa", labels=["man", "dog", "ant"], question_types=["what", "who"]))
    assert labels.tolist() == [[0, 0], [-1, 1], [2, -1]]
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    data = cfg.data.__class__(task="qa", labels=["man", "dog", "ant"], question_types=["what", "who"])
    rep = task.report(logits, labels, data)
    assert rep["accuracy"] == pytest.approx(2 / 3)  # the "bird" question is wrong whatever the model says
    assert rep["acc_what"] == 1.0 and rep["acc_who"] == 0.0 and rep["out_of_vocabulary"] == pytest.approx(1 / 3)
    loss = task.criterion(data, cfg.train)(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 2]))
    assert float(loss) == pytest.approx(float(expected)), "an answer outside the vocabulary is left out of the loss"


def test_prepare_fills_the_vocabulary_and_question_types_from_train():
    cfg = load_config(None, ["data.task=qa", "data.answer_vocab_size=2"])
    train = Manifest(path="t", skipped=[], samples=[
        Sample(video=None, text="q", answer=a, question_type=t, source="t")
        for a, t in [("yes", "b"), ("no", "a"), ("yes", "a"), ("maybe", "b")]])
    before = cfg.data.labels
    data = get_task("qa").prepare(cfg.data, train)
    assert data.labels == ["yes", "maybe"] and data.question_types == ["a", "b"]
    assert cfg.data.labels == before and cfg.data.question_types == [], "the config it was given is left as it was"


def test_multiple_choice_records():
    task, data = get_task("qa_mc"), load_config(None, ["data.task=qa_mc"]).data
    row = {"candidates": ["run", "walk", "3"], "answer": "walk", "question_type": "action"}
    got = task.read_target(row, "m:1", False, data, True)
    assert got["label"] == 1 and got["candidates"] == ["run", "walk", "3"]
    assert task.read_target({**row, "answer": 2}, "m:1", False, data, True)["label"] == 2
    assert task.read_target({**row, "answer": "3"}, "m:1", False, data, True)["label"] == 2  # a candidate's text
    with pytest.raises(ManifestError, match="m:2.*neither a candidate"):
        task.read_target({**row, "answer": "fly"}, "m:2", False, data, True)
    with pytest.raises(ManifestError, match="m:3.*outside"):
        task.read_target({**row, "answer": 7}, "m:3", False, data, True)
    s = Sample(video=None, text="what next?", candidates=["a", "b"], label=1)
    assert task.texts(s, data) == ["what next? [SEP] a", "what next? [SEP] b"]
    rep = task.report(torch.tensor([[0.1, 0.9], [2.0, 1.0]]), torch.tensor([[1, 0], [1, 0]]),
                      load_config(None, ["data.task=qa_mc", "data.question_types=[action]"]).data)
    assert rep["accuracy"] == 0.5 and rep["acc_action"] == 0.5 and rep["chance"] == 0.5


# ---- readers of the public releases ---------------------------------------------------------------------------

def _data(fmt, root, task, target=""):
    return load_config(None, [f"data.format={fmt}", f"data.root={root}", f"data.task={task}",
                              f"data.target={target}"]).data


def test_msrvtt_reader_official_and_1k_a(tmp_path):
    root = write_msrvtt(tmp_path / "MSRVTT")
    train = load_split(_data("msrvtt", root, "retrieval"), "train")
    assert [s.text for s in train.samples] == ["a man is singing", "a cartoon of a cat", "someone sings on stage",
                                               "an animated cat runs"]
    assert train.samples[0].video.endswith("TrainValVideo/video0.mp4")
    val = pytest.raises(ManifestError, load_split, _data("msrvtt", root, "retrieval"), "val")  # its only clip missing
    assert "no usable samples" in str(val.value)
    test = load_split(_data("msrvtt", root, "retrieval"), "test")
    assert len(test.samples) == 4 and test.samples[3].text == "a small dog"
    one_k = load_split(_data("msrvtt", root, "retrieval", "1k-A"), "test")
    assert [(s.extra["video_id"], s.text) for s in one_k.samples] == [("video7010", "a woman is cooking"),
                                                                       ("video7011", "a dog barks")]
    with pytest.raises(ConfigError, match="data.task=retrieval"):
        load_split(_data("msrvtt", root, "single_label"), "train")


def test_didemo_reader_joins_a_paragraph_per_video(tmp_path):
    root = write_didemo(tmp_path / "didemo")
    train = load_split(_data("didemo", root, "retrieval"), "train")
    assert len(train.samples) == 1 and len(train.skipped) == 1  # the .mov clip is absent
    assert train.samples[0].text == "a girl waves she turns around the camera zooms out"  # in moment order
    test = load_split(_data("didemo", root, "retrieval"), "test")
    assert test.samples[0].video.endswith(".mp4") and test.samples[0].text == "a dog jumps it lands"


def test_tgif_qa_reader_per_task(tmp_path):
    from clipbert_emo.data.releases.tgif_qa import is_val_gif
    from support.benchmarks import tgif_gif_names

    root = write_tgif_qa(tmp_path / "tgif")
    names = tgif_gif_names()
    action = load_split(_data("tgif_qa", root, "qa_mc", "action"), "train")
    val = load_split(_data("tgif_qa", root, "qa_mc", "action"), "val") if any(
        is_val_gif(n) for n in names[1:]) else None
    kept = [n for n in names[1:] if not is_val_gif(n)]
    assert [s.extra["gif_name"] for s in action.samples] == kept
    assert action.samples[0].candidates == ["nod", "wave", "clap", "jump", "blink"]
    assert action.samples[0].label == names.index(kept[0]) % 5 and action.samples[0].question_type == "action"
    if val is not None:
        assert all(is_val_gif(s.extra["gif_name"]) for s in val.samples)
    frame = load_split(_data("tgif_qa", root, "qa", "frameqa"), "test")
    assert [(s.answer, s.question_type) for s in frame.samples] == [("red", "object"), ("blue", "number")]
    count = load_split(_data("tgif_qa", root, "qa", "count"), "test")
    assert [s.answer for s in count.samples] == ["1", "2"] and count.samples[0].video.endswith(".gif")
    with pytest.raises(ConfigError, match="qa_mc"):
        load_split(_data("tgif_qa", root, "qa", "transition"), "train")


def test_msrvtt_qa_reader(tmp_path):
    root = write_msrvtt_qa(tmp_path / "msrvtt_qa")
    train = load_split(_data("msrvtt_qa", root, "qa"), "train")
    assert [(s.text, s.answer, s.question_type) for s in train.samples] == [
        ("what is a man doing?", "sing", "what"), ("who is singing?", "man", "who"),
        ("what is the cat doing?", "run", "what")]
    assert len(train.skipped) == 1 and "video5" in train.skipped[0][1]
    test = load_split(_data("msrvtt_qa", root, "qa"), "test")
    assert test.samples[0].answer == "food"  # answers compare lower-cased


# ---- SynthEmo captions and questions, and tiny end-to-end runs ------------------------------------------------

@pytest.fixture(scope="module")
def synthemo_tasks(synthemo_dir, tmp_path_factory):
    import shutil

    from clipbert_emo.synthemo.tasks import write_task_manifests

    out = tmp_path_factory.mktemp("rq")
    for name in ("synthemo.json", "train.jsonl", "val.jsonl", "test.jsonl"):
        shutil.copy(synthemo_dir / name, out / name)
    shutil.copytree(synthemo_dir / "videos", out / "videos")
    counts = write_task_manifests(out)
    assert counts["retrieval_train.jsonl"] == 32 and counts["qa_val.jsonl"] == 24
    return out


def test_synthemo_questions_come_from_the_generator(synthemo_tasks):
    from clipbert_emo.synthemo.tasks import MOUTH_ANSWERS

    videos = {json.loads(x)["video"]: json.loads(x) for x in (synthemo_tasks / "val.jsonl").read_text().splitlines()}
    mouth_of_kind = {"happy": "it smiles", "sad": "it turns down", "angry": "it presses tight",
                     "ambiguous": "it turns down a little", "astonished": "it opens wide", "neutral": "nothing"}
    for line in (synthemo_tasks / "qa_val.jsonl").read_text().splitlines():
        q = json.loads(line)
        rec = videos[q["video"]]
        if q["question_type"] == "feeling":
            assert q["answer"] == rec["label"] and rec["text"] in q["text"]
        if q["question_type"] == "mouth":
            assert q["answer"] == mouth_of_kind[rec["meta"]["visual"]] and q["answer"] in MOUTH_ANSWERS.values()
    for line in (synthemo_tasks / "qa_mc_val.jsonl").read_text().splitlines():
        q = json.loads(line)
        assert len(q["candidates"]) == 4 and len(set(q["candidates"])) == 4
    for line in (synthemo_tasks / "retrieval_val.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert r["meta"]["shape"] in r["text"] and r["meta"]["colour"] in r["text"]


def _task_cfg(d, kind, out, *extra):
    return load_config(None, [*TINY_OVERRIDES, f"data.task={kind}", "model.visual_aux_weight=0",
                              *(f"data.{s}_manifest={d / f'{kind}_{s}.jsonl'}" for s in ("train", "val", "test")),
                              f"train.output_dir={out}", "train.max_steps=2", *extra])


def test_retrieval_end_to_end_and_search_cache(synthemo_tasks, tmp_path, monkeypatch):
    from clipbert_emo.eval.evaluate import evaluate
    from clipbert_emo.train.finetune import finetune

    m = finetune(_task_cfg(synthemo_tasks, "retrieval", tmp_path / "run", "retrieval.num_negatives=2",
                           "retrieval.hard_negatives=true"), progress=False)
    assert m["select_metric"] == "rsum" and "val_r1" in m["history"][0]
    rep = m["test"]["reports"]["lse"]
    assert rep["num_videos"] == 6 and rep["num_queries"] == 6 and 1 <= rep["median_rank"] <= 6
    again = evaluate(tmp_path / "run" / "checkpoint", "test", tmp_path / "eval", progress=False)
    assert again["reports"]["lse"]["r1"] == rep["r1"], "evaluate ranks the same way as the run's test pass"

    import clipbert_emo.search as search_mod

    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.mp4").write_bytes((synthemo_tasks / "videos" / "test" / f"{i:06d}.mp4").read_bytes())
    calls = []
    real = search_mod.video_features
    monkeypatch.setattr(search_mod, "video_features", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    first = search_mod.search(tmp_path / "run" / "checkpoint", folder, "a face that smiles", progress=False)
    second = search_mod.search(tmp_path / "run" / "checkpoint", folder, "a face that smiles", progress=False)
    assert calls == [3], "the second query reads every video's features from the cache"
    assert first["computed"] == 3 and second["from_cache"] == 3
    assert [r["video"] for r in first["results"]] == [r["video"] for r in second["results"]]
    assert [r["score"] for r in first["results"]] == pytest.approx([r["score"] for r in second["results"]])


def test_retrieval_trains_with_each_videos_captions_sharing_its_clips(synthemo_tasks, tmp_path):
    import math

    from clipbert_emo.train.finetune import finetune

    # Two captions per training video: batched together, one draw of clips, the twin left out of the negatives.
    m = finetune(_task_cfg(synthemo_tasks, "retrieval", tmp_path / "run", "data.group_by_video=true",
                           "retrieval.hard_negatives=true", "model.contrastive_weight=0.5", "train.batch_size=8"),
                 progress=False)
    assert all(math.isfinite(h["train_loss"]) and h["train_loss_itc"] > 0 for h in m["history"])
    assert m["test"]["reports"]["lse"]["num_videos"] == 6


@pytest.mark.parametrize("grouped", [False, True], ids=["", "group_by_video"])
@pytest.mark.parametrize("kind", ["qa", "qa_mc"])
def test_qa_end_to_end(synthemo_tasks, tmp_path, kind, grouped):
    from clipbert_emo.train.finetune import finetune

    extra = ["model.contrastive_weight=0.5"] if kind == "qa_mc" else []  # the question + right answer as positive
    extra += ["data.group_by_video=true", "train.batch_size=8"] if grouped else []  # two videos' questions a batch
    m = finetune(_task_cfg(synthemo_tasks, kind, tmp_path / "run", *extra), progress=False)
    rep = m["test"]["reports"]["lse"]
    if kind == "qa_mc":
        assert all("train_loss_itc" in h for h in m["history"]), "the contrastive term is trained and logged"
    for t in ("feeling", "mouth", "shape", "colour"):
        assert 0.0 <= rep[f"acc_{t}"] <= 1.0 and rep[f"n_{t}"] == 6
    saved = load_config(tmp_path / "run" / "checkpoint" / "config.yaml")
    assert saved.data.question_types == ["colour", "feeling", "mouth", "shape"]
    if kind == "qa":
        assert "surprised" in saved.data.labels or "it opens wide" in saved.data.labels  # the answer vocabulary


# ---- search: bad videos, a damaged cache, a folder it cannot write --------------------------------------------


@pytest.fixture(scope="module")
def retrieval_checkpoint(synthemo_tasks, tmp_path_factory):
    from clipbert_emo.train.finetune import finetune

    out = tmp_path_factory.mktemp("search_run")
    finetune(_task_cfg(synthemo_tasks, "retrieval", out, "retrieval.num_negatives=2", "train.max_steps=1",
                       "data.test_manifest="), progress=False)
    return out / "checkpoint"


@pytest.fixture
def search_folder(synthemo_tasks, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.mp4").write_bytes((synthemo_tasks / "videos" / "test" / f"{i:06d}.mp4").read_bytes())
    return folder


def _search_json(capsys, *argv):
    """`clipbert-emo search ... --json`: (exit code, the JSON parsed strictly (NaN/Infinity refused), stderr)."""
    from clipbert_emo.cli import main

    rc = main(["search", *map(str, argv), "--json", "-q"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if rc != 0:
        return rc, None, captured.err

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return rc, json.loads(captured.out, parse_constant=refuse), captured.err


def test_search_skips_an_undecodable_video_on_every_run(retrieval_checkpoint, search_folder, capsys, monkeypatch):
    import clipbert_emo.search as search_mod

    (search_folder / "broken.mp4").write_text("not a video at all\n" * 10)
    calls = []
    real = search_mod.video_features
    monkeypatch.setattr(search_mod, "video_features", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    runs = [_search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles") for _ in range(3)]
    for rc, result, err in runs:
        assert rc == 0, err[-2000:]
        assert result["num_videos"] == 3 and len(result["results"]) == 3
        assert [Path(w).name for w, _ in result["skipped"]] == ["broken.mp4"] and result["skipped"][0][1]
        assert "broken.mp4" not in [Path(r["video"]).name for r in result["results"]]
    assert calls == [4], "later searches read the three good videos' features and the failure from the cache"
    assert runs[1][1]["from_cache"] == 3 and runs[1][1]["computed"] == 0
    # a new undecodable video, alone among cached ones: reported and skipped, the rest still ranked
    (search_folder / "empty.mp4").write_bytes(b"")
    rc, result, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert rc == 0, err[-2000:]
    assert sorted(Path(w).name for w, _ in result["skipped"]) == ["broken.mp4", "empty.mp4"]
    assert result["num_videos"] == 3 and calls == [4, 1]
    # the table output names them too
    from clipbert_emo.cli import main

    assert main(["search", str(retrieval_checkpoint), str(search_folder), "a face", "-q"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "broken.mp4" in out and "empty.mp4" in out


def _overwrite_tensor_bytes(file: Path, value: float) -> None:
    """Keep the safetensors header, fill every tensor byte with ``value`` (float32)."""
    data = bytearray(file.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    body = np.full((len(data) - start) // 4, value, np.float32).tobytes()
    data[start:start + len(body)] = body
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("value", [float("nan"), 0.25])  # non-finite values; finite ones the checksum catches
def test_a_damaged_cache_entry_is_recomputed(value, retrieval_checkpoint, search_folder, capsys, caplog):
    rc, first, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert rc == 0, err[-2000:]
    entries = sorted(Path(first["cache"]).glob("*.safetensors"))
    assert len(entries) == 3
    _overwrite_tensor_bytes(entries[0], value)
    with caplog.at_level("WARNING"):
        rc, second, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert rc == 0, err[-2000:]
    assert "is damaged" in caplog.text and "recomputing" in caplog.text
    assert ("NaN" if value != value else "checksum") in caplog.text
    assert second["computed"] == 1 and second["from_cache"] == 2 and second["skipped"] == []
    assert [r["video"] for r in second["results"]] == [r["video"] for r in first["results"]]
    assert [r["score"] for r in second["results"]] == pytest.approx([r["score"] for r in first["results"]])
    rc, third, _ = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert third["from_cache"] == 3, "the recomputed entry was written back"


def test_a_non_finite_score_is_reported_never_ranked(retrieval_checkpoint, search_folder, capsys, monkeypatch):
    import clipbert_emo.search as search_mod

    real = search_mod.ranking_scores

    def one_nan(*args, **kwargs):
        scores = real(*args, **kwargs)
        for s in scores.values():
            s[0, 1] = float("nan")
        return scores

    monkeypatch.setattr(search_mod, "ranking_scores", one_nan)
    rc, result, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert rc == 0, err[-2000:]
    assert [Path(r["video"]).name for r in result["results"]] and "1.mp4" not in [Path(r["video"]).name
                                                                                 for r in result["results"]]
    assert [Path(w).name for w, _ in result["skipped"]] == ["1.mp4"] and "not a number" in result["skipped"][0][1]
    assert [r["rank"] for r in result["results"]] == [1, 2]

    def all_nan(*args, **kwargs):
        scores = real(*args, **kwargs)
        for s in scores.values():
            s.fill_(float("nan"))
        return scores

    monkeypatch.setattr(search_mod, "ranking_scores", all_nan)
    rc, _, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    assert rc == 2 and "every video scored NaN/inf" in err.strip().splitlines()[-1]


def test_a_video_folder_it_cannot_write_points_to_cache(retrieval_checkpoint, search_folder, tmp_path, capsys,
                                                        monkeypatch):
    import errno
    import pathlib

    from clipbert_emo.search import CACHE_FOLDER

    real_mkdir = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):  # simulated: the tests may run as root, who writes anywhere
        if CACHE_FOLDER in self.parts:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    rc, _, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles")
    line = err.strip().splitlines()[-1]
    assert rc == 2 and line.startswith("clipbert-emo search: error: ") and "permission denied" in line
    assert "--cache DIR" in line
    rc, result, err = _search_json(capsys, retrieval_checkpoint, search_folder, "a face that smiles", "--cache",
                                   tmp_path / "elsewhere")
    assert rc == 0 and result["num_videos"] == 3, err[-2000:]
    assert not (search_folder / CACHE_FOLDER).exists()


def test_search_lists_a_folder_it_cannot_read_as_skipped(monkeypatch, tmp_path):
    """An unreadable subfolder of the gallery is named with the reason, not left out without a word."""
    import os

    from clipbert_emo.search import list_videos

    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.mp4").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.mp4").write_bytes(b"x")
    (tmp_path / ".clipbert-emo-cache").mkdir()
    (tmp_path / ".clipbert-emo-cache" / "c.mp4").write_bytes(b"x")  # the cache folder is not part of the gallery
    real_scandir = os.scandir

    def scandir(path):  # tests run as root, for whom chmod 000 blocks nothing
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, skipped = list_videos(tmp_path)
    assert [p.name for p in found] == ["a.mp4"]
    assert skipped == [[str(tmp_path / "locked"), "cannot list this folder: permission denied; its videos are left out"]]


# ---- the demo's baselines ----------------------------------------------------------------------------------------

def test_multiple_choice_majority_baseline_picks_the_commonest_answer_or_guesses(tmp_path):
    from clipbert_emo.experiments.retrieval_qa import multiple_choice_majority, qa_rows

    rows = [("colour", ["red", "blue", "grey", "green"], 0),  # red is the commonest right colour: picked, right
            ("colour", ["blue", "red", "grey", "green"], 1),  # right
            ("colour", ["green", "red", "blue", "grey"], 0),  # red offered but green is right: wrong
            ("colour", ["green", "blue", "grey", "pink"], "grey"),  # red not offered: a 1-in-4 guess
            ("shape", ["square", "circle"], "circle")]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps({"video": "v.mp4", "text": "q", "candidates": c, "answer": a,
                                        "question_type": t}) + "\n" for t, c, a in rows))
    got = multiple_choice_majority(path)
    assert got["colour"] == pytest.approx((1 + 1 + 0 + 0.25) / 4) and got["shape"] == 1.0
    report = {"accuracy": 0.6, "num_questions": 5, "acc_colour": 0.5, "n_colour": 4, "acc_shape": 1.0, "n_shape": 1}
    table = qa_rows(report, {"all": 0.3, "colour": 0.25, "shape": 0.5}, ["colour", "shape"], got)
    assert [r["question type"] for r in table] == ["all", "colour", "shape"]
    assert table[0]["majority answer"] == pytest.approx((got["colour"] * 4 + 1.0) / 5), "weighted by count"
    assert table[1]["majority answer"] == got["colour"] and table[1]["chance"] == 0.25
