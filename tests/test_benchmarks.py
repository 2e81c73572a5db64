"""The public-release readers against tiny releases in the real on-disk layouts (support/benchmarks.py)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipbert_emo.config import ConfigError, DataConfig
from clipbert_emo.data.benchmarks import (DAISEE_STATES, FER_EMOTIONS, MELD_EMOTIONS, MOSEI_EMOTIONS, SENTIMENT_7,
                                          read_image_text_pairs)
from clipbert_emo.data.decode import open_video, read_frames, video_info
from clipbert_emo.data.manifest import ManifestError
from clipbert_emo.tasks import load_split
from support.benchmarks import (DAISEE_HEADER_LINE, FER_ROWS, write_coco, write_daisee, write_fer2013,
                                write_image_folder, write_meld, write_mmsa, write_visual_genome)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    base = tmp_path_factory.mktemp("releases")
    return {
        "meld": write_meld(base / "MELD.Raw"),
        "mosi": write_mmsa(base / "MOSI"),
        "mosei": write_mmsa(base / "MOSEI", emotions=True),
        "sims": write_mmsa(base / "SIMS", scale=1.0, zero_padded_clips=True),
        "daisee": write_daisee(base / "DAiSEE"),
        "fer2013": write_fer2013(base / "fer2013"),
        "image_folder": write_image_folder(base / "images"),
        "coco": write_coco(base / "coco"),
        "visual_genome": write_visual_genome(base / "vg"),
    }


def cfg_for(releases, fmt, **kw) -> DataConfig:
    return DataConfig(format=fmt, root=str(releases.get(fmt, "")), **kw)


def split_names(m, labels):
    return [labels[s.label] for s in m.samples]


def reasons(m):
    return [(Path(w.split(":")[0]).name + ":" + w.split(":")[1], r.split(":")[0]) for w, r in m.skipped]


def assert_decodes(path):
    reader = open_video(path)
    frames = read_frames(reader, np.array([[0, video_info(reader, path).num_frames - 1]]), path)
    assert frames.shape == (1, 2, 32, 32, 3) and frames[0, 1].mean() > frames[0, 0].mean()


# ---------------------------------------------------------------------------------------------
# MELD


def test_meld_splits_texts_and_labels(releases, caplog):
    cfg = cfg_for(releases, "meld", labels=list(MELD_EMOTIONS))
    train = load_split(cfg, "train")
    assert split_names(train, MELD_EMOTIONS) == ["neutral", "neutral", "surprise", "disgust", "anger"]
    # "\x92" (raw cp1252 byte) and "â€™" (UTF-8 read as cp1252) both come back as an apostrophe
    assert train.samples[0].text == "also I was the point person on my company's transition"
    assert train.samples[1].text == "You must've had your hands full."
    assert train.samples[0].extra["speaker"] == "Chandler" and train.samples[0].extra["sentiment"] == "neutral"
    # the zero-byte clip (dia125_utt3 in the real release) is left for the loader to skip at decode time
    corrupt = train.samples[4]
    assert corrupt.video.endswith("train_splits/dia125_utt3.mp4") and Path(corrupt.video).stat().st_size == 0
    assert reasons(train) == [("train_sent_emo.csv:7", "malformed row")]
    assert train.path.endswith("train_sent_emo.csv") and train.samples[0].source.endswith("train_sent_emo.csv:2")

    with caplog.at_level(logging.WARNING):
        val = load_split(cfg, "val")
    assert split_names(val, MELD_EMOTIONS) == ["joy", "sadness"]
    assert val.samples[0].text == "Oh, what's up?"
    assert val.samples[0].video.endswith("dev_splits_complete/dia0_utt0.mp4")
    assert val.skipped == [(f"{releases['meld']}/dev_sent_emo.csv:4",
                            f"video file not found: {releases['meld']}/dev_splits_complete/dia110_utt7.mp4")]
    assert "skipped 1 sample(s): 1 video file not found" in caplog.text

    test = load_split(cfg, "test")
    assert [s.text for s in test.samples][1] == "Oh. That's so Monica can keep track."
    assert test.samples[0].video.endswith("output_repeated_splits_test/dia0_utt0.mp4")
    assert_decodes(test.samples[0].video)


def test_meld_out_of_set_label_sentiment_and_text_only(releases):
    labels = [x for x in MELD_EMOTIONS if x != "disgust"]
    train = load_split(cfg_for(releases, "meld", labels=labels), "train")
    assert len(train.samples) == 4
    assert ("train_sent_emo.csv:5", "label not in data.labels") in reasons(train)
    assert any("'disgust'" in r for _, r in train.skipped)

    sentiment = ["neutral", "positive", "negative"]
    train = load_split(cfg_for(releases, "meld", target="sentiment", labels=sentiment), "train")
    assert split_names(train, sentiment) == ["neutral", "neutral", "positive", "negative", "negative"]

    # without video the missing clip does not matter
    val = load_split(cfg_for(releases, "meld", labels=list(MELD_EMOTIONS), use_video=False), "val")
    assert len(val.samples) == 3 and val.skipped == [] and all(s.video is None for s in val.samples)

    with pytest.raises(ManifestError, match=r"dev_sent_emo.csv:4: video file not found"):
        load_split(cfg_for(releases, "meld", labels=list(MELD_EMOTIONS), strict=True), "val")


@pytest.mark.parametrize("kw,message", [
    ({"task": "regression", "labels": list(MELD_EMOTIONS)}, r"needs data.task=single_label"),
    ({}, r"data.labels has 'happy'.*MELD's emotion annotation never uses"),
    ({"target": "valence", "labels": list(MELD_EMOTIONS)}, r"data.target='valence'"),
])
def test_meld_config_errors(releases, kw, message):
    with pytest.raises(ConfigError, match=message):
        load_split(cfg_for(releases, "meld", **kw), "train")


def test_missing_release_or_annotation_names_the_path_and_layout(tmp_path):
    cfg = DataConfig(format="meld", root=str(tmp_path / "nowhere"), labels=list(MELD_EMOTIONS))
    layout = r"(?s)MELD release not found: .*nowhere is not a folder.*<root>/train_sent_emo.csv"
    with pytest.raises(ManifestError, match=layout):
        load_split(cfg, "train")
    (tmp_path / "MELD").mkdir()
    cfg.root = str(tmp_path / "MELD")
    with pytest.raises(ManifestError, match=r"(?s)file not found: .*MELD/dev_sent_emo.csv.*dev_splits_complete"):
        load_split(cfg, "val")
    (tmp_path / "MELD" / "dev_sent_emo.csv").write_text("Sr No.,Utterance\n")
    with pytest.raises(ManifestError, match=r"folder not found: .*MELD/dev_splits_complete"):
        load_split(cfg, "val")
    others = {
        "mosi": ("label.csv", {"task": "regression"}),
        "daisee": ("Labels/TrainLabels.csv", {"task": "multitask", "heads": list(DAISEE_STATES),
                                              "labels": ["0", "1", "2", "3"]}),
        "fer2013": ("fer2013.csv", {"labels": list(FER_EMOTIONS)}),
        "image_folder": ("train", {}),
        "coco": ("annotations/captions_train2017.json", {}),
        "visual_genome": ("region_descriptions.json", {}),
    }
    for fmt, (expected, kw) in others.items():
        with pytest.raises(ManifestError, match=rf"not found: .*{tmp_path}/{expected}"):
            load_split(DataConfig(format=fmt, root=str(tmp_path), **kw), "train")


# ---------------------------------------------------------------------------------------------
# CMU-MOSI / CMU-MOSEI / CH-SIMS


def test_mosi_regression_splits(releases):
    cfg = cfg_for(releases, "mosi", task="regression")
    train = load_split(cfg, "train")
    assert [s.target for s in train.samples] == [2.4, -1.8, 0.0, -0.5]
    assert train.samples[0].text == "this movie was great" and train.samples[0].label is None
    assert train.samples[0].video.endswith("Raw/03bSnISJMiM/1.mp4") and train.samples[0].extra["clip_id"] == "1"
    val = load_split(cfg, "val")
    assert [s.target for s in val.samples] == [3.0]
    assert val.skipped == [(f"{releases['mosi']}/label.csv:6",
                            f"video file not found: {releases['mosi']}/Raw/1DmNV9C1hbY/1.mp4")]
    test = load_split(cfg, "test")
    assert [s.target for s in test.samples] == [-2.6]
    assert reasons(test) == [("label.csv:8", "malformed row")] and "'n/a'" in test.skipped[0][1]
    assert_decodes(train.samples[0].video)


def test_mosi_classification_targets(releases):
    two = load_split(cfg_for(releases, "mosi", target="sentiment_2", labels=["negative", "positive"]), "train")
    assert split_names(two, ["negative", "positive"]) == ["positive", "negative", "positive", "negative"]
    seven = cfg_for(releases, "mosei", target="sentiment_7", labels=list(SENTIMENT_7))
    # -0.5 rounds half to even, to 0, as MMSA's Acc-7 does; 3.0 and -2.6 clip/round to the ends
    assert split_names(load_split(seven, "train"), SENTIMENT_7) == ["2", "-2", "0", "0"]
    assert split_names(load_split(seven, "val"), SENTIMENT_7) == ["3"]
    assert split_names(load_split(seven, "test"), SENTIMENT_7) == ["-3"]
    fewer = load_split(cfg_for(releases, "mosi", target="sentiment_7", labels=["-2", "0", "1"]), "train")
    assert len(fewer.samples) == 3 and reasons(fewer) == [("label.csv:2", "label not in data.labels")]


def test_sims_scale_and_zero_padded_clip_ids(releases):
    train = load_split(cfg_for(releases, "sims", task="regression"), "train")
    assert [s.target for s in train.samples] == [0.8, -0.6, 0.0, -0.1667]
    assert train.samples[0].video.endswith("Raw/03bSnISJMiM/0001.mp4")
    with pytest.raises(ConfigError, match="CH-SIMS scores lie in"):
        load_split(cfg_for(releases, "sims", target="sentiment_7", labels=list(SENTIMENT_7)), "train")


def test_mosei_emotions_multilabel(releases):
    cfg = cfg_for(releases, "mosei", target="emotions", task="multilabel", labels=list(MOSEI_EMOTIONS))
    train = load_split(cfg, "train")
    named = [[MOSEI_EMOTIONS[i] for i in s.labels] for s in train.samples]
    assert named == [["happy", "surprise"], ["sad", "anger", "disgust"], [], ["sad"]]
    with pytest.raises(ConfigError, match=r"needs the emotion columns happy, sad, anger, surprise, disgust, fear"):
        load_split(DataConfig(format="mosei", root=str(releases["mosi"]), target="emotions", task="multilabel",
                              labels=list(MOSEI_EMOTIONS)), "train")
    with pytest.raises(ConfigError, match="only CMU-MOSEI has emotion annotations"):
        load_split(cfg_for(releases, "mosi", target="emotions", task="multilabel", labels=list(MOSEI_EMOTIONS)),
                   "train")
    with pytest.raises(ConfigError, match=r"data.target=sentiment.*needs data.task=regression"):
        load_split(cfg_for(releases, "mosi"), "train")


# ---------------------------------------------------------------------------------------------
# DAiSEE


def test_daisee_multitask_header_suffixes_and_walk(releases):
    root = releases["daisee"]
    assert (root / "Labels" / "TrainLabels.csv").read_text().splitlines()[0] == DAISEE_HEADER_LINE
    cfg = cfg_for(releases, "daisee", task="multitask", heads=list(DAISEE_STATES), labels=["0", "1", "2", "3"],
                  use_text=False)
    train = load_split(cfg, "train")
    assert [s.task_labels for s in train.samples] == [[0, 2, 0, 0], [1, 3, 1, 0], [2, 1, 3, 1]]
    assert train.samples[0].video == str(root / "DataSet/Train/110001/1100011002/1100011002.avi")
    # listed as .mp4 and filed under another subject's folder: found by walking the split
    assert train.samples[2].video == str(root / "DataSet/Train/500045/5000441001/5000441001.mp4")
    assert all(s.text == "" for s in train.samples)
    assert reasons(train) == [("TrainLabels.csv:5", "video file not found"), ("TrainLabels.csv:6", "malformed row")]
    assert "Engagement '7'" in train.skipped[1][1]
    assert [s.task_labels for s in load_split(cfg, "val").samples] == [[3, 0, 2, 2]]
    assert [s.task_labels for s in load_split(cfg, "test").samples] == [[1, 1, 1, 3]]
    assert_decodes(train.samples[0].video)  # AVI (MPEG-4 part 2)
    assert_decodes(train.samples[2].video)


def test_daisee_single_state_head_order_and_label_subset(releases):
    one = load_split(cfg_for(releases, "daisee", target="engagement", labels=["0", "1", "2", "3"]), "train")
    assert [s.label for s in one.samples] == [2, 3, 1]
    two = load_split(cfg_for(releases, "daisee", task="multitask", heads=["frustration", "boredom"],
                             labels=["0", "1", "2", "3"]), "train")
    # the row whose Engagement is 7 is usable when engagement is not asked for
    assert [s.task_labels for s in two.samples] == [[0, 0], [0, 1], [1, 2], [0, 0]]
    sub = load_split(cfg_for(releases, "daisee", task="multitask", heads=list(DAISEE_STATES),
                             labels=["0", "1", "2"]), "train")
    assert len(sub.samples) == 1 and ("TrainLabels.csv:3", "label not in data.labels") in reasons(sub)
    with pytest.raises(ConfigError, match="needs data.target = one of boredom"):
        load_split(cfg_for(releases, "daisee", labels=["0", "1"]), "train")
    with pytest.raises(ConfigError, match="data.heads has 'sleepiness'"):
        load_split(cfg_for(releases, "daisee", task="multitask", heads=["sleepiness"], labels=["0"]), "train")


# ---------------------------------------------------------------------------------------------
# FER2013


def test_fer2013_pixels_usage_and_bad_rows(releases):
    cfg = cfg_for(releases, "fer2013", labels=list(FER_EMOTIONS), use_text=False)
    train = load_split(cfg, "train")
    assert split_names(train, FER_EMOTIONS) == ["angry", "happy"]
    image = train.samples[0].image
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8 and train.samples[0].video is None
    expected = np.array(FER_ROWS[0][1].split(), dtype=np.uint8).reshape(48, 48)
    assert (image[:, :, 0] == expected).all() and (image[:, :, 2] == expected).all()
    root = releases["fer2013"]
    assert train.skipped == [(f"{root}/fer2013.csv:4", "bad pixels: 2303 values, expected 2304 (48x48)"),
                             (f"{root}/fer2013.csv:5", "bad pixels: not all integers")]
    assert split_names(load_split(cfg, "val"), FER_EMOTIONS) == ["surprise"]
    assert split_names(load_split(cfg, "test"), FER_EMOTIONS) == ["disgust", "fear"]
    no_disgust = [x for x in FER_EMOTIONS if x != "disgust"]
    test = load_split(cfg_for(releases, "fer2013", labels=no_disgust), "test")
    assert split_names(test, no_disgust) == ["fear"]
    assert reasons(test) == [("fer2013.csv:7", "label not in data.labels")]


# ---------------------------------------------------------------------------------------------
# image folders, COCO, Visual Genome


def test_image_folder(releases):
    cfg = cfg_for(releases, "image_folder", labels=["happy", "sad"], use_text=False)
    train = load_split(cfg, "train")
    root = releases["image_folder"]
    assert [(Path(s.video).relative_to(root / "train").as_posix(), s.label) for s in train.samples] == [
        ("happy/a.jpg", 0), ("happy/b.png", 0), ("sad/c.bmp", 1)]
    assert sorted(r.split(":")[0] for _, r in train.skipped) == [
        "label not in data.labels", "not an image file", "not inside a class folder"]
    assert [Path(s.video).name for s in load_split(cfg, "val").samples] == ["f.jpeg", "e.webp"]
    assert len(load_split(cfg, "test").samples) == 1
    assert Image.open(train.samples[1].video).size == (32, 32)


def test_coco_captions(releases):
    cfg = cfg_for(releases, "coco")
    train = load_split(cfg, "train")
    assert [s.text for s in train.samples] == ["A man riding a wave on top of a surfboard.",
                                               "A plate of food with broccoli."]
    assert all(s.label is None and s.video.endswith("train2017/000000000009.jpg") for s in train.samples)
    assert [r.split(":")[0] for _, r in train.skipped] == ["image file not found"] * 2
    assert "000000000025.jpg" in train.skipped[0][1]
    val, test = load_split(cfg, "val"), read_image_text_pairs(cfg, "test")
    assert len(val.samples) == len(test.samples) == 2 and val.samples[0].video.endswith("val2017/000000000139.jpg")
    assert Image.open(val.samples[0].video).size == (32, 32)


def test_visual_genome_regions(releases):
    cfg = cfg_for(releases, "visual_genome")
    train = read_image_text_pairs(cfg, "train")
    assert [s.text for s in train.samples] == ["the clock is green in colour", "shade is along the street"]
    assert all(s.video.endswith("VG_100K/1.jpg") for s in train.samples)
    assert [r.split(":")[0] for _, r in train.skipped] == ["malformed region", "image file not found"]
    val, test = load_split(cfg, "val"), load_split(cfg, "test")
    assert [s.text for s in val.samples] == [s.text for s in test.samples] == ["a white plate on a table", "two forks"]
    assert val.samples[0].video.endswith("VG_100K_2/100.jpg") and val.samples[0].extra["image_id"] == 100


# ---------------------------------------------------------------------------------------------
# generic manifests: regression and multitask fields, pretraining pairs


def test_manifest_regression_and_multitask_jsonl_and_csv(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"video": "a.mp4", "text": "good", "target": 1.5}) + "\n"
        + json.dumps({"video": "a.mp4", "text": "bad", "target": -2}) + "\n")
    (tmp_path / "val.csv").write_text("video,text,target\na.mp4,fine,0.25\n")
    cfg = DataConfig(train_manifest=str(tmp_path / "train.jsonl"), val_manifest=str(tmp_path / "val.csv"),
                     task="regression")
    assert [s.target for s in load_split(cfg, "train").samples] == [1.5, -2.0]
    assert [s.target for s in load_split(cfg, "val").samples] == [0.25]
    with pytest.raises(ManifestError, match="data.test_manifest is not set"):
        load_split(cfg, "test")

    heads, levels = ["boredom", "engagement"], ["low", "high"]
    (tmp_path / "mt.jsonl").write_text(
        json.dumps({"video": "a.mp4", "task_labels": {"boredom": "high", "engagement": "low"}}) + "\n"
        + json.dumps({"video": "a.mp4", "task_labels": {"engagement": "high"}}) + "\n")
    (tmp_path / "mt.csv").write_text("video,boredom,engagement\na.mp4,low,high\na.mp4,high,\n")
    cfg = DataConfig(train_manifest=str(tmp_path / "mt.jsonl"), val_manifest=str(tmp_path / "mt.csv"),
                     task="multitask", heads=heads, labels=levels)
    assert [s.task_labels for s in load_split(cfg, "train").samples] == [[1, 0], [-1, 1]]
    val = load_split(cfg, "val")
    assert [s.task_labels for s in val.samples] == [[0, 1], [1, -1]] and val.samples[0].extra == {}


@pytest.mark.parametrize("row,task,message", [
    ({"video": "a.mp4", "target": "lots"}, "regression", r"m.jsonl:1: field 'target' must be a number"),
    ({"video": "a.mp4"}, "regression", r"m.jsonl:1: missing field 'target'"),
    ({"video": "a.mp4", "task_labels": {"sleepy": "low"}}, "multitask", r"m.jsonl:1: unknown head\(s\) 'sleepy'"),
    ({"video": "a.mp4", "task_labels": {"boredom": "mid"}}, "multitask", r"m.jsonl:1 \(boredom\): unknown label 'mid'"),
    ({"video": "a.mp4", "task_labels": {}}, "multitask", r"m.jsonl:1: no task label"),
])
def test_manifest_bad_regression_and_multitask_fields(tmp_path, row, task, message):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    cfg = DataConfig(train_manifest=str(tmp_path / "m.jsonl"), task=task, heads=["boredom"], labels=["low", "high"])
    with pytest.raises(ManifestError, match=message):
        load_split(cfg, "train")


def test_image_text_pairs_from_a_manifest_need_no_labels(tmp_path, releases):
    (tmp_path / "img.jpg").write_bytes(b"x")
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"video": "img.jpg", "text": "a cat on a mat"}) + "\n")
    m = read_image_text_pairs(DataConfig(train_manifest=str(tmp_path / "pairs.jsonl")), "train")
    assert [(s.text, s.label) for s in m.samples] == [("a cat on a mat", None)]
    with pytest.raises(ConfigError, match="pretraining pairs come from manifest, coco, visual_genome"):
        read_image_text_pairs(cfg_for(releases, "meld", labels=list(MELD_EMOTIONS)), "train")
    with pytest.raises(ValueError, match="split 'dev'"):
        load_split(cfg_for(releases, "meld", labels=list(MELD_EMOTIONS)), "dev")
