"""Seek modes: which frames each returns (accurate: the sampled ones; keyframe: clips moved onto keyframes),
and the sequential read of dense frames."""

from __future__ import annotations

import av
import numpy as np
import pytest

from clipbert_emo.config import DataConfig
from clipbert_emo.data.dataset import load_clips
from clipbert_emo.data.decode import keyframe_indices, open_video, read_frames
from clipbert_emo.data.manifest import Sample
from clipbert_emo.data.sampling import keyframe_tolerance, sample_clip_indices_test, snap_clips_to_keyframes
from support import frame_numbers


def pyav_keyframes(path) -> list[int]:
    with av.open(str(path)) as c:
        return [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]


def test_snap_moves_a_clip_only_onto_a_keyframe_within_a_quarter_of_the_spacing():
    # 16 frames of slack per clip (4 clips of 5 frames over 69 frames): a clip may move up to 4 frames.
    clips = sample_clip_indices_test(69, 10.0, 4, 2, 4.0)  # a clip: 2 frames at 4 fps = 5 frames at 10 fps
    np.testing.assert_array_equal(clips[:, 0], [0, 16, 32, 48])
    assert keyframe_tolerance(clips, 0, 69) == 4.0
    snapped = snap_clips_to_keyframes(clips, np.array([0, 13, 20, 36, 60]), 0, 69)
    # 13 is 3 from 16 (it moves); 20 is 4 from 16 but farther than 13; 36 is 4 from 32 (moves); 48 has none near.
    np.testing.assert_array_equal(snapped, [[0, 4], [13, 17], [36, 40], [48, 52]])
    # One keyframe (a phone clip): nothing collapses onto it, every clip is read where it was sampled.
    np.testing.assert_array_equal(snap_clips_to_keyframes(clips, np.array([0]), 0, 69), clips)
    # A span of frames 30..50: clips stay inside it, and keyframes outside it are never used.
    inside = clips[:2] // 4 + 30
    assert (snap_clips_to_keyframes(inside, np.array([29, 36, 60]), 30, 50) >= 30).all()
    np.testing.assert_array_equal(snap_clips_to_keyframes(clips, None, 0, 69), clips)


@pytest.mark.parametrize("seed", range(40))
def test_keyframe_placement_keeps_the_invariant_for_any_keyframe_layout(seed):
    """N clips at N distinct increasing positions, each within max(spacing / 4, 1 frame) of the accurate one,
    whatever the keyframes: one, a few, dense, or every frame; videos longer and shorter than N clips."""
    rng = np.random.default_rng(seed)
    frames = int(rng.choice([8, 20, 60, 121, 300, 1500]))
    n, t = int(rng.choice([1, 2, 4, 16])), int(rng.choice([1, 2, 4]))
    gap = int(rng.choice([1, 2, 5, 25, 60, 250, 10_000]))
    keys = np.unique(np.r_[0, np.arange(0, frames, gap) + rng.integers(0, 3, size=len(range(0, frames, gap)))])
    accurate = sample_clip_indices_test(frames, 25.0, n, t, 4.0)  # (N, T)
    placed = snap_clips_to_keyframes(accurate, keys, 0, frames)
    tolerance = keyframe_tolerance(accurate, 0, frames)
    assert placed.shape == accurate.shape and placed.min() >= 0 and placed.max() < frames
    np.testing.assert_array_equal(placed - placed[:, :1], accurate - accurate[:, :1])  # clips keep their shape
    assert np.all(np.abs(placed[:, 0] - accurate[:, 0]) <= tolerance)
    distinct = np.diff(accurate[:, 0]) > 0
    assert np.all(np.diff(placed[:, 0])[distinct] > 0), "distinct clips stay distinct and in order"
    assert np.all(np.diff(placed[:, 0])[~distinct] == 0)
    moved = placed[:, 0] != accurate[:, 0]
    assert np.isin(placed[moved, 0], keys).all(), "a clip moves only onto a keyframe"


def test_keyframe_indices_are_the_encoders(tmp_path, write_gop_video):
    path = write_gop_video(tmp_path / "g.mp4", num_frames=45, gop=10)
    np.testing.assert_array_equal(keyframe_indices(open_video(path)), pyav_keyframes(path))
    assert len(pyav_keyframes(path)) >= 4


