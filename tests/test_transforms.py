"""Frame geometry, and the original ClipBERT's preprocessing options checked against values worked out by hand."""

import numpy as np
import torch

from clipbert_emo.config import load_config
from clipbert_emo.data.transforms import Resize, letterbox

ORIGINAL = Resize(rounding="floor", antialias=False, output="float")


def test_resized_size_rounds_or_truncates():
    frames = torch.full((1, 3, 10, 7), 200, dtype=torch.uint8)  # 10 high, 7 wide
    # size 8: scale 0.8, so the width is 7 * 0.8 = 5.6 -> 6 rounded, 5 truncated (the original's int()).
    rounded = letterbox(frames, 8, resize=Resize(rounding="round"))
    floored = letterbox(frames, 8, resize=Resize(rounding="floor"))
    assert (rounded[0, 0, :, :6] == 200).all() and (rounded[0, 0, :, 6:] == 0).all()
    assert (floored[0, 0, :, :5] == 200).all() and (floored[0, 0, :, 5:] == 0).all()


def test_floor_rounding_is_the_originals_size_rule_worked_by_hand():
    from clipbert_emo.data.transforms import resized_size

    # The longer side is the size itself; the shorter int(448 * short / long), computed in that order:
    # 448 * 720 / 1280 = 252.0 exactly, where 720 * (448 / 1280) = 251.99999999999997 truncates to 251.
    assert resized_size(720, 1280, 448, "floor") == (252, 448)
    assert resized_size(1280, 720, 448, "floor") == (448, 252)
    assert resized_size(480, 640, 448, "floor") == (336, 448)  # 448 * 480 / 640 = 336
    assert resized_size(100, 100, 448, "floor") == (448, 448)
    assert resized_size(360, 641, 448, "floor") == (251, 448)  # 161280 / 641 = 251.6 -> 251
    assert resized_size(720, 1280, 448, "round") == (252, 448)
    # The two orders of arithmetic differ on two of these common phone and web sizes at 448: the rule matters.
    common = [(144, 176), (240, 320), (272, 640), (360, 640), (480, 640), (480, 854), (720, 1280), (1080, 1920)]
    assert [s for s in common if int(s[0] * (448 / s[1])) != resized_size(*s, 448, "floor")[0]] == [
        (360, 640), (720, 1280)]
    frames = torch.full((1, 3, 720, 1280), 200, dtype=torch.uint8)
    boxed = letterbox(frames, 448, resize=ORIGINAL)
    assert (boxed[0, 0, :252] == 200).all() and (boxed[0, 0, 252:] == 0).all()


def _bilinear_no_antialias(row: np.ndarray, out_len: int) -> np.ndarray:
    """PyTorch's bilinear with align_corners=False and no antialiasing, by hand: output pixel j samples the
    input at (j + 0.5) * in/out - 0.5 (clamped at 0) between its two neighbours."""
    scale = len(row) / out_len
    out = []
    for j in range(out_len):
        src = max((j + 0.5) * scale - 0.5, 0.0)
        lo = min(int(np.floor(src)), len(row) - 1)
        hi = min(lo + 1, len(row) - 1)
        out.append(row[lo] * (1 - (src - lo)) + row[hi] * (src - lo))
    return np.array(out)


def test_antialias_off_is_plain_bilinear_and_on_averages_wider():
    row = np.array([0, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0], dtype=np.float64)  # 16 wide
    frames = torch.tensor(np.tile(row, (16, 1)), dtype=torch.uint8)[None, None].expand(1, 3, 16, 16)
    plain = letterbox(frames, 4, resize=ORIGINAL)[0, 0, 0].numpy()  # 16 -> 4: samples at 1.5, 5.5, 9.5, 13.5
    assert np.allclose(plain, _bilinear_no_antialias(row, 4))
    assert np.allclose(plain, [0.0, 0.0, 0.0, 0.0])  # every sample falls between two zeros
    smooth = letterbox(frames, 4, resize=Resize(rounding="floor", antialias=True, output="float"))[0, 0, 0].numpy()
    assert smooth[0] > 10 and smooth[2] > 10, "an antialiasing filter sees the bright pixels between the samples"


def test_output_uint8_rounds_and_float_keeps_the_interpolated_value():
    frames = torch.tensor([[0, 255]], dtype=torch.uint8)[None, None].expand(1, 3, 1, 2)  # 1 x 2 -> 2 x 4
    as_float = letterbox(frames, 4, resize=ORIGINAL)
    as_uint8 = letterbox(frames, 4, resize=Resize(rounding="floor", antialias=False, output="uint8"))
    # Width 2 -> 4: samples at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) -> 0, 63.75, 191.25, 255.
    assert as_float.dtype == torch.float32 and as_uint8.dtype == torch.uint8
    assert torch.allclose(as_float[0, 0, 0], torch.tensor([0.0, 63.75, 191.25, 255.0]))
    assert as_uint8[0, 0, 0].tolist() == [0, 64, 191, 255]


def test_clipbert_original_config_sets_the_original_preprocessing():
    d = load_config("clipbert_original").data
    assert (d.resize_rounding, d.resize_antialias, d.resize_output, d.frame_index, d.single_clip, d.augment) == (
        "floor", False, "float", "clipbert", "start", False)
    default = load_config(None).data
    assert (default.resize_rounding, default.resize_antialias, default.resize_output, default.frame_index) == (
        "round", True, "uint8", "round")


def test_float_frames_reach_the_model_unchanged_in_scale():
    from clipbert_emo.config import ModelConfig
    from clipbert_emo.models.visual import VisualEncoder

    enc = VisualEncoder("resnet18", 3, 32, "mean", [0.5] * 3, [0.25] * 3)
    x = torch.full((1, 3, 8, 8), 127.5)
    assert torch.allclose(enc.normalize(x), torch.zeros(1, 3, 8, 8))
    assert ModelConfig().channel_order == "rgb"
