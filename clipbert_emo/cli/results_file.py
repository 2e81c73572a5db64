"""``predict --out``: every video's result written as soon as it is scored, so a run that is interrupted, killed
or stopped by a full disk keeps what it did and a rerun with ``--resume`` scores only the rest.

At every moment the file is valid: JSONL and CSV get one whole line (record) per video, appended with a single
write, and a write that fails half-way is cut back; JSON, one document, is rewritten beside the file and renamed
over it (config/atomic.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time
from collections import Counter
from pathlib import Path

from ..config.errors import OutputError, UserError, describe_os_error

FORMATS = (".jsonl", ".csv", ".json")
# JSON is rewritten whole for each result; at most this often, so a long run does not rewrite a growing file
# for every video (close() always writes what is left).
JSON_REWRITE_S = 1.0


def shown_path(text):
    """``text`` as it can be written to any UTF-8 file or terminal: a file name whose bytes are not UTF-8 (Python
    holds them as lone surrogates) gets ``\\xff`` escapes for those bytes. Other values pass through."""
    if not isinstance(text, str):
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


class ResultsFile:
    """The ``--out`` file of a predict run. ``held`` counts the videos (as written) it already holds when resumed;
    ``written`` is the number of results in the file now."""

    def __init__(self, path: str | os.PathLike, labels: list[str], resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        self.columns = ["video", "text", "prediction", *[f"p_{lab}" for lab in labels], "num_clips", "aggregation",
                        "no_face_frames", "error", "timeline"]
        self.labels = labels
        self.fd: int | None = None
        self.json_rows: list[str] = []  # JSON: each result serialised once
        self.dirty, self.last_rewrite, self.closed = False, 0.0, False
        if self.kind not in FORMATS:
            raise UserError(f"--out {self.path}: give a file name ending in .jsonl, .csv or .json")
        if resume and overwrite:
            raise UserError("--resume and --overwrite exclude each other: --resume keeps --out's results, "
                            "--overwrite drops them")
        folder = self.path.parent
        if not folder.is_dir():
            raise OutputError(f"--out {self.path}: folder {folder} does not exist; create it or choose another path")
        held_rows: list[dict] = []
        if self._existing_size() and not overwrite:
            held_rows = self._read_held(truncate=resume)
            if held_rows and not resume:
                raise UserError(f"--out {self.path} already holds {len(held_rows)} result(s); add --resume to score "
                                "only the videos it lacks, or --overwrite to replace it")
        self.held_rows = held_rows
        self.held = Counter(r["video"] for r in held_rows)
        self.written = len(held_rows)
        try:
            self._open(truncate=overwrite or not held_rows)  # a file without results (a header, []) starts over
        except OSError as e:
            raise OutputError(f"{describe_os_error(e, f'--out {self.path}')}; choose another path or fix it") from None

    # ---- opening ------------------------------------------------------------------------------------------------

    def _existing_size(self) -> int:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise OutputError(describe_os_error(e, f"--out {self.path}")) from None
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"--out {self.path} is a folder; give a file name ending in .jsonl, .csv or .json")
        if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):  # opening it would wait for a reader
            raise UserError(f"--out {self.path} is not a regular file (a FIFO or socket); give a file name")
        return st.st_size if stat.S_ISREG(st.st_mode) else 0  # a device (/dev/null) holds nothing to resume

    def _read_held(self, truncate: bool) -> list[dict]:
        """The results already in the file. A last line cut short (a killed write) is dropped, and with ``truncate``
        cut from the file, so appending goes on from a whole line."""
        raw = self.path.read_bytes()
        keep = len(raw)
        if self.kind != ".json" and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
        text = raw[:keep].decode("utf-8", "surrogateescape")
        where = f"--out {self.path}"
        fix = "fix or delete it, or use --overwrite"
        if self.kind == ".json":
            try:
                rows = json.loads(text)
            except ValueError as e:
                raise UserError(f"{where}: not a JSON document ({e}); {fix}") from None
            if not isinstance(rows, list):
                raise UserError(f"{where}: not a list of results; {fix}")
        elif self.kind == ".jsonl":
            rows = []
            for lineno, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        raise UserError(f"{where}:{lineno}: not a JSON result line; {fix}") from None
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows = list(reader)
            if rows and reader.fieldnames != self.columns:
                raise UserError(f"{where}: its columns are not this checkpoint's ({', '.join(reader.fieldnames[:6])}"
                                f"...: another model's labels?); use another file or --overwrite")
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not isinstance(row.get("video"), str):
                raise UserError(f"{where}: result {i} has no \"video\"; {fix}")
        if truncate and keep < len(raw):
            os.truncate(self.path, keep)
        if self.kind == ".json":
            self.json_rows = [json.dumps(r) for r in rows]
        return rows

    def _open(self, truncate: bool) -> None:
        """Open (create) the file now, so that a folder that cannot be written fails before any video is scored."""
        if self.kind == ".json":
            self._rewrite()
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.fd = os.open(self.path, flags, 0o644)
        self.good = os.lseek(self.fd, 0, os.SEEK_END)  # the end of the last whole line
        if self.kind == ".csv" and self.good == 0:
            self._append(self._csv_line(dict(zip(self.columns, self.columns))))

    # ---- writing -------------------------------------------------------------------------------------------------

    def skip(self, video: str) -> bool:
        """Whether ``video`` (as written) is held already (counted once per time it is held)."""
        if self.held[video] > 0:
            self.held[video] -= 1
            return True
        return False

    def add(self, result: dict) -> None:
        """Write one video's result; an OSError (disk full, ...) is an OutputError naming the file, and the file
        keeps every result before this one."""
        try:
            if self.kind == ".jsonl":
                self._append(json.dumps(result) + "\n")
            elif self.kind == ".csv":
                self._append(self._csv_line(self._csv_row(result)))
            else:
                self.json_rows.append(json.dumps(result))
                self.dirty = True
                if time.monotonic() - self.last_rewrite >= JSON_REWRITE_S:
                    self._rewrite()
                return  # counted once in the file
            self.written += 1
        except OSError as e:
            raise self._write_error(e) from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.kind == ".json" and self.dirty:
                self._rewrite()
        except OSError as e:
            raise self._write_error(e) from None
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def _write_error(self, e: OSError) -> OutputError:
        del self.json_rows[self.written:]  # .json: what is not in the file is not written by close() either
        self.dirty = False
        return OutputError(f"{describe_os_error(e, f'--out {self.path}')}; the {self.written} result(s) written "
                           "before it are kept: fix that and rerun the same command with --resume")

    def _append(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except BaseException:  # a full disk, or Ctrl-C, half-way through the line: the line goes, the file stays
            try:
                os.ftruncate(self.fd, self.good)
            except OSError:  # a device (/dev/full) cannot be cut; a regular file can
                pass
            raise
        self.good += len(data)

    def _rewrite(self) -> None:
        from ..config.atomic import atomic_path

        n = len(self.json_rows)
        with atomic_path(self.path) as tmp:
            tmp.write_text("[\n" + ",\n".join(self.json_rows) + "\n]\n" if n else "[]\n", encoding="utf-8")
        self.written, self.dirty, self.last_rewrite = n, False, time.monotonic()

    def _csv_row(self, r: dict) -> dict:
        row = {k: r.get(k) for k in ("video", "text", "num_clips", "aggregation", "error")}
        pred = r.get("prediction")
        row["prediction"] = pred if isinstance(pred, (str, int, float)) or pred is None else json.dumps(pred)
        probs = r.get("probabilities") or {}
        row.update({f"p_{lab}": probs[lab] for lab in self.labels if isinstance(probs.get(lab), float)})
        if "face_crop" in r:
            row["no_face_frames"] = r["face_crop"]["no_face_frames"]
        if "timeline" in r:
            row["timeline"] = json.dumps(r["timeline"])
        return row

    def _csv_line(self, row: dict) -> str:
        buf = io.StringIO(newline="")
        csv.DictWriter(buf, self.columns, extrasaction="ignore").writerow(row)
        return buf.getvalue()
