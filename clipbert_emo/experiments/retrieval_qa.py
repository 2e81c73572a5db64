"""SynthEmo retrieval and QA on a CPU: ``clipbert-emo demo-retrieval`` and ``clipbert-emo demo-qa``.

Each generates a small SynthEmo (400 / 100 / 100 videos, about half a minute on 2 cores) with its
retrieval captions and questions (clipbert_emo/synthemo/tasks.py) unless the folder has them, fine-tunes the
shipped config (synthemo_retrieval, synthemo_qa or synthemo_qa_mc) and prints the test metrics with
chance level beside them:

- retrieval: R@1, R@5, R@10 and median rank of the 100 test videos ranked for each of their captions,
  for every aggregation; chance is K/100 for R@K and 50.5 for the median rank.
- QA: accuracy over all questions and per question type; beside it, chance (one over the number of
  answers the type has: 6 feelings, 6 mouth movements, 2 shapes, 4 colours; 1/4 for multiple choice)
  and the accuracy of always giving the type's commonest test answer (multiple choice: picking it where it is
  a candidate, guessing where not).

Writes ``<out>/summary.json`` ({"rows": [...], "train_seconds", "metrics"}) beside the run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import load_config
from ..eval.report import format_table, write_json

CONFIGS = {"retrieval": "synthemo_retrieval", "qa": "synthemo_qa", "qa_mc": "synthemo_qa_mc"}
SIZES = {"num_train": 400, "num_val": 100, "num_test": 100}


def ensure_task_data(data_dir: str | Path, progress: bool = True) -> Path:
    """A SynthEmo of SIZES with its retrieval and QA manifests in ``data_dir`` (made when missing)."""
    from ..synthemo import SynthEmoConfig, generate_synthemo
    from ..synthemo.tasks import write_task_manifests

    data_dir = Path(data_dir)
    if not (data_dir / "synthemo.json").exists():
        print(f"[demo] generating SynthEmo ({SIZES['num_train']}/{SIZES['num_val']}/{SIZES['num_test']} videos) "
              f"in {data_dir} ...")
        generate_synthemo(data_dir, SynthEmoConfig(**SIZES), progress=progress)
    if not all((data_dir / f"{kind}_{s}.jsonl").exists() for kind in CONFIGS for s in ("train", "val", "test")):
        write_task_manifests(data_dir)
    return data_dir


def retrieval_rows(test: dict) -> list[dict]:
    rows = []
    for how, m in test["reports"].items():
        rows.append({"aggregation": how, "R@1": m["r1"], "R@5": m["r5"], "R@10": m["r10"], "MdR": m["median_rank"],
                     "chance R@1": m["chance_r1"], "chance R@5": m["chance_r5"], "chance R@10": m["chance_r10"],
                     "chance MdR": m["chance_median_rank"]})
    return rows


def qa_rows(report: dict, chance: dict, question_types, majority: dict | None = None) -> list[dict]:
    """The table's rows: all questions, then each type. ``majority``: per type, the accuracy of always giving its
    commonest answer (default: the report's ``majority_acc_<type>``, open-ended); "all" weighs the types by count."""
    majority = majority or {t: report.get(f"majority_acc_{t}") for t in question_types}
    types = [t for t in question_types if f"acc_{t}" in report]
    known = [t for t in types if majority.get(t) is not None]
    overall = (sum(majority[t] * report[f"n_{t}"] for t in known) / sum(report[f"n_{t}"] for t in known)
               if known and len(known) == len(types) else None)
    rows = [{"question type": "all", "accuracy": report["accuracy"], "chance": chance["all"],
             "majority answer": overall, "questions": report["num_questions"]}]
    for t in types:
        rows.append({"question type": t, "accuracy": report[f"acc_{t}"], "chance": chance[t],
                     "majority answer": majority.get(t), "questions": report[f"n_{t}"]})
    return rows


def multiple_choice_majority(manifest_path: Path) -> dict:
    """Per question type, the expected accuracy of always picking the type's commonest right answer in the split
    (the open-ended baseline), with a uniform guess among the candidates where it is not one of them."""
    from collections import Counter

    records = [json.loads(line) for line in manifest_path.read_text().splitlines() if line.strip()]
    def right(rec):
        a = rec["answer"]
        return rec["candidates"][a] if isinstance(a, int) else a

    common = {t: Counter(right(r) for r in records if r["question_type"] == t).most_common(1)[0][0]
              for t in {r["question_type"] for r in records}}
    score: dict[str, list[float]] = {}
    for r in records:
        pick = common[r["question_type"]]
        got = (float(right(r) == pick) if pick in r["candidates"] else 1.0 / len(r["candidates"]))
        score.setdefault(r["question_type"], []).append(got)
    return {t: sum(v) / len(v) for t, v in score.items()}


def qa_chance(manifest_path: Path, multiple_choice: bool) -> dict:
    """Per question type: 1 / (answers the type has in the split), or 1 / candidates for multiple choice."""
    answers: dict[str, set] = {}
    cands: dict[str, int] = {}
    for line in manifest_path.read_text().splitlines():
        rec = json.loads(line)
        answers.setdefault(rec["question_type"], set()).add(json.dumps(rec["answer"]))
        cands[rec["question_type"]] = len(rec.get("candidates") or ())
    per = {t: (1.0 / cands[t] if multiple_choice else 1.0 / len(a)) for t, a in answers.items()}
    per["all"] = sum(per.values()) / len(per)  # the types are asked equally often
    return per


def run_task_demo(kind: str, data_dir: str = "data/synthemo_rq", out_dir: str | None = None,
                  overrides: list[str] | None = None, progress: bool = True) -> dict:
    """Train and test one SynthEmo variant (kind: retrieval | qa | qa_mc); prints and returns the table."""
    from ..train.finetune import finetune

    data_dir = ensure_task_data(data_dir, progress)
    out_dir = Path(out_dir or f"runs/demo_{kind}")
    cfg = load_config(CONFIGS[kind], [
        *(f"data.{s}_manifest={data_dir / f'{kind}_{s}.jsonl'}" for s in ("train", "val", "test")),
        f"train.output_dir={out_dir}", "train.overwrite=true", *(overrides or [])])
    print(f"[demo] training {CONFIGS[kind]} ...")
    start = time.time()
    metrics = finetune(cfg, progress=progress)
    elapsed = time.time() - start
    test = metrics["test"]
    if kind == "retrieval":
        rows = retrieval_rows(test)
        title = (f"text-to-video retrieval, {test['num_videos']} test videos x "
                 f"{test['num_queries']} captions, N_test={test['n_test']}, ranked by "
                 f"{test.get('rank_by', 'itm')} (R@K in %)")
    else:
        how = cfg.model.aggregation
        chance = qa_chance(data_dir / f"{kind}_test.jsonl", kind == "qa_mc")
        majority = multiple_choice_majority(data_dir / f"{kind}_test.jsonl") if kind == "qa_mc" else None
        rows = qa_rows(test["reports"][how], chance, cfg.data.question_types, majority)
        title = (f"{'multiple-choice' if kind == 'qa_mc' else 'open-ended'} QA, N_test={test['n_test']}, "
                 f"aggregation {how}")
    print(f"\n== SynthEmo {title} ==")
    print(format_table(rows, list(rows[0].keys())))
    print(f"train + test: {elapsed / 60:.1f} min; run folder: {out_dir}")
    summary = {"kind": kind, "rows": rows, "train_seconds": metrics["train_seconds"], "total_seconds": elapsed,
               "best_epoch": metrics["best_epoch"], "checkpoint": metrics["checkpoint"]}
    write_json(out_dir / "summary.json", summary)
    return summary
