"""What the ``clipbert-emo`` subcommands share: where their answer is printed, argument parsers and checks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config.choices import SEEK_MODES

OVERRIDES_HELP = "config overrides as key.sub=value, e.g. train.epochs=5 data.frame_size=224"

# What a command was asked for (tables, JSON) goes to the real stdout through say(); everything else that
# prints while a command runs (libraries' warnings included) is sent to stderr, so `--json | jq` works.
_STDOUT = sys.stdout


def say(*parts, **kwargs) -> None:
    print(*parts, file=_STDOUT, **kwargs)


def positive(name: str, least: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{name} must be >= {least}, got {value}")
        return value
    return parse


def non_negative(name: str):
    return positive(name, least=0)


def utf8_text(text: str | None, what: str) -> str | None:
    """Command-line text as given; a value that is not valid UTF-8 is refused rather than mangled."""
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            from ..config import UserError

            raise UserError(f"{what} is not valid UTF-8 text; re-encode it (e.g. iconv -t utf-8)") from None
    return text


def png_path(path: str | None, what: str) -> str | None:
    from ..config import UserError

    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name ending in .png")
    if p.parent != Path("") and not p.parent.is_dir():
        raise UserError(f"{what} {path}: folder {p.parent} does not exist")
    return path


def answer_stream():
    """The stream a command's answer goes to (what say() writes to)."""
    return _STDOUT


def set_stdout(stream) -> None:
    """The stream say() writes to: the real stdout as main() found it (it sends everything else to stderr)."""
    global _STDOUT
    _STDOUT = stream


def to_stdout(command):
    """A command whose own prints are its answer (a table): they go to the real stdout, not to stderr."""
    def run(args) -> int:
        from contextlib import redirect_stdout

        with redirect_stdout(_STDOUT):
            return command(args)
    return run


def print_eval_summary(result: dict, task) -> None:
    """The evaluation's table, one row per aggregation with the task kind's headline numbers, and what was skipped."""
    from ..eval.report import format_table, summary_rows

    rows = summary_rows(result, task)
    say(format_table(rows, list(rows[0].keys())))
    if result["skipped"]:
        say(f"skipped {len(result['skipped'])} sample(s): " + "; ".join(f"{w}: {r}" for w, r in result["skipped"][:5]))


def add_common(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log every epoch's metrics")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, show the full traceback instead of the one-line message")


def add_speed_options(s: argparse.ArgumentParser, default_seek: str | None) -> None:
    """--seek and --threads, which predict and evaluate share (with different default seek modes)."""
    s.add_argument("--seek", choices=SEEK_MODES, default=default_seek,
                   help="where clips sit in the video: keyframe = a clip starts on a keyframe where one lies "
                        "within a quarter of the clip spacing, else exactly where sampled (the clips never bunch "
                        "up; faster where keyframes are dense, as in 1-2 s GOP encodes; the frames read are "
                        "reported), accurate = exactly the evenly spaced frames (reproducible numbers) (default: "
                        + (default_seek or "the checkpoint's data.seek, accurate unless trained otherwise") + ")")
    s.add_argument("--threads", type=positive("--threads"), default=None,
                   help="torch CPU threads (default: the cores not kept busy by other processes; OMP_NUM_THREADS "
                        "when set)")
