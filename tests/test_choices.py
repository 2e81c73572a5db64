"""Every list of names has one source (clipbert_emo/config/choices.py, the task registry): config validation, the
command line's choices and the library's lookups all read it, so they cannot disagree."""

import argparse

import pytest
import torch

from clipbert_emo.config import AGGREGATIONS, SEEK_MODES, TASK_KINDS, TASKS, ConfigError, ExperimentConfig, load_config
from clipbert_emo.config.choices import CHOICES


def _subcommands():
    from clipbert_emo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _choices(command: str, option: str):
    action = next(a for a in _subcommands()[command]._actions if option in a.option_strings)
    return tuple(action.choices)


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_aggregation_choices_are_the_one_list(command):
    assert _choices(command, "--aggregation") == AGGREGATIONS


@pytest.mark.parametrize("command", ["evaluate", "predict", "serve"])
def test_seek_choices_are_the_one_list(command):
    assert _choices(command, "--seek") == SEEK_MODES


def test_the_library_reads_the_same_lists():
    from clipbert_emo.data import decode
    from clipbert_emo.models import aggregation
    from clipbert_emo.models.aggregation import aggregate_clip_logits

    assert aggregation.AGGREGATIONS is AGGREGATIONS and decode.SEEK_MODES is SEEK_MODES
    logits = torch.randn(2, 3, 4)
    for how in AGGREGATIONS:  # every listed name is one the library computes
        assert aggregate_clip_logits(logits, how).shape == (2, 4)
    assert CHOICES["model.aggregation"] is AGGREGATIONS and CHOICES["data.seek"] is SEEK_MODES


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_validation_refuses_what_the_list_lacks_and_names_the_list(key):
    section, *rest = key.split(".")
    default = ExperimentConfig()
    for part in key.split("."):
        default = getattr(default, part)
    assert default in CHOICES[key], f"the default of {key} is one of its names"
    with pytest.raises(ConfigError, match=f"expected one of {', '.join(CHOICES[key])}$"):
        load_config(None, [f"{key}=not_a_name"])


def test_task_kinds_are_the_registry():
    from clipbert_emo.tasks import BUILT_IN_TASKS, get_task, task_kinds

    assert TASKS is TASK_KINDS
    assert task_kinds() == TASK_KINDS.names() and set(task_kinds()) >= {k.name for k in BUILT_IN_TASKS}
    for name in task_kinds():
        assert get_task(name).name == name
        assert load_config(None, [f"data.task={name}", "data.heads=[a]"]).data.task == name
    listed = ", ".join(TASK_KINDS.names())
    with pytest.raises(ConfigError, match=f"data.task='nope': expected one of {listed}$"):
        load_config(None, ["data.task=nope"])
    with pytest.raises(ConfigError, match=f"data.task='nope': expected one of {listed}$"):
        get_task("nope")


def test_each_task_kind_declares_its_metrics():
    """What the evaluation summary, the history and the model card show comes from the task object."""
    from clipbert_emo.eval.report import summary_rows
    from clipbert_emo.tasks import get_task

    rep = {"accuracy": 0.5, "macro_f1": 0.25, "weighted_f1": 0.3, "unweighted_accuracy": 0.4, "per_class": [],
           "confusion": [[1]]}
    rows = summary_rows({"n_test": 4, "reports": {"lse": rep}}, get_task("single_label"))
    assert rows == [{"n_test": 4, "aggregation": "lse", "accuracy": 0.5, "unweighted_accuracy": 0.4,
                     "macro_f1": 0.25, "weighted_f1": 0.3}]
    assert get_task("single_label").history(rep) == {"macro_f1": 0.25, "weighted_f1": 0.3, "accuracy": 0.5}
    qa = {"accuracy": 0.5, "acc_what": 1.0, "majority_acc_what": 0.5, "n_what": 2, "num_questions": 2}
    assert get_task("qa").summary(qa) == {"accuracy": 0.5, "acc_what": 1.0}
    heads = {"mean_accuracy": 0.5, "mean_macro_f1": 0.4, "heads": {"boredom": {"accuracy": 0.6, "macro_f1": 0.3}}}
    assert get_task("multitask").summary(heads) == {"mean_accuracy": 0.5, "mean_macro_f1": 0.4, "boredom_acc": 0.6,
                                                    "boredom_f1": 0.3}
    for name in TASK_KINDS:
        task = get_task(name)
        assert task.select_metric and isinstance(task.summary_metrics, tuple)


def test_recipes_are_chosen_by_the_task_object():
    from clipbert_emo.tasks import Recipe, get_task
    from clipbert_emo.train.finetune import RECIPES
    from clipbert_emo.train.finetune_recipe import FinetuneRecipe
    from clipbert_emo.train.retrieval import RetrievalRecipe

    assert set(RECIPES) == set(Recipe)
    assert RECIPES[get_task("retrieval").recipe] is RetrievalRecipe
    assert RECIPES[get_task("qa_mc").recipe] is FinetuneRecipe
    assert get_task("retrieval").recipe == "retrieval"  # a str enum: code comparing with the old string still works


def test_face_detector_names_are_the_one_list():
    from clipbert_emo.config.choices import FACE_DETECTORS
    from clipbert_emo.data import face_detectors

    assert face_detectors.DETECTOR_NAMES is FACE_DETECTORS and face_detectors.DEFAULT_DETECTOR == FACE_DETECTORS[0]
    for name in ("", *FACE_DETECTORS, "models/face_detection_yunet_2023mar.onnx"):
        assert load_config(None, [f"data.face_detector={name}"]).data.face_detector == name
    with pytest.raises(ConfigError, match="data.face_detector='retinaface': expected one of mtcnn, haar, ssd"):
        load_config(None, ["data.face_detector=retinaface"])
