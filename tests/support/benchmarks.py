"""Tiny copies of public benchmark releases, in each release's real on-disk layout.

Each ``write_*`` function builds one release under ``root`` with a handful of samples and the
defects the real release has (a missing clip, a zero-byte clip, mojibake, stray rows), so the
readers in clipbert_emo/data/releases/ are tested against the files users actually unpack.
Videos are real: 32 px, 6 frames, written once per process and copied.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import tempfile
from pathlib import Path

import numpy as np

SIZE = 32
FRAMES = 6


@functools.lru_cache(maxsize=None)
def _template(kind: str) -> bytes:
    """Bytes of one tiny video ("mp4": H.264, "avi": MPEG-4 part 2 in AVI) or image ("jpg", "png", ...)."""
    frames = np.stack([np.full((SIZE, SIZE, 3), 20 + 40 * i, np.uint8) for i in range(FRAMES)])  # (F, H, W, 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t.{kind}"
        if kind == "mp4":
            from clipbert_emo.synthemo import write_mp4

            write_mp4(path, frames, 8.0)
        elif kind == "avi":
            import av

            with av.open(str(path), "w", format="avi") as container:
                stream = container.add_stream("mpeg4", rate=8)
                stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
        elif kind == "gif":  # an animated GIF, as TGIF distributes its clips
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            images[0].save(path, save_all=True, append_images=images[1:], duration=125, loop=0)
        else:
            from PIL import Image

            Image.fromarray(frames[-1]).save(path)
        return path.read_bytes()


def put(path: Path, kind: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_template(kind or path.suffix.lstrip(".").lower().replace("jpeg", "jpg")))
    return path


def _csv(path: Path, header: list[str], rows: list[list], header_line: str | None = None) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header_line is None:
        writer.writerow(header)
    else:
        out.write(header_line + "\n")
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# MELD.Raw

MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
               "Episode", "StartTime", "EndTime"]
STRAY_APOSTROPHE = "@@92@@"  # written as the raw cp1252 byte 0x92, which is not UTF-8


def write_meld(root: Path) -> Path:
    """train: 5 usable rows (dia125_utt3 is a zero-byte clip, left for the loader) + 1 malformed;
    dev: 2 usable + dia110_utt7 without its clip; test: 2."""
    t = ["8", "21", "00:16:16,059", "00:16:21,731"]
    train = [
        ["1", f"also I was the point person on my company{STRAY_APOSTROPHE}s transition", "Chandler", "neutral",
         "neutral", "0", "0", *t],
        ["2", "You must\u00e2\u20ac\u2122ve had your hands full.", "The Interviewer", "neutral", "neutral", "0", "1",
         *t],
        ["3", "That I did. That I did.", "Chandler", "surprise", "positive", "0", "2", *t],
        ["4", "Oh my God!", "Ross", "disgust", "negative", "1", "0", *t],
        ["5", "Whatever.", "Rachel", "anger", "negative", "125", "3", *t],
        ["6", "No ids here.", "Joey", "joy", "positive", "", "4", *t],
    ]
    dev = [
        ["1", "Oh, what\u2019s up?", "Phoebe", "joy", "positive", "0", "0", *t],
        ["2", "Not much.", "Monica", "sadness", "negative", "0", "1", *t],
        ["3", "This clip is missing in the real release.", "Joey", "fear", "negative", "110", "7", *t],
    ]
    test = [
        ["1", "Why do all your coffee mugs have numbers on the bottom?", "Mark", "surprise", "positive", "0", "0", *t],
        ["2", "Oh. That\u2019s so Monica can keep track.", "Rachel", "joy", "positive", "0", "1", *t],
    ]
    for name, rows, clips in (("train", train, "train_splits"), ("dev", dev, "dev_splits_complete"),
                              ("test", test, "output_repeated_splits_test")):
        path = _csv(root / f"{name}_sent_emo.csv", MELD_HEADER, rows)
        path.write_bytes(path.read_bytes().replace(STRAY_APOSTROPHE.encode(), b"\x92"))
        for row in rows:
            dia, utt = row[5], row[6]
            if not dia or (dia, utt) == ("110", "7"):
                continue
            clip = root / clips / f"dia{dia}_utt{utt}.mp4"
            if (dia, utt) == ("125", "3"):
                clip.parent.mkdir(parents=True, exist_ok=True)
                clip.write_bytes(b"")
            else:
                put(clip)
    return root


# ---------------------------------------------------------------------------------------------
# CMU-MOSI / CMU-MOSEI / CH-SIMS, MMSA raw layout

MMSA_HEADER = ["video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode"]
MOSEI_EMOTION_COLUMNS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
# (video_id, clip_id, text, score on [-3, 3], mode, clip file present, emotion intensities)
MMSA_ROWS = [
    ("03bSnISJMiM", 1, "this movie was great", 2.4, "train", True, [1.0, 0, 0, 0.33, 0, 0]),
    ("03bSnISJMiM", 2, "i hated every minute", -1.8, "train", True, [0, 0.67, 1.33, 0, 0.33, 0]),
    ("0h-zjBukYpk", 1, "it was fine i guess", 0.0, "train", True, [0, 0, 0, 0, 0, 0]),
    ("0h-zjBukYpk", 2, "meh", -0.5, "train", True, [0, 0.33, 0, 0, 0, 0]),
    ("1DmNV9C1hbY", 1, "the clip of this row is missing", 1.0, "valid", False, [0.33, 0, 0, 0, 0, 0]),
    ("1DmNV9C1hbY", 2, "absolutely wonderful", 3.0, "valid", True, [2.0, 0, 0, 0, 0, 0]),
    ("2iHGV1TDI1w", 1, "score is not a number", "n/a", "test", True, [0, 0, 0, 0, 0, 0]),
    ("2iHGV1TDI1w", 2, "terrible", -2.6, "test", True, [0, 1.0, 0.67, 0, 0, 0.33]),
]


def write_mmsa(root: Path, scale: float = 3.0, emotions: bool = False, zero_padded_clips: bool = False) -> Path:
    """label.csv + Raw/<video_id>/<clip_id>.mp4. ``scale`` 1.0 gives CH-SIMS's [-1, 1] scores;
    ``zero_padded_clips`` names the files 0001.mp4 while label.csv says 1 (a CSV re-saved by a
    spreadsheet); ``emotions`` adds CMU-MOSEI's six emotion columns."""
    header = MMSA_HEADER + (MOSEI_EMOTION_COLUMNS if emotions else [])
    rows = []
    for video_id, clip_id, text, score, mode, present, emo in MMSA_ROWS:
        value = score if isinstance(score, str) else round(score * scale / 3.0, 4)
        polarity = "" if isinstance(value, str) else "Positive" if value > 0 else "Negative" if value < 0 else "Neutral"
        rows.append([video_id, clip_id, text, value, value, value, value, polarity, mode]
                    + (emo if emotions else []))
        if present:
            put(root / "Raw" / video_id / (f"{clip_id:04d}.mp4" if zero_padded_clips else f"{clip_id}.mp4"))
    _csv(root / "label.csv", header, rows)
    return root


