"""The ready face model (`clipbert-emo face-model`, and `serve` with no checkpoint): a normal checkpoint folder of the
fer package's FER2013 CNN that predict, evaluate, serve and export take like any, whose per-frame probabilities
through the whole pipeline are the Keras model's on the same crops."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.cli import main
from clipbert_emo.config import ConfigError, load_config
from clipbert_emo.data.face_tokens import load_face_clips
from clipbert_emo.data.manifest import Sample
from clipbert_emo.models.face_expression import FER_LABELS
from support.fer_reference import astronaut_frames, keras_probabilities

HAAR = "data.face_detector=haar"  # the quick detector: what is checked here is the model, not the detector


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("face") / "model"
    assert main(["face-model", str(out), "data.n_test=4", HAAR]) == 0
    return out


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory):
    """2 s of the smiling astronaut moving across a 320 px frame (a real face always in view)."""
    import cv2

    from clipbert_emo.synthemo import write_mp4

    frames = np.stack([cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA)
                       for f in astronaut_frames(16, shift=6)])
    path = tmp_path_factory.mktemp("video") / "astronaut.mp4"
    write_mp4(path, frames, 8.0)
    return path


@pytest.fixture(scope="module")
def blank_video(tmp_path_factory):
    from clipbert_emo.synthemo import write_mp4

    path = tmp_path_factory.mktemp("video") / "blank.mp4"
    write_mp4(path, np.full((16, 96, 96, 3), 120, np.uint8), 8.0)
    return path


def test_the_folder_is_a_checkpoint_with_a_model_card(face_model):
    from clipbert_emo.checkpoint import load_checkpoint

    for name in ("config.yaml", "model.safetensors", "meta.json", "README.md", "tokenizer"):
        assert (face_model / name).exists(), name
    card = (face_model / "README.md").read_text()
    for fact in ("FER2013", "66%", "arXiv:1710.07557", "mini-Xception", "Demographic skew", "Grey 64 px, one face",
                 "Posed and web images"):
        assert fact in card, fact
    model, cfg, _ = load_checkpoint(face_model)
    assert type(model).__name__ == "FaceExpressionScorer" and model.modality_names == ["face"]
    assert cfg.data.labels == list(FER_LABELS) and not cfg.data.use_text and not cfg.data.use_video
    assert not hasattr(model, "transformer") and sum(p.numel() for p in model.parameters()) < 100_000


def test_per_frame_probabilities_are_the_keras_models_through_the_whole_pipeline(face_model, astronaut_video,
                                                                                  tmp_path):
    from clipbert_emo import Predictor

    predictor = Predictor(face_model, device="cpu", seek="accurate")
    result = predictor(astronaut_video, n_test=4)
    ours = np.array([[clip["probabilities"][lab] for lab in FER_LABELS] for clip in result["clips"]])  # (N, 7)
    # the very crops the predictor read (one frame per clip), through Keras
    crops, _ = load_face_clips(Sample(video=str(astronaut_video), text="", source="a"), predictor.cfg.data, 4,
                               False, None, {})
    assert crops.shape == (4, 1, 64, 64)
    theirs = keras_probabilities(crops.reshape(-1, 64, 64).numpy(), tmp_path)
    assert float(np.abs(ours - theirs).max()) <= 1e-5
    assert result["prediction"] == "happy" and result["probabilities"]["happy"] > 0.9  # the astronaut smiles
    assert result["missing_modalities"] == [] and result["face_crop"]["no_face_frames"] == 0
    box = result["clips"][0]["face_box"]
    assert box is not None and 60 < box[0] + box[2] / 2 < 200  # around her face, at 320 px


def test_predict_command_and_a_video_without_a_face(face_model, astronaut_video, blank_video, capsys):
    assert main(["predict", str(face_model), str(astronaut_video), "--json", "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prediction"] == "happy" and len(out["clips"]) == 4
    assert main(["predict", str(face_model), str(blank_video), "--json", "-q"]) == 0
    blank = json.loads(capsys.readouterr().out)
    assert blank["missing_modalities"] == ["face"]  # no face found: an even score, and said so
    assert max(blank["probabilities"].values()) == pytest.approx(1 / 7, abs=1e-6)


def test_evaluate_on_a_tiny_manifest(face_model, astronaut_video, blank_video, tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"video": str(astronaut_video), "label": "happy"}) + "\n"
                        + json.dumps({"video": str(blank_video), "label": "neutral"}) + "\n")
    assert main(["evaluate", str(face_model), str(manifest), "--n-test", "2", "--json", "-q",
                 "--out", str(tmp_path / "eval")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 2 and (tmp_path / "eval" / "eval_metrics.json").is_file()
    assert 0.5 <= result["reports"]["mean"]["accuracy"] <= 1.0  # the astronaut is right


def test_export_to_onnx_gives_the_pytorch_probabilities_on_real_crops(face_model, astronaut_video, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from clipbert_emo import Predictor

    assert main(["export", str(face_model), "--out", str(tmp_path / "onnx"), "--n-test", "4"]) == 0
    spec = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert list(spec["inputs"]) == ["faces", "face_present"] and spec["labels"] == list(FER_LABELS)
    predictor = Predictor(face_model, device="cpu", seek="accurate")
    crops, _ = load_face_clips(Sample(video=str(astronaut_video), text="", source="a"), predictor.cfg.data, 4,
                               False, None, {})
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    clip_logits, _ = session.run(["clip_logits", "logits"], {"faces": crops[None].numpy(),
                                                             "face_present": np.ones(1, bool)})
    ours = predictor.model.clip_logits(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long),
                                       face=crops[None])
    assert np.abs(clip_logits - ours.numpy()).max() < 1e-4
    assert FER_LABELS[int(clip_logits[0].mean(0).argmax())] == "happy"


def test_serve_without_a_checkpoint_builds_and_serves_the_face_model(tmp_path, monkeypatch, astronaut_video):
    from fastapi.testclient import TestClient

    import clipbert_emo.serve as serve_package
    from clipbert_emo import Predictor
    from clipbert_emo.serve import create_app

    served = {}  # the command's call of serve(), which would block on the port
    monkeypatch.setattr(serve_package, "serve", lambda checkpoint, **kw: served.update(checkpoint=checkpoint, **kw))
    folder = tmp_path / "cache" / "face_model"
    assert main(["serve", "--face-model-dir", str(folder), "--face-detector", "haar"]) == 0
    assert served["checkpoint"] == folder and (folder / "model.safetensors").is_file()
    with TestClient(create_app(Predictor(folder, device="cpu")), base_url="http://localhost") as client:
        labels = client.get("/labels").json()
        assert labels["labels"] == list(FER_LABELS) and labels["uses_text"] is False
        r = client.post("/predict", files={"file": ("a.mp4", astronaut_video.read_bytes(), "video/mp4")})
        assert r.status_code == 200 and r.json()["prediction"] == "happy"
    built = (folder / "model.safetensors").stat().st_mtime_ns
    assert main(["serve", "--face-model-dir", str(folder)]) == 0  # built once: the second start reuses it
    assert (folder / "model.safetensors").stat().st_mtime_ns == built


def test_a_benchmarks_label_names_map_onto_fer_classes(face_model, astronaut_video, tmp_path):
    from clipbert_emo import Predictor

    meld = ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]  # configs/meld.yaml's order
    out = tmp_path / "meld_face"
    assert main(["face-model", str(out), "data.n_test=4", HAAR, "--labels", ",".join(meld)]) == 0
    assert json.loads((out / "meta.json").read_text())["labels_from_fer"]["joy"] == "happy"
    ours = Predictor(out, device="cpu", seek="accurate")(astronaut_video)
    fer = Predictor(face_model, device="cpu", seek="accurate")(astronaut_video)
    assert ours["prediction"] == "joy"
    names = dict(zip(meld, ["neutral", "happy", "sad", "angry", "surprise", "fear", "disgust"]))
    for label, p in ours["probabilities"].items():
        assert p == pytest.approx(fer["probabilities"][names[label]], abs=1e-6)
    # SynthEmo's six (no disgust): the probabilities of the classes kept, renormalised
    cfg = load_config("face_model", ["data.labels=[neutral, happy, sad, angry, surprised, fearful]"])
    from clipbert_emo.build import build_model

    assert build_model(cfg, 40).classes.tolist() == [6, 3, 4, 0, 5, 2]
    with pytest.raises(ConfigError, match=r"data.labels \['excited', 'frustrated'\] name none"):
        build_model(load_config("face_model", ["data.labels=[happy, excited, frustrated]"]), 40)


def test_the_face_model_refuses_text_video_and_other_task_kinds():
    from clipbert_emo.models.registry import check_fusion

    for bad, why in ((["data.use_text=true"], r"cannot read text .*data\.use_text=false"),
                     (["data.use_video=true"], r"cannot read video"),
                     (["data.task=regression"], r"cannot be used with data\.task=regression: .*single_label")):
        with pytest.raises(ConfigError, match=why):
            check_fusion(load_config("face_model", bad))
