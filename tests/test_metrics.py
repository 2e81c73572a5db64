import json

import numpy as np
import pytest

from clipbert_emo.tasks.metrics import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    multilabel_report,
    multitask_report,
    regression_report,
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


def test_unweighted_accuracy_is_mean_recall_over_present_classes():
    # Shared example: recalls 1/2, 1/2, 1 -> UA = 2/3, while WA (accuracy) = 5/8.
    rep = classification_report(Y_TRUE, Y_PRED, LABELS)
    assert rep.unweighted_accuracy == pytest.approx(2 / 3) and rep.accuracy == pytest.approx(5 / 8)
    # IEMOCAP-style imbalance: always predicting the majority class scores WA 6/8 but UA (1 + 0) / 2.
    rep = classification_report([0] * 6 + [1] * 2, [0] * 8, ["neutral", "sad"])
    assert rep.accuracy == pytest.approx(3 / 4) and rep.unweighted_accuracy == pytest.approx(1 / 2)
    # Class "c" never occurs in y_true: it has no recall to average, so UA = (1 + 1/2) / 2, not / 3
    # (unlike macro-F1, which counts it as 0).
    rep = classification_report([0, 0, 1, 1], [0, 0, 1, 2], ["a", "b", "c"])
    assert rep.unweighted_accuracy == pytest.approx(3 / 4)
    assert classification_report([], [], LABELS).unweighted_accuracy == 0.0
    assert classification_report([2, 2], [2, 2], LABELS).unweighted_accuracy == 1.0


def test_report_written_before_unweighted_accuracy_still_loads():
    d = classification_report(Y_TRUE, Y_PRED, LABELS).to_dict()
    del d["unweighted_accuracy"]
    assert ClassificationReport(**d).unweighted_accuracy == 0.0


def test_to_dict_is_json_serialisable():
    d = classification_report(Y_TRUE, Y_PRED, LABELS).to_dict()
    assert set(d) == {"accuracy", "macro_f1", "weighted_f1", "unweighted_accuracy", "per_class", "confusion",
                      "labels"}
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


# ---------------------------------------------------------------------------
# multilabel weighted accuracy (CMU-MOSEI emotion metric)


def test_multilabel_weighted_accuracy_hand_example():
    # label a: true [1,1,0,0,0,0] pred [1,0,1,0,0,0]: P=2 N=4 TP=1 TN=3
    #   WA = (1*4/2 + 3) / 8 = 5/8 (= mean of recall 1/2 and specificity 3/4)
    # label b: no positives, pred one false alarm: P=0 -> TP*N/P term = 0, TN=5 N=6
    #   WA = 5/12
    # label c: all positive (N=0) -> WA = 0 by convention
    # mean = (5/8 + 5/12 + 0) / 3 = 25/72
    y_true = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    y_pred = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]])
    rep = multilabel_report(y_true, y_pred, ["a", "b", "c"])
    was = [r["weighted_accuracy"] for r in rep["per_label"]]
    assert was == pytest.approx([5 / 8, 5 / 12, 0.0])
    assert rep["mean_weighted_accuracy"] == pytest.approx(25 / 72)
    # the old keys are all still there
    for key in ("threshold", "per_label", "micro_precision", "micro_recall", "micro_f1", "macro_f1",
                "subset_accuracy", "labels"):
        assert key in rep
    assert all("f1" in r for r in rep["per_label"])
    json.dumps(rep)


def test_multilabel_weighted_accuracy_always_absent_is_half():
    # Predicting "absent" everywhere: recall 0, specificity 1 -> WA = 0.5 however rare the label.
    y_true = np.zeros((10, 1), dtype=int)
    y_true[0, 0] = 1
    rep = multilabel_report(y_true, np.zeros((10, 1)), ["x"])
    assert rep["per_label"][0]["weighted_accuracy"] == pytest.approx(0.5)