# ---------------------------------------------------------------------------------------------
# DAiSEE

DAISEE_HEADER_LINE = "ClipID,Boredom,Engagement,Confusion,Frustration "  # the release's trailing space


def write_daisee(root: Path) -> Path:
    """Train: 3 usable clips (one listed as .mp4 and stored as .mp4 under another subject's folder),
    one without a file, one with a level outside 0..3; Validation and Test: one clip each."""
    labels = {
        "Train": [["1100011002.avi", 0, 2, 0, 0], ["1100011003.avi", 1, 3, 1, 0], ["5000441001.mp4", 2, 1, 3, 1],
                  ["1100011004.avi", 0, 2, 0, 0], ["1100011005.avi", 0, 7, 0, 0]],
        "Validation": [["4000221001.avi", 3, 0, 2, 2]],
        "Test": [["5000221011.avi", 1, 1, 1, 3]],
    }
    files = {"Train": ["110001/1100011002/1100011002.avi", "110001/1100011003/1100011003.avi",
                       "500045/5000441001/5000441001.mp4", "110001/1100011005/1100011005.avi"],
             "Validation": ["400022/4000221001/4000221001.avi"],
             "Test": ["500022/5000221011/5000221011.avi"]}
    for split, rows in labels.items():
        _csv(root / "Labels" / f"{split}Labels.csv", [], rows, header_line=DAISEE_HEADER_LINE)
        for rel in files[split]:
            put(root / "DataSet" / split / rel)
    return root


# ---------------------------------------------------------------------------------------------
# FER2013

def _pixels(seed: int, n: int = 48 * 48) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, n)))


