"""The sound track as a third modality: decoding and resampling, windows aligned with the sampled clips, the
log-mel front end, silent and audio-only files, the masked-modality path, and a three-modality training run."""

import json

import numpy as np
import pytest
import torch

from clipbert_emo.config import AudioConfig, DataConfig, load_config
from clipbert_emo.data.audio import audio_windows, load_audio_clips, log_mel, read_audio
from clipbert_emo.data.manifest import Sample
from support import TINY_OVERRIDES


def test_read_audio_is_mono_at_the_asked_rate_and_keeps_the_pitch(tmp_path, write_av):
    wave = read_audio(write_av(tmp_path / "a.mp4", seconds=2.0), 16000)
    assert wave.dtype == np.float32 and abs(len(wave) - 32000) < 1600  # AAC adds a little padding
    spectrum = np.abs(np.fft.rfft(wave[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 3, "440 Hz stays 440 Hz after resampling"
    assert read_audio(write_av(tmp_path / "silent.mp4", audio=False), 16000) is None


def test_windows_are_centred_and_padded():
    wave = np.arange(16000, dtype=np.float32)  # 1 s at 16 kHz, each sample its own index
    w = audio_windows(wave, 16000, [0.5, 0.0, 1.0], 0.5)
    assert w.shape == (3, 8000)
    assert w[0, 0] == 4000 and w[0, -1] == 11999  # centred on 0.5 s
    assert (w[1, :4000] == 0).all() and w[1, 4000] == 0 and w[1, 4001] == 1  # before the start: zeros
    assert (w[2, 4000:] == 0).all() and w[2, 3999] == 15999  # past the end: zeros


def test_audio_windows_follow_the_video_clips_at_train_and_test_time(tmp_path, write_av):
    # A click at 1.5 s: the window of a clip whose span holds 1.5 s hears it, the others do not.
    tone = lambda t: np.where(np.abs(t - 1.5) < 0.05, 0.8 * np.sin(2 * np.pi * 1000 * t), 0.0)  # noqa: E731
    path = write_av(tmp_path / "click.mp4", seconds=4.0, tone=tone)
    cfg = DataConfig(frame_size=32, num_frames=1, clip_fps=4.0, audio=AudioConfig(window_seconds=0.5))
    for training, rng in ((False, None), (True, np.random.default_rng(3))):
        context = {}
        from clipbert_emo.data.dataset import load_clips

        _, spans = load_clips(Sample(video=str(path), text=""), cfg, 8, training, rng)
        context["spans"] = spans
        mels, audio_spans = load_audio_clips(Sample(video=str(path), text=""), cfg, 8, training=False, rng=None,
                                            context=context)
        assert audio_spans == spans and mels.shape[0] == 8
        energy = mels.exp().sum(dim=(1, 2))  # (N,)
        hears = [abs((s + e) / 2 - 1.5) < 0.2 for s, e in spans]
        if any(hears) and not all(hears):
            assert energy[torch.tensor(hears)].min() > 10 * energy[~torch.tensor(hears)].max()


def test_silent_video_is_masked_and_audio_only_file_is_windowed(tmp_path, write_av):
    cfg = DataConfig(use_video=False, use_audio=True)
    context = {}
    mels, spans = load_audio_clips(Sample(video=str(write_av(tmp_path / "s.mp4", audio=False)), text=""), cfg, 3,
                                   False, None, context)
    assert context["absent"] == {"audio"} and mels.shape[0] == 3
    audio_only = write_av(tmp_path / "voice.m4a", seconds=3.0, video=False)
    context = {}
    mels, spans = load_audio_clips(Sample(video=str(audio_only), text=""), cfg, 4, False, None, context)
    assert "absent" not in context and len(spans) == 4
    assert spans[0][0] == pytest.approx(0.0) and spans[-1][1] <= 3.1, "windows spread over the sound track"
    assert mels.shape[1] == cfg.audio.n_mels


def test_cached_sound_tracks_equal_the_decoded_ones_and_skip_the_decoder(tmp_path, write_av, monkeypatch):
    import os
    import pickle

    from clipbert_emo.data import audio as audio_module

    clip, silent = write_av(tmp_path / "a.mp4", seconds=2.0), write_av(tmp_path / "s.mp4", audio=False)
    cache = tmp_path / "cache"
    decoded = []
    real = audio_module.read_audio
    monkeypatch.setattr(audio_module, "read_audio", lambda p, r: decoded.append(p) or real(p, r))
    first = audio_module.read_audio_cached(clip, 16000, cache)
    assert np.array_equal(first, real(clip, 16000)) and first.dtype == np.float32
    assert audio_module.read_audio_cached(silent, 16000, cache) is None
    assert len(decoded) == 2
    again = audio_module.read_audio_cached(clip, 16000, cache)
    assert np.array_equal(again, first) and audio_module.read_audio_cached(silent, 16000, cache) is None
    assert len(decoded) == 2, "the second reads come from the cache"
    audio_module.read_audio_cached(clip, 8000, cache)
    assert len(decoded) == 3, "another rate is another entry"

    # A rewritten file is a new version: decoded again, not served the old track.
    write_av(clip, seconds=1.0)
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    shorter = audio_module.read_audio_cached(clip, 16000, cache)
    assert len(decoded) == 4 and len(shorter) < len(first)

    # A damaged entry, or one holding a pickle (which would run code if unpickled), is decoded again and replaced.
    for entry in sorted(cache.glob("*.npy")):
        entry.write_bytes(pickle.dumps(np.zeros(3, dtype=object)))
    ran = len(decoded)
    assert np.array_equal(audio_module.read_audio_cached(clip, 16000, cache), shorter)
    assert len(decoded) == ran + 1
    assert np.array_equal(audio_module.read_audio_cached(clip, 16000, cache), shorter) and len(decoded) == ran + 1


def test_an_unwritable_audio_cache_warns_once_and_training_reads_on(tmp_path, write_av, caplog):
    from clipbert_emo.data.audio import read_audio_cached

    clip = write_av(tmp_path / "a.mp4", seconds=1.0)
    (tmp_path / "taken").write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING"):
        for _ in range(2):
            assert np.array_equal(read_audio_cached(clip, 16000, tmp_path / "taken" / "cache"), read_audio(clip, 16000))
    warnings = [r for r in caplog.records if "cannot write decoded sound tracks" in r.getMessage()]
    assert len(warnings) == 1 and "taken" in warnings[0].getMessage()


def test_the_audio_cache_leaves_the_training_windows_unchanged(tmp_path, write_av):
    path = write_av(tmp_path / "v.mp4", seconds=3.0)
    plain = DataConfig(frame_size=32, num_frames=1, clip_fps=4.0, use_audio=True)
    cached = DataConfig(frame_size=32, num_frames=1, clip_fps=4.0, use_audio=True,
                        audio=AudioConfig(cache_dir=str(tmp_path / "cache")))
    sample = Sample(video=str(path), text="")
    spans = [(0.2, 0.7), (1.1, 1.6), (2.3, 2.8)]
    for epoch in range(2):  # the first fills the cache, the second reads it
        a, _ = load_audio_clips(sample, plain, 3, True, np.random.default_rng(epoch), {"spans": spans})
        b, _ = load_audio_clips(sample, cached, 3, True, np.random.default_rng(epoch), {"spans": spans})
        assert torch.equal(a, b)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_log_mel_shape_and_spec_augment():
    from clipbert_emo.data.audio import spec_augment

    a = AudioConfig()
    x = np.random.default_rng(0).normal(size=(2, 32000)).astype(np.float32)
    mels = log_mel(x, a)
    assert mels.shape[:2] == (2, 64) and abs(mels.shape[2] - 201) <= 1  # 2 s at a 10 ms hop
    aug = spec_augment(mels, a, np.random.default_rng(1))
    assert (aug == aug.min()).sum() > (mels == mels.min()).sum(), "some bands are masked"


def test_an_absent_modality_does_not_move_the_logits(tiny_model_config):
    from clipbert_emo.models.clipbert import ClipBertForEmotion

    torch.manual_seed(0)
    cfg = tiny_model_config(audio_tokens=4, dropout=0.1)
    model = ClipBertForEmotion(cfg, 6, 50, modalities=("video", "audio")).eval()
    video = torch.randint(0, 255, (2, 3, 1, 3, 32, 32), dtype=torch.uint8)
    ids, mask = torch.randint(5, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)
    present = torch.tensor([True, False])  # the second sample's file has no sound
    a1, a2 = torch.randn(2, 3, 64, 50), torch.randn(2, 3, 64, 50)
    with torch.no_grad():
        l1 = model.clip_logits(ids, mask, video, audio=a1, audio_present=present)
        l2 = model.clip_logits(ids, mask, video, audio=a2, audio_present=present)
        l3 = model.clip_logits(ids, mask, video, audio=a2)
    assert torch.equal(l1[1], l2[1]), "the masked sample ignores its audio"
    assert (l1[0] - l2[0]).abs().max() > 1e-7, "the sample with sound hears it"
    assert torch.equal(l2[0], l3[0]), "present by default"


def test_video_text_audio_finetune_and_predict_on_a_silent_video(synthemo_dir, tmp_path, write_av):
    from clipbert_emo.predict import Predictor
    from clipbert_emo.train.finetune import finetune

    rows = [json.loads(line) for line in open(synthemo_dir / "train.jsonl")][:8]
    with open(tmp_path / "train.jsonl", "w") as f:
        for i, row in enumerate(rows):
            path = write_av(tmp_path / f"v{i}.mp4", seconds=2.0, audio=i % 4 != 0,  # a quarter are silent
                            tone=lambda t, k=i: 0.3 * np.sin(2 * np.pi * (200 + 100 * (k % 3)) * t))
            f.write(json.dumps({"video": str(path), "text": row["text"], "label": row["label"]}) + "\n")
    cfg = load_config(None, [*TINY_OVERRIDES, f"data.train_manifest={tmp_path / 'train.jsonl'}",
                             f"data.val_manifest={tmp_path / 'train.jsonl'}", "data.use_audio=true",
                             "model.audio_tokens=4", f"train.output_dir={tmp_path / 'run'}", "train.max_steps=2",
                             f"data.audio.cache_dir={tmp_path / 'audio_cache'}"])
    m = finetune(cfg, progress=False)
    assert m["steps"] == 2 and all(np.isfinite(m["step_losses"]))
    cached = sorted((tmp_path / "audio_cache").iterdir())
    assert cached, "training filled the sound-track cache"
    meta = json.loads((tmp_path / "run" / "checkpoint" / "meta.json").read_text())
    assert meta["modalities"] == ["video", "audio"]
    out = Predictor(tmp_path / "run" / "checkpoint")(tmp_path / "v0.mp4", text="hi", num_clips=2)
    assert out["missing_modalities"] == ["audio"], "a silent video is scored with its audio masked, and says so"
    out = Predictor(tmp_path / "run" / "checkpoint")(tmp_path / "v1.mp4", text="hi", num_clips=2)
    assert out["missing_modalities"] == []
    new_video = write_av(tmp_path / "unseen.mp4", seconds=2.0)
    Predictor(tmp_path / "run" / "checkpoint")(new_video, text="hi", num_clips=2)
    assert sorted((tmp_path / "audio_cache").iterdir()) == cached, "predicting writes nothing into the run's cache"


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_a_pretrained_speech_encoder_loads_its_weights_and_trains(kind, synthemo_dir, tmp_path, write_av):
    """A tiny randomly initialised speech model saved with save_pretrained stands in for a real checkpoint."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    from clipbert_emo.build import build_model
    from clipbert_emo.train.finetune import finetune

    Config, Model = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}[kind]
    speech_cfg = Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=8,
                        num_conv_pos_embedding_groups=2, vocab_size=8)
    torch.manual_seed(0)
    Model(speech_cfg).save_pretrained(tmp_path / kind)
    rows = [json.loads(line) for line in open(synthemo_dir / "train.jsonl")][:4]
    with open(tmp_path / "train.jsonl", "w") as f:
        for i, row in enumerate(rows):
            path = write_av(tmp_path / f"v{i}.mp4", seconds=2.0)
            f.write(json.dumps({"video": str(path), "text": row["text"], "label": row["label"]}) + "\n")
    overrides = [*TINY_OVERRIDES, f"data.train_manifest={tmp_path / 'train.jsonl'}", "data.use_audio=true",
                 "data.use_video=false", "data.audio.front_end=waveform", "data.audio.window_seconds=0.5",
                 f"model.audio_init={tmp_path / kind}", "model.audio_tokens=3", f"train.output_dir={tmp_path / 'run'}",
                 "train.epochs=2"]
    cfg = load_config(None, overrides)
    model = build_model(cfg, 60)
    saved = Model.from_pretrained(tmp_path / kind).state_dict()
    ours = model.audio_encoder.speech.state_dict()
    assert all(torch.equal(ours[k], saved[k]) for k in saved), "the checkpoint's weights, not a fresh init"
    m = finetune(cfg, progress=False)
    assert m["steps"] == 2 and all(np.isfinite(m["step_losses"]))
    with pytest.raises(Exception, match="model.audio_init"):
        load_config(None, ["data.use_audio=true", f"model.audio_init={tmp_path / kind}"])  # front end left log_mel


def test_log_mel_matches_the_numpy_reference():
    """The batched torch.stft front end gives transformers.audio_utils' frame-by-frame log-mel energies."""
    from transformers.audio_utils import spectrogram, window_function

    from clipbert_emo.data.audio import _mel_filters

    a = AudioConfig()
    t = np.arange(32000) / a.sample_rate
    x = np.stack([np.sin(2 * np.pi * 220 * t) * np.linspace(0, 1, t.size),
                  np.random.default_rng(3).normal(size=t.size) * 0.1]).astype(np.float32)
    win, hop = int(a.win_ms * a.sample_rate / 1000), int(a.hop_ms * a.sample_rate / 1000)
    n_fft = 1 << (win - 1).bit_length()
    ref = np.stack([spectrogram(w, window_function(win, "hann", frame_length=n_fft), frame_length=n_fft,
                                hop_length=hop, power=2.0, mel_filters=_mel_filters(a.sample_rate, n_fft, a.n_mels),
                                log_mel="log", mel_floor=1e-10) for w in x])
    ours = log_mel(x, a)
    assert ours.shape == ref.shape
    loud = ref > np.log(1e-6)  # near the floor, float32 rounding dominates the logarithm
    np.testing.assert_allclose(ours[loud], ref[loud], atol=1e-3, rtol=1e-3)


def test_the_audio_demo_trains_with_its_config_and_caches_beside_its_data(tmp_path, monkeypatch):
    from clipbert_emo.experiments import demo
    from clipbert_emo.train import finetune as finetune_module

    data = tmp_path / "se"
    data.mkdir()
    (data / "synthemo.json").write_text(json.dumps({"config": {"audio": True}}))
    for split in ("train", "val", "test"):
        (data / f"{split}.jsonl").write_text("")
    seen = []

    class Stop(Exception):
        pass

    def fake_finetune(cfg, progress=True):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(finetune_module, "finetune", fake_finetune)
    with pytest.raises(Stop):
        demo.run_demo(str(data), str(tmp_path / "out"), audio=True, progress=False, overrides=["train.epochs=3"])
    cfg = seen[0]
    shipped = load_config("synthemo_audio")
    assert cfg.name == "demo-video+text" and cfg.model.dropout == shipped.model.dropout == 0.0
    assert cfg.data.audio.cache_dir == str(data / "audio_cache"), "the cache sits beside the data it holds"
    assert cfg.train.epochs == 3, "the user's overrides come last"
    assert cfg.data.train_manifest == str(data / "train.jsonl")
