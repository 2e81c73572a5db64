import numpy as np
import pytest

from clipbert_emo.data.sampling import (
    clip_length_in_frames,
    sample_clip_indices,
    sample_clip_indices_test,
    sample_clip_indices_train,
)


def test_clip_length_counts_source_frames():
    # 2 frames at 2 fps span 1 s; at 30 fps that is 30 source frames.
    assert clip_length_in_frames(2, 2.0, 30.0) == pytest.approx(30.0)
    assert clip_length_in_frames(1, 2.0, 30.0) == 1.0


def test_train_clips_are_random_within_bounds_and_evenly_spaced():
    rng = np.random.default_rng(0)
    idx = sample_clip_indices_train(300, 30.0, num_clips=8, num_frames=4, clip_fps=4.0, rng=rng)
    assert idx.shape == (8, 4)
    assert idx.min() >= 0 and idx.max() <= 299
    # 4 frames at 4 fps = 1 s = 30 source frames: the clip spans 29 frames, steps of ~9.67.
    steps = np.diff(idx, axis=1)
    assert np.all((steps >= 9) & (steps <= 10))
    assert len({tuple(r) for r in idx}) > 1, "independent random starts should differ"


def test_train_sampling_is_reproducible_from_the_generator():
    a = sample_clip_indices_train(100, 10.0, 4, 2, 2.0, np.random.default_rng(7))
    b = sample_clip_indices_train(100, 10.0, 4, 2, 2.0, np.random.default_rng(7))
    c = sample_clip_indices_train(100, 10.0, 4, 2, 2.0, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_test_clips_follow_clipbert_uniform_rule():
    # video 100 frames, clip spans 2/2 s * 10 fps = 10 frames; starts (100 - 10) * i / 4.
    idx = sample_clip_indices_test(100, 10.0, num_clips=4, num_frames=2, clip_fps=2.0)
    assert idx[:, 0].tolist() == [0, 22, 45, 68]  # 0, 22.5, 45, 67.5 rounded half-to-even
    assert idx[:, 1].tolist() == [9, 32, 54, 76]
    again = sample_clip_indices_test(100, 10.0, num_clips=4, num_frames=2, clip_fps=2.0)
    assert np.array_equal(idx, again)


def test_single_test_clip_sits_in_the_middle_or_at_the_start():
    mid = sample_clip_indices_test(100, 10.0, 1, 2, 2.0, single_clip="middle")
    start = sample_clip_indices_test(100, 10.0, 1, 2, 2.0, single_clip="start")
    assert mid.tolist() == [[45, 54]]
    assert start.tolist() == [[0, 9]]
    with pytest.raises(ValueError):
        sample_clip_indices_test(100, 10.0, 1, 2, 2.0, single_clip="end")


@pytest.mark.parametrize("video_len", [1, 3, 5])
def test_video_shorter_than_a_clip_repeats_frames(video_len):
    idx_train = sample_clip_indices_train(video_len, 30.0, 3, 4, 2.0, np.random.default_rng(0))
    idx_test = sample_clip_indices_test(video_len, 30.0, 16, 4, 2.0)
    for idx in (idx_train, idx_test):
        assert idx.min() >= 0 and idx.max() <= video_len - 1
        assert np.all(np.diff(idx, axis=1) >= 0)
    assert idx_test.shape == (16, 4)


def test_dispatch_and_errors():
    with pytest.raises(ValueError, match="Generator"):
        sample_clip_indices(10, 10.0, 1, 2, 2.0, training=True)
    with pytest.raises(ValueError, match="no frames"):
        sample_clip_indices(0, 10.0, 1, 2, 2.0, training=False)
    with pytest.raises(ValueError, match="positive"):
        sample_clip_indices(10, 0.0, 1, 2, 2.0, training=False)


def test_frame_index_rules_by_hand():
    from clipbert_emo.data.sampling import sample_clip_indices_test

    # 101 frames at 10 fps, T=2 frames at clip_fps 2: a clip is 2 / 2 * 10 = 10 frames; slack 91, N=2 starts 0, 45.5.
    ours = sample_clip_indices_test(101, 10.0, 2, 2, 2.0, frame_index="round")
    original = sample_clip_indices_test(101, 10.0, 2, 2, 2.0, frame_index="floor_exclusive")
    assert ours.tolist() == [[0, 9], [46, 54]]  # rint(linspace(s, s + 9)): 45.5 -> 46, 54.5 -> 54 (to even)
    assert original.tolist() == [[0, 10], [45, 55]]  # floor(linspace(s, s + 10)): one past the end, truncated
    assert sample_clip_indices_test(101, 10.0, 1, 2, 2.0, single_clip="start").tolist() == [[0, 9]]
    assert sample_clip_indices_test(101, 10.0, 1, 2, 2.0, single_clip="middle").tolist() == [[46, 54]]