FER_ROWS = [  # (emotion, pixels, Usage); CSV line = index + 2
    ("0", _pixels(0), "Training"),
    ("3", _pixels(1), "Training"),
    ("6", _pixels(2, 48 * 48 - 1), "Training"),  # one value short
    ("4", _pixels(3).replace("7", "x", 1), "Training"),  # not an integer
    ("5", _pixels(4), "PublicTest"),
    ("1", _pixels(5), "PrivateTest"),
    ("2", _pixels(6), "PrivateTest"),
]


def write_fer2013(root: Path) -> Path:
    return _csv(root / "fer2013.csv", ["emotion", "pixels", "Usage"], [list(r) for r in FER_ROWS]).parent


# ---------------------------------------------------------------------------------------------
# image folders

IMAGE_FOLDER_FILES = {
    "train": ["happy/a.jpg", "happy/b.png", "sad/c.bmp", "contempt/d.jpg", "readme.txt", "sad/notes.txt"],
    "val": ["sad/e.webp", "happy/f.jpeg"],
    "test": ["happy/g.jpg"],
}


def write_image_folder(root: Path) -> Path:
    for split, files in IMAGE_FOLDER_FILES.items():
        for rel in files:
            path = root / split / rel
            if path.suffix == ".txt":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("not an image\n")
            else:
                put(path)
    return root


# ---------------------------------------------------------------------------------------------
# COCO captions 2017

def write_coco(root: Path) -> Path:
    """train2017: images 9 and 25 with two captions each, but 25.jpg is absent; val2017: image 139."""
    info = {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017}
    licenses = [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}]

    def image(i: int) -> dict:
        return {"license": 1, "file_name": f"{i:012d}.jpg", "coco_url": "", "height": SIZE, "width": SIZE,
                "date_captured": "2013-11-14 11:18:45", "flickr_url": "", "id": i}

    subsets = {
        "train2017": ([9, 25], [(9, 48, "A man riding a wave on top of a surfboard."),
                                (9, 67, "  A plate of food   with broccoli. "),
                                (25, 126, "A giraffe eating food from the top of the tree."),
                                (25, 219, "A tall giraffe standing next to a tree.")], [9]),
        "val2017": ([139], [(139, 370, "A woman stands in the dining area at the table."),
                            (139, 3003, "A room with chairs, a table, and a woman in it.")], [139]),
    }
    for subset, (ids, captions, present) in subsets.items():
        ann = {"info": info, "licenses": licenses, "images": [image(i) for i in ids],
               "annotations": [{"image_id": i, "id": a, "caption": c} for i, a, c in captions]}
        path = root / "annotations" / f"captions_{subset}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ann))
        (root / subset).mkdir(parents=True, exist_ok=True)
        for i in present:
            put(root / subset / f"{i:012d}.jpg")
    return root


# ---------------------------------------------------------------------------------------------
# Visual Genome region descriptions

def write_visual_genome(root: Path) -> Path:
    """Images 1 (VG_100K) and 2 (absent) are train, 100 (VG_100K_2) is held out for val/test."""
    def region(image_id: int, region_id: int, phrase: str) -> dict:
        return {"region_id": region_id, "width": 10, "height": 8, "image_id": image_id, "phrase": phrase,
                "y": 3, "x": 4}

    entries = [
        {"id": 1, "regions": [region(1, 1382, "the clock is green in colour"),
                              region(1, 1383, "shade is along the street "), region(1, 1384, "")]},
        {"id": 2, "regions": [region(2, 1520, "man is wearing sneakers")]},
        {"id": 100, "regions": [region(100, 9001, "a white plate on a table"),
                                region(100, 9002, "two forks")]},
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "region_descriptions.json").write_text(json.dumps(entries))
    put(root / "VG_100K" / "1.jpg")
    put(root / "VG_100K_2" / "100.jpg")
    return root


# ---------------------------------------------------------------------------------------------
# IEMOCAP_full_release

IEMOCAP_SECONDS = 4.0  # each dialogue video: 32 frames of 32x24 at 8 fps, with a sound track
IEMOCAP_DIALOGUES = {1: "Ses01F_impro01", 2: "Ses02M_impro02", 3: "Ses03F_script01_1", 4: "Ses04M_impro05",
                     5: "Ses05F_script02_2"}
