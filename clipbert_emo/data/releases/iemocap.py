"""IEMOCAP (Busso et al., 2008), IEMOCAP_full_release as distributed: five sessions of dyadic
dialogues, each dialogue one DivX video of both actors with its sound, its utterances' spans and
labels in dialog/EmoEvaluation/ and their words in dialog/transcriptions/ (``IEMOCAP.layout``).

One utterance per header line of Session<k>/dialog/EmoEvaluation/<dialogue>.txt
("[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]"): the video is
the dialogue's avi, start/end the span, the text the line of the same utterance id in
transcriptions/<dialogue>.txt (lines of no utterance, such as "M: [BREATHING]", are ignored; an
utterance without a line gets no text), and the audio the per-utterance
sentences/wav/<dialogue>/<utterance>.wav where present (else the avi's own track); that WAV begins
at the utterance's start, which extra["audio_offset"] records.

Targets (data.target): "4class" (also "", the usual one in the literature): neutral, happy (the
release's hap and exc merged), sad, angry; "6class": neutral, happy, sad, angry, excited,
frustrated. Utterances with another label (fea, sur, dis, oth, xxx = no majority, and fru in the
4-class set) are skipped and counted, the reason naming the label.

Folds (data.fold = 1..5), leave one session out as the literature evaluates IEMOCAP: test is
Session <fold>; train and val are the other four sessions, val being one utterance in five of
them, picked by a checksum of the utterance id (SUPERB's emotion task holds out 20% of the
training sessions at random the same way, and training keeps all four sessions as most papers
do). The pick depends on the id only, so it does not move with data.target, data.labels or
files that are missing.

Skipped and reported: malformed header lines (with the train split, whose val part cannot be told
from the line), labels outside the target's set or data.labels, with data.use_video utterances
whose dialogue video is missing or whose span does not lie inside it (each dialogue's video is
opened once for its length; the loader would otherwise stop the run on such a span), and with
data.use_audio alone those with neither their WAV nor the video.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

from ...config import ConfigError, DataConfig
from ..decode import ClipSpanError, check_span, video_duration
from ..manifest import Manifest, ManifestError, Sample
from .common import STRAY_BYTES, Release, Skips, finish, label_indices, need_labels, need_task

IEMOCAP_4CLASS = ("neutral", "happy", "sad", "angry")
IEMOCAP_6CLASS = ("neutral", "happy", "sad", "angry", "excited", "frustrated")

# data.target -> (its classes, the release's categorical code -> class). The 4-class set merges
# excited into happy, as most IEMOCAP papers since Poria et al. (2017) do, for 1636 hap+exc utterances.
IEMOCAP_TARGETS = {
    "4class": (IEMOCAP_4CLASS, {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}),
    "6class": (IEMOCAP_6CLASS, {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited",
                                "fru": "frustrated"}),
}
# What the release's codes mean, for the skip report.
IEMOCAP_CODES = {"neu": "neutral", "hap": "happiness", "sad": "sadness", "ang": "anger", "exc": "excitement",
                 "fru": "frustration", "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other",
                 "xxx": "no majority among the evaluators"}
IEMOCAP_SESSIONS = (1, 2, 3, 4, 5)
VAL_ONE_IN = 5  # one utterance in five of the training sessions is val (20%, as SUPERB)

IEMOCAP = Release("IEMOCAP", """\
    <root>/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt ...     (spans, labels, [V, A, D])
    <root>/Session1/dialog/transcriptions/Ses01F_impro01.txt ...    (the words)
    <root>/Session1/dialog/avi/DivX/Ses01F_impro01.avi ...          (the videos, with sound)
    <root>/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav ...  (optional)
    <root>/Session2/ ... <root>/Session5/ alike""")

# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"; spaces tolerated for tabs.
_HEADER = re.compile(r"\[\s*([0-9.]+)\s*-\s*([0-9.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_TRANSCRIPT = re.compile(r"(Ses[^\s\[]+)\s*\[[^\]]*\]:\s?(.*)")


def _lines(path: Path) -> list[str]:
    # A stray non-UTF-8 byte comes back as its latin-1 character instead of stopping the read.
    return path.read_text(encoding="utf-8", errors="surrogateescape").translate(STRAY_BYTES).splitlines()


def _transcripts(path: Path) -> dict[str, str]:
    texts = {}
    for line in _lines(path):
        m = _TRANSCRIPT.fullmatch(line.strip())
        if m:
            texts[m.group(1)] = " ".join(m.group(2).split())
    return texts


def _in_val(utterance: str) -> bool:
    # crc32, not hash(): Python salts str hashes per process, and the split must be the same in every run.
    return zlib.crc32(utterance.encode()) % VAL_ONE_IN == 0


def _span_problem(video: Path, start: float, end: float) -> str | None:
    """What is wrong with the span, judged as the loader will judge it (check_span); None = fine."""
    duration = video_duration(str(video))  # measured once per file: train and val share the sessions
    if duration is None:
        return None
    try:
        check_span(start, end, duration, "span")
    except ClipSpanError as e:  # "span: <problem>; fix the start/end seconds"
        return str(e).removeprefix("span: ").split("; fix ")[0]
    return None


def _fold_sessions(cfg: DataConfig, split: str) -> tuple[int, ...]:
    if cfg.fold not in IEMOCAP_SESSIONS:
        raise ConfigError(f"data.fold={cfg.fold}: IEMOCAP is evaluated leave-one-session-out; set data.fold to one "
                          f"of 1..5, the session held out for testing (run all five for the usual averages)")
    if split == "test":
        return (cfg.fold,)
    return tuple(k for k in IEMOCAP_SESSIONS if k != cfg.fold)


def read_iemocap(cfg: DataConfig, split: str) -> Manifest:
    target = cfg.target or "4class"
    if target not in IEMOCAP_TARGETS:
        raise ConfigError(f"data.target={target!r}: IEMOCAP has targets 4class (neutral, happy = hap + exc, sad, "
                          f"angry; the default) and 6class (adds excited and frustrated)")
    need_task(cfg, ("single_label",), f"data.target={target}")
    vocabulary, code_to_class = IEMOCAP_TARGETS[target]
    need_labels(cfg, vocabulary, f"IEMOCAP's {target} set")
    sessions = _fold_sessions(cfg, split)
    root = IEMOCAP.root(cfg)
    label_index = label_indices(cfg)
    samples: list[Sample] = []
    skips = Skips(cfg.strict)
    for k in sessions:
        session = root / f"Session{k}"
        evaluations = IEMOCAP.need(session / "dialog" / "EmoEvaluation", is_dir=True)
        # Only the folder's own <dialogue>.txt: its Categorical/, Attribute/ and Self-evaluation/ subfolders hold
        # each evaluator's files, and copies unpacked on a Mac carry "._" resource files.
        dialogues = sorted(p for p in evaluations.glob("*.txt") if p.is_file() and not p.name.startswith("."))
        if not dialogues:
            raise ManifestError(f"IEMOCAP release incomplete: no <dialogue>.txt in {evaluations}. data.root must "
                                f"hold the release as distributed:\n{IEMOCAP.layout}")
        for evaluation in dialogues:
            samples.extend(_read_dialogue(cfg, split, k, evaluation, target, code_to_class, label_index, skips))
    return finish(root, split, samples, skips)


def _read_dialogue(cfg: DataConfig, split: str, session_number: int, evaluation: Path, target: str,
                   code_to_class: dict[str, str], label_index: dict[str, int], skips: Skips) -> list[Sample]:
    dialogue = evaluation.stem
    folder = evaluation.parent.parent  # Session<k>/dialog
    texts = _transcripts(IEMOCAP.need(folder / "transcriptions" / f"{dialogue}.txt"))
    video = folder / "avi" / "DivX" / f"{dialogue}.avi"
    has_video = video.is_file()
    wav_dir = folder.parent / "sentences" / "wav" / dialogue
    wavs = {name for name in os.listdir(wav_dir) if name.endswith(".wav")} if wav_dir.is_dir() else set()
    rows = []
    for lineno, line in enumerate(_lines(evaluation), start=1):
        if not line.startswith("["):
            continue  # evaluator lines (C-E2:, A-F1: ...), the "%" header, blank lines
        where = f"{evaluation}:{lineno}"
        m = _HEADER.match(line)
        try:
            start, end = float(m.group(1)), float(m.group(2))
            vad = [float(x) for x in m.group(5).split(",")]
        except (AttributeError, ValueError):  # AttributeError: no match at all
            start = end = vad = None
        if vad is None or end <= start or len(vad) != 3:
            # Which of train / val it belongs to is unknown: listed with train only, so a run counts it once.
            if split != "val":
                skips.add(where, f"malformed line: {line.strip()[:80]!r}")
            continue
        utterance, code = m.group(3), m.group(4)
        if split != "test" and _in_val(utterance) != (split == "val"):
            continue  # the other one of train / val
        rows.append((start, utterance, code, end, vad, where))
    samples = []
    for start, utterance, code, end, vad, where in sorted(rows):
        name = code_to_class.get(code)
        if name is None:
            skips.add(where, f"label not in the {target} set: {code!r} ({IEMOCAP_CODES.get(code, 'unknown code')})")
            continue
        if name not in label_index:
            skips.add(where, f"label not in data.labels: {name!r} ({code!r})")
            continue
        if cfg.use_video:
            if not has_video:
                skips.add(where, f"video file not found: {video}")
                continue
            problem = _span_problem(video, start, end)
            if problem:
                skips.add(where, f"span outside the video: {problem}")
                continue
        wav = f"{utterance}.wav" if f"{utterance}.wav" in wavs else None
        if cfg.use_audio and not wav and not has_video:  # sound only, from neither file
            skips.add(where, f"audio file not found: neither {wav_dir / f'{utterance}.wav'} nor {video}")
            continue
        extra = {"session": session_number, "dialogue": dialogue, "utterance": utterance,
                 # Ses01F_impro01_M000 is said by the male actor of session 1, whoever wore the markers (the F).
                 "speaker": f"Ses{session_number:02d}{utterance.rsplit('_', 1)[-1][:1]}",
                 "emotion": code, "vad": vad}
        if wav:
            # The utterance's own recording begins at its start, not at the dialogue video's time 0.
            extra["audio_offset"] = start
        samples.append(Sample(video=str(video) if has_video else None, text=texts.get(utterance, ""),
                              label=label_index[name], start=start, end=end, source=where,
                              audio=str(wav_dir / wav) if wav else None, extra=extra))
    return samples
