"""The IEMOCAP reader against a tiny IEMOCAP_full_release in the real on-disk layout (support/benchmarks.py)."""

import logging
from pathlib import Path

import numpy as np
import pytest

from clipbert_emo.config import ConfigError, DataConfig, load_config
from clipbert_emo.data.benchmarks import IEMOCAP_4CLASS, IEMOCAP_6CLASS
from clipbert_emo.data.manifest import ManifestError
from clipbert_emo.tasks import load_split
from support.benchmarks import (IEMOCAP_DIALOGUES, IEMOCAP_MALFORMED, IEMOCAP_UTTERANCES, IEMOCAP_WAV_SESSION,
                                write_iemocap)

SESSIONS = (1, 2, 3, 4, 5)
# What the fixture holds, by utterance id: (session, start, end, code, vad, text)
FIXTURE = {f"{IEMOCAP_DIALOGUES[k]}_{u[0]}": (k, *u[1:]) for k in SESSIONS for u in IEMOCAP_UTTERANCES[k]}
PAST_THE_END = "Ses03F_script01_1_F002"  # its span ends at 6.0 s in a 4 s video


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_iemocap(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")


def cfg_for(root, target="4class", fold=1, **kw) -> DataConfig:
    labels = kw.pop("labels", list(IEMOCAP_4CLASS if target in ("", "4class") else IEMOCAP_6CLASS))
    return DataConfig(format="iemocap", root=str(root), target=target, labels=labels, fold=fold, **kw)


def ids(m):
    return [s.extra["utterance"] for s in m.samples]


def named(m, labels):
    return [(s.extra["utterance"], labels[s.label]) for s in m.samples]


def skip_kinds(m):
    """{utterance id -> reason} of the skipped samples, the id read from the header line each one names."""
    out = {}
    for where, reason in m.skipped:
        path, line = where.rsplit(":", 1)
        out[Path(path).read_text().splitlines()[int(line) - 1].split("\t")[1]] = reason
    return out


def test_4class_merges_hap_and_exc_and_counts_the_other_labels(root, caplog):
    cfg = cfg_for(root)
    with caplog.at_level(logging.WARNING):
        test = load_split(cfg, "test")
    # Session1 in start-time order; exc is happy; fru and xxx are skipped, the reason naming the label
    assert named(test, IEMOCAP_4CLASS) == [("Ses01F_impro01_F000", "neutral"), ("Ses01F_impro01_M000", "happy"),
                                           ("Ses01F_impro01_F001", "happy")]
    assert skip_kinds(test) == {
        "Ses01F_impro01_F002": "label not in the 4class set: 'fru' (frustration)",
        "Ses01F_impro01_M001": "label not in the 4class set: 'xxx' (no majority among the evaluators)"}
    assert "skipped 2 sample(s): 2 label not in the 4class set" in caplog.text

    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    dropped = {**skip_kinds(train), **skip_kinds(val)}
    for utterance, code in (("Ses02M_impro02_F002", "fru"), ("Ses02M_impro02_F001", "oth"),
                            ("Ses03F_script01_1_F001", "fea"), ("Ses04M_impro05_F001", "sur"),
                            ("Ses05F_script02_2_F000", "dis"), ("Ses05F_script02_2_M002", "fru")):
        assert dropped[utterance].startswith(f"label not in the 4class set: '{code}'")
    used = {u: IEMOCAP_4CLASS[s.label] for m in (train, val) for s, u in zip(m.samples, ids(m))}
    assert used["Ses03F_script01_1_M000"] == used["Ses05F_script02_2_M001"] == "happy"  # both exc
    assert used["Ses04M_impro05_M000"] == "happy"  # hap


def test_6class_keeps_exc_and_fru_apart(root):
    test = load_split(cfg_for(root, "6class"), "test")
    assert named(test, IEMOCAP_6CLASS) == [
        ("Ses01F_impro01_F002", "frustrated"),  # listed last in the file, starts first
        ("Ses01F_impro01_F000", "neutral"), ("Ses01F_impro01_M000", "happy"), ("Ses01F_impro01_F001", "excited")]
    assert skip_kinds(test) == {
        "Ses01F_impro01_M001": "label not in the 6class set: 'xxx' (no majority among the evaluators)"}
    # a subset of the classes: the others are skipped as outside data.labels
    sub = load_split(cfg_for(root, "6class", labels=["neutral", "excited"]), "test")
    assert named(sub, ["neutral", "excited"]) == [("Ses01F_impro01_F000", "neutral"),
                                                  ("Ses01F_impro01_F001", "excited")]
    assert skip_kinds(sub)["Ses01F_impro01_M000"] == "label not in data.labels: 'happy' ('hap')"


@pytest.mark.parametrize("fold", SESSIONS)
def test_fold_holds_out_one_session_and_splits_are_disjoint(root, fold):
    cfg = cfg_for(root, "6class", fold=fold)
    splits = {split: load_split(cfg, split) for split in ("train", "val", "test")}
    assert {s.extra["session"] for s in splits["test"].samples} == {fold}
    for split in ("train", "val"):
        assert fold not in {s.extra["session"] for s in splits[split].samples}
    seen = [u for m in splits.values() for u in ids(m)]
    assert len(seen) == len(set(seen))  # no utterance in two splits
    usable = {u for u, (_, _, _, code, _, _) in FIXTURE.items()
              if code in ("neu", "hap", "sad", "ang", "exc", "fru") and u != PAST_THE_END}
    assert set(seen) == usable  # and none lost
    # val is one utterance in five of the training sessions, by id: the same whatever the fold or the labels
    if fold != 2:
        assert "Ses02M_impro02_M000" in ids(splits["val"]) and "Ses02M_impro02_F000" in ids(splits["train"])
    # a malformed header line is listed with train (or test) only, so a run counts it once
    malformed = [w for m in splits.values() for w, r in m.skipped if r.startswith("malformed line")]
    assert len(malformed) == 1 and malformed[0].startswith(str(root / "Session2"))


@pytest.mark.parametrize("fold", [0, 6, -1])
def test_fold_outside_1_to_5_is_an_error(root, fold):
    with pytest.raises(ConfigError, match=rf"data.fold={fold}: .*one of 1..5"):
        load_split(cfg_for(root, fold=fold), "train")


def test_spans_transcripts_and_provenance_as_in_the_files(root):
    cfg = cfg_for(root, "6class", fold=4)
    splits = [load_split(cfg, split).samples for split in ("train", "val", "test")]
    samples = [s for split in splits for s in split]
    assert len(samples) == 19
    for s in samples:
        session, start, end, code, vad, text = FIXTURE[s.extra["utterance"]]
        dialogue = IEMOCAP_DIALOGUES[session]
        assert (s.start, s.end, s.text) == (start, end, text)
        assert s.extra["vad"] == vad and s.extra["emotion"] == code and s.extra["dialogue"] == dialogue
        assert s.extra["session"] == session
        assert s.extra["speaker"] == f"Ses0{session}{s.extra['utterance'].rsplit('_', 1)[1][0]}"
        assert s.video == str(root / f"Session{session}/dialog/avi/DivX/{dialogue}.avi")
        path, line = s.source.rsplit(":", 1)
        assert path == str(root / f"Session{session}/dialog/EmoEvaluation/{dialogue}.txt")
        assert Path(path).read_text().splitlines()[int(line) - 1].split("\t")[1] == s.extra["utterance"]
    # the transcription lines that are no utterance ("M: [BREATHING]", the MXX0 overlap) were not read
    assert not any("BREATHING" in s.text or "GARBAGE" in s.text for s in samples)
    # each split in a stable order: session, dialogue, start time
    for split in splits:
        order = [(s.extra["session"], s.extra["dialogue"], s.start) for s in split]
        assert order == sorted(order)


def test_utterance_wav_is_the_audio_where_the_release_has_it(root):
    for fold in (1, 2):
        for split in ("train", "val", "test"):
            for s in load_split(cfg_for(root, "6class", fold=fold), split).samples:
                if s.extra["session"] == IEMOCAP_WAV_SESSION:
                    dialogue = IEMOCAP_DIALOGUES[IEMOCAP_WAV_SESSION]
                    assert s.audio == str(root / f"Session1/sentences/wav/{dialogue}/{s.extra['utterance']}.wav")
                    assert Path(s.audio).is_file() and s.extra["audio_offset"] == s.start
                else:
                    assert s.audio is None and "audio_offset" not in s.extra  # the avi's own track


def test_missing_video_and_span_past_the_end_are_skipped_and_reported(tmp_path):
    root = write_iemocap(tmp_path / "IEMOCAP_full_release")
    avi = root / "Session4/dialog/avi/DivX/Ses04M_impro05.avi"
    avi.unlink()
    train = load_split(cfg_for(root, fold=1), "train")
    reasons = skip_kinds(train)
    for utterance in ("Ses04M_impro05_M000", "Ses04M_impro05_M001", "Ses04M_impro05_F002"):  # F000 is val
        assert reasons[utterance] == f"video file not found: {avi}"
    assert reasons["Ses04M_impro05_F001"].startswith("label not in the 4class set: 'sur'")
    assert 4 not in {s.extra["session"] for s in train.samples} and len(train.samples) == 6
    with pytest.raises(ManifestError, match=r"no usable samples in the test split \(skipped: 4 video file not found"):
        load_split(cfg_for(root, fold=4), "test")  # its only dialogue has no video
    # without video neither the missing file nor the span matters: text (and sound) only
    text_only = load_split(cfg_for(root, fold=4, use_video=False), "test")
    assert len(text_only.samples) == 4 and all(s.video is None for s in text_only.samples)
    # sound only: Session4 has no WAVs, and now no video to take the sound from
    with pytest.raises(ManifestError, match=r"skipped: 4 audio file not found.*neither .*Ses04M_impro05_\w+.wav nor "):
        load_split(cfg_for(root, fold=4, use_video=False, use_audio=True), "test")
    fold3 = load_split(cfg_for(root, fold=3), "test")
    assert skip_kinds(fold3)[PAST_THE_END] == "span outside the video: end 6.0 s is past the end of the video (4.00 s)"
    assert PAST_THE_END in ids(load_split(cfg_for(root, fold=3, use_video=False), "test"))
    with pytest.raises(ManifestError, match=r"Ses04M_impro05.txt:\d+: video file not found.*data.strict=true"):
        load_split(cfg_for(root, fold=4, strict=True), "test")


def test_missing_release_session_or_transcription_names_the_path_and_layout(tmp_path):
    with pytest.raises(ManifestError, match=r"(?s)IEMOCAP release not found: .*nowhere is not a folder.*"
                                            r"<root>/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"):
        load_split(cfg_for(tmp_path / "nowhere"), "test")
    root = write_iemocap(tmp_path / "IEMOCAP_full_release")
    (root / "Session2/dialog/transcriptions/Ses02M_impro02.txt").unlink()
    with pytest.raises(ManifestError, match=r"(?s)file not found: .*Session2/dialog/transcriptions/Ses02M_impro02.txt"
                                            r".*avi/DivX"):
        load_split(cfg_for(root, fold=2), "test")
    for path in (root / "Session5/dialog/EmoEvaluation").glob("*.txt"):
        path.unlink()
    with pytest.raises(ManifestError, match=r"no <dialogue>.txt in .*Session5/dialog/EmoEvaluation"):
        load_split(cfg_for(root, fold=5), "test")
    (root / "Session3").rename(root / "session3")
    with pytest.raises(ManifestError, match=r"folder not found: .*Session3/dialog/EmoEvaluation"):
        load_split(cfg_for(root, fold=2), "train")
    with pytest.raises(ConfigError, match="set data.root=PATH"):
        load_split(DataConfig(format="iemocap", labels=list(IEMOCAP_4CLASS), fold=1), "train")


@pytest.mark.parametrize("kw,message", [
    ({"target": "7class"}, r"data.target='7class': IEMOCAP has targets 4class .* and 6class"),
    ({"task": "regression"}, r"data.format=iemocap \(data.target=4class\) needs data.task=single_label"),
    ({"labels": ["neutral", "happy", "sad", "anger"]}, r"data.labels has 'anger'.*IEMOCAP's 4class set never uses"),
    ({"labels": ["neutral", "excited"]},
     r"data.labels has 'excited'.*4class set never uses.*neutral, happy, sad, angry"),
])
def test_config_errors(root, kw, message):
    target = kw.pop("target", "4class")
    labels = kw.pop("labels", list(IEMOCAP_4CLASS))
    with pytest.raises(ConfigError, match=message):
        load_split(cfg_for(root, target, labels=labels, **kw), "train")


def test_shipped_configs_read_the_release(root):
    cfg = load_config("iemocap", [f"data.root={root}"])
    assert (cfg.data.format, cfg.data.fold, cfg.train.select_metric) == ("iemocap", 1, "unweighted_accuracy")
    train = load_split(cfg.data, "train")
    assert {s.extra["session"] for s in train.samples} == {2, 3, 4, 5}
    assert named(train, cfg.data.labels)[0] == ("Ses02M_impro02_F000", "sad")
    six = load_config("iemocap6", [f"data.root={root}", "data.fold=5"])
    assert six.data.labels == list(IEMOCAP_6CLASS)
    assert {s.extra["session"] for s in load_split(six.data, "test").samples} == {5}


def test_clips_of_an_utterance_come_from_inside_its_span(root):
    from clipbert_emo.data.dataset import load_clips

    cfg = load_config("iemocap", [f"data.root={root}", "data.frame_size=32", "data.clip_fps=8"])
    sample = next(s for s in load_split(cfg.data, "test").samples if s.extra["utterance"] == "Ses01F_impro01_F001")
    clips, spans = load_clips(sample, cfg.data, 2, False, None)
    assert clips.shape == (2, 2, 3, 32, 32)
    frame = 1 / 8  # spans are whole frames: the first one may begin up to a frame before the utterance
    assert len(spans) == 2 and spans[0] != spans[1]
    for start, end in spans:
        assert sample.start - frame <= start < end <= sample.end + frame
    # frame i of the fixture's video has brightness 20 + 6 i: frames 17..23 for [2.2, 2.9] s
    brightness = clips[:, :, :, :24, :].float().mean(dim=(2, 3, 4))  # the 32x24 frame's rows, not the padding
    assert ((brightness > 20 + 6 * 17 - 4) & (brightness < 20 + 6 * 23 + 4)).all()


def _audio_windows(sample, cfg):
    from clipbert_emo.data.audio import load_audio_clips
    from clipbert_emo.data.dataset import load_clips

    cfg.data.audio.front_end = "waveform"  # the raw windows, to see whether they hold sound
    _, spans = load_clips(sample, cfg.data, 2, False, None)
    windows, _ = load_audio_clips(sample, cfg.data, 2, False, None, {"spans": spans})
    return windows.numpy()  # (N, L)


def test_sound_of_the_dialogue_video_lines_up_with_the_clips(root):
    cfg = load_config("iemocap", [f"data.root={root}", "data.frame_size=32", "data.clip_fps=8", "data.fold=2"])
    sample = load_split(cfg.data, "test").samples[-1]  # Session2, no WAVs: the avi's own track
    assert sample.audio is None
    assert np.abs(_audio_windows(sample, cfg)).max(axis=1).min() > 0.1


# An utterance WAV starts at the utterance, so its windows are shifted by extra["audio_offset"]: centred on the
# video's clock they would fall past the end of the WAV and come back silent.
def test_sound_of_the_utterance_wav_lines_up_with_the_clips(root):
    cfg = load_config("iemocap", [f"data.root={root}", "data.frame_size=32", "data.clip_fps=8"])
    sample = next(s for s in load_split(cfg.data, "test").samples if s.extra["utterance"] == "Ses01F_impro01_F001")
    assert sample.audio is not None
    assert np.abs(_audio_windows(sample, cfg)).max(axis=1).min() > 0.1
