import functools

import pytest
import torch

from clipbert_emo.models.aggregation import aggregate_clip_logits
from clipbert_emo.models.losses import single_label_loss
from clipbert_emo.models.clipbert import ClipBertForEmotion

K, V = 6, 50


@pytest.fixture
def batch(make_batch):
    """This file's batches: ids from a vocabulary of V, 6 tokens, the first text's last 2 padded."""
    return functools.partial(make_batch, length=6, vocab=V, pad=2)


@pytest.mark.parametrize("aggregation", ["mean", "max", "lse"])
def test_forward_shapes_for_each_aggregation(aggregation, tiny_model_config, batch):
    torch.manual_seed(0)
    model = ClipBertForEmotion(tiny_model_config(aggregation=aggregation), K, V).eval()
    video, ids, mask = batch()
    out = model(ids, mask, video, labels=torch.tensor([1, 4]))
    assert out.clip_logits.shape == (2, 3, K)
    assert out.logits.shape == (2, K)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert torch.allclose(out.logits, aggregate_clip_logits(out.clip_logits, aggregation))


def test_visual_grid_is_stride_64_with_res5_and_32_with_res4(tiny_model_config, batch):
    video, _, _ = batch(size=128)
    full = ClipBertForEmotion(tiny_model_config(backbone_stages=4), K, V).eval()
    res4 = ClipBertForEmotion(tiny_model_config(backbone_stages=3), K, V).eval()
    assert full.cnn(video).shape == (2, 3, 32, 2, 2)  # 128 / 64
    assert res4.cnn(video).shape == (2, 3, 32, 4, 4)  # 128 / 32


def test_aggregation_math():
    clip = torch.tensor([[[0.0, 1.0], [2.0, -1.0]]])  # (B=1, N=2, K=2)
    assert torch.allclose(aggregate_clip_logits(clip, "mean"), torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(aggregate_clip_logits(clip, "max"), torch.tensor([[2.0, 1.0]]))
    lse = aggregate_clip_logits(clip, "lse")
    assert torch.allclose(lse, torch.log(torch.exp(clip).sum(1)))
    # ClipBERT's form of the lse loss: logsumexp over all clip-class logits minus logsumexp over clips at the label.
    label = torch.tensor([0])
    expected = torch.logsumexp(clip.flatten(), 0) - torch.logsumexp(clip[0, :, 0], 0)
    assert torch.allclose(single_label_loss(lse, label), expected)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_clip_logits(clip, "median")


def test_text_only_and_video_without_text(tiny_model_config, batch):
    torch.manual_seed(0)
    text_model = ClipBertForEmotion(tiny_model_config(), K, V, use_video=False).eval()
    video, ids, mask = batch()
    out = text_model(ids, mask)
    assert text_model.cnn is None and out.clip_logits.shape == (2, 1, K)
    # A sample with no text is [CLS] [SEP]: only the visual tokens carry information.
    model = ClipBertForEmotion(tiny_model_config(), K, V).eval()
    empty = torch.tensor([[2, 3], [2, 3]])
    a = model(empty, torch.ones_like(empty), video).logits
    b = model(empty, torch.ones_like(empty), video.flip(0)).logits
    assert a.shape == (2, K) and (a - b).abs().max() > 1e-6
    with pytest.raises(ValueError, match="trained with video"):
        model(ids, mask)


def test_padding_is_masked_and_text_matters(tiny_model_config, batch):
    torch.manual_seed(0)
    model = ClipBertForEmotion(tiny_model_config(), K, V).eval()
    video, ids, mask = batch()
    base = model(ids, mask, video).logits
    changed_pad = ids.clone()
    changed_pad[0, -1] = 7  # a padded position: must not change anything
    assert torch.allclose(model(changed_pad, mask, video).logits, base, atol=1e-7)
    changed_word = ids.clone()
    changed_word[0, 1] = (ids[0, 1] + 1) % V
    assert (model(changed_word, mask, video).logits[0] - base[0]).abs().max() > 1e-6


def test_attention_temporal_fusion_and_multilabel(tiny_model_config, batch):
    torch.manual_seed(0)
    from clipbert_emo.config import DataConfig, TrainConfig
    from clipbert_emo.tasks import get_task

    multilabel = get_task("multilabel").criterion(DataConfig(task="multilabel"), TrainConfig())
    model = ClipBertForEmotion(tiny_model_config(temporal_fusion="attention"), K, V, criterion=multilabel)
    video, ids, mask = batch()
    target = torch.zeros(2, K)
    target[0, [1, 2]] = 1
    out = model(ids, mask, video, labels=target)
    out.loss.backward()
    assert model.cnn.temporal.score.weight.grad is not None
    assert model.cnn.temporal.score.weight.grad.abs().sum() > 0


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(tiny_model_config, batch):
    torch.manual_seed(0)
    model = ClipBertForEmotion(tiny_model_config(), K, V)
    model.train()
    video, ids, mask = batch(b=4, seed=1)
    labels = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.eval()  # fixed BN statistics and no dropout: the loss before and after is comparable
    before = model(ids, mask, video, labels=labels).loss.item()
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(ids, mask, video, labels=labels).loss.backward()
        opt.step()
    model.eval()
    after = model(ids, mask, video, labels=labels).loss.item()
    assert after < before


def test_checkpoint_key_names_follow_clipbert(tiny_model_config):
    keys = ClipBertForEmotion(tiny_model_config(), K, V).state_dict().keys()
    for expected in ("transformer.bert.embeddings.word_embeddings.weight",
                     "transformer.bert.encoder.layer.0.attention.self.query.weight",
                     "transformer.bert.pooler.dense.weight",
                     "transformer.bert.visual_embeddings.row_position_embeddings.weight",
                     "transformer.bert.visual_embeddings.col_position_embeddings.weight",
                     "transformer.bert.visual_embeddings.token_type_embeddings.weight",
                     "cnn.grid_encoder.0.weight", "head.classifier.0.weight", "head.classifier.2.weight"):
        assert expected in keys


def test_separate_parameter_groups(tiny_model_config):
    from clipbert_emo.config import OptimConfig
    from clipbert_emo.train.optim import build_optimizer, warmup_linear_decay

    model = ClipBertForEmotion(tiny_model_config(), K, V)
    opt = build_optimizer(model, OptimConfig(lr_cnn=1e-4, lr_transformer=2e-5))
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["cnn/decay"] == 1e-4 and lrs["transformer/decay"] == 2e-5
    assert all(g["weight_decay"] == 0 for g in opt.param_groups if g["name"].endswith("no_decay"))
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())
    sched = warmup_linear_decay(opt, total_steps=10, warmup_ratio=0.2)
    factors = []
    for _ in range(10):
        factors.append(opt.param_groups[0]["lr"] / 1e-4)
        opt.step()
        sched.step()
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert factors[2] > factors[5] > factors[9] > 0


