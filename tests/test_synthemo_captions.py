"""Captioned SynthEmo stills (image-text pretraining) and stratified manifest subsets."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clipbert_emo import synthemo as se
from clipbert_emo.synthemo import captions, spec

N_IMAGES, SIZE = 30, 32


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def words(text):
    # hyphenated words count both whole and by part ("open-mouthed" -> open, mouthed)
    toks = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    return set(toks) | {p for t in toks for p in t.split("-")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("captions")
    summary = se.generate_captioned_frames(out, num_images=N_IMAGES, size=SIZE, seed=5, progress=False)
    return out, summary


def test_layout_counts_and_split(corpus):
    out, summary = corpus
    train, val = read_jsonl(out / "captions.jsonl"), read_jsonl(out / "val_captions.jsonl")
    assert len(train) == 27 and len(val) == 3   # round(0.1 * 30) held out
    ids = [r["meta"]["id"] for r in train + val]
    assert sorted(ids) == [f"{i:06d}" for i in range(N_IMAGES)]   # disjoint and complete
    for r in train + val:
        assert set(r) == {"video", "text", "meta"}
        assert r["video"] == f"images/{r['meta']['id']}.png"
        assert (out / r["video"]).is_file()
    on_disk = json.loads((out / "captions.json").read_text())
    assert on_disk["counts"] == {"train": 27, "val": 3}
    assert on_disk["config"] == {"num_images": N_IMAGES, "size": SIZE, "seed": 5}
    assert {k: v for k, v in summary.items() if k != "generation_seconds"} == on_disk


def test_every_visual_kind_appears_balanced(corpus):
    out, summary = corpus
    recs = read_jsonl(out / "captions.jsonl") + read_jsonl(out / "val_captions.jsonl")
    counts = Counter(r["meta"]["kind"] for r in recs)
    assert set(counts) == set(se.VISUAL_KINDS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert summary["kinds"] == dict(counts)


def test_images_are_png_of_right_size_and_match_the_render(corpus):
    Image = pytest.importorskip("PIL.Image")
    out, _ = corpus
    recs = read_jsonl(out / "captions.jsonl")[:6]
    for r in recs:
        raw = (out / r["video"]).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(out / r["video"]) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
            pixels = np.asarray(im)
        i = int(r["meta"]["id"])
        params, caption = se.sample_captioned_frame(5, i, r["meta"]["kind"])
        assert caption == r["text"]
        assert params.blinks == ()   # eyes open in the still
        rng = np.random.default_rng(captions._caption_seq(5, 2, i))
        np.testing.assert_array_equal(pixels, se.render_face_frames(params, 1, SIZE, rng)[0])


def test_still_is_at_expression_peak():
    # One frame sits at t = 0.5; with window (0, 1) the ramp is exactly 1 there.
    assert se.expression_intensity((0.0, 1.0), np.array([0.5]))[0] == 1.0
    # so the rendered still equals a render of the expression held at full strength all video long
    params, _ = se.sample_captioned_frame(0, 3, "astonished")
    rng1, rng2 = np.random.default_rng(1), np.random.default_rng(1)
    still = se.render_face_frames(params, 1, 40, rng1)[0]
    held = se.render_face_frames(params.__class__(**{**params.__dict__, "window": (-1.0, 2.0)}), 1, 40, rng2)[0]
    np.testing.assert_array_equal(still, held)


def test_write_png_roundtrip_and_rejects_bad_input(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    se.write_png(tmp_path / "x.png", img)
    with Image.open(tmp_path / "x.png") as im:
        np.testing.assert_array_equal(np.asarray(im), img)
    with pytest.raises(ValueError):
        se.write_png(tmp_path / "y.png", img.astype(np.float32))
    assert not (tmp_path / "y.png").exists()


def test_deterministic_for_a_seed_whatever_workers(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again"
    se.generate_captioned_frames(again, num_images=N_IMAGES, size=SIZE, seed=5, progress=False, workers=2)
    for rel in ("captions.jsonl", "val_captions.jsonl", "captions.json", "images/000000.png", "images/000029.png"):
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    se.generate_captioned_frames(other, num_images=N_IMAGES, size=SIZE, seed=6, progress=False)
    assert (other / "captions.jsonl").read_text() != (out / "captions.jsonl").read_text()


def test_no_emotion_words_in_any_possible_phrase():
    # Exhaustive over the vocabulary the captions are assembled from.
    pieces = [p for feat in captions._FEATURE_PHRASES.values() for opts in feat.values() for p in opts]
    pieces += list(captions._CAPTION_SUBJECTS) + list(captions._CAPTION_PERSONS)
    pieces += [t.replace("{", " ").replace("}", " ") for t in
               captions._CAPTION_NOUN_TEMPLATES + captions._CAPTION_VERB_TEMPLATES + captions._CAPTION_ADJ_TEMPLATES]
    for p in pieces:
        bad = words(p) & se.CAPTION_FORBIDDEN_WORDS
        assert not bad, (p, bad)
    # and the list itself covers the class and family names
    assert set(se.EMOTIONS) | set(se.VISUAL_KINDS) <= se.CAPTION_FORBIDDEN_WORDS
    assert {"joy", "anger", "fear", "surprise", "calm"} <= se.CAPTION_FORBIDDEN_WORDS


def test_generated_captions_have_no_emotion_words(corpus):
    out, _ = corpus
    for r in read_jsonl(out / "captions.jsonl") + read_jsonl(out / "val_captions.jsonl"):
        assert not words(r["text"]) & se.CAPTION_FORBIDDEN_WORDS, r["text"]
        assert r["text"] == r["text"].strip() and "  " not in r["text"] and "{" not in r["text"]


# Features every draw of a family has, whatever the jitter (see describe_expression).
CORE = {
    "neutral": {"mouth_straight", "brows_level", "eyes_normal"},
    "happy": {"smile", "mouth_parted", "brows_level"},
    "sad": {"frown", "brows_inner_up"},
    "angry": {"slight_frown", "tight_lips", "brows_lowered", "brows_knitted", "eyes_narrow"},
    "ambiguous": {"slight_frown", "brows_slightly_lowered"},
    "astonished": {"mouth_wide_open", "brows_raised", "eyes_wide"},
}


@pytest.mark.parametrize("kind", se.VISUAL_KINDS)
def test_features_follow_the_family_across_jitter(kind):
    rng = np.random.default_rng(11)
    optional = {"happy": {"eyes_narrow"}}.get(kind, set())
    for _ in range(300):
        feats = set(se.describe_expression(se.sample_face_params(kind, (0.0, 1.0), rng).expression))
        assert CORE[kind] <= feats <= CORE[kind] | optional, (kind, feats)


def test_captions_describe_the_features_and_vary():
    rng = np.random.default_rng(0)
    caps = {k: [se.make_caption(spec._KIND_TARGETS[k], rng) for _ in range(200)] for k in se.VISUAL_KINDS}
    for k, cs in caps.items():
        assert len(set(cs)) >= 30, (k, len(set(cs)))
    assert all("mouth" in c or "lips" in c or "jaw" in c or "gaping" in c for c in caps["astonished"])
    assert all(re.search(r"smil|grin|upturned|curled up", c) for c in caps["happy"])
    assert all(re.search(r"frown|downturned|drooping|turned down|mouth pulled down", c) for c in caps["sad"])
    # families never share a caption
    seen = {}
    for k, cs in caps.items():
        for c in cs:
            assert seen.setdefault(c, k) == k


# ---------------------------------------------------------------------------
# subset_manifest


def _write_manifest(path, labels, video_fmt="videos/train/{:06d}.mp4"):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"video": video_fmt.format(i), "text": f"t{i}", "label": lab}) for i, lab in enumerate(labels)]
    path.write_text("".join(line + "\n" for line in lines))
    return lines


def test_subset_is_stratified_and_exact_size(tmp_path):
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    src = tmp_path / "train.jsonl"
    lines = _write_manifest(src, labels)
    info = se.subset_manifest(src, tmp_path / "train_10.jsonl", 0.1, seed=0)
    kept = (tmp_path / "train_10.jsonl").read_text().splitlines()
    assert len(kept) == 10 and info["num_lines"] == 10 and info["num_source_lines"] == 100
    assert Counter(json.loads(x)["label"] for x in kept) == {"a": 6, "b": 3, "c": 1}
    assert info["counts"] == {"a": 6, "b": 3, "c": 1}
    # same folder: lines copied byte for byte, in source order
    assert all(x in lines for x in kept)
    assert [lines.index(x) for x in kept] == sorted(lines.index(x) for x in kept)


def test_subset_rounding_and_one_per_class(tmp_path):
    # quotas 4.5 / 3.5 / 2 -> floors 4 / 3 / 2 = 9 < round(10); the tie goes to the first label -> 5 / 3 / 2
    src = tmp_path / "m.jsonl"
    _write_manifest(src, ["a"] * 45 + ["b"] * 35 + ["c"] * 20)
    assert se.subset_manifest(src, tmp_path / "s.jsonl", 0.1, seed=1)["counts"] == {"a": 5, "b": 3, "c": 2}
    # a class of 1 in 100 still keeps its sample: 50/30/15/4/1 at 10% -> 5/3/1/1/1 = 11 (> 10, forced)
    _write_manifest(src, ["n"] * 50 + ["h"] * 30 + ["s"] * 15 + ["g"] * 4 + ["f"])
    info = se.subset_manifest(src, tmp_path / "s.jsonl", 0.1, seed=1)
    assert info["counts"] == {"f": 1, "g": 1, "h": 3, "n": 5, "s": 1}
    assert info["num_lines"] == 11
    # fraction 1 keeps everything
    assert se.subset_manifest(src, tmp_path / "s.jsonl", 1.0)["num_lines"] == 100
    with pytest.raises(ValueError, match="fraction"):
        se.subset_manifest(src, tmp_path / "s.jsonl", 0.0)


def test_subset_deterministic_per_seed(tmp_path):
    src = tmp_path / "m.jsonl"
    _write_manifest(src, ["a", "b"] * 50)
    se.subset_manifest(src, tmp_path / "s1.jsonl", 0.2, seed=3)
    se.subset_manifest(src, tmp_path / "s2.jsonl", 0.2, seed=3)
    se.subset_manifest(src, tmp_path / "s3.jsonl", 0.2, seed=4)
    assert (tmp_path / "s1.jsonl").read_bytes() == (tmp_path / "s2.jsonl").read_bytes()
    assert (tmp_path / "s1.jsonl").read_bytes() != (tmp_path / "s3.jsonl").read_bytes()


def test_subset_in_another_folder_rewrites_paths(tmp_path):
    src = tmp_path / "data" / "train.jsonl"
    _write_manifest(src, ["a"] * 5 + ["b"] * 5)
    out = tmp_path / "runs" / "low" / "train_20.jsonl"
    se.subset_manifest(src, out, 0.2, seed=0)
    for rec in read_jsonl(out):
        orig = f"videos/train/{int(rec['text'][1:]):06d}.mp4"
        assert not Path(rec["video"]).is_absolute()
        assert (out.parent / rec["video"]).resolve() == (src.parent / orig).resolve()


def test_subset_of_a_real_synthemo_manifest_resolves(synthemo_dir, tmp_path):
    out = tmp_path / "sub" / "train_25.jsonl"
    info = se.subset_manifest(synthemo_dir / "train.jsonl", out, 0.25, seed=0)
    recs = read_jsonl(out)
    src_labels = Counter(r["label"] for r in read_jsonl(synthemo_dir / "train.jsonl"))
    assert set(r["label"] for r in recs) == set(src_labels)   # every class present in the source survives
    assert len(recs) == max(len(src_labels), round(0.25 * 16)) == info["num_lines"]
    for r in recs:
        assert (out.parent / r["video"]).is_file()
