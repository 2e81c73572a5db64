"""MSRVTT-QA (Xu et al., 2017) as distributed: open-ended questions generated from MSR-VTT's captions.

Layout (data.root)::

    <root>/train_qa.json  val_qa.json  test_qa.json   [{"id", "video_id": 0, "question", "answer", "category_id"}]
    <root>/**/video0.mp4 ...                          MSR-VTT's clips (video/ as unpacked), found by name

data.task=qa. The question type is the question's first word (what, who, how, when, where), the grouping
MSRVTT-QA results are usually reported in. A question whose video is missing is skipped and reported.
"""

from __future__ import annotations

from ...config import DataConfig
from ..manifest import Manifest, Sample
from .common import VIDEO_SUFFIXES, Release, Skips, finish, need_task, stem_index
from .msrvtt import load_json_list

MSRVTT_QA = Release("MSRVTT-QA", """\
    <root>/train_qa.json  val_qa.json  test_qa.json
    <root>/video/video0.mp4 ... (any folder under <root>)""")


def read_msrvtt_qa(cfg: DataConfig, split: str) -> Manifest:
    need_task(cfg, ("qa",), "MSRVTT-QA's open-ended answers")
    root = MSRVTT_QA.root(cfg)
    path = root / f"{split}_qa.json"
    entries = load_json_list(path, MSRVTT_QA, "questions")
    videos = stem_index(root, VIDEO_SUFFIXES)
    skips = Skips(cfg.strict)
    samples = []
    for i, e in enumerate(entries):
        where = f"{path}[{i}]"
        if not isinstance(e, dict) or not str(e.get("question", "")).strip() or e.get("answer") in (None, ""):
            skips.add(where, "malformed question: no question or answer")
            continue
        name = f"video{e.get('video_id')}"
        if name not in videos:
            skips.add(where, f"video file not found: {name}")
            continue
        question = " ".join(str(e["question"]).split())
        samples.append(Sample(video=str(videos[name]), text=question, answer=str(e["answer"]).strip().lower(),
                              question_type=question.split()[0].lower(), source=where,
                              extra={"id": e.get("id"), "category_id": e.get("category_id")}))
    return finish(path, split, samples, skips)
