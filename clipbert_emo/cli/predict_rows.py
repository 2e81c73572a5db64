"""What a many-video predict run shows and draws: its table rows, its summary line and exit status, and the timeline
PNGs named in input order. cli/predict.py (one process) and cli/predict_parts.py (several) both use them."""

from __future__ import annotations

from pathlib import Path

from .common import say


def summarise_run(args, rows: list[dict], held: int, out_path, png_dir) -> int:
    """The table of a many-video run (unless --json) and its exit status: 1 if a video failed."""
    failed = sum(1 for row in rows if "error" in row)
    if not args.json:
        from ..eval.report import format_table

        cols = ["video", "prediction", "p_top", "clips"] + [c for c in ("no_face_frames", "error")
                                                            if any(c in row for row in rows)]
        if rows:
            say(format_table(rows, cols))
        say(f"{len(rows) - failed} of {len(rows)} videos scored" + (f", {failed} failed" if failed else "")
            + (f"; {held} already in {out_path} (--resume)" if held else "")
            + (f"; written: {out_path}" if out_path is not None else "")
            + (f"; timelines in {png_dir}" if png_dir else ""))
    return 1 if failed else 0


def table_row(r: dict) -> dict:
    row = {"video": r["video"], "prediction": r.get("prediction", "FAILED")}
    if isinstance(r.get("prediction"), str):
        row["p_top"] = r["probabilities"][r["prediction"]]
        row["clips"] = r["n_test"]
    if "face_crop" in r:
        row["no_face_frames"] = f"{r['face_crop']['no_face_frames']}/{r['face_crop']['frames']}"
    if "error" in r:
        row["error"] = r["error"][:80]
    return row


class TimelinePngs:
    """One timeline PNG per video, named after it; the same file name in two folders gets _2, _3, ... (including
    the names a resumed --out already used)."""

    def __init__(self, labels: list[str], folder: Path, out=None):
        self.labels, self.folder = labels, folder
        self.used: set[str] = set()
        self.reserve(out.held_rows if out is not None else ())

    def reserve(self, rows) -> None:
        """The names earlier runs gave (--resume), not given again."""
        for row in rows:
            if row.get("timeline") and not row.get("error"):
                self.name(row["video"])

    def name(self, video: str) -> str:
        """A free name for ``video``'s PNG, taken now (the videos get theirs in input order, before any is scored,
        so that the names do not depend on which process draws which video)."""
        stem = Path(video).stem or "video"
        name, k = stem, 1
        while name in self.used:
            k += 1
            name = f"{stem}_{k}"
        self.used.add(name)
        return name

    def draw(self, r: dict, name: str) -> None:
        draw_timeline(r, self.labels, self.folder, name)


def draw_timeline(r: dict, labels: list[str], folder: Path, name: str) -> None:
    """``r``'s timeline to ``folder/name.png``, named in ``r["timeline_png"]`` (nothing for a failed video)."""
    from ..predict import plot_timeline

    if "probabilities" not in r.get("timeline", {}):
        return
    path = folder / f"{name}.png"
    plot_timeline(r, labels, path)
    r["timeline_png"] = str(path)