def test_multilabel_empty_has_finite_weighted_accuracy():
    rep = multilabel_report(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
    assert rep["mean_weighted_accuracy"] == 0.0
    assert [r["weighted_accuracy"] for r in rep["per_label"]] == [0.0, 0.0]


# ---------------------------------------------------------------------------
# multitask


def test_multitask_report_hand_example():
    # head eng, rows 0..2 labelled: true [0,1,1] pred [0,0,1] -> acc 2/3;
    #   class0 TP1 FP1 FN0 -> F1 2/3; class1 TP1 FP0 FN1 -> F1 2/3; macro = weighted = 2/3
    # head bor, rows 0 and 2 labelled: true [1,0] pred [1,1] -> acc 1/2;
    #   class0 F1 0; class1 P 1/2 R 1 -> F1 2/3; macro 1/3; weighted (0 + 2/3)/2 = 1/3
    # predictions where the truth is -1 are ignored, whatever they are.
    y_true = np.array([[0, 1], [1, -1], [1, 0], [-1, -1]])
    y_pred = np.array([[0, 1], [0, 1], [1, 1], [1, 0]])
    rep = multitask_report(y_true, y_pred, ["eng", "bor"], ["low", "high"])
    assert rep["heads"]["eng"]["accuracy"] == pytest.approx(2 / 3)
    assert rep["heads"]["eng"]["macro_f1"] == pytest.approx(2 / 3)
    assert rep["heads"]["bor"]["accuracy"] == pytest.approx(1 / 2)
    assert rep["heads"]["bor"]["macro_f1"] == pytest.approx(1 / 3)
    assert rep["heads"]["bor"]["weighted_f1"] == pytest.approx(1 / 3)
    assert rep["heads"]["bor"]["confusion"] == [[0, 1], [0, 1]]
    assert rep["num_labelled"] == {"eng": 3, "bor": 2}
    assert rep["mean_accuracy"] == pytest.approx(7 / 12)
    assert rep["mean_macro_f1"] == pytest.approx(1 / 2)
    assert rep["mean_weighted_f1"] == pytest.approx(1 / 2)
    assert rep["heads"]["eng"] == classification_report([0, 1, 1], [0, 0, 1], ["low", "high"]).to_dict()
    json.dumps(rep)


def test_multitask_report_unlabelled_head_counts_as_zero():
    y_true = np.array([[0, -1], [1, -1]])
    y_pred = np.array([[0, 0], [1, 0]])
    rep = multitask_report(y_true, y_pred, ["a", "b"], ["x", "y"])
    assert rep["heads"]["a"]["accuracy"] == 1.0
    assert rep["heads"]["b"]["accuracy"] == 0.0
    assert rep["mean_accuracy"] == pytest.approx(0.5)
    assert rep["mean_macro_f1"] == pytest.approx(0.5)


def test_multitask_report_per_head_labels_and_errors():
    rep = multitask_report([[0, 2]], [[0, 2]], ["a", "b"], [["n", "p"], ["x", "y", "z"]])
    assert rep["heads"]["b"]["labels"] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="shape mismatch"):
        multitask_report([[0, 1]], [[0, 1], [1, 1]], ["a", "b"], ["n", "p"])
    with pytest.raises(ValueError, match="columns"):
        multitask_report([[0, 1]], [[0, 1]], ["a"], ["n", "p"])
    with pytest.raises(ValueError, match="outside"):
        multitask_report([[0, 1]], [[0, 5]], ["a", "b"], ["n", "p"])


# ---------------------------------------------------------------------------
# regression (MOSI / MOSEI / CH-SIMS)

# Worked by hand:
#   y_true = [-2.4, -0.6,  0.0, 0.8, 2.6, 1.4]
#   y_pred = [-1.6,  0.4, -0.2, 1.5, 2.4, 0.0]
# mae = (0.8 + 1.0 + 0.2 + 0.7 + 0.2 + 1.4) / 6 = 4.3 / 6
# has0 (>= 0 non-negative): true [N,N,P,P,P,P] pred [N,P,N,P,P,P] -> acc 4/6
#   neg: TP1 FP1 FN1 -> F1 1/2 (support 2); pos: TP3 FP1 FN1 -> F1 3/4 (support 4)
#   weighted F1 = (2*1/2 + 4*3/4) / 6 = 2/3
# non0 (drop the true 0; pred 0.0 counts as negative): true [N,N,P,P,P] pred [N,P,P,P,N] -> acc 3/5
#   neg: TP1 FP1 FN1 -> 1/2 (support 2); pos: TP2 FP1 FN1 -> 2/3 (support 3)
#   weighted F1 = (2*1/2 + 3*2/3) / 5 = 3/5
# acc7: round(clip(.,-3,3)): true [-2,-1,0,1,3,1] pred [-2,0,0,2,2,0] -> 2/6
# acc5: round(clip(.,-2,2)): true [-2,-1,0,1,2,1] pred [-2,0,0,2,2,0] -> 3/6
REG_TRUE = [-2.4, -0.6, 0.0, 0.8, 2.6, 1.4]
REG_PRED = [-1.6, 0.4, -0.2, 1.5, 2.4, 0.0]


