"""Every fast path gives what the plain path gives: the inference encoder and tokenizer, skipped weight
initialisation, chunked CNN passes, channels_last, bf16 autocast, batched clip transforms."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from clipbert_emo.config import ModelConfig
from clipbert_emo.models.clipbert import ClipBertForEmotion

K, V = 5, 60


@pytest.fixture
def batch(make_batch):
    """This file's batches: ids from a vocabulary of V, 7 tokens, the first text's last 3 padded."""
    return functools.partial(make_batch, length=7, vocab=V, pad=3)


def _trained_like(cfg: ModelConfig) -> ClipBertForEmotion:
    torch.manual_seed(0)
    model = ClipBertForEmotion(cfg, K, V).eval()
    with torch.no_grad():  # BatchNorm statistics away from their 0/1 start, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_inference_encoder_built_without_init_gives_the_training_models_logits(tiny_model_config, batch):
    from clipbert_emo.build import skip_weight_init

    plain = _trained_like(tiny_model_config())
    with skip_weight_init():
        fast = ClipBertForEmotion(tiny_model_config(), K, V, inference=True).eval()
    assert set(fast.state_dict()) == set(plain.state_dict()), "same parameter names: checkpoints load key for key"
    fast.load_state_dict(plain.state_dict(), strict=True)
    video, ids, mask = batch()
    torch.testing.assert_close(fast.clip_logits(ids, mask, video), plain.clip_logits(ids, mask, video),
                               rtol=1e-5, atol=1e-6)
    from clipbert_emo.models.bert_inference import InferenceBert

    assert isinstance(fast.transformer.bert, InferenceBert)


def test_skip_weight_init_leaves_weights_undrawn_and_restores_init():
    from clipbert_emo.build import skip_weight_init

    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with skip_weight_init():
        torch.nn.Linear(64, 64)
    assert torch.equal(torch.random.get_rng_state(), before), "no random numbers drawn while skipping"
    torch.nn.Linear(64, 64)
    assert not torch.equal(torch.random.get_rng_state(), before), "initialisation is back afterwards"


@pytest.mark.parametrize("frames_per_pass", [1, 5, 12])
def test_cnn_in_chunks_gives_the_same_logits(frames_per_pass, tiny_model_config, batch):
    model = _trained_like(tiny_model_config())
    video, ids, mask = batch(n=3, t=2)  # 12 frames
    model.cnn.frames_per_pass = 0
    whole = model.clip_logits(ids, mask, video)
    model.cnn.frames_per_pass = frames_per_pass
    torch.testing.assert_close(model.clip_logits(ids, mask, video), whole, rtol=1e-5, atol=1e-5)


def test_cnn_chunks_only_outside_training(tiny_model_config, batch):
    model = _trained_like(tiny_model_config())
    model.cnn.frames_per_pass = 2
    video = batch()[0]
    seen = []
    model.cnn.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    model.train()
    model.cnn(video)
    assert seen == [12], "training keeps one pass (BatchNorm's batch statistics)"
    model.eval()
    seen.clear()
    with torch.no_grad():
        model.cnn(video)
    assert seen == [2] * 6


def test_channels_last_gives_the_same_logits(tiny_model_config, batch):
    plain = _trained_like(tiny_model_config())
    fast = _trained_like(tiny_model_config(channels_last=True))
    assert fast.cnn.channels_last
    video, ids, mask = batch()
    torch.testing.assert_close(fast.clip_logits(ids, mask, video), plain.clip_logits(ids, mask, video),
                               rtol=1e-4, atol=1e-4)


def test_bf16_autocast_is_close_to_fp32_and_runs_without_grad(tiny_model_config, batch):
    plain = _trained_like(tiny_model_config())
    fast = _trained_like(tiny_model_config(inference_precision="bf16"))
    video, ids, mask = batch()
    want, got = plain.clip_logits(ids, mask, video), fast.clip_logits(ids, mask, video)
    assert not got.requires_grad and torch.is_inference(got)
    assert got.shape == want.shape
    # bf16 keeps 8 bits of mantissa: logits move by about 1% of their scale, not more.
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.05 * float(want.abs().max()))


def test_inference_tokenizer_gives_transformers_ids(tmp_path):
    from transformers import AutoTokenizer

    from clipbert_emo.data.text import InferenceTokenizer, build_wordpiece_tokenizer, load_inference_tokenizer

    texts = ["No way, that is INCREDIBLE!", "café naïve déjà-vu", "", "a " * 60, "unseenword xyz 42",
             "emoji 😀 and 中文 chars"]
    build_wordpiece_tokenizer(texts[:2] + ["some more words to learn"], 80, tmp_path)
    fast, plain = load_inference_tokenizer(tmp_path), AutoTokenizer.from_pretrained(str(tmp_path))
    assert isinstance(fast, InferenceTokenizer)
    assert len(fast) == len(plain) and fast.pad_token_id == plain.pad_token_id
    for kwargs in ({"padding": "longest", "truncation": True, "max_length": 12}, {"truncation": True,
                                                                                   "max_length": 40}):
        for chunk in (texts, texts[:1], texts[3:4]):
            if "padding" not in kwargs and len(chunk) > 1:
                continue
            a, b = fast(chunk, return_tensors="pt", **kwargs), plain(chunk, return_tensors="pt", **kwargs)
            assert torch.equal(a["input_ids"], b["input_ids"]), chunk
            assert torch.equal(a["attention_mask"], b["attention_mask"]), chunk


@pytest.mark.parametrize("training", [False, True])
def test_batched_clip_transform_equals_the_clip_by_clip_loop(training):
    from clipbert_emo.data.transforms import Resize, clip_transform, clips_transform

    clips = np.random.default_rng(0).integers(0, 256, (70, 2, 30, 44, 3), dtype=np.uint8)  # > one letterbox chunk
    for resize in (Resize(), Resize("floor", False, "float")):
        rng = np.random.default_rng(3)  # one generator drawn clip after clip, as the dataset does
        loop = torch.stack([clip_transform(c, 24, training, rng, 0.6, True, "bottom_right", resize) for c in clips])
        got = clips_transform(clips, 24, training, np.random.default_rng(3), 0.6, True, "bottom_right", resize)
        assert got.dtype == loop.dtype and got.shape == (70, 2, 3, 24, 24)
        assert torch.equal(got, loop)


def test_inference_settings_are_validated():
    from clipbert_emo.config import ConfigError, ExperimentConfig

    for bad in ({"inference_precision": "fp16"}, {"inference_cnn_frames": -1}):
        cfg = ExperimentConfig(model=dataclasses.replace(ModelConfig(), **bad))
        with pytest.raises(ConfigError, match="inference"):
            cfg.validate()


def test_test_time_clips_equal_the_clip_by_clip_transform_of_their_frames(make_video):
    from clipbert_emo.config import DataConfig
    from clipbert_emo.data.dataset import load_clips
    from clipbert_emo.data.decode import open_video, read_frames
    from clipbert_emo.data.manifest import Sample
    from clipbert_emo.data.transforms import clip_transform

    path = make_video(num_frames=30, height=40, width=56)
    cfg = DataConfig(frame_size=24, num_frames=3, clip_fps=2.0)  # clips longer than their spacing share frames
    context: dict = {}
    clips, _ = load_clips(Sample(video=str(path), text=""), cfg, 6, False, None, context)
    frames = read_frames(open_video(path), np.array(context["frames"]), str(path))  # (N, T, H, W, 3)
    assert len(np.unique(context["frames"])) < 18
    assert torch.equal(clips, torch.stack([clip_transform(c, 24, False) for c in frames]))


@pytest.mark.parametrize("backbone,stride,frozen_prefixes,trained_prefix", [
    ("resnet18", 4, ("backbone.stem.", "backbone.stages.0."), "backbone.stages.1."),
    ("efficientnet_lite0", 4, ("backbone.net._conv_stem.", "backbone.net._bn0.", "backbone.net._blocks.0.",
                               "backbone.net._blocks.1.", "backbone.net._blocks.2."), "backbone.net._blocks.3."),
])
def test_frozen_cnn_layers_keep_their_weights_and_statistics_while_the_rest_trains(
        tiny_model_config, batch, backbone, stride, frozen_prefixes, trained_prefix):
    from clipbert_emo.train.optim import build_optimizer
    from clipbert_emo.config import OptimConfig

    torch.manual_seed(0)
    cfg = tiny_model_config(backbone=backbone, cnn_frozen_stride=stride, pretrained=False)
    model = ClipBertForEmotion(cfg, K, V).train()
    visual = model.cnn
    before = {n: v.clone() for n, v in visual.state_dict().items()}
    frozen = [n for n in before if n.startswith(frozen_prefixes)]
    trained = [n for n in before if n.startswith(trained_prefix) and n.endswith("weight")]
    assert frozen and trained
    # model.train() leaves the frozen layers in eval mode: BatchNorm reads its stored statistics, never updates them
    assert all(not m.training for layer in visual.frozen_layers for m in layer.modules())
    optimizer = build_optimizer(model, OptimConfig(lr_cnn=1e-2, lr_transformer=1e-2))
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    video, ids, mask = batch(size=64 if backbone.startswith("efficientnet") else 32)  # stride 32 needs a 2x2 map
    for _ in range(2):
        loss = model(input_ids=ids, attention_mask=mask, video=video, labels=torch.tensor([0, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    after = visual.state_dict()
    for name, param in visual.named_parameters():
        if name.startswith(frozen_prefixes):
            assert not param.requires_grad and id(param) not in optimized, name
    assert all(torch.equal(before[n], after[n]) for n in frozen), "frozen weights and BatchNorm statistics unchanged"
    assert any(not torch.equal(before[n], after[n]) for n in trained), "the layers after them train"


def test_frozen_cnn_stride_is_checked_when_the_config_loads():
    from clipbert_emo.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="model.cnn_frozen_stride=3"):
        load_config("synthemo_cpu", ["model.cnn_frozen_stride=3"])
    with pytest.raises(ConfigError, match="detectron2_resnet50 keeps its stem and res2 frozen"):
        load_config("synthemo_cpu", ["model.cnn_frozen_stride=4", "model.backbone=detectron2_resnet50"])
