"""Face crops on real faces (scikit-image's astronaut photograph), box smoothing, fallbacks, the box cache."""

import os

import numpy as np
import pytest

from clipbert_emo.config import UserError
from clipbert_emo.data.faces import (BoxCache, FaceDetector, crop_clip, face_crop_clips, get_detector,
                                     smooth_clip_boxes)

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

# The astronaut's face in the 512 x 512 photograph, by eye: x 180..270, y 60..170.
FACE = (180, 60, 270, 170)


def _astronaut_frames(num: int, shift: int = 4, size: int = 640) -> tuple[np.ndarray, list[int]]:
    """The photograph pasted on a grey canvas, moving right by ``shift`` px per frame; returns frames and x offsets."""
    img = skimage_data.astronaut()
    frames, offsets = [], []
    for i in range(num):
        canvas = np.full((size, size, 3), 90, np.uint8)
        x = 20 + shift * i
        canvas[40:552, x:x + 512] = img
        frames.append(canvas)
        offsets.append(x)
    return np.stack(frames), offsets


def _inside_face(box, dx, dy):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return FACE[0] + dx < cx < FACE[2] + dx and FACE[1] + dy < cy < FACE[3] + dy


def test_haar_finds_the_astronaut_and_follows_it():
    frames, offsets = _astronaut_frames(3, shift=30)
    det = FaceDetector()
    for frame, dx in zip(frames, offsets):
        box = det(frame)
        assert box is not None and _inside_face(box, dx, 40)
        assert 60 < box[2] < 200  # a face-sized box, not the whole picture
    assert det(np.full((240, 320, 3), 128, np.uint8)) is None  # a blank frame has no face


def test_face_crop_clips_crops_around_the_face_and_counts_fallbacks():
    frames, offsets = _astronaut_frames(4, shift=4)
    blank = np.full((2, 640, 640, 3), 90, np.uint8)
    clips_in = np.stack([frames[:2], frames[2:], blank])  # (N=3, T=2, H, W, 3): the last clip has no face
    # the blank clip lies far from the others (frames 400, 401), beyond what the tracker carries a box across
    clips, stats = face_crop_clips(clips_in, np.array([[0, 1], [2, 3], [400, 401]]), get_detector(""), margin=0.25)
    assert stats.frames == 6 and stats.clips == 3 and stats.full_frame_clips == 1 and stats.no_face_frames == 2
    assert clips[2].shape == (2, 640, 640, 3)  # full frame kept
    for c in clips[:2]:
        t, s, s2, _ = c.shape
        assert t == 2 and s == s2 and 80 < s < 400  # a square around the face, with margin
    # the crop really holds the face: Haar finds a face filling most of it
    box = FaceDetector()(clips[0][0])
    assert box is not None and box[2] > 0.4 * clips[0].shape[1]


def test_smoothing_fills_misses_and_steadies_the_box():
    boxes = [(100, 100, 50, 50), None, (110, 100, 50, 50), (300, 100, 50, 50)]
    centres = smooth_clip_boxes(boxes, window=3)
    assert centres.shape == (4, 3)
    assert centres[1, 0] == pytest.approx((125 + 125 + 135) / 3)  # the miss took its nearest neighbour's box
    assert centres[3, 0] < 325  # the jump is damped
    assert smooth_clip_boxes([None, None]) is None
    crop = crop_clip(np.zeros((4, 200, 400, 3), np.uint8), centres, margin=0.5)
    assert crop.shape[1] == crop.shape[2] and crop.shape[0] == 4


