import json

import numpy as np
import pytest

from clipbert_emo.eval.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    multilabel_report,
)
from clipbert_emo.eval.report import (
    format_classification_report,
    format_table,
    write_json,
)

# Shared 3-class example, worked by hand:
#   y_true = [0, 0, 0, 0, 1, 1, 2, 2]
#   y_pred = [0, 0, 1, 2, 1, 0, 2, 2]
# Confusion (rows true, cols pred):
#   [[2, 1, 1],
#    [1, 1, 0],
#    [0, 0, 2]]
# class 0: TP=2 FP=1 FN=2 -> P=2/3, R=1/2, F1=2*(1/3)/(7/6)=4/7
# class 1: TP=1 FP=1 FN=1 -> P=1/2, R=1/2, F1=1/2
# class 2: TP=2 FP=1 FN=0 -> P=2/3, R=1,   F1=2*(2/3)/(5/3)=4/5
# accuracy = 5/8
# macro-F1 = (4/7 + 1/2 + 4/5) / 3 = 131/210
# weighted-F1 = (4*4/7 + 2*1/2 + 2*4/5) / 8 = 171/280
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 0, 2, 2]
LABELS = ["anger", "joy", "sadness"]


def test_confusion_matrix_hand_example():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    assert cm.shape == (3, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 1], [1, 1, 0], [0, 0, 2]])


def test_confusion_matrix_accepts_numpy_and_whole_floats():
    cm = confusion_matrix(np.array(Y_TRUE), np.array(Y_PRED, dtype=np.float32), 3)
    np.testing.assert_array_equal(cm, [[2, 1, 1], [1, 1, 0], [0, 0, 2]])


def test_classification_report_hand_example():
    rep = classification_report(Y_TRUE, Y_PRED, LABELS)
    assert isinstance(rep, ClassificationReport)
    assert rep.accuracy == pytest.approx(5 / 8)
    assert rep.macro_f1 == pytest.approx(131 / 210)
    assert rep.weighted_f1 == pytest.approx(171 / 280)
    expected = [
        ("anger", 2 / 3, 1 / 2, 4 / 7, 4),
        ("joy", 1 / 2, 1 / 2, 1 / 2, 2),
        ("sadness", 2 / 3, 1.0, 4 / 5, 2),
    ]
    for row, (label, p, r, f1, sup) in zip(rep.per_class, expected):
        assert row["label"] == label
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == sup and isinstance(row["support"], int)
    assert rep.confusion == [[2, 1, 1], [1, 1, 0], [0, 0, 2]]
    assert rep.labels == LABELS


def test_perfect_prediction_is_one():
    y = [0, 1, 2, 1, 0, 2]
    rep = classification_report(y, y, LABELS)
    assert rep.accuracy == 1.0
    assert rep.macro_f1 == 1.0
    assert rep.weighted_f1 == 1.0
    assert all(r["precision"] == r["recall"] == r["f1"] == 1.0 for r in rep.per_class)


def test_class_never_predicted_has_zero_precision():
    # y_true = [0, 1, 2, 2], y_pred = [0, 0, 2, 2]; class 1 is never predicted.
    # class 0: P=1/2, R=1, F1=2/3; class 1: P=0 (0/0 convention), R=0, F1=0;
    # class 2: P=R=F1=1. macro = (2/3 + 0 + 1) / 3 = 5/9.
    rep = classification_report([0, 1, 2, 2], [0, 0, 2, 2], ["a", "b", "c"])
    b = rep.per_class[1]
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (0.0, 0.0, 0.0, 1)
    assert rep.per_class[0]["f1"] == pytest.approx(2 / 3)
    assert rep.macro_f1 == pytest.approx(5 / 9)


def test_zero_support_class_counts_in_macro():
    # y_true = [0, 0, 1, 1], y_pred = [0, 0, 1, 2]; class 2 never occurs in y_true
    # but is predicted once. class 2: P=0/1=0, R=0 (zero support), F1=0.
    # class 0: F1=1; class 1: P=1, R=1/2, F1=2/3.
    # macro = (1 + 2/3 + 0) / 3 = 5/9 (zero-support class included);
    # weighted = (2*1 + 2*2/3 + 0*0) / 4 = 5/6; accuracy = 3/4.
    rep = classification_report([0, 0, 1, 1], [0, 0, 1, 2], ["a", "b", "c"])
    c = rep.per_class[2]
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 0)
    assert rep.macro_f1 == pytest.approx(5 / 9)
    assert rep.weighted_f1 == pytest.approx(5 / 6)
    assert rep.accuracy == pytest.approx(3 / 4)


def test_to_dict_is_json_serialisable():
    d = classification_report(Y_TRUE, Y_PRED, LABELS).to_dict()
    assert set(d) == {"accuracy", "macro_f1", "weighted_f1", "per_class", "confusion", "labels"}
    assert json.loads(json.dumps(d)) == d