# session -> (utterance suffix, start, end, code, [V, A, D], transcript), in the order of the
# EmoEvaluation file, which, as in the release, is not the order of the start times.
IEMOCAP_UTTERANCES = {
    1: [("F000", 0.5, 1.2, "neu", [2.5, 2.5, 2.5], "Excuse me."),
        ("M000", 1.3, 2.1, "hap", [4.0, 3.5, 3.0], "Do you have your forms? [LAUGHTER]"),
        ("F001", 2.2, 2.9, "exc", [4.5, 4.0, 3.5], "Oh, yes, I do!"),
        ("M001", 3.0, 3.6, "xxx", [3.0, 3.0, 3.0], "Well, let's see."),
        ("F002", 0.05, 0.4, "fru", [2.0, 3.5, 3.0], "This line takes forever.")],
    2: [("F000", 0.2, 0.9, "sad", [1.5, 2.0, 2.0], "I lost the letter."),
        ("M000", 1.0, 1.8, "ang", [1.5, 4.5, 4.0], "How could you lose it?"),
        ("F001", 1.9, 2.5, "oth", [3.0, 2.5, 2.5], "Hmm."),
        ("M001", 2.6, 3.5, "neu", [3.0, 2.0, 3.0], "Okay, okay."),
        ("F002", 3.55, 3.95, "fru", [2.0, 3.0, 2.5], "Forget it.")],
    3: [("F000", 0.3, 1.0, "neu", [3.0, 2.5, 2.5], "Good morning."),
        ("M000", 1.1, 1.9, "exc", [4.5, 4.5, 3.5], "Guess what happened!"),
        ("F001", 2.0, 2.8, "fea", [2.0, 4.0, 1.5], "What was that noise?"),
        ("M001", 2.9, 3.6, "ang", [1.0, 4.0, 4.5], "Get out."),
        ("F002", 3.9, 6.0, "sad", [1.5, 1.5, 2.0], "This span runs past the video's end.")],
    4: [("F000", 0.1, 0.8, "sad", [1.5, 2.0, 2.0], "It's over."),
        ("M000", 0.9, 1.6, "hap", [4.0, 3.0, 3.0], "We made it."),
        ("F001", 1.7, 2.4, "sur", [3.5, 4.0, 2.5], "Really?"),
        ("M001", 2.5, 3.2, "neu", [3.0, 2.5, 3.0], "Yes."),
        ("F002", 3.3, 3.9, "ang", [1.5, 4.0, 4.0], "Don't touch that.")],
    5: [("M000", 0.4, 1.1, "neu", [3.0, 2.5, 3.0], "Hello there."),
        ("F000", 1.2, 1.9, "dis", [1.5, 3.0, 3.5], "Ugh, gross."),
        ("M001", 2.0, 2.7, "exc", [4.0, 4.5, 3.5], "We won!"),
        ("F001", 2.8, 3.5, "sad", [1.5, 2.0, 2.0], "I miss him."),
        ("M002", 3.6, 3.9, "fru", [2.0, 3.5, 3.5], "Not again.")],
}
IEMOCAP_MALFORMED = (2, "[1.0 - ]\tSes02M_impro02_M009\tneu\t[3.0000, 3.0000, 3.0000]")  # session, header line
IEMOCAP_WAV_SESSION = 1  # only this session ships sentences/wav/ in the fixture
IEMOCAP_WAV_RATE = 8000


