"""Speech transcripts for samples without text (``data.transcribe``), through a tiny randomly initialised Whisper
built here, offline: its transcripts are gibberish, but loading, chunking, generation, the cache and
``load_split`` run the real path."""

import json
import logging
import os
import shutil

import numpy as np
import pytest

from clipbert_emo.config import DataConfig, UserError
from clipbert_emo.data import transcribe as tr
from clipbert_emo.data.manifest import Sample
from clipbert_emo.tasks import load_split
from support import TINY_OVERRIDES

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A Whisper of d_model 16, one layer each side, with a byte-level BPE tokenizer made from nothing: the 256
    byte symbols, two merges, and Whisper's special tokens; saved as save_pretrained writes a hub checkpoint."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    folder = tmp_path_factory.mktemp("tiny-whisper")
    alphabet = sorted(ByteLevel.alphabet())  # the printable stand-ins of the 256 bytes ("Ġ" is the space)
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = WhisperTokenizer(vocab=dict(vocab), merges=merges)  # adds <|endoftext|> as bos/eos/unk
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIALS}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=40,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                           decoder_start_token_id=ids["<|startoftranscript|>"])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    # Readable gibberish: only printable ASCII and the space may be generated (besides the end token).
    readable = {vocab[c] for c in alphabet if c == "Ġ" or c.isascii() and c.isprintable()} | {len(alphabet),
                                                                                              len(alphabet) + 1}
    suppress = [i for i in range(len(tok)) if i not in readable and i != eot]
    # A multilingual generation config as the hub's Whisper checkpoints have (language detection over <|en|>).
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        suppress_tokens=suppress, begin_suppress_tokens=[eot], max_length=40)
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def calls(monkeypatch):
    """The length of every waveform the model is asked to transcribe."""
    seen = []
    real = tr.Transcriber.__call__

    def spy(self, wave):
        seen.append(len(wave))
        return real(self, wave)

    monkeypatch.setattr(tr.Transcriber, "__call__", spy)
    return seen


def write_manifest(path, rows):
    path.write_text("".join(json.dumps({"label": "happy", **r}) + "\n" for r in rows))
    return path


@pytest.fixture
def clips(tmp_path, write_av):
    """A manifest of four clips: two with sound and no text (one of them a 0.5-1.5 s span), one with sound and
    its own text, one without an audio stream."""
    for name in ("a", "b", "c"):
        write_av(tmp_path / f"{name}.mp4")
    write_av(tmp_path / "mute.mp4", audio=False)
    rows = [{"video": "a.mp4"}, {"video": "b.mp4", "start": 0.5, "end": 1.5}, {"video": "c.mp4", "text": "given"},
            {"video": "mute.mp4", "text": ""}]
    return write_manifest(tmp_path / "train.jsonl", rows)


def test_load_split_transcribes_once_then_reads_the_cache(clips, whisper_dir, calls, caplog):
    data = DataConfig(train_manifest=str(clips), transcribe=whisper_dir)
    with caplog.at_level(logging.WARNING, logger="clipbert_emo.data.transcribe"):
        m = load_split(data, "train")
    a, b, c, mute = m.samples
    assert isinstance(a.text, str) and a.text and a.text.isascii() and b.text
    assert c.text == "given", "a sample with text of its own is never transcribed"
    assert mute.text == "" and "1 sample(s) have no text and no sound" in caplog.text
    assert "train.jsonl:4 (no audio stream)" in caplog.text
    assert len(calls) == 2 and abs(calls[0] - 32000) < 1600 and abs(calls[1] - 16000) < 10, "b is cut to its span"

    cache = tr.transcript_cache_path(clips, whisper_dir)
    assert cache.name == f"train.transcripts.{os.path.basename(whisper_dir)}.jsonl" and cache.parent == clips.parent
    entries = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted(e["text"] for e in entries) == sorted([a.text, b.text])

    again = load_split(data, "train")
    assert [s.text for s in again.samples] == [a.text, b.text, "given", ""]
    assert len(calls) == 2, "the second load reads every transcript from the cache"


