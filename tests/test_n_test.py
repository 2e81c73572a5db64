"""The number of test clips has one name (data.n_test, --n-test, n_test=, "n_test") and one resolution
(config.resolve_n_test); the old spellings still work for a release, with a DeprecationWarning."""

import json

import pytest
import yaml

from clipbert_emo.config import (ConfigError, DataConfig, ExperimentConfig, UserError, from_dict, load_config,
                                 resolve_n_test, save_config, to_dict)


def test_resolve_n_test_takes_the_argument_else_the_config():
    cfg = load_config(None, ["data.n_test=7", "train.val_n_test=3"])
    assert resolve_n_test(cfg) == 7 and resolve_n_test(cfg.data) == 7
    assert resolve_n_test(cfg, 2) == 2 and resolve_n_test(cfg.data, 2) == 2
    assert resolve_n_test(cfg, validation=True) == 3 and resolve_n_test(cfg, 5, validation=True) == 5
    for bad in (0, -1, 1.5, True, "4"):
        with pytest.raises(UserError, match="n_test must be a whole number >= 1"):
            resolve_n_test(cfg, bad)


def test_the_resolved_config_uses_the_new_names(tmp_path):
    save_config(load_config(None, ["data.n_test=5"]), tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert "n_test: 5" in text and "val_n_test:" in text
    assert "num_clips_test" not in text and "val_num_clips" not in text


@pytest.mark.parametrize("old,new,value", [("data.num_clips_test", "data.n_test", 5),
                                           ("train.val_num_clips", "train.val_n_test", 3)])
def test_an_old_key_in_a_file_or_an_override_means_the_new_one(tmp_path, old, new, value):
    section, key = old.split(".")
    want = to_dict(load_config(None, [f"{new}={value}"]))
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated, read as {new}"):
        assert to_dict(load_config(None, [f"{old}={value}"])) == want
    (tmp_path / "old.yaml").write_text(yaml.safe_dump({section: {key: value}}))
    with pytest.warns(DeprecationWarning, match=f"old.yaml: {old} is deprecated"):
        assert to_dict(load_config(tmp_path / "old.yaml")) == want
    (tmp_path / "exp.yaml").write_text("base: old.yaml\nname: derived\n")  # an old key in a base config too
    with pytest.warns(DeprecationWarning):
        assert to_dict(load_config(tmp_path / "exp.yaml"))[section][new.split(".")[1]] == value


def test_both_spellings_in_one_file_are_refused(tmp_path):
    (tmp_path / "both.yaml").write_text("data:\n  n_test: 4\n  num_clips_test: 8\n")
    with pytest.raises(ConfigError, match="data.num_clips_test and data.n_test are the same setting"):
        load_config(tmp_path / "both.yaml")


def test_a_checkpoint_saved_with_the_old_key_still_loads(tmp_path):
    """Checkpoints written before the rename keep data.num_clips_test in their config.yaml."""
    from clipbert_emo.checkpoint import CONFIG, META, WEIGHTS, read_checkpoint_config

    old = to_dict(load_config(None, ["data.n_test=6", "train.val_n_test=2"]))
    old["data"]["num_clips_test"] = old["data"].pop("n_test")
    old["train"]["val_num_clips"] = old["train"].pop("val_n_test")
    (tmp_path / CONFIG).write_text(yaml.safe_dump(old, sort_keys=False))
    (tmp_path / META).write_text(json.dumps({"num_labels": 6}))
    (tmp_path / WEIGHTS).write_bytes(b"")
    with pytest.warns(DeprecationWarning, match="config.yaml: data.num_clips_test is deprecated"):
        cfg, _ = read_checkpoint_config(tmp_path)
    assert (cfg.data.n_test, cfg.train.val_n_test) == (6, 2)
    with pytest.warns(DeprecationWarning):
        assert from_dict(old).data.n_test == 6


def test_the_old_attributes_read_and_write_the_new_fields():
    cfg = ExperimentConfig()
    with pytest.warns(DeprecationWarning, match="data.num_clips_test is deprecated: use data.n_test"):
        assert cfg.data.num_clips_test == cfg.data.n_test == 16
    with pytest.warns(DeprecationWarning):
        cfg.train.val_num_clips = 3
    assert cfg.train.val_n_test == 3
    assert "num_clips_test" not in to_dict(cfg)["data"] and DataConfig(n_test=2).n_test == 2


def test_the_old_keyword_still_works(tiny_checkpoint, synthemo_dir):
    from clipbert_emo.predict import Predictor

    video = synthemo_dir / "videos" / "test" / "000000.mp4"
    p = Predictor(tiny_checkpoint, seek="accurate")
    new = p(video, text="hi", n_test=2)
    with pytest.warns(DeprecationWarning, match=r"num_clips=\.\.\.\) is deprecated: use n_test="):
        old = p(video, text="hi", num_clips=2)
    assert new["n_test"] == new["num_clips"] == old["n_test"] == 2  # "num_clips": the old answer key, kept too
    assert new["probabilities"] == old["probabilities"]
    assert p(video, text="hi")["n_test"] == 3  # the checkpoint's data.n_test (conftest: 3)
    with pytest.raises(TypeError, match="both n_test= and num_clips="):
        p(video, n_test=2, num_clips=2)
