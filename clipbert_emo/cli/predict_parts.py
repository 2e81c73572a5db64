"""``predict --out`` over a corpus: what is left to score, split across the processes of ``accelerate launch``.

The plan (``make_plan``) is the same for one process and for many: the videos in input order (the videos found,
then the paths that could not be read), less those ``--out`` holds, each one either still to score or already
scored in a *part file* of an interrupted run with several processes. The videos to score are grouped in the
batches one process would make of the whole input list (positions 0..B-1, B..2B-1, ...), and under W processes
rank r takes batches r, r+W, r+2W, ...: every video is scored once, in the same batch company as with one process
(so its numbers are the same to the last bit), and no rank has more than one batch more than another.

Each rank appends its results, one JSON line per video as it is scored, to its own part file beside ``--out``
(``results.csv.part1.jsonl``: always JSONL, whatever --out's format, holding the whole result). When every rank
is done, rank 0 writes ``--out`` in input order (the same bytes one process writes, JSONL, CSV or JSON) and
removes the part files. A killed run leaves them (less at most the batch each rank was scoring); ``--resume``,
under any number of processes or none, reads ``--out`` and the part files and scores only the rest.

Rank 0 reads every part file, so with several machines ``--out`` must be in a folder they all share (checked
before anything is scored).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from ..config import UserError
from ..ranks import rank_workers
from .common import say

_PART = re.compile(r"\.part(\d+)\.jsonl")


# ---- part files -------------------------------------------------------------------------------------------------

def part_path(out: str | os.PathLike, rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.name}.part{rank}.jsonl")


def part_files(out: str | os.PathLike) -> list[Path]:
    """The part files of ``out`` on disk, by rank."""
    out = Path(out)
    try:
        names = os.listdir(out.parent)
    except OSError:
        return []
    prefix = out.name
    found = [(int(m.group(1)), out.parent / n) for n in names
             if n.startswith(prefix) and (m := _PART.fullmatch(n[len(prefix):]))]
    return [p for _, p in sorted(found)]


def read_part(path: Path, start: int = 0) -> list[dict]:
    """The results of a part file from byte ``start`` on; a last line cut short by a kill is left out."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read this part file of an earlier run ({e.strerror or type(e).__name__});"
                        " fix it, or use --overwrite to start over") from None
    rows = []
    for lineno, line in enumerate(raw[:raw.rfind(b"\n") + 1].decode("utf-8", "surrogateescape").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str):
            raise UserError(f"{path}: line {lineno} is not a predict result; delete the file or use --overwrite")
        rows.append(row)
    return rows


def remove_parts(out: str | os.PathLike) -> None:
    for p in part_files(out):
        try:
            p.unlink()
        except FileNotFoundError:  # a second machine on the same shared folder removed it first
            pass