def test_a_changed_file_or_another_model_is_transcribed_again(clips, whisper_dir, calls, tmp_path, write_av):
    samples = lambda: [Sample(video=str(tmp_path / n), text="") for n in ("a.mp4", "b.mp4")]  # noqa: E731
    cache = tmp_path / "cache.jsonl"
    assert tr.transcribe_samples(samples(), whisper_dir, cache, progress=False) == 2 and len(calls) == 2
    write_av(tmp_path / "a.mp4", seconds=3.0)  # re-encoded: another size
    st = os.stat(tmp_path / "b.mp4")
    os.utime(tmp_path / "b.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: another mtime
    again = samples()
    assert tr.transcribe_samples(again, whisper_dir, cache, progress=False) == 2 and len(calls) == 4
    assert abs(calls[2] - 48000) < 1600, "the new a.mp4 is what gets transcribed"
    assert all(s.text for s in again)
    assert len(cache.read_text().splitlines()) == 2, "the old files' transcripts are dropped from the cache"
    assert tr.transcribe_samples(samples(), whisper_dir, cache, progress=False) == 2 and len(calls) == 4

    link = tmp_path / "link-to-model"
    os.symlink(whisper_dir, link)  # the same folder, spelled another way, is the same model
    assert tr.transcribe_samples(samples(), str(link) + "/", cache, progress=False) == 2 and len(calls) == 4
    other = shutil.copytree(whisper_dir, tmp_path / "another-model")  # another folder may hold other weights
    assert tr.transcribe_samples(samples(), str(other), cache, progress=False) == 2 and len(calls) == 6


def test_samples_without_sound_keep_empty_text_and_are_counted(tmp_path, whisper_dir, calls, caplog, write_av):
    write_av(tmp_path / "mute.mp4", audio=False)
    (tmp_path / "face.jpg").write_bytes(b"")
    samples = [Sample(video=str(tmp_path / "mute.mp4"), text="", source="m.jsonl:1"),
               Sample(video=str(tmp_path / "face.jpg"), text="", source="m.jsonl:2"),
               Sample(video=None, text="", source="m.jsonl:3")]
    with caplog.at_level(logging.WARNING, logger="clipbert_emo.data.transcribe"):
        assert tr.transcribe_samples(samples, whisper_dir, tmp_path / "c.jsonl", progress=False) == 0
    assert [s.text for s in samples] == ["", "", ""] and calls == []
    assert "3 sample(s) have no text and no sound" in caplog.text and "m.jsonl:1 (no audio stream)" in caplog.text
    assert not (tmp_path / "c.jsonl").exists(), "nothing new, nothing written"


def test_long_audio_is_cut_into_30_second_chunks(whisper_dir, monkeypatch):
    t = tr.Transcriber(whisper_dir)
    assert t.max_new_tokens == 32, "bounded by the decoder's positions less the prompt"
    seen = []
    real = t._generate
    monkeypatch.setattr(t, "_generate", lambda chunks: seen.append([len(c) for c in chunks]) or real(chunks))
    text = t(np.random.default_rng(0).normal(0, 0.1, 65 * 16000).astype(np.float32))
    assert seen == [[480000, 480000, 80000]]
    assert isinstance(text, str) and len(text.split(" ")) >= 3


def test_a_model_that_cannot_be_loaded_is_a_user_error(clips, tmp_path):
    data = DataConfig(train_manifest=str(clips), transcribe=str(tmp_path / "no-such-model"))
    with pytest.raises(UserError, match=r"data.transcribe=.*no-such-model.*local folder.*leave data.transcribe "
                                        r"empty.*\"text\""):
        load_split(data, "train")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="not a Whisper one"):
        tr.Transcriber(str(tmp_path / "bert"))


def test_nothing_is_transcribed_without_the_option_or_without_text(clips, whisper_dir, calls):
    assert [s.text for s in load_split(DataConfig(train_manifest=str(clips)), "train").samples] == ["", "", "given",
                                                                                                  ""]
    load_split(DataConfig(train_manifest=str(clips), transcribe=whisper_dir, use_text=False), "train")
    assert calls == []


def test_cache_path_names():
    assert tr.transcript_cache_path("/d/train.jsonl", "openai/whisper-small").name == \
        "train.transcripts.openai--whisper-small.jsonl"
    assert tr.transcript_cache_path("/d/val.csv", "openai/whisper-small").parent.as_posix() == "/d"


def test_predict_transcribe_uses_the_speech_as_text(whisper_dir, clips, tmp_path, capsys):
    from clipbert_emo.cli import main

    labels = "data.labels=[happy, sad]"
    assert main(["finetune", "-q", *TINY_OVERRIDES, f"data.train_manifest={clips}", labels,
                 f"train.output_dir={tmp_path / 'run'}", "train.max_steps=1"]) == 0
    capsys.readouterr()
    rc = main(["predict", str(tmp_path / "run" / "checkpoint"), str(tmp_path / "a.mp4"), "--transcribe", whisper_dir,
               "--json", "--n-test", "2"])
    out = capsys.readouterr()
    assert rc == 0 and "transcript (" in out.err
    assert json.loads(out.out)["text"] == out.err.split("transcript (", 1)[1].split("): ", 1)[1].strip().strip("'\"")
