"""SynthEmo: a procedural video+text emotion benchmark.

SynthEmo writes real H.264 ``.mp4`` files and JSONL manifests. They are
built so that a model needs both video and text, and has to look at the
whole video (dense multi-clip inference), to reach the top score. What the
videos show and the accuracy ceilings that follow are derived in :mod:`.spec`.

Layout written by :func:`generate_synthemo`::

    out_dir/
      synthemo.json             config, ceilings, counts (the summary dict)
      train.jsonl val.jsonl test.jsonl
      videos/<split>/<id>.mp4   ids are zero-padded (000017) and stable for a seed

Manifest format (user datasets use the same format)
----------------------------------------------------
Each line is one JSON object::

    {"video": "videos/train/000017.mp4", "text": "wow, look at that!",
     "label": "surprised", "meta": {...}}

``video`` is a path relative to the folder that holds the manifest.
``label`` is one of :data:`EMOTIONS`. ``meta`` is optional and holds only
diagnostics, so models must never read it. SynthEmo writes:
``id``, ``window_start`` / ``window_end`` (the expression window in seconds),
``ambiguous`` (a sad/angry video that shows the shared ambiguous expression),
``text_group`` (the transcript family) and ``visual`` (the expression family
shown). For ``neutral`` videos a window is still drawn and recorded, but
nothing happens in it.

Determinism: every video is seeded from (seed, split, index). Manifests are
byte-identical for a seed whatever ``workers`` is.

Extras for the pretraining and low-label experiments
----------------------------------------------------
:func:`generate_captioned_frames` writes still frames of SynthEmo faces at
their expression peak with captions that describe the face's look (never the
emotion), for image-text pretraining. :func:`subset_manifest` writes a
stratified fraction of a manifest (e.g. 10% of the train labels).

Modules, each importing only those before it: ``spec`` (config, probability
tables, ceilings), ``face`` (one video's parameters), ``render`` (pixels),
``media`` (mp4 and png writers), ``generate`` (the video benchmark),
``captions`` (captioned stills), ``subsets`` (stratified manifest subsets).
"""

from .captions import (
    CAPTION_FEATURES,
    CAPTION_FORBIDDEN_WORDS,
    describe_expression,
    generate_captioned_frames,
    make_caption,
    sample_captioned_frame,
)
from .face import FaceParams, expression_intensity, face_center, sample_face_params
from .generate import SPLITS, balanced_labels, generate_synthemo, make_text, sample_video
from .media import write_mp4, write_png
from .render import render_face_frames
from .spec import (
    EMOTIONS,
    EXPRESSION_FIELDS,
    NEUTRAL_EXPRESSION,
    TEXT_GROUPS,
    VISUAL_KINDS,
    SynthEmoConfig,
    ceilings,
    text_group_table,
    visual_kind_table,
)
from .subsets import subset_manifest

__all__ = [
    "EMOTIONS", "SPLITS", "EXPRESSION_FIELDS", "NEUTRAL_EXPRESSION", "VISUAL_KINDS", "TEXT_GROUPS",
    "SynthEmoConfig", "visual_kind_table", "text_group_table", "ceilings",
    "FaceParams", "sample_face_params", "expression_intensity", "face_center",
    "render_face_frames", "write_mp4", "write_png",
    "balanced_labels", "make_text", "sample_video", "generate_synthemo",
    "CAPTION_FORBIDDEN_WORDS", "CAPTION_FEATURES", "describe_expression", "make_caption",
    "sample_captioned_frame", "generate_captioned_frames",
    "subset_manifest",
]
