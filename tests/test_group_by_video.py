"""data.group_by_video: the samples of one video (its questions) batched together, its clips drawn, decoded and
encoded once per batch, with the same logits as when every sample carried its own copy of them."""

from __future__ import annotations

import json

import pytest
import torch

from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.data.dataset import Collator, VideoTextDataset, model_inputs, shared_video_key
from clipbert_emo.data.manifest import Manifest
from clipbert_emo.data.samplers import EpochShuffleSampler
from clipbert_emo.tasks import get_task
from support import TINY_OVERRIDES


def test_grouped_shuffle_keeps_each_group_together_and_covers_every_sample():
    groups = ["a", "b", "a", "c", "b", "a", 7, "c"]
    sampler = EpochShuffleSampler(len(groups), seed=3, groups=groups)
    orders = []
    for epoch in range(4):
        sampler.set_position(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(groups)))
        runs = [groups[i] for i in order]
        collapsed = [g for j, g in enumerate(runs) if j == 0 or runs[j - 1] != g]
        assert len(collapsed) == len(set(groups)), f"a group was split: {runs}"
        for g in set(groups):  # each group's samples in manifest order
            members = [i for i in order if groups[i] == g]
            assert members == sorted(members)
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1, "the groups are shuffled anew each epoch"
    sampler.set_position(2, skip=3)
    assert list(sampler) == orders[2][3:], "a resumed epoch replays the rest of the same order"
    with pytest.raises(ValueError, match="one key per sample"):
        EpochShuffleSampler(3, 0, groups=["a"])


def _qa_manifest(synthemo_dir, questions_per_video: int = 3, videos: int = 3) -> Manifest:
    rows = [json.loads(x) for x in (synthemo_dir / "train.jsonl").read_text().splitlines()][:videos]
    path = synthemo_dir / f"grouped_qa_{questions_per_video}.jsonl"
    path.write_text("".join(json.dumps({"video": r["video"], "text": f"question {q} about it", "answer": f"a{q}",
                                        "question_type": f"t{q}"}) + "\n"
                            for r in rows for q in range(questions_per_video)))
    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=qa", "data.group_by_video=true"])
    task = get_task("qa")
    from clipbert_emo.data.manifest import read_manifest

    return read_manifest(str(path), task.target_reader(cfg.data), require_video=True), cfg


def test_a_videos_samples_share_one_draw_of_clips_decoded_once(synthemo_dir, monkeypatch):
    import clipbert_emo.data.dataset as dataset_mod

    manifest, cfg = _qa_manifest(synthemo_dir)
    decoded = []
    real = dataset_mod.MODALITY_DECODERS["video"]
    monkeypatch.setitem(dataset_mod.MODALITY_DECODERS, "video",
                        lambda sample, *a: decoded.append(sample.video) or real(sample, *a))
    ds = VideoTextDataset(manifest, cfg.data, training=True, seed=5)
    items = [ds[i] for i in range(len(ds))]  # the grouped sampler's order: a video's questions one after another
    assert len(decoded) == 3, "each video decoded once however many questions it has"
    for v in range(3):
        same = items[3 * v:3 * v + 3]
        assert {it["clip_key"] for it in same} == {3 * v}
        assert all(torch.equal(it["video"], same[0]["video"]) for it in same)
    assert not torch.equal(items[0]["video"], items[3]["video"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["video"], items[0]["video"]), "a new epoch draws new clips (and crops)"
    assert torch.equal(ds[1]["video"], ds[0]["video"])

    # Without the option every question draws its own clips, from its own generator.
    plain = VideoTextDataset(manifest, load_config(None, [*TINY_OVERRIDES, "data.task=qa"]).data, training=True,
                             seed=5)
    assert "clip_key" not in plain[0] and not torch.equal(plain[0]["video"], plain[1]["video"])


def test_the_batch_stacks_each_video_once_and_the_logits_match_a_copy_per_sample(synthemo_dir):
    from clipbert_emo.build import build_model
    from clipbert_emo.data.text import build_wordpiece_tokenizer

    manifest, cfg = _qa_manifest(synthemo_dir)
    task = get_task("qa")
    data = task.prepare(cfg.data, manifest)
    cfg = load_config(None, [*TINY_OVERRIDES, "data.task=qa", "data.group_by_video=true", "model.dropout=0"])
    import dataclasses

    cfg = dataclasses.replace(cfg, data=data)
    tok = build_wordpiece_tokenizer([s.text for s in manifest.samples], 60, synthemo_dir / "grouped_tok")
    ds = VideoTextDataset(manifest, data, training=False, target=task.target)
    collate = Collator(tok, data.max_text_len, lambda t: task.collate(t, data))
    batch = collate([ds[i] for i in (2, 3, 4, 5, 0)])  # video 0's last, video 1's three, video 0's first
    assert batch["video"].shape[0] == 2 and batch["clip_rows"].tolist() == [0, 1, 1, 1, 0]
    assert batch["video_present"].shape == (5,) and batch["labels"].shape == (5, 2)

    torch.manual_seed(0)
    model = build_model(cfg, len(tok), pretrained=False).eval()
    inputs = model_inputs(batch)
    copies = {**inputs, "video": inputs["video"][inputs["clip_rows"]]}  # (U, N, ...) -> (B, N, ...)
    del copies["clip_rows"]
    with torch.no_grad():
        shared, each = model(**inputs).logits, model(**copies).logits
        chunked = model.clip_logits(**inputs, clips_per_pass=1)
    assert shared.shape == (5, len(data.labels))
    torch.testing.assert_close(shared, each)
    torch.testing.assert_close(chunked, model.clip_logits(**copies))

    # Batches without a repeated video are stacked as before: no clip_rows.
    single = collate([ds[0], ds[3], ds[6]])
    assert "clip_rows" not in single and single["video"].shape[0] == 3


def test_multiple_choice_does_not_count_a_videos_other_questions_as_negatives():
    task = get_task("qa_mc")
    batch = {"labels": torch.tensor([[2, 0], [0, 1], [1, 0]]), "clip_rows": torch.tensor([0, 0, 1])}
    targets = task.contrastive_targets(batch)
    assert targets["positive"].tolist() == [2, 0, 1] and targets["group"].tolist() == [0, 0, 1]
    assert task.contrastive_targets({"labels": batch["labels"]})["group"] is None


def test_shared_video_key_and_the_config_rules():
    from clipbert_emo.data.manifest import Sample

    assert shared_video_key(Sample(video="a.mp4", text="q")) == shared_video_key(Sample(video="a.mp4", text="r"))
    assert shared_video_key(Sample(video="a.mp4", text="q", start=1.0, end=2.0)) != shared_video_key(
        Sample(video="a.mp4", text="q"))
    with pytest.raises(ConfigError, match="group_by_video .* needs data.use_video"):
        load_config(None, [*TINY_OVERRIDES, "data.group_by_video=true", "data.use_video=false"])
    with pytest.raises(ConfigError, match="class_balanced"):
        load_config(None, [*TINY_OVERRIDES, "data.group_by_video=true", "train.sampler=class_balanced"])
