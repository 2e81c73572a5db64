"""Video question answering: open-ended (a class over the answer vocabulary) and multiple choice.

- ``qa``: the question is the text; the answer is one of ``data.labels``, the answer vocabulary, which
  :meth:`OpenQATask.prepare` fills with the ``data.answer_vocab_size`` most frequent answers of the training
  split (ties broken alphabetically). A question whose answer is outside the vocabulary is skipped by the
  loss and counted as wrong by the metrics, as ClipBERT does.
- ``qa_mc``: each question comes with candidate answers; every "question [SEP] candidate" text is fused
  with the clips and scored by a one-output head, and the best-scoring candidate is the answer (TGIF-QA
  action and transition, MSR-VTT multiple choice). Cross-entropy over the candidates.

Both report accuracy over all questions and per question type (``acc_<type>``), with the accuracy of
always giving the commonest answer of each type (``majority_acc_<type>``) for scale.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from ..data.manifest import ManifestError
from .base import Task, TaskLoss

SEPARATOR = " [SEP] "  # between a question and a candidate answer


def answer_vocabulary(answers, k: int) -> list[str]:
    """The ``k`` most frequent answers, commonest first; equal counts in alphabetical order."""
    counts = Counter(a for a in answers if a)
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def normalise_answer(raw) -> str:
    return str(raw).strip().lower()


def qa_report(correct: np.ndarray, types: np.ndarray, type_names, answers: np.ndarray | None = None) -> dict:
    """Accuracy overall and per question type. ``correct`` (S,) bool, ``types`` (S,) index into ``type_names``
    (-1 = none); ``answers`` (S,) the true answer's index, for the per-type majority baseline."""
    out = {"accuracy": float(correct.mean()) if len(correct) else 0.0, "num_questions": int(len(correct))}
    for t, name in enumerate(type_names):
        picked = types == t
        if picked.any():
            out[f"acc_{name}"] = float(correct[picked].mean())
            out[f"n_{name}"] = int(picked.sum())
            known = answers[picked & (answers >= 0)] if answers is not None else None
            if known is not None:  # an answer outside the vocabulary is no answer the baseline could give
                top = Counter(known.tolist()).most_common(1)
                out[f"majority_acc_{name}"] = float(top[0][1] / picked.sum()) if top else 0.0
    return out


def _question_type(row) -> str:
    raw = row.get("question_type")
    return "" if raw in (None, "") else str(raw)


def _type_index(data) -> dict:
    return {name: i for i, name in enumerate(data.question_types)}


def _question_types(data, train) -> list[str]:
    """data.question_types, or when it is empty those of the training split."""
    return list(data.question_types) or sorted({s.question_type for s in train.samples if s.question_type})


class _QATask(Task):
    """What both QA kinds share: accuracy overall and per question type."""

    select_metric = "accuracy"
    summary_metrics = ("accuracy",)
    history_metrics = ("accuracy",)
    card_metrics = ("accuracy",)

    def summary(self, report: dict) -> dict:
        """Accuracy, then the accuracy of each question type (acc_<type>)."""
        row = super().summary(report)
        row.update({k: v for k, v in report.items() if k.startswith("acc_")})
        return row


class OpenQATask(_QATask):
    """``text``: the question; ``answer``: the answer as written; ``question_type``: optional group."""

    name = "qa"

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("answer", "question_type")

    def read_target(self, row, where, is_csv, data, required) -> dict:
        raw = row.get("answer")
        if raw in (None, ""):
            if required:
                raise ManifestError(f"{where}: missing field 'answer'")
            return {}
        return {"answer": normalise_answer(raw), "question_type": _question_type(row)}

    def target(self, sample):
        return None if sample.answer is None else (sample.answer, sample.question_type)

    def collate(self, targets, data) -> torch.Tensor:
        answers = {a: i for i, a in enumerate(data.labels)}
        types = _type_index(data)
        # (B, 2): the answer's index in the vocabulary (-1 = outside it) and the question type's (-1 = none)
        return torch.tensor([[answers.get(a, -1), types.get(t, -1)] for a, t in targets], dtype=torch.long)

    def stratify_key(self, sample):
        return sample.answer

    def prepare(self, data, train):
        labels = data.labels
        if data.answer_vocab_size > 0:
            labels = answer_vocabulary([s.answer for s in train.samples], data.answer_vocab_size)
            if not labels:
                raise ManifestError(f"{train.path}: no answers in the training split")
        return dataclasses.replace(data, labels=labels, question_types=_question_types(data, train))

    def num_outputs(self, data) -> int:
        return len(data.labels)

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        def loss(logits, labels, weights):
            answers = labels[:, 0]  # (B, 2) -> (B,)
            if not (answers >= 0).any():  # every answer outside the vocabulary: nothing to learn from
                return logits.sum() * 0.0
            return F.cross_entropy(logits.float(), answers, ignore_index=-1)

        return TaskLoss(loss, class_weights)

    def report(self, logits, labels, data) -> dict:
        answers, types = labels[:, 0].numpy(), labels[:, 1].numpy()
        correct = (logits.argmax(-1).numpy() == answers) & (answers >= 0)  # out of vocabulary = wrong
        out = qa_report(correct, types, data.question_types, answers)
        out["out_of_vocabulary"] = float((answers < 0).mean())
        out["upper_bound"] = 1.0 - out["out_of_vocabulary"]
        return out

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        probs = logits.float().softmax(-1)
        top = probs.topk(min(5, len(data.labels)))
        return {"prediction": data.labels[int(top.indices[0])],
                "probabilities": {data.labels[int(i)]: float(p) for p, i in zip(top.values, top.indices)},
                "clips": [{"start": s, "end": e, "prediction": data.labels[int(c.argmax())]}
                          for (s, e), c in zip(spans, clip_logits)]}


