"""Image-text pretraining: BERT masking, ITM negatives, the model's losses, and the run that feeds finetune."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.config import load_config
from clipbert_emo.data.pretraining import ImageTextCollator, ImageTextPairDataset, mask_tokens
from clipbert_emo.data.text import build_wordpiece_tokenizer
from clipbert_emo.train.pretrain import MixedSourceBatchSampler, pretrain
from support import CAPTIONS, TINY_OVERRIDES


def _tokenizer(tmp_path):
    return build_wordpiece_tokenizer(CAPTIONS * 3, 120, tmp_path / "tok")


def test_bert_masking_rates_and_specials(tmp_path):
    tok = _tokenizer(tmp_path)
    enc = tok(["a face with a wide open mouth and raised brows"] * 1, return_tensors="pt")
    ids, mask = enc["input_ids"][0], enc["attention_mask"][0]
    special = set(tok.all_special_ids)
    picked = masked = kept = 0
    for seed in range(2000):
        new, labels = mask_tokens(ids, mask, special, tok.mask_token_id, len(tok), 0.15,
                                  torch.Generator().manual_seed(seed))
        sel = labels != -100
        assert sel.sum() >= 1, "a text with tokens always gets at least one MLM target"
        assert torch.equal(labels[sel], ids[sel]), "labels are the original tokens"
        assert not any(int(t) in special for t in ids[sel]), "[CLS]/[SEP] are never targets"
        assert torch.equal(new[~sel], ids[~sel]), "unpicked tokens are untouched"
        picked += int(sel.sum())
        masked += int((new[sel] == tok.mask_token_id).sum())
        kept += int((new[sel] == ids[sel]).sum())
    n_real = int(mask.sum()) - 2
    assert abs(picked / (2000 * n_real) - 0.15) < 0.03
    assert abs(masked / picked - 0.8) < 0.03
    # 10% stay by rule, plus the random replacements that happen to draw the same token
    assert 0.08 < kept / picked < 0.14


def test_itm_negatives_are_other_captions_and_reproducible(pairs_dir, tmp_path):
    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={pairs_dir / 'train.jsonl'}", "data.num_frames=1"])
    from clipbert_emo.train.pretrain import load_pairs

    m = load_pairs(cfg.data, "train")
    ds = ImageTextPairDataset(m, cfg.data, seed=3, negative_prob=0.5)
    ds.set_epoch(1)
    items = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    assert [it["text"] for it in items] == [it["text"] for it in again]
    assert {it["itm_label"] for it in items} == {0, 1}
    for i, it in enumerate(items):
        assert (it["text"] == m.samples[i].text) == (it["itm_label"] == 1)
    assert it["video"].shape == (1, 1, 3, 32, 32)  # an image is a one-clip, one-frame video
    batch = ImageTextCollator(_tokenizer(tmp_path), 16)(items)
    assert batch["mlm_labels"].shape == batch["input_ids"].shape
    assert torch.equal(batch["itm_labels"], torch.tensor([it["itm_label"] for it in items]))


def test_mixed_source_batches_come_from_one_source_each():
    s = MixedSourceBatchSampler([10, 3], batch_size=4, seed=0)
    s.set_position(1)
    batches = list(s)
    assert len(batches) == 4
    for b in batches:
        assert all(i < 10 for i in b) or all(i >= 10 for i in b)
    assert any(b[0] >= 10 for b in batches) and any(b[0] < 10 for b in batches)
    s.set_position(1, skip_batches=2)
    assert list(s) == batches[2:]


def test_pretrain_run_then_finetune_starts_from_it(pairs_dir, synthemo_dir, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "pre"
    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={pairs_dir / 'train.jsonl'}",
                             f"data.val_manifest={pairs_dir / 'val.jsonl'}", "data.num_frames=1",
                             "train.epochs=2", f"train.output_dir={out}"])
    m = pretrain(cfg, progress=False)
    assert m["steps"] == 4 and len(m["history"]) == 2
    h = m["history"][-1]
    for k in ("train_loss_mlm", "train_loss_itm", "val_itm_accuracy", "val_mlm_accuracy"):
        assert np.isfinite(h[k])
    assert abs(h["train_loss"] - h["train_loss_mlm"] - h["train_loss_itm"]) < 1e-4
    assert (out / "pretrain_curves.png").exists()
    pre = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert "transformer.cls.seq_relationship.weight" in pre
    assert torch.equal(pre["transformer.cls.predictions.decoder.weight"],
                       pre["transformer.bert.embeddings.word_embeddings.weight"])

    # Fine-tuning from it: the CNN and BERT start from the pretrained tensors (max_steps=0 epochs would
    # train; compare against what the model holds right after loading instead).
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from clipbert_emo.checkpoint import load_weights

    model = ClipBertForEmotion(cfg.model, 6, int(json.loads((out / "checkpoint" / "meta.json").read_text())["vocab_size"]))
    report = load_weights(model, out / "checkpoint" / "model.safetensors")
    assert sorted(set(k.split(".")[0] for k in report["missing"])) == ["head"]
    assert all(k.startswith("transformer.cls.") for k in report["unexpected"])
    own = model.state_dict()
    for key in ("cnn.grid_encoder.0.weight", "transformer.bert.encoder.layer.1.attention.self.query.weight",
                "transformer.bert.visual_embeddings.row_position_embeddings.weight"):
        assert torch.equal(own[key], pre[key]), key

    ft = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={synthemo_dir / 'train.jsonl'}",
                            f"train.init_checkpoint={out / 'checkpoint'}", "train.max_steps=1",
                            f"train.output_dir={tmp_path / 'ft'}"])
    from clipbert_emo.train.finetune import finetune

    res = finetune(ft, progress=False)
    assert res["steps"] == 1
    from clipbert_emo.data.text import load_tokenizer

    assert (load_tokenizer(tmp_path / "ft" / "checkpoint" / "tokenizer").get_vocab()
            == load_tokenizer(out / "checkpoint" / "tokenizer").get_vocab()), "finetune reuses the pretraining vocabulary"


def test_pretrain_resume_matches_uninterrupted(pairs_dir, tmp_path, monkeypatch):
    base = [*TINY_OVERRIDES, f"data.train_manifest={pairs_dir / 'train.jsonl'}", "data.num_frames=1",
            "train.epochs=2", "train.batch_size=2", "train.save_every_steps=3"]
    full = pretrain(load_config(None, [*base, f"train.output_dir={tmp_path / 'full'}"]), progress=False)

    import clipbert_emo.train.resume as pre

    class Killed(Exception):
        pass

    real = pre.save_checkpoint
    calls = {"n": 0}

    def save_then_die(path, *a, **k):
        real(path, *a, **k)
        if path.name == "last":
            calls["n"] += 1
            if calls["n"] == 2:  # the second periodic save: step 6, mid-epoch 2
                raise Killed

    monkeypatch.setattr(pre, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        pretrain(load_config(None, [*base, f"train.output_dir={tmp_path / 'k'}"]), progress=False)
    monkeypatch.setattr(pre, "save_checkpoint", real)
    resumed = pretrain(load_config(None, [*base, f"train.output_dir={tmp_path / 'k'}", "train.resume=true"]),
                       progress=False)
    assert resumed["steps"] == full["steps"] == 8
    np.testing.assert_allclose(resumed["step_losses"], full["step_losses"], rtol=1e-5)


def test_pretrain_on_coco_and_visual_genome_releases(tmp_path):
    """COCO captions (through pycocotools) + Visual Genome regions, mixed per batch, on their real layouts."""
    from support.benchmarks import write_coco, write_visual_genome

    coco, vg = write_coco(tmp_path / "coco"), write_visual_genome(tmp_path / "vg")
    cfg = load_config(None, [*TINY_OVERRIDES, "data.format=coco", f"data.root={coco}", "data.num_frames=1",
                             "pretrain.sources=[visual_genome]", f"pretrain.roots=[{vg}]", "train.max_steps=2",
                             "train.batch_size=2", f"train.output_dir={tmp_path / 'run'}"])
    m = pretrain(cfg, progress=False)
    from clipbert_emo.data.benchmarks import read_image_text_pairs

    n_coco = len(read_image_text_pairs(cfg.data, "train").samples)
    n_vg = len(read_image_text_pairs(load_config(None, ["data.format=visual_genome", f"data.root={vg}"]).data,
                                     "train").samples)
    assert m["train_pairs"] == n_coco + n_vg and m["steps"] == 2
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()


def test_visual_words_auxiliary_loss(tmp_path):
    """The optional caption-words loss: added with its weight, matched pairs only, and it reaches the CNN."""
    from clipbert_emo.models.pretraining import ClipBertForPretraining

    cfg = load_config(None, TINY_OVERRIDES).model
    tok = _tokenizer(tmp_path)
    torch.manual_seed(0)
    model = ClipBertForPretraining(cfg, len(tok), visual_words_weight=0.5)
    enc = tok(CAPTIONS[:3], padding=True, return_tensors="pt")
    video = torch.randint(0, 255, (3, 1, 1, 3, 32, 32), dtype=torch.uint8)
    mlm = torch.full_like(enc["input_ids"], -100)
    out = model(enc["input_ids"], enc["attention_mask"], video, mlm, torch.tensor([1, 0, 1]))
    assert torch.allclose(out.loss, out.loss_mlm + out.loss_itm + 0.5 * out.loss_visual_words)
    out.loss_visual_words.backward()
    assert model.cnn.grid_encoder[0].weight.grad.abs().sum() > 0
    # Only matched pairs count: a mismatched pair's caption does not describe its image.
    model.eval()
    a = model(enc["input_ids"][:1], enc["attention_mask"][:1], video[:1], mlm[:1], torch.tensor([1]))
    b = model(enc["input_ids"], enc["attention_mask"], video, mlm, torch.tensor([1, 0, 0]))
    assert torch.allclose(a.loss_visual_words, b.loss_visual_words, atol=1e-5)
