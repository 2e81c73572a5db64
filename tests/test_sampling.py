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
    # 101 frames at 10 fps, T=2 frames at clip_fps 2: a clip is 2 / 2 * 10 = 10 frames; slack 91, N=2 starts 0, 45.5.
    ours = sample_clip_indices_test(101, 10.0, 2, 2, 2.0, frame_index="round")
    original = sample_clip_indices_test(101, 10.0, 2, 2, 2.0, frame_index="clipbert")
    assert ours.tolist() == [[0, 9], [46, 54]]  # rint(linspace(s, s + 9)): 45.5 -> 46, 54.5 -> 54 (to even)
    # The original: the first frame at or after 45.5 is 46, then + trunc(linspace(0, 9, 2)) = + [0, 9].
    assert original.tolist() == [[0, 9], [46, 55]]
    assert sample_clip_indices_test(101, 10.0, 1, 2, 2.0, single_clip="start").tolist() == [[0, 9]]
    assert sample_clip_indices_test(101, 10.0, 1, 2, 2.0, single_clip="middle").tolist() == [[46, 54]]


def test_clipbert_rule_matches_the_facts_sheets_examples():
    # 250 frames at 25 fps, T = 2 at 2 fps: clip_size 25, slack 225; N_test = 2 starts 0 and 112.5.
    assert sample_clip_indices_test(250, 25.0, 2, 2, 2.0, frame_index="clipbert").tolist() == [[0, 24], [113, 137]]
    # A single clip: QA at the start, retrieval a third of the slack in (225 / 3 = 75).
    assert sample_clip_indices_test(250, 25.0, 1, 2, 2.0, single_clip="start",
                                    frame_index="clipbert").tolist() == [[0, 24]]
    assert sample_clip_indices_test(250, 25.0, 1, 2, 2.0, single_clip="third",
                                    frame_index="clipbert").tolist() == [[75, 99]]
    # Whole-frame starts stay on their frame (no float drift to the next): 4 clips of 10 over 90 frames of slack.
    assert sample_clip_indices_test(100, 10.0, 4, 2, 2.0, frame_index="clipbert")[:, 0].tolist() == [0, 23, 45, 68]


def test_clipbert_rule_gives_a_one_frame_clip_a_seconds_length():
    # TGIF-QA: T = 1 at 1 fps on a 30 fps video of 100 frames. The original's clip is 30 frames long, so its starts
    # are (100 - 30) * i / 4 = 0, 17.5, 35, 52.5 -> frames 0, 18, 35, 53; this library's one-frame clip has slack 99.
    assert clip_length_in_frames(1, 1.0, 30.0, "clipbert") == 30.0
    assert clip_length_in_frames(1, 1.0, 30.0, "round") == 1.0
    original = sample_clip_indices_test(100, 30.0, 4, 1, 1.0, frame_index="clipbert")
    assert original.tolist() == [[0], [18], [35], [53]]
    assert sample_clip_indices_test(100, 30.0, 4, 1, 1.0).tolist() == [[0], [25], [50], [74]]
    # Train: uniform starts in [0, 70], never a clip that would run past the end of the video.
    rng = np.random.default_rng(0)
    starts = sample_clip_indices_train(100, 30.0, 500, 1, 1.0, rng, frame_index="clipbert")[:, 0]
    assert starts.min() >= 0 and starts.max() <= 70 and starts.max() >= 65


def test_clipbert_rule_on_a_decoded_video(tmp_path):
    """A generated 101-frame, 10 fps video through the whole loader: the frames read are [[0, 9], [46, 55]]."""
    from clipbert_emo.config import DataConfig
    from clipbert_emo.data.dataset import load_clips
    from clipbert_emo.data.manifest import Sample
    import av

    from support import frame_numbers

    path = tmp_path / "v.mp4"
    with av.open(str(path), "w", format="mp4") as out:  # lossless RGB H.264: frame i has brightness 10 + 2 i exactly
        stream = out.add_stream("libx264rgb", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt, stream.options = "rgb24", {"qp": "0", "bframes": "0"}
        for i in range(101):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 + 2 * i, np.uint8), "rgb24")))
        out.mux(stream.encode(None))
    cfg = DataConfig(frame_size=32, num_frames=2, clip_fps=2.0, frame_index="clipbert", resize_rounding="floor",
                     resize_antialias=False, resize_output="float")
    context: dict = {}
    clips, _ = load_clips(Sample(video=str(path), text=""), cfg, 2, False, None, context)
    assert context["frames"] == [[0, 9], [46, 55]]
    shown = frame_numbers(clips.permute(0, 1, 3, 4, 2).numpy(), step=2)  # (N, T, 3, S, S) -> (N, T): the pixels agree
    assert shown.tolist() == [[0, 9], [46, 55]]