def test_visual_aux_loss_is_added_in_training_only(tiny_model_config, batch):
    torch.manual_seed(0)
    model = ClipBertForEmotion(tiny_model_config(visual_aux_weight=0.5), K, V)
    video, ids, mask = batch()
    labels = torch.tensor([1, 4])
    model.train()
    out = model(ids, mask, video, labels=labels)
    main = single_label_loss(out.logits, labels)
    assert out.loss_visual_aux is not None
    assert torch.allclose(out.loss, main + 0.5 * out.loss_visual_aux)
    model.eval()
    out = model(ids, mask, video, labels=labels)
    assert out.loss_visual_aux is None
    assert torch.allclose(out.loss, single_label_loss(out.logits, labels))
    assert ClipBertForEmotion(tiny_model_config(), K, V).visual_aux is None


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_model_config, batch):
    torch.manual_seed(0)
    a = ClipBertForEmotion(tiny_model_config(), K, V)
    b = ClipBertForEmotion(tiny_model_config(), K, V)
    b.load_state_dict(a.state_dict())
    b.enable_gradient_checkpointing()
    assert b.cnn.backbone.gradient_checkpointing and b.transformer.bert.encoder.layer[0].gradient_checkpointing
    video, ids, mask = batch()
    labels = torch.tensor([1, 4])
    grads = []
    for model in (a, b):
        model.train()
        torch.manual_seed(3)  # same dropout masks
        loss = model(ids, mask, video, labels=labels).loss
        loss.backward()
        grads.append((loss.item(), model.cnn.backbone.stages[0][0].conv1.weight.grad.clone(),
                      model.transformer.bert.encoder.layer[0].attention.self.query.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    assert torch.allclose(grads[0][2], grads[1][2], atol=1e-6)


def test_apex_is_optional_and_its_absence_is_explained(monkeypatch, tiny_model_config):
    import builtins
    import sys

    from clipbert_emo.config import OptimConfig
    from clipbert_emo.train.optim import build_optimizer

    assert "apex" not in sys.modules  # nothing imports apex unless asked
    real_import = builtins.__import__

    def no_apex(name, *a, **k):
        if name.startswith("apex"):
            raise ImportError("No module named 'apex'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_apex)
    model = ClipBertForEmotion(tiny_model_config(), K, V)
    with pytest.raises(ImportError, match="not on PyPI"):
        build_optimizer(model, OptimConfig(optimizer="apex_fused_adam"))
    assert isinstance(build_optimizer(model, OptimConfig()), torch.optim.AdamW)


def test_clips_scored_in_passes_give_the_same_logits(tiny_model_config, batch):
    torch.manual_seed(0)
    model = ClipBertForEmotion(tiny_model_config(), K, V).eval()
    video, ids, mask = batch(b=2, n=7)
    with torch.no_grad():
        whole = model.clip_logits(ids, mask, video)
        for per_pass in (1, 3, 7, 50):
            torch.testing.assert_close(model.clip_logits(ids, mask, video, clips_per_pass=per_pass), whole,
                                       rtol=1e-5, atol=1e-6)