@functools.lru_cache(maxsize=None)
def _dialogue_avi() -> bytes:
    """A dialogue video as the release ships it: MPEG-4 part 2 in AVI, with a sound track (a 440 Hz tone); frame i
    has brightness 20 + 6 i."""
    import av

    fps, rate = 8, IEMOCAP_WAV_RATE
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.avi"
        with av.open(str(path), "w", format="avi") as container:
            video = container.add_stream("mpeg4", rate=fps)
            video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
            audio = container.add_stream("pcm_s16le", rate=rate)
            audio.layout = "mono"
            for i in range(int(IEMOCAP_SECONDS * fps)):
                frame = np.full((24, 32, 3), 20 + 6 * i, np.uint8)
                container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(video.encode())
            wave = _tone(IEMOCAP_SECONDS, rate)
            for s in range(0, len(wave), rate // 10):
                chunk = av.AudioFrame.from_ndarray(wave[None, s:s + rate // 10], format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = rate, s
                container.mux(audio.encode(chunk))
            container.mux(audio.encode())
        return path.read_bytes()


def _tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def _wav(path: Path, seconds: float) -> None:
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(IEMOCAP_WAV_RATE)
        f.writeframes(_tone(seconds, IEMOCAP_WAV_RATE).tobytes())


def write_iemocap(root: Path) -> Path:
    """IEMOCAP_full_release: Session1..5, one dialogue each (IEMOCAP_UTTERANCES), with evaluator lines under each
    header, transcription lines of no utterance, a malformed header line (IEMOCAP_MALFORMED), a span past its
    video's end (Session3 F002), the evaluators' subfolders and a macOS "._" file next to the dialogue files, and
    per-utterance WAVs for Session1 only."""
    for session, dialogue in IEMOCAP_DIALOGUES.items():
        base = root / f"Session{session}"
        emo = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        words = []
        for suffix, start, end, code, vad, text in IEMOCAP_UTTERANCES[session]:
            utterance = f"{dialogue}_{suffix}"
            emo += [f"[{start:.4f} - {end:.4f}]\t{utterance}\t{code}\t[{', '.join(f'{x:.4f}' for x in vad)}]",
                    "C-E2:\tNeutral;\t()", "C-F1:\tNeutral;\t(curious)", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
            words.append(f"{utterance} [{start:08.4f}-{end:08.4f}]: {text}")
            if session == IEMOCAP_WAV_SESSION:
                _wav(base / "sentences" / "wav" / dialogue / f"{utterance}.wav", end - start)
        if session == IEMOCAP_MALFORMED[0]:
            emo += [IEMOCAP_MALFORMED[1], "C-E2:\tNeutral;\t()", ""]
        # lines that are no utterance: a speaker tag, an overlap id that EmoEvaluation never lists, a blank line
        words[1:1] = ["M: [BREATHING]", f"{dialogue}_MXX0 [000.0000-000.1000]: [GARBAGE]", ""]
        dialog = base / "dialog"
        (dialog / "EmoEvaluation" / "Categorical").mkdir(parents=True, exist_ok=True)
        (dialog / "EmoEvaluation" / f"{dialogue}.txt").write_text("\n".join(emo) + "\n", encoding="utf-8")
        (dialog / "EmoEvaluation" / "Categorical" / f"{dialogue}_e2_cat.txt").write_text(
            ":Neutral state; ()\n", encoding="utf-8")
        (dialog / "EmoEvaluation" / f"._{dialogue}.txt").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
        (dialog / "transcriptions").mkdir(parents=True, exist_ok=True)
        (dialog / "transcriptions" / f"{dialogue}.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        avi = dialog / "avi" / "DivX" / f"{dialogue}.avi"
        avi.parent.mkdir(parents=True, exist_ok=True)
        avi.write_bytes(_dialogue_avi())
    return root


# ---------------------------------------------------------------------------------------------
# Retrieval and QA releases: MSR-VTT, DiDeMo, TGIF-QA, MSRVTT-QA


def write_msrvtt(root: Path) -> Path:
    """train_val: video0, video1 (train, 2 captions each), video2 (validate, its clip missing); test: video7010,
    video7011 (2 captions each); the 1k-A CSV names video7010 and video7011 with one caption each."""
    def info(videos, sentences):
        return {"info": {"year": "2016", "version": "1.0", "description": "MSR-VTT", "contributor": "",
                         "data_created": "2016-04-01"},
                "videos": [{"category": 9, "url": "https://www.youtube.com/watch?v=x", "video_id": v,
                            "start time": 1.0, "end time": 11.0, "split": sp, "id": int(v[5:])} for v, sp in videos],
                "sentences": [{"caption": c, "video_id": v, "sen_id": i} for i, (v, c) in enumerate(sentences)]}

    (root).mkdir(parents=True, exist_ok=True)
    (root / "train_val_videodatainfo.json").write_text(json.dumps(info(
        [("video0", "train"), ("video1", "train"), ("video2", "validate")],
        [("video0", "a man is singing"), ("video1", "a cartoon of a cat"), ("video0", "someone sings on stage"),
         ("video1", "an animated cat runs"), ("video2", "people dance")])))
    (root / "test_videodatainfo.json").write_text(json.dumps(info(
        [("video7010", "test"), ("video7011", "test")],
        [("video7010", "a woman cooks"), ("video7011", "a dog barks"), ("video7010", "food in a pan"),
         ("video7011", "  a  small dog ")])))
    _csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
         [["ret0", "msr7010", "video7010", "a woman is cooking"], ["ret1", "msr7011", "video7011", "a dog barks"]])
    for v in ("video0", "video1"):
        put(root / "TrainValVideo" / f"{v}.mp4")
    for v in ("video7010", "video7011"):
        put(root / "TestVideo" / f"{v}.mp4")
    return root


def write_didemo(root: Path) -> Path:
    """train: video a (.mp4, three moments given out of order) and b (.mov, absent); val/test: video c."""
    def ann(i, video, text, start):
        return {"annotation_id": i, "description": text, "video": video, "times": [[start, start + 1], [start, start]],
                "download_link": "", "num_segments": 6, "dl_link": ""}

    a, b, c = "10015567@N08_3655084291_d8b58466fa.mp4", "10034500@N00_2599094085_6e6b3b5b16.mov", \
        "10064830@N06_2640393838_a1f8d3c8b6.m4v"
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_data.json").write_text(json.dumps([
        ann(3, a, "the camera zooms out", 4), ann(1, a, "a girl waves", 0), ann(2, a, "she turns  around", 2),
        ann(4, b, "a car passes", 0)]))
    for split in ("val", "test"):
        (root / f"{split}_data.json").write_text(json.dumps([ann(7, c, "a dog jumps", 1), ann(8, c, "it lands", 3)]))
    put(root / "videos" / a)
    put(root / "videos" / c.replace(".m4v", ".mp4"), "mp4")  # downloads keep the id, the suffix may differ
    return root


TGIF_HEADERS = {
    "action": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "transition": ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"],
    "frameqa": ["gif_name", "question", "answer", "type", "description", "vid_id", "key"],
    "count": ["gif_name", "question", "answer", "vid_id", "key"],
}


def tgif_gif_names(n: int = 12) -> list[str]:
    return [f"tumblr_n{i:02d}abcXYZ_250" for i in range(n)]


def write_tgif_qa(root: Path) -> Path:
    """Tab-separated Train/Test files per task over 12 train GIFs (one of them absent) and 2 test GIFs."""
    names = tgif_gif_names()
    rows = {
        "action": lambda i, g: [g, "what does the man do 3 times ?", "nod", "wave", "clap", "jump", "blink",
                                str(i % 5), f"gif{i}", str(i)],
        "transition": lambda i, g: [g, "what does the woman do after look ?", "smile", "walk", "sit", "turn", "run",
                                    str((i + 1) % 5), f"gif{i}", str(i)],
        "frameqa": lambda i, g: [g, "what is the color of the car ?", ["Red", "blue", "two", "road"][i % 4],
                                 str(i % 4), "a red car on the road", f"gif{i}", str(i)],
        "count": lambda i, g: [g, "how many times does the cat jump ?", str(1 + i % 3), f"gif{i}", str(i)],
    }
    root.mkdir(parents=True, exist_ok=True)
    for task, make in rows.items():
        for split, gifs in (("Train", names), ("Test", ["tumblr_test01_250", "tumblr_test02_250"])):
            lines = ["\t".join(TGIF_HEADERS[task])] + ["\t".join(make(i, g)) for i, g in enumerate(gifs)]
            (root / f"{split}_{task}_question.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for g in names[1:] + ["tumblr_test01_250", "tumblr_test02_250"]:
        put(root / "gifs" / f"{g}.gif")
    return root


def write_msrvtt_qa(root: Path) -> Path:
    """train: 4 questions over video0/video1 (one about video5, whose clip is absent); val: video2; test: video3."""
    def q(i, v, question, answer):
        return {"answer": answer, "category_id": 3, "id": i, "question": question, "video_id": v}

    root.mkdir(parents=True, exist_ok=True)
    (root / "train_qa.json").write_text(json.dumps([
        q(0, 0, "what is a man doing?", "sing"), q(1, 0, "who is singing?", "man"),
        q(2, 1, "what is the cat doing?", "run"), q(3, 5, "where is the dog?", "park")]))
    (root / "val_qa.json").write_text(json.dumps([q(4, 2, "how many people dance?", "two")]))
    (root / "test_qa.json").write_text(json.dumps([q(5, 3, "what does a woman cook?", "Food"),
                                                   q(6, 3, "who is cooking?", "woman")]))
    for v in (0, 1, 2, 3):
        put(root / "video" / f"video{v}.mp4")
    return root
