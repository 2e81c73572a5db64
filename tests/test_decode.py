import av
import numpy as np
import pytest

from clipbert_emo.data.decode import VideoDecodeError, open_video, read_frames, video_info
from clipbert_emo.data.transforms import clip_transform, letterbox


def _pyav_frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("height,width,fps", [(36, 48, 8.0), (33, 45, 7.5), (40, 24, 29.97)])
def test_sampled_frames_equal_a_full_decode(make_video, height, width, fps):
    path = make_video(num_frames=17, height=height, width=width, fps=fps)
    reader = open_video(path)
    info = video_info(reader, str(path))
    assert info.num_frames == 17
    assert info.fps == pytest.approx(fps, rel=1e-3)
    full = _pyav_frames(path)
    idx = np.array([[0, 5], [16, 16], [3, 9]])
    got = read_frames(reader, idx, str(path))
    assert got.shape[:2] == (3, 2) and got.shape[-1] == 3
    assert got.shape[2:4] == full.shape[1:3]
    np.testing.assert_array_equal(got[0, 1], full[5])
    np.testing.assert_array_equal(got[1, 0], full[16])


def test_missing_empty_and_truncated_files_raise_errors_naming_the_file(tmp_path, make_video):
    with pytest.raises(VideoDecodeError, match="nope.mp4: file not found"):
        open_video(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.mp4: file is empty"):
        open_video(empty)
    good = make_video(num_frames=30)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(VideoDecodeError, match="truncated.mp4"):
        reader = open_video(truncated)
        read_frames(reader, np.arange(30), str(truncated))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoDecodeError, match="garbage.mp4: cannot open"):
        open_video(garbage)


def test_letterbox_keeps_aspect_and_pads_bottom_right():
    frames = np.full((2, 20, 40, 3), 200, dtype=np.uint8)
    import torch

    out = letterbox(torch.from_numpy(frames).permute(0, 3, 1, 2), 32)
    assert out.shape == (2, 3, 32, 32)
    assert out[:, :, :16].min() == 200  # resized content on top
    assert out[:, :, 16:].max() == 0  # zero padding below


def test_train_transform_is_random_but_shared_across_the_clip_frames():
    rng = np.random.default_rng(0)
    clip = np.random.default_rng(1).integers(0, 255, (2, 40, 40, 3), dtype=np.uint8)
    clip[1] = clip[0]
    a = clip_transform(clip, 32, training=True, rng=rng)
    assert a.shape == (2, 3, 32, 32)
    assert np.array_equal(a[0], a[1]), "both frames of a clip get the same crop and flip"
    b = clip_transform(clip, 32, training=True, rng=np.random.default_rng(5))
    assert not np.array_equal(a, b)
    t1 = clip_transform(clip, 32, training=False)
    t2 = clip_transform(clip, 32, training=False)
    assert np.array_equal(t1, t2)


@pytest.mark.parametrize("num_frames,height,width,fps", [(3, 33, 45, 7.5), (1, 40, 64, 29.97), (50, 64, 40, 60.0)])
def test_short_and_odd_videos_still_give_full_clip_tensors(make_video, num_frames, height, width, fps):
    from clipbert_emo.config import DataConfig
    from clipbert_emo.data.dataset import load_clips
    from clipbert_emo.data.manifest import Sample

    path = make_video(num_frames=num_frames, height=height, width=width, fps=fps)
    cfg = DataConfig(frame_size=32, num_frames=2, clip_fps=2.0)
    sample = Sample(video=str(path), text="", source="test")
    for training, n in ((True, 2), (False, 16)):
        rng = np.random.default_rng(0) if training else None
        clips, spans = load_clips(sample, cfg, n, training, rng)
        assert clips.shape == (n, 2, 3, 32, 32) and clips.dtype.is_floating_point is False
        assert len(spans) == n and all(0 <= s <= e for s, e in spans)


def test_a_playlist_named_like_a_video_is_never_followed(tmp_path):
    """An HLS playlist saved as .mp4 names another file; decord's FFmpeg would read that file's frames. It is
    refused by its first bytes, before any demuxer sees it."""
    segment = tmp_path / "private.ts"
    with av.open(str(segment), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(5):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")))
        out.mux(stream.encode(None))
    playlist = tmp_path / "upload.mp4"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{segment}\n#EXT-X-ENDLIST\n")
    with pytest.raises(VideoDecodeError, match="playlist or list of other files"):
        open_video(playlist)
    concat = tmp_path / "list.mp4"
    concat.write_text(f"ffconcat version 1.0\nfile '{segment}'\n")
    with pytest.raises(VideoDecodeError, match="not a video"):
        open_video(concat)
