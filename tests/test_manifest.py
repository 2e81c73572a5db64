import json
import logging

import pytest

from clipbert_emo.config import EMOTIONS, DataConfig
from clipbert_emo.data.manifest import ManifestError, read_manifest
from clipbert_emo.tasks import get_task

SINGLE = get_task("single_label").target_reader(DataConfig())  # reads "label"
MULTI = get_task("multilabel").target_reader(DataConfig(task="multilabel"))  # reads "labels"


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_reads_fields_relative_paths_and_extra_keys(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    m = read_manifest(_write(tmp_path / "m.jsonl", [
        {"video": "a.mp4", "text": "hi", "label": "sad", "meta": {"k": 1}},
        {"video": "a.mp4", "label": "happy", "start": 1.5, "end": 3},
    ]), SINGLE)
    assert [s.label for s in m.samples] == [EMOTIONS.index("sad"), EMOTIONS.index("happy")]
    assert m.samples[0].video == str(tmp_path / "a.mp4")
    assert m.samples[0].extra == {"meta": {"k": 1}}
    assert m.samples[1].text == "" and (m.samples[1].start, m.samples[1].end) == (1.5, 3.0)


@pytest.mark.parametrize("row,message", [
    ({"video": "a.mp4", "text": "x", "label": "happpy"}, r"m.jsonl:2: unknown label 'happpy'"),
    ({"video": "a.mp4", "text": "x"}, r"m.jsonl:2: missing field 'label'"),
    ({"text": "x", "label": "sad"}, r"m.jsonl:2: missing field 'video'"),
    ('{"video": "a.mp4", "label": ', r"m.jsonl:2: not valid JSON"),
    ({"video": "a.mp4", "label": "sad", "start": 3, "end": 1}, r"m.jsonl:2: end \(1.0\) must be after start"),
    ({"video": "a.mp4", "label": "sad", "start": "soon"}, r"m.jsonl:2: field 'start' must be a number"),
])
def test_bad_lines_name_file_and_line(tmp_path, row, message):
    (tmp_path / "a.mp4").write_bytes(b"x")
    path = _write(tmp_path / "m.jsonl", [{"video": "a.mp4", "label": "sad"}, row])
    with pytest.raises(ManifestError, match=message):
        read_manifest(path, SINGLE)


def test_missing_video_is_skipped_and_reported_or_fatal_when_strict(tmp_path, caplog):
    (tmp_path / "a.mp4").write_bytes(b"x")
    path = _write(tmp_path / "m.jsonl", [
        {"video": "a.mp4", "label": "sad"},
        {"video": "gone.mp4", "label": "sad"},
    ])
    with caplog.at_level(logging.WARNING):
        m = read_manifest(path, SINGLE)
    assert len(m.samples) == 1
    assert m.skipped == [(f"{path}:2", f"video file not found: {tmp_path / 'gone.mp4'}")]
    assert "skipped 1 sample" in caplog.text and "gone.mp4" in caplog.text
    with pytest.raises(ManifestError, match=r"m.jsonl:2: video file not found"):
        read_manifest(path, SINGLE, strict=True)


def test_csv_and_multilabel(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("video,text,labels\na.mp4,hello,happy;surprised\n")
    m = read_manifest(csv_path, MULTI)
    assert m.samples[0].labels == [EMOTIONS.index("happy"), EMOTIONS.index("surprised")]
    csv_path.write_text("video,text,labels\na.mp4,hello,happy;joy\n")
    with pytest.raises(ManifestError, match=r"m.csv:2: unknown label 'joy'"):
        read_manifest(csv_path, MULTI)


def test_empty_manifest_and_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl", SINGLE)
    with pytest.raises(ManifestError, match="no usable samples"):
        read_manifest(_write(tmp_path / "e.jsonl", []), SINGLE)