def test_box_cache_skips_detection_and_notices_an_edited_video(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    calls = []

    class Counting:
        identity = "counting"

        def __call__(self, frame):
            calls.append(1)
            return (1.0, 2.0, 3.0, 4.0)

    frames = np.zeros((2, 2, 8, 8, 3), np.uint8)
    idx = np.array([[0, 5], [5, 9]])
    first, _ = face_crop_clips(frames, idx, Counting(), video=str(video), cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # frame 5 is shared by both clips: detected once
    face_crop_clips(frames, idx, Counting(), video=str(video), cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # second epoch: all from the cache
    assert BoxCache(tmp_path / "cache", str(video), "counting").boxes[9] == (1.0, 2.0, 3.0, 4.0)
    st = os.stat(video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    face_crop_clips(frames, idx, Counting(), video=str(video), cache_dir=tmp_path / "cache")
    assert len(calls) == 6  # the file changed: its old boxes are not trusted


def test_yunet_model_file_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="not found"):
        FaceDetector(str(tmp_path / "yunet.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load it as a YuNet model"):
        FaceDetector(str(junk))
    with pytest.raises(UserError, match=".onnx"):
        FaceDetector(__file__)


def test_yunet_path_keeps_the_largest_face_in_frame_pixels(tmp_path, monkeypatch):
    """No YuNet weights ship offline: OpenCV's detector is replaced by a stub that answers like cv2.FaceDetectorYN
    (boxes in the pixels of the image it was given), to test the scaling and the choice of the largest face."""
    model = tmp_path / "face_detection_yunet.onnx"
    model.write_bytes(b"stub")
    seen = {}

    class Stub:
        def setInputSize(self, size):
            seen["size"] = size

        def detect(self, bgr):
            seen["shape"] = bgr.shape
            return 1, np.array([[10, 10, 20, 20] + [0] * 10 + [0.9], [50, 40, 60, 80] + [0] * 10 + [0.8]], np.float32)

    monkeypatch.setattr(cv2.FaceDetectorYN, "create", staticmethod(lambda *a, **k: Stub()))
    det = FaceDetector(str(model))
    box = det(np.zeros((720, 960, 3), np.uint8))  # detected at 480 px wide: scale 0.5
    assert seen["size"] == (480, 360) and seen["shape"] == (360, 480, 3)
    assert box == pytest.approx((100, 80, 120, 160))
    assert det.identity.startswith("yunet-face_detection_yunet.onnx")


def test_training_with_face_crop_caches_boxes(synthemo_dir, tmp_path):
    from clipbert_emo.cli import main
    from support import TINY_OVERRIDES, data_overrides

    cache = tmp_path / "faces"
    rc = main(["finetune", "-q", *TINY_OVERRIDES, *data_overrides(synthemo_dir), f"train.output_dir={tmp_path / 'run'}",
               "data.face_crop=true", f"data.face_cache={cache}"])
    assert rc == 0
    files = list(cache.glob("*.json"))
    assert len(files) == 16  # one per training video; validation and test are not cached


def test_predict_with_face_crop_reports_the_counts(tiny_checkpoint, tmp_path, capsys):
    """An mp4 of the moving astronaut (written with PyAV) and one without a face, through predict --face-crop."""
    import json

    from clipbert_emo import Predictor
    from clipbert_emo.cli import main
    from clipbert_emo.synthemo import write_mp4

    frames, _ = _astronaut_frames(8, shift=6, size=576)
    write_mp4(tmp_path / "astronaut.mp4", frames, 4.0)
    write_mp4(tmp_path / "wall.mp4", np.full((8, 96, 96, 3), 120, np.uint8), 4.0)
    p = Predictor(tiny_checkpoint, device="cpu")
    p.use_face_crop()
    face, wall = p.predict_many([tmp_path / "astronaut.mp4", tmp_path / "wall.mp4"], num_workers=0)
    assert face["face_crop"] == {"frames": 6, "no_face_frames": 0, "clips": 3, "full_frame_clips": 0,
                                 "tracked_frames": 0}
    assert wall["face_crop"] == {"frames": 6, "no_face_frames": 6, "clips": 3, "full_frame_clips": 3,
                                 "tracked_frames": 0}
    assert "face_crop" not in Predictor(tiny_checkpoint, device="cpu")(tmp_path / "wall.mp4")  # off by default
    rc = main(["predict", str(tiny_checkpoint), str(tmp_path), "--face-crop", "--out", str(tmp_path / "r.jsonl"),
               "-q"])
    assert rc == 0
    assert "no_face_frames" in capsys.readouterr().out
    rows = {json.loads(line)["video"]: json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()}
    assert rows[str(tmp_path / "wall.mp4")]["face_crop"]["full_frame_clips"] == 3
