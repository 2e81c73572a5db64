import matplotlib.image as mpimg
import numpy as np
import pytest

from clipbert_emo.eval.plots import (
    plot_clip_timeline,
    plot_confusion_matrix,
    plot_learning_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def assert_valid_png(path, min_side=150):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_SIGNATURE
    img = mpimg.imread(str(path))
    h, w = img.shape[:2]
    assert min_side <= h <= 5000 and min_side <= w <= 5000
    # Not a blank canvas: some pixels differ from the background.
    assert float(np.ptp(img[..., :3])) > 0.1


def test_learning_curves_epochs_with_missing_keys(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 1.2, "val_loss": 1.1, "val_accuracy": 0.5,
         "val_macro_f1": 0.4, "lr": 1e-4},
        {"epoch": 2, "train_loss": 0.9, "lr": 8e-5},  # no validation this epoch
        {"epoch": 3, "train_loss": 0.7, "val_loss": 0.95, "val_accuracy": 0.6,
         "val_macro_f1": 0.52, "lr": 5e-5},
        {"epoch": 4, "val_accuracy": None, "note": "text values are skipped"},
    ]
    path = tmp_path / "curves.png"
    plot_learning_curves(history, path)
    assert_valid_png(path)


def test_learning_curves_steps(tmp_path):
    history = [{"step": 10 * i, "train_loss": 2.0 / (i + 1)} for i in range(200)]
    history += [{"step": 2000, "val_loss": 0.4, "val_macro_f1": 0.6}]
    path = tmp_path / "sub" / "steps.png"
    plot_learning_curves(history, path)
    assert_valid_png(path)


def test_learning_curves_degenerate_inputs(tmp_path):
    for i, history in enumerate([[], [{"epoch": 1}], [{"train_loss": 1.0}]]):
        path = tmp_path / f"d{i}.png"
        plot_learning_curves(history, path)
        assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 30, size=(7, 7)) + np.diag(rng.integers(30, 90, size=7))
    cm[2] = 0  # a zero-support row must not break normalisation
    path = tmp_path / f"cm_{normalize}.png"
    plot_confusion_matrix(cm.tolist(), LABELS, path, normalize=normalize, title="Test CM")
    assert_valid_png(path)


def test_confusion_matrix_shape_check(tmp_path):
    with pytest.raises(ValueError):
        plot_confusion_matrix([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "x.png")


def test_clip_timeline_png(tmp_path):
    times = np.arange(0.0, 30.0, 1.5)
    logits = np.stack([np.sin(times / 4 + k) * 2 for k in range(len(LABELS))], axis=1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path = tmp_path / "timeline.png"
    plot_clip_timeline(list(times), probs, LABELS, path, title="video_001")
    assert_valid_png(path)


def test_clip_timeline_single_clip_and_bad_shape(tmp_path):
    path = tmp_path / "one.png"
    plot_clip_timeline([0.0], np.array([[0.2, 0.8]]), ["a", "b"], path)
    assert_valid_png(path)
    with pytest.raises(ValueError):
        plot_clip_timeline([0.0, 1.0], np.ones((3, 2)) / 2, ["a", "b"], tmp_path / "bad.png")


def test_no_pyplot_figures_leak(tmp_path):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm.png")
    assert len(plt.get_fignums()) == before