@pytest.mark.parametrize("seek", ["accurate", "keyframe"])
def test_each_seek_mode_returns_its_frames(tmp_path, seek, write_gop_video):
    path = write_gop_video(tmp_path / "g.mp4", num_frames=60, gop=10)
    assert pyav_keyframes(path) == [0, 9, 18, 27, 36, 45, 54]
    cfg = DataConfig(frame_size=32, num_frames=2, clip_fps=5.0, seek=seek)  # a clip spans 4 frames at 10 fps
    context: dict = {}
    clips, spans = load_clips(Sample(video=str(path), text=""), cfg, 4, False, None, context)
    used = np.array(context["frames"])  # (N, T)
    sampled = np.array([[0, 3], [14, 17], [28, 31], [42, 45]])  # starts (60 - 4) * i / 4, T=2 over 4 frames
    if seek == "accurate":
        np.testing.assert_array_equal(used, sampled)
    else:
        # Keyframes 0, 9, 18, ...; a clip moves at most 56 / 4 / 4 = 3.5 frames: 14 has none that near.
        np.testing.assert_array_equal(used, [[0, 3], [14, 17], [27, 30], [45, 48]])
    # The pixels are those frames, and the spans report them.
    shown = frame_numbers(clips.permute(0, 1, 3, 4, 2).numpy())  # (N, T, 3, S, S) -> (N, T)
    np.testing.assert_array_equal(shown, used)
    assert spans == [(row[0] / 10.0, (row[-1] + 1) / 10.0) for row in used.tolist()]


def test_keyframe_mode_stays_inside_a_manifest_span(tmp_path, write_gop_video):
    path = write_gop_video(tmp_path / "g.mp4", num_frames=60, gop=10)
    cfg = DataConfig(frame_size=32, num_frames=2, clip_fps=5.0, seek="keyframe")
    context: dict = {}
    load_clips(Sample(video=str(path), text="", start=1.5, end=3.5), cfg, 3, False, None, context)
    used = np.array(context["frames"])
    assert used.min() >= 15 and used.max() < 35
    # Sampled starts 15, 20, 26 over frames 15..34 (slack 16, a move of at most 1.33 frames): only 26 has a
    # keyframe (27) that near, and it leaves room for the clip's 4 frames.
    assert used[:, 0].tolist() == [15, 20, 27]


def test_dense_frames_read_in_one_pass_equal_seeking(tmp_path, write_gop_video):
    path = write_gop_video(tmp_path / "g.mp4", num_frames=60, gop=25)
    dense = np.arange(3, 57, 2).reshape(-1, 3)  # one in two frames: the sequential reader
    got = read_frames(open_video(path), dense, str(path))
    np.testing.assert_array_equal(frame_numbers(got), dense)
    sparse = np.array([[5], [41], [7]])  # a few frames: decord's own seeking, any order
    np.testing.assert_array_equal(frame_numbers(read_frames(open_video(path), sparse, str(path))), sparse)
    reader = open_video(path)
    a = reader.get_batch(dense.reshape(-1).tolist()).asnumpy()
    np.testing.assert_array_equal(read_frames(open_video(path), dense, str(path)).reshape(a.shape), a)


def write_textured_video(path, width, height, num_frames, options=None):
    """Random texture sliding sideways, H.264 at 10 fps: every frame differs, and no scaler gets it exact."""
    base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = options or {}
        for i in range(num_frames):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="rgb24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return path


