"""TGIF-QA (Jang et al., 2017) as distributed: one tab-separated file per task and split, and the GIFs.

Layout (data.root)::

    <root>/Train_action_question.csv      Test_action_question.csv       (tab-separated despite the suffix)
    <root>/Train_transition_question.csv  Test_transition_question.csv
    <root>/Train_frameqa_question.csv     Test_frameqa_question.csv
    <root>/Train_count_question.csv       Test_count_question.csv
    <root>/gifs/<gif_name>.gif

data.target picks the task: ``action`` and ``transition`` are multiple choice (columns question, a1..a5,
answer = the right candidate's index; data.task=qa_mc); ``frameqa`` and ``count`` are open-ended (answer;
data.task=qa; FrameQA's ``type`` 0..3 is object / number / color / location and becomes the question type).
TGIF-QA has no validation split: val is the training questions of every tenth GIF (by a hash of its name,
so the same GIFs every time) and train the rest. A row whose GIF is missing is skipped and reported.
"""

from __future__ import annotations

import csv
import zlib

from ...config import ConfigError, DataConfig
from ..manifest import Manifest, ManifestError, Sample
from .common import Release, Skips, finish, need_task

TGIF_QA = Release("TGIF-QA", """\
    <root>/{Train,Test}_{action,transition,frameqa,count}_question.csv   (tab-separated)
    <root>/gifs/<gif_name>.gif""")
TASKS = {"action": "qa_mc", "transition": "qa_mc", "frameqa": "qa", "count": "qa"}
FRAMEQA_TYPES = ("object", "number", "color", "location")


def is_val_gif(name: str) -> bool:
    return zlib.crc32(name.encode("utf-8")) % 10 == 0


def read_tgif_qa(cfg: DataConfig, split: str) -> Manifest:
    if cfg.target not in TASKS:
        raise ConfigError(f"data.target={cfg.target!r}: TGIF-QA's task, one of {', '.join(TASKS)}")
    need_task(cfg, (TASKS[cfg.target],), f"TGIF-QA {cfg.target}")
    root = TGIF_QA.root(cfg)
    path = TGIF_QA.need(root / f"{'Test' if split == 'test' else 'Train'}_{cfg.target}_question.csv")
    gifs = TGIF_QA.need(root / "gifs", is_dir=True)
    mc = TASKS[cfg.target] == "qa_mc"
    required = ["gif_name", "question", "answer"] + ([f"a{i}" for i in range(1, 6)] if mc else [])
    skips = Skips(cfg.strict)
    samples = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = [h.strip() for h in reader.fieldnames or ()]
        missing = [c for c in required if c not in header]
        if missing:
            raise ManifestError(f"{path}:1: missing column(s) {', '.join(missing)} (a tab-separated header); "
                                f"the header has: {', '.join(header)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            name = row["gif_name"]
            if split != "test" and is_val_gif(name) != (split == "val"):
                continue
            gif = gifs / f"{name}.gif"
            if not gif.is_file():
                skips.add(where, f"video file not found: {gif}")
                continue
            extra = {"gif_name": name, "vid_id": row.get("vid_id"), "key": row.get("key")}
            if mc:
                try:
                    label = int(row["answer"])
                except ValueError:
                    skips.add(where, f"malformed row: answer {row['answer']!r} is not a candidate index")
                    continue
                cands = [row[f"a{i}"] for i in range(1, 6)]
                if not 0 <= label < len(cands):
                    skips.add(where, f"malformed row: answer index {label} outside the 5 candidates")
                    continue
                samples.append(Sample(video=str(gif), text=row["question"], label=label, candidates=cands,
                                      question_type=cfg.target, source=where, extra=extra))
            else:
                qtype = cfg.target
                if cfg.target == "frameqa" and row.get("type", "").isdigit() and int(row["type"]) < 4:
                    qtype = FRAMEQA_TYPES[int(row["type"])]
                samples.append(Sample(video=str(gif), text=row["question"], answer=row["answer"].lower(),
                                      question_type=qtype, source=where, extra=extra))
    return finish(path, split, samples, skips)
