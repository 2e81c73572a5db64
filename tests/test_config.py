from pathlib import Path

import pytest
import yaml

from clipbert_emo.config import ConfigError, ExperimentConfig, load_config, save_config, to_dict

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults_match_clipbert():
    cfg = ExperimentConfig()
    assert (cfg.model.hidden_size, cfg.model.num_layers, cfg.model.num_heads) == (768, 12, 12)
    assert (cfg.data.num_clips_train, cfg.data.num_frames, cfg.data.n_test) == (1, 2, 16)
    assert cfg.model.aggregation == "lse" and cfg.model.backbone == "resnet50"
    assert cfg.optim.betas == [0.9, 0.98] and cfg.optim.grad_clip == 5.0


def test_round_trip(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "model.aggregation=max", "data.labels=[a, b]", "optim.lr_cnn=1e-4"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert again.train.epochs == 3 and again.optim.lr_cnn == 1e-4 and again.data.labels == ["a", "b"]


def test_one_level_of_base(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 7\n  batch_size: 3\n")
    (tmp_path / "exp.yaml").write_text("base: base.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config(tmp_path / "exp.yaml", ["train.seed=5"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.seed) == (9, 3, 5)
    (tmp_path / "base.yaml").write_text("base: other.yaml\n")
    with pytest.raises(ConfigError, match="one level only"):
        load_config(tmp_path / "exp.yaml")


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", r"override 'train.epoch=3': train has no key 'epoch'"),
    ("trian.epochs=3", r"override 'trian.epochs=3': the top level has no key 'trian'"),
    ("train.epochs=three", "override 'train.epochs=three': expected an integer"),
    ("model.aggregation=median", "model.aggregation='median'"),
    ("data.use_text=maybe", "override 'data.use_text=maybe': expected true/false"),
    ("train.epochs.x=1", "train.epochs is a value, not a section"),
    ("epochs", "expected key.sub=value"),
])
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_key_in_file_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  hidden: 32\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.model: unknown key\(s\) hidden"):
        load_config(tmp_path / "bad.yaml")


def test_every_modality_off_is_an_error():
    with pytest.raises(ConfigError, match="use_video, data.use_text, data.use_audio and data.use_face are all false"):
        load_config(None, ["data.use_video=false", "data.use_text=false"])
    assert load_config(None, ["data.use_video=false", "data.use_text=false", "data.use_audio=true"]).data.use_audio


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_says_how_to_run_it(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    header = path.read_text().splitlines()[:12]
    assert any("clipbert-emo" in line for line in header if line.startswith("#")), "header must show the command"
    assert yaml.safe_load(path.read_text())  # not empty


def test_at_least_the_demo_config_ships():
    assert any(p.name == "synthemo_cpu.yaml" for p in CONFIGS)


def test_an_override_typo_is_blamed_on_the_override_not_the_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["train.epochz=3"])
    assert "override 'train.epochz=3'" in str(e.value) and str(path) not in str(e.value)


def test_a_preset_goes_over_the_config_and_under_the_overrides():
    cfg = load_config("meld", ["data.root=/data/MELD.Raw", "model.hidden_size=64"], preset="cpu")
    assert (cfg.model.backbone, cfg.model.text_init, cfg.model.num_layers) == ("efficientnet_lite0", "", 2)
    assert cfg.model.hidden_size == 64 and cfg.data.format == "meld" and cfg.train.select_metric == "weighted_f1"
    full = load_config("meld", ["data.root=/data/MELD.Raw"])
    assert (full.model.backbone, full.model.pretrained, full.model.text_init) == ("resnet50", True,
                                                                                    "bert-base-uncased")
    with pytest.raises(ConfigError, match="preset not found: gpu"):
        load_config("meld", preset="gpu")
    both = load_config("mosei", ["data.root=/data/MOSEI"], preset="cpu,audio")
    assert both.data.use_audio and both.model.backbone == "efficientnet_lite0" and both.data.format == "mosei"


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.root=releases/meld", "data.train_manifest=m/train.jsonl",
                             "model.tokenizer=bert-base-uncased"])
    assert cfg.data.root == os.path.join(str(tmp_path), "releases/meld")
    assert cfg.data.train_manifest == os.path.join(str(tmp_path), "m/train.jsonl")
    assert cfg.model.tokenizer == "bert-base-uncased", "a hub id that is not a local folder stays as it is"