# ---- the plan ---------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """``entries``: in the order --out gets them, ("todo", k) for ``todo[k]``, ("done", result) for one a part file
    holds, ("failed", {"video", "error"}) for a path that could not be read; ``todo``: the videos to score, each
    {"video", "text", "start", "end", "batch", "png"}; ``held``: the results --out or the part files hold."""
    entries: list[tuple[str, object]] = field(default_factory=list)
    todo: list[dict] = field(default_factory=list)
    total: int = 0
    held: int = 0
    parts: list[Path] = field(default_factory=list)


def make_plan(paths, text: str | None, transcripts_path: str | None, out, batch_size: int, resume: bool,
              overwrite: bool, pngs=None) -> Plan:
    """What a run has to do (see the module's docstring). ``out``: the opened ResultsFile or None; ``pngs``: the
    run's TimelinePngs or None (each video to score gets its PNG name now, in input order, so that the names do
    not depend on which process draws them)."""
    from ..predict import gather_inputs, read_transcripts, transcript_for
    from .results_file import shown_path

    inputs, failures = gather_inputs(paths)
    plan = Plan(total=len(inputs) + len(failures))
    done: dict[str, deque] = defaultdict(deque)
    if out is not None:
        plan.parts = part_files(out.path)
        if plan.parts and overwrite:
            remove_parts(out.path)
            plan.parts = []
        elif plan.parts and not resume:
            names = ", ".join(p.name for p in plan.parts[:3]) + (", ..." if len(plan.parts) > 3 else "")
            raise UserError(f"--out {out.path}: an interrupted run with several processes left part files beside it "
                            f"({names}); add --resume to finish that run, or --overwrite to start over")
        in_out = Counter(out.held)  # a merge killed half-way: --out and a part file hold the same result
        for part in plan.parts:
            for row in read_part(part):
                if in_out[row["video"]] > 0:
                    in_out[row["video"]] -= 1
                else:
                    done[row["video"]].append(row)
    if pngs is not None:
        for rows in done.values():
            pngs.reserve(rows)
    transcripts = read_transcripts(transcripts_path) if transcripts_path else {}
    for pos, item in enumerate(inputs):
        video = shown_path(item["video"])
        if out is not None and out.skip(video):
            plan.held += 1
        elif done.get(video):
            plan.entries.append(("done", done[video].popleft()))
            plan.held += 1
        else:
            plan.entries.append(("todo", len(plan.todo)))
            plan.todo.append({"video": item["video"], "start": item["start"], "end": item["end"],
                              "text": transcript_for(item["video"], transcripts) or item["text"] or text,
                              "batch": pos // batch_size,
                              "png": pngs.name(video) if pngs is not None else None})
    for f in failures:
        if out is not None and out.skip(shown_path(f["video"])):
            plan.held += 1
        else:
            plan.entries.append(("failed", f))
    return plan


def batches_of(todo: list[dict], rank: int = 0, world: int = 1) -> tuple[list[int], list[list[int]]]:
    """Rank ``rank``'s share of ``todo``: its positions in ``todo`` and, over those, its batches (every
    ``world``-th batch of the one-process plan, starting at the ``rank``-th)."""
    groups: dict[int, list[int]] = {}
    for k, item in enumerate(todo):
        groups.setdefault(item["batch"], []).append(k)
    mine = [g for i, g in enumerate(groups.values()) if i % world == rank]
    positions = [k for g in mine for k in g]
    local, batches = 0, []
    for g in mine:
        batches.append(list(range(local, local + len(g))))
        local += len(g)
    return positions, batches


# ---- several processes ------------------------------------------------------------------------------------------

class _Stop(Exception):
    """Another rank met an error, which it reports; this rank leaves with the same exit status, silently."""


def _agree(error: str | None, world: int) -> None:
    """Every rank learns whether any rank met an error at this point; rank 0 reports the first one."""
    import torch.distributed as dist

    errors: list = [None] * world
    dist.all_gather_object(errors, error)
    first = next((e for e in errors if e), None)
    if first is None:
        return
    if dist.get_rank() == 0:
        raise UserError(first)
    raise _Stop


def run_sharded(args, predictor, text: str | None, png_dir: Path | None, state) -> int:
    """``predict --out`` as one rank of ``state`` (accelerate's PartialState). Every rank returns 0 when the run
    is complete, failed videos included (they are error rows of --out); 2 or 130 when the run stops."""
    try:
        return _Sharded(args, predictor, text, png_dir, state).run()
    except _Stop:
        return 2


class _Sharded:
    def __init__(self, args, predictor, text, png_dir, state):
        self.args, self.predictor, self.text, self.png_dir = args, predictor, text, png_dir
        self.rank, self.world, self.main = state.process_index, state.num_processes, state.is_main_process
        self.state = state
        self.out = self.plan = None

    def run(self) -> int:
        from accelerate.utils import broadcast_object_list

        from .predict_rows import TimelinePngs
        from .results_file import ResultsFile

        args, labels = self.args, self.predictor.labels
        # Rank 0 plans alone: one walk of the folders, one reading of --out and the part files; then every rank
        # gets the same list of videos to score.
        shared, error = [None], None
        if self.main:
            try:
                self.out = ResultsFile(args.out, labels, resume=args.resume, overwrite=args.overwrite)
                pngs = TimelinePngs(labels, self.png_dir, self.out) if self.png_dir is not None else None
                batch = args.batch_size or self.predictor.cfg.train.eval_batch_size
                self.plan = make_plan(args.paths, self.text, args.transcripts, self.out, batch, args.resume,
                                      args.overwrite, pngs)
                shared = [self.plan.todo]
            except UserError as e:
                error = str(e)
                if self.out is not None:
                    self.out.close()
        _agree(error, self.world)
        todo = broadcast_object_list(shared, from_process=0)[0]
        positions, batches = batches_of(todo, self.rank, self.world)

        part, error = None, None
        try:
            part = ResultsFile(part_path(args.out, self.rank), labels, resume=True)
        except UserError as e:
            error = f"rank {self.rank}: {e}"
        _agree(error, self.world)  # (a collective: every part file exists once it returns)
        if self.main:  # every rank's part file must be where rank 0 will read it
            missing = [str(part_path(args.out, r)) for r in range(self.world) if not part_path(args.out, r).exists()]
            error = (f"--out {args.out}: rank 0 cannot see the part file(s) {', '.join(missing)} that other "
                     "processes created: with several machines, --out must be in a folder they all share") \
                if missing else None
        _agree(error, self.world)
        import torch.distributed as dist

        starts: list = [None] * self.world
        dist.all_gather_object(starts, part.good)  # where this run's results begin in each part file

        try:
            self._score([todo[k] for k in positions], batches, part)
        except KeyboardInterrupt:
            part.close()
            if self.main:
                self.out.close()
                print(f"clipbert-emo predict: interrupted: the results scored so far are in the part files beside "
                      f"{args.out}; rerun the same command with --resume to score the rest", file=sys.stderr)
            return 130
        finally:
            part.close()
        self.state.wait_for_everyone()  # a rank with fewer videos waits here for the others
        if not self.main:
            return 0
        return self._merge(todo, starts)

    def _score(self, todo: list[dict], batches: list[list[int]], part) -> None:
        from tqdm.auto import tqdm

        from .results_file import shown_path

        args = self.args
        if not todo:
            return
        if self.png_dir is not None:
            self.png_dir.mkdir(parents=True, exist_ok=True)
        scored = self.predictor.predict_many(
            [t["video"] for t in todo], [t["text"] for t in todo], n_test=args.n_test, aggregation=args.aggregation,
            batch_size=args.batch_size, num_workers=args.workers if args.workers is not None else rank_workers(),
            spans=[(t["start"], t["end"]) for t in todo], progress=self.main and not args.quiet, batches=batches)
        try:
            for t, r in zip(todo, scored):
                r["video"] = shown_path(r["video"])
                if "error" in r:
                    r["error"] = shown_path(r["error"])
                    tqdm.write(f"clipbert-emo predict: cannot read {r['video']}: {r['error']}", file=sys.stderr)
                if self.png_dir is not None:
                    from .predict_rows import draw_timeline

                    draw_timeline(r, self.predictor.labels, self.png_dir, t["png"])
                part.add(r)
        finally:
            scored.close()

    def _merge(self, todo: list[dict], starts: list[int]) -> int:
        """Rank 0: --out in input order, from the part files; then the part files go."""
        from tqdm.auto import tqdm

        from .predict_rows import summarise_run, table_row
        from .results_file import shown_path

        args, out, plan = self.args, self.out, self.plan
        new: dict[int, dict] = {}
        for rank in range(self.world):
            positions, _ = batches_of(todo, rank, self.world)
            rows = read_part(part_path(args.out, rank), starts[rank])
            if len(rows) != len(positions):
                raise UserError(f"{part_path(args.out, rank)}: rank {rank} wrote {len(rows)} results for "
                                f"{len(positions)} videos; rerun the same command with --resume")
            new.update(zip(positions, rows))
        table = []
        try:
            for kind, what in plan.entries:
                if kind == "done":
                    out.add(what)
                    continue
                if kind == "todo":
                    r = new[what]
                else:
                    r = {"video": shown_path(what["video"]), "error": shown_path(what["error"])}
                    tqdm.write(f"clipbert-emo predict: cannot read {r['video']}: {r['error']}", file=sys.stderr)
                out.add(r)
                if args.json:
                    say(json.dumps(r))
                table.append(table_row(r))
        finally:
            out.close()
        remove_parts(args.out)
        summarise_run(args, table, plan.held, out.path, self.png_dir)
        # Not 1 for a video that failed, as one process gives: the launcher reports a rank's non-zero status as
        # a crash of the whole run, with a traceback. The failed videos are in --out and the line above.
        return 0