@pytest.mark.parametrize("bframes", [0, 2])
def test_dense_readers_return_decords_frames_pixel_for_pixel(tmp_path, bframes, monkeypatch):
    from clipbert_emo.data import decode

    # Textured frames with B-frames: decode order differs from display order, and the colour conversion of
    # the two libraries must agree to the last bit for the readers to be interchangeable.
    path = write_textured_video(tmp_path / "b.mp4", 64, 48, 50,
                                {"keyint": "12", "min-keyint": "12", "scenecut": "0", "bframes": str(bframes)})
    wanted = np.array([2, 3, 7, 11, 12, 13, 20, 29, 30, 41, 49])
    expected = open_video(path).get_batch(wanted.tolist()).asnumpy()  # decord's seeking, frame by frame
    passes = []
    for name in ("_read_frames_pyav", "_read_sequential"):
        real = getattr(decode, name)
        monkeypatch.setattr(decode, name, lambda *a, _real=real, _name=name, **k: passes.append(_name) or _real(*a, **k))
    for reader, threads in (("pyav", 1), ("pyav", 0), ("decord", 1)):  # 0: FFmpeg's threads, same frames
        monkeypatch.setattr(decode, "SEQUENTIAL_READER", reader)
        frames, inverse = decode.read_unique_frames(open_video(path), wanted, str(path), threads=threads)
        np.testing.assert_array_equal(frames[inverse], expected, err_msg=f"{reader}, {threads} thread(s)")
    assert passes == ["_read_frames_pyav"] * 2 + ["_read_sequential"], "each reader did the pass"
    monkeypatch.setattr(decode, "SEQUENTIAL_READER", "pyav")
    # A late start (the lead-in longer than the span) goes through decord's pass, same frames.
    late = np.array([40, 41, 43, 45, 47])
    frames, inverse = decode.read_unique_frames(open_video(path), late, str(path))
    np.testing.assert_array_equal(frames[inverse], open_video(path).get_batch(late.tolist()).asnumpy())


def test_seek_mode_is_validated():
    from clipbert_emo.config import ConfigError, ExperimentConfig

    with pytest.raises(ConfigError, match="data.seek"):
        ExperimentConfig(data=DataConfig(seek="fast")).validate()


def test_decode_resize_scales_in_the_decoder_and_matches_the_exact_path(tmp_path):
    from clipbert_emo.data import decode

    path = write_textured_video(tmp_path / "hd.mp4", 160, 120, 30)
    assert decode.scaled_size(path, 64) == (64, 48)
    assert decode.scaled_size(path, 160) is None  # never scaled up, nor to its own size
    size = (64, 48)
    sparse = np.array([3, 17])
    dense = np.arange(0, 30, 2)
    small = decode.open_video(path, size=size).get_batch(sparse.tolist()).asnumpy()
    assert small.shape == (2, 48, 64, 3)
    frames, inverse = decode.read_unique_frames(decode.open_video(path, size=size), dense, str(path), size)
    decord_scaled = decode.open_video(path, size=size).get_batch(dense.tolist()).asnumpy()
    assert frames.shape == (15, 48, 64, 3)  # the dense pass (PyAV) scales to the same size ...
    # ... and close to decord's scaler (random texture, the worst case for two scalers: within 1.5 levels on average)
    assert np.abs(frames[inverse].astype(int) - decord_scaled).mean() < 3
    # After the letterbox to 64 px, the scaled frames give nearly the clips of the exact path.
    exact = DataConfig(frame_size=64, num_frames=1, clip_fps=4.0, seek="accurate")
    fast = DataConfig(frame_size=64, num_frames=1, clip_fps=4.0, seek="accurate", decode_resize=True)
    sample = Sample(video=str(path), text="")
    a, _ = load_clips(sample, exact, 4, False, None, {})
    b, _ = load_clips(sample, fast, 4, False, None, {})
    assert a.shape == b.shape == (4, 1, 3, 64, 64)
    assert (a.float() - b.float()).abs().mean() < 6  # uint8 levels: the scalers differ, the content does not


def test_read_plan_picks_whichever_decodes_fewer_frames():
    from clipbert_emo.data.decode import read_plan

    sparse = np.arange(0, 1500, 94)  # 16 frames over a minute at 25 fps
    assert read_plan(sparse, np.arange(0, 1500, 25)) == "seek"  # 1 s GOP: a seek decodes a few frames per clip
    dense = np.arange(5, 300, 3)
    assert read_plan(dense, np.arange(0, 300, 10)) == "pass"  # every GOP holds wanted frames: seeking re-decodes
    assert read_plan(np.array([7]), np.array([0])) == "seek"
    # Without keyframes, the density decides: one wanted frame in every 8 or more is read in one pass.
    assert read_plan(np.arange(0, 80, 8), None) == "pass" and read_plan(np.arange(0, 90, 9), None) == "seek"
