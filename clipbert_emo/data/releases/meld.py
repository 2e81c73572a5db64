"""MELD.Raw (Poria et al., 2019), as distributed: {train,dev,test}_sent_emo.csv + the clip folders
unpacked from train.tar.gz, dev.tar.gz and test.tar.gz (``MELD.layout`` lists them); the val split
is the dev files.

One utterance per CSV row: its Emotion (data.target=emotion, 7 classes, the default) or Sentiment
(3 classes) is the label, its Utterance the text, cleaned of the cp1252 / UTF-8 mojibake the release
carries, and dia<Dialogue_ID>_utt<Utterance_ID>.mp4 in the split's clip folder the video. Skipped and
reported: malformed rows (too few fields, ids that are not integers), labels outside data.labels, and,
with data.use_video, rows whose clip is missing.
"""

from __future__ import annotations

import re

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, Sample
from .common import STRAY_BYTES, Release, Skips, csv_rows, finish, label_indices, need_labels, need_task

MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
MELD_SENTIMENTS = ("neutral", "positive", "negative")

MELD = Release("MELD", """\
    <root>/train_sent_emo.csv
    <root>/dev_sent_emo.csv
    <root>/test_sent_emo.csv
    <root>/train_splits/dia0_utt0.mp4 ...                 (from train.tar.gz)
    <root>/dev_splits_complete/dia0_utt0.mp4 ...          (from dev.tar.gz)
    <root>/output_repeated_splits_test/dia0_utt0.mp4 ...  (from test.tar.gz)""")

_MELD_SPLITS = {"train": ("train_sent_emo.csv", "train_splits"),
                "val": ("dev_sent_emo.csv", "dev_splits_complete"),
                "test": ("test_sent_emo.csv", "output_repeated_splits_test")}

# MELD's utterances went through cp1252 <-> UTF-8 round trips: apostrophes appear as the C1 control
# "\x92", as "â€™" (UTF-8 read as cp1252) or "â\x80\x99" (UTF-8 read as latin-1). Longest first.
def _as_cp1252(data: bytes) -> str:
    # cp1252 leaves five bytes (0x81, 0x8d, 0x8f, 0x90, 0x9d) undefined; lenient decoders pass them through.
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in data)


_MOJIBAKE = {}
for _char, _ascii in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2014", "-"),
                      ("\u2013", "-"), ("\u2026", "..."), ("\u00a0", " ")):
    _utf8 = _char.encode("utf-8")
    _MOJIBAKE[_as_cp1252(_utf8)] = _ascii
    _MOJIBAKE[_utf8.decode("latin-1")] = _ascii
    _MOJIBAKE[_char] = _ascii
    _MOJIBAKE[_char.encode("cp1252").decode("latin-1")] = _ascii  # the C1 control, e.g. "\x92"
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(_MOJIBAKE, key=len, reverse=True)))


def clean_meld_text(text: str) -> str:
    text = text.translate(STRAY_BYTES)
    return " ".join(_MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text).split())


def read_meld(cfg: DataConfig, split: str) -> Manifest:
    target = cfg.target or "emotion"
    if target not in ("emotion", "sentiment"):
        raise ConfigError(f"data.target={target!r}: MELD has targets emotion (7 classes) and sentiment (3 classes)")
    need_task(cfg, ("single_label",), f"data.target={target}")
    column, vocabulary = ("Emotion", MELD_EMOTIONS) if target == "emotion" else ("Sentiment", MELD_SENTIMENTS)
    need_labels(cfg, vocabulary, f"MELD's {target} annotation")
    root = MELD.root(cfg)
    csv_name, clip_dir = _MELD_SPLITS[split]
    csv_path = MELD.need(root / csv_name)
    clips = MELD.need(root / clip_dir, is_dir=True) if cfg.use_video else None
    label_index = label_indices(cfg)
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for where, row in csv_rows(csv_path, ("Utterance", column, "Dialogue_ID", "Utterance_ID"), skips):
        try:
            dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
        except ValueError:
            skips.add(where, f"malformed row: Dialogue_ID {row['Dialogue_ID']!r} / Utterance_ID "
                             f"{row['Utterance_ID']!r} are not integers")
            continue
        name = row[column].lower()
        if name not in label_index:
            skips.add(where, f"label not in data.labels: {row[column]!r}")
            continue
        video = None
        if clips is not None:
            video = clips / f"dia{dia}_utt{utt}.mp4"
            if not video.is_file():
                skips.add(where, f"video file not found: {video}")
                continue
        extra = {"dialogue_id": dia, "utterance_id": utt}
        extra.update({k.lower(): row[k] for k in ("Speaker", "Emotion", "Sentiment", "Season", "Episode",
                                                  "StartTime", "EndTime") if k in row})
        samples.append(Sample(video=str(video) if video else None, text=clean_meld_text(row["Utterance"]),
                              label=label_index[name], source=where, extra=extra))
    return finish(csv_path, split, samples, skips)