class MultipleChoiceQATask(_QATask):
    """``text``: the question; ``candidates``: the answers offered; ``answer``: the right one (its index, or
    its text); ``question_type``: optional group."""

    name = "qa_mc"

    def manifest_fields(self, data) -> tuple[str, ...]:
        return ("candidates", "answer", "question_type")

    def read_target(self, row, where, is_csv, data, required) -> dict:
        cands, raw = row.get("candidates"), row.get("answer")
        if cands is None or raw in (None, ""):
            if required:
                raise ManifestError(f"{where}: a multiple-choice record needs 'candidates' (a list) and "
                                    "'answer' (the right candidate's index or text)")
            return {}
        if isinstance(cands, str):  # CSV: "a;b;c"
            cands = [c.strip() for c in cands.split(";")]
        if not isinstance(cands, list) or len(cands) < 2:
            raise ManifestError(f"{where}: 'candidates' must list at least two answers, got {cands!r}")
        cands = [str(c) for c in cands]
        if (isinstance(raw, int) and not isinstance(raw, bool)) or (isinstance(raw, str) and raw.strip().isdigit() and raw.strip() not in cands):
            index = int(raw)
        elif str(raw) in cands:
            index = cands.index(str(raw))
        else:
            raise ManifestError(f"{where}: 'answer' {raw!r} is neither a candidate nor a candidate's index")
        if not 0 <= index < len(cands):
            raise ManifestError(f"{where}: 'answer' index {index} outside the {len(cands)} candidates")
        return {"candidates": cands, "label": index, "question_type": _question_type(row)}

    def texts(self, sample, data):
        return [f"{sample.text}{SEPARATOR}{c}" for c in sample.candidates]

    def target(self, sample):
        return None if sample.label is None else (sample.label, sample.question_type)

    def collate(self, targets, data) -> torch.Tensor:
        types = _type_index(data)
        # (B, 2): the right candidate's index and the question type's (-1 = none)
        return torch.tensor([[c, types.get(t, -1)] for c, t in targets], dtype=torch.long)

    def stratify_key(self, sample):
        return sample.question_type

    def prepare(self, data, train):
        return dataclasses.replace(data, question_types=_question_types(data, train))

    def num_outputs(self, data) -> int:
        return 1  # one score per (question, candidate) text; the logits are (B, P) for P candidates

    def criterion(self, data, train, class_weights=None) -> TaskLoss:
        return TaskLoss(lambda logits, labels, weights: F.cross_entropy(logits.float(), labels[:, 0]), class_weights)

    def contrastive_targets(self, batch: dict) -> dict:
        # "question [SEP] right answer" describes the video; under data.group_by_video the other questions of the
        # same video (clip_rows) are no negatives of it
        return {"positive": batch["labels"][:, 0], "group": batch.get("clip_rows")}

    def report(self, logits, labels, data) -> dict:
        answers, types = labels[:, 0].numpy(), labels[:, 1].numpy()
        out = qa_report(logits.argmax(-1).numpy() == answers, types, data.question_types)
        out["chance"] = 1.0 / logits.shape[-1]
        return out

    def prediction(self, logits, clip_logits, spans, data) -> dict:
        probs = logits.float().softmax(-1)
        return {"prediction": int(probs.argmax()), "probabilities": {str(i): float(p) for i, p in enumerate(probs)},
                "clips": [{"start": s, "end": e, "prediction": int(c.argmax())} for (s, e), c in zip(spans, clip_logits)]}