def test_regression_report_mosi_hand_example():
    rep = regression_report(REG_TRUE, REG_PRED)
    assert rep["mae"] == pytest.approx(4.3 / 6)
    assert rep["acc2_has0"] == pytest.approx(4 / 6)
    assert rep["f1_has0"] == pytest.approx(2 / 3)
    assert rep["acc2_non0"] == pytest.approx(3 / 5)
    assert rep["f1_non0"] == pytest.approx(3 / 5)
    assert rep["acc2"] == rep["acc2_non0"] and rep["f1"] == rep["f1_non0"]
    assert rep["acc7"] == pytest.approx(2 / 6)
    assert rep["acc5"] == pytest.approx(3 / 6)
    assert rep["num_samples"] == 6
    assert rep["corr"] == pytest.approx(np.corrcoef(REG_TRUE, REG_PRED)[0, 1])
    assert "acc3" not in rep
    json.dumps(rep)


def test_regression_report_matches_sklearn_weighted_f1():
    sk = pytest.importorskip("sklearn.metrics")
    t, p = np.array(REG_TRUE), np.array(REG_PRED)
    rep = regression_report(t, p)
    assert rep["f1_has0"] == pytest.approx(sk.f1_score(t >= 0, p >= 0, average="weighted"))
    nz = t != 0
    assert rep["f1_non0"] == pytest.approx(sk.f1_score(t[nz] > 0, p[nz] > 0, average="weighted"))


def test_regression_corr_hand_values_and_constant():
    # da = [-1,0,1], db = [-1,1,0]: sum(da*db) = 1, sqrt(2*2) = 2 -> 0.5
    assert regression_report([1, 2, 3], [1, 3, 2])["corr"] == pytest.approx(0.5)
    assert regression_report([1, 2, 3], [2, 4, 6])["corr"] == pytest.approx(1.0)
    assert regression_report([1, 2, 3], [3, 2, 1])["corr"] == pytest.approx(-1.0)
    assert regression_report([1, 2, 3], [0.5, 0.5, 0.5])["corr"] == 0.0
    assert regression_report([1.0], [2.0])["corr"] == 0.0


def test_regression_rounding_is_half_to_even_like_mmsa():
    # np.round: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2
    rep = regression_report([0.5, 1.5, -2.5], [0.0, 2.0, -2.0])
    assert rep["acc7"] == 1.0
    assert rep["acc5"] == 1.0


def test_regression_report_empty_all_true_zero_and_shapes():
    rep = regression_report([], [])
    assert rep["num_samples"] == 0
    assert all(v == 0 for v in rep.values())
    # every true value is 0: non0 metrics have no samples -> 0, has0 still defined
    rep = regression_report([0.0, 0.0], [0.3, -0.3])
    assert rep["acc2_non0"] == 0.0 and rep["f1_non0"] == 0.0
    assert rep["acc2_has0"] == pytest.approx(0.5)
    # (N, 1) head outputs are accepted
    rep = regression_report(np.array(REG_TRUE), np.array(REG_PRED)[:, None])
    assert rep["mae"] == pytest.approx(4.3 / 6)
    for v in rep.values():
        assert np.isfinite(v)
    with pytest.raises(ValueError, match="length mismatch"):
        regression_report([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        regression_report([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match="scale"):
        regression_report([1.0], [1.0], scale="mosei")


def test_regression_report_sims_hand_example():
    # clip to [-1, 1]: pred 1.3 -> 1.0
    # acc3 bins [-1,-0.1] (-0.1,0.1] (0.1,1]:
    #   true [0,0,0,1,1,2,2,2] pred [0,1,0,1,2,2,2,2] -> 6/8
    # acc5 bins [-1,-0.7] (-0.7,-0.1] (-0.1,0.1] (0.1,0.7] (0.7,1]:
    #   true [0,1,1,2,2,3,4,4] pred [0,2,1,2,3,3,4,3] -> 5/8
    # mae = (0.15+0.35+0.1+0.1+0.15+0.35+0.2+0.31) / 8 = 1.71 / 8
    t = [-0.9, -0.4, -0.1, 0.0, 0.05, 0.3, 0.8, 1.0]
    p = [-0.75, -0.05, -0.2, 0.1, 0.2, 0.65, 1.3, 0.69]
    rep = regression_report(t, p, scale="sims")
    assert rep["acc3"] == pytest.approx(6 / 8)
    assert rep["acc5"] == pytest.approx(5 / 8)
    assert rep["mae"] == pytest.approx(1.71 / 8)
    # signs all agree -> binary metrics are perfect in both conventions
    assert rep["acc2_has0"] == 1.0 and rep["acc2_non0"] == 1.0 and rep["f1"] == 1.0
    assert "acc7" not in rep
    assert rep["num_samples"] == 8