def test_empty_input_gives_zeros_not_nan():
    rep = classification_report([], [], LABELS)
    assert rep.accuracy == 0.0 and rep.macro_f1 == 0.0 and rep.weighted_f1 == 0.0
    assert rep.confusion == [[0] * 3] * 3


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="length mismatch"):
        confusion_matrix([0, 1, 2], [0, 1], 3)


@pytest.mark.parametrize(
    "y_true, y_pred, where, value, index",
    [
        ([0, 1, 3], [0, 1, 2], "y_true", 3, 2),
        ([0, 1, 2], [0, -1, 2], "y_pred", -1, 1),
    ],
)
def test_out_of_range_names_value_and_index(y_true, y_pred, where, value, index):
    with pytest.raises(ValueError) as exc:
        classification_report(y_true, y_pred, LABELS)
    msg = str(exc.value)
    assert where in msg and f"label {value}" in msg and f"index {index}" in msg


def test_fractional_labels_rejected():
    with pytest.raises(ValueError, match="index 1"):
        confusion_matrix([0, 1], [0, 0.7], 3)


def test_multilabel_report_hand_example():
    # threshold 0.5 (inclusive) turns y_score into
    #   pred = [[1,0,0], [0,1,1], [1,1,0]]   vs   true = [[1,0,1], [0,1,0], [1,1,0]]
    # a: TP=2 FP=0 FN=0 -> P=R=F1=1, support 2
    # b: TP=2 FP=0 FN=0 -> P=R=F1=1, support 2 (0.5 counts as positive)
    # c: TP=0 FP=1 FN=1 -> P=R=F1=0, support 1
    # micro: TP=4 FP=1 FN=1 -> P=R=F1=4/5; macro-F1 = 2/3
    # subset accuracy: only row 2 fully right -> 1/3
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_score = np.array([[0.9, 0.2, 0.4], [0.1, 0.7, 0.6], [0.8, 0.5, 0.1]])
    rep = multilabel_report(y_true, y_score, ["a", "b", "c"])
    f1s = [r["f1"] for r in rep["per_label"]]
    assert f1s == pytest.approx([1.0, 1.0, 0.0])
    assert [r["support"] for r in rep["per_label"]] == [2, 2, 1]
    assert rep["micro_precision"] == pytest.approx(0.8)
    assert rep["micro_recall"] == pytest.approx(0.8)
    assert rep["micro_f1"] == pytest.approx(0.8)
    assert rep["macro_f1"] == pytest.approx(2 / 3)
    assert rep["subset_accuracy"] == pytest.approx(1 / 3)
    json.dumps(rep)

    # Raising the threshold to 0.65 drops b in row 2 and c in row 1:
    # b: TP=1 FN=1 -> P=1, R=1/2, F1=2/3; c: TP=0 FP=0 FN=1 -> F1=0.
    # subset: row 1 [0,1,0] now exact, row 2 wrong -> 1/3.
    rep2 = multilabel_report(y_true, y_score, ["a", "b", "c"], threshold=0.65)
    assert rep2["per_label"][1]["f1"] == pytest.approx(2 / 3)
    assert rep2["subset_accuracy"] == pytest.approx(1 / 3)


def test_multilabel_report_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        multilabel_report([[1, 0]], [[0.1, 0.2], [0.3, 0.4]], ["a", "b"])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        multilabel_report([[1, 2]], [[0.1, 0.2]], ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        multilabel_report([[1, 0]], [[0.1, 0.2]], ["a", "b", "c"])


def test_format_table_alignment():
    rows = [{"name": "a", "x": 0.5, "n": 3}, {"name": "longer", "x": 12.25}]
    out = format_table(rows, ["name", "x", "n"], floatfmt=".2f").splitlines()
    assert out[0].split() == ["name", "x", "n"]
    assert set(out[1].replace(" ", "")) == {"-"}
    assert "0.50" in out[2] and "12.25" in out[3]
    # Numeric column right-aligned: both values end at the same column.
    assert out[2].index("0.50") + 4 == out[3].index("12.25") + 5


def test_format_classification_report_contents():
    text = format_classification_report(classification_report(Y_TRUE, Y_PRED, LABELS))
    for needle in ["precision", "recall", "support", "accuracy", "macro-F1",
                   "weighted-F1", "0.625", "sadness", "true \\ pred"]:
        assert needle in text
    cm_lines = text.split("confusion matrix")[1].splitlines()
    assert any(line.split()[:4] == ["anger", "2", "1", "1"] for line in cm_lines if line.strip())


def test_write_json_atomic(tmp_path):
    path = tmp_path / "nested" / "dir" / "metrics.json"
    obj = {"acc": np.float32(0.5), "cm": np.arange(4).reshape(2, 2), "n": np.int64(3)}
    write_json(path, obj)
    assert json.loads(path.read_text()) == {"acc": 0.5, "cm": [[0, 1], [2, 3]], "n": 3}
    assert '\n  "acc"' in path.read_text()  # indent=2
    write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    # A failed write leaves the previous file intact and no temp files behind.
    assert json.loads(path.read_text()) == {"v": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
