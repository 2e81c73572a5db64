"""What SynthEmo is: its config, the class -> family/group probability tables, and the ceilings they imply.

The rest of the package draws, renders and writes what this module defines.

Content
-------
Each video is a cartoon face on a random textured background, with a shape
drifting behind the face. The face has a random skin tone, size, position,
slow drift and blinks. Its expression ramps from neutral to the class
expression inside a random window that covers ``window_min..window_max`` of
the video: 25% ramp up, 50% hold, 25% ramp down. Outside the window the face
is neutral, so a single short clip often misses the expression.

Visual families (``visual`` in meta) for each class:

* neutral -> ``neutral`` (no expression at all)
* happy -> ``happy``
* sad -> ``sad`` with prob. 1-q, else ``ambiguous``
* angry -> ``angry`` with prob. 1-q, else ``ambiguous``
* surprised, fearful -> ``astonished`` (the same distribution on purpose)

Text groups for each class (a = ``happy_positive_text``, r = ``sad_specific_text``):

* neutral -> neutral_utterance
* happy -> positive_exclaim (a) / neutral_utterance (1-a)
* sad -> negative_low (r) / neutral_utterance (1-r)
* angry, fearful -> negative_agitated
* surprised -> positive_exclaim

Ceilings (Bayes-optimal held-out accuracy, balanced classes)
-------------------------------------------------------------
The families are separable from each other (jitter never makes two of them
overlap), and appearance, window, blinks and distractor do not depend on the
class. So the best classifier given an observation ``o`` picks
``argmax_c P(o|c)``, and accuracy = (1/6) * sum_o max_c P(o|c).
:func:`ceilings` computes this from the two probability tables above.

* video only, o = visual family: neutral 1 + happy 1 + sad-specific (1-q) +
  angry-specific (1-q) + ambiguous q + astonished 1 (surprised and fearful
  tie), giving (5 - q)/6 = **0.767** at q = 0.4.
* text only, o = text group: neutral_utterance 1 (neutral) +
  positive_exclaim 1 (surprised) + negative_agitated 1 (angry/fearful tie) +
  negative_low r (sad), giving (3 + r)/6 = **0.583** at r = 0.5
  (does not depend on a).
* video+text, o = (family, group): astonished is split by
  positive_exclaim/negative_agitated, and ambiguous is split because sad never
  says negative_agitated while angry always does, so **1.0** for any q, a, r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "fearful")

# Expression vector layout. The neutral vector is the identity of the ramp.
EXPRESSION_FIELDS: tuple[str, ...] = (
    "mouth_curve",   # >0 smile (corners up), <0 frown
    "mouth_open",    # 0 closed .. 1 wide open
    "mouth_width",   # multiplier of the neutral width
    "brow_height",   # -1 lowered .. +1 raised
    "brow_tilt",     # >0 inner ends up (sad/fear), <0 inner ends down (angry)
    "eye_open",      # multiplier of the neutral eye height
)
NEUTRAL_EXPRESSION = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0])

VISUAL_KINDS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "ambiguous", "astonished")
_KIND_TARGETS = {
    "neutral": NEUTRAL_EXPRESSION,
    "happy": np.array([0.85, 0.25, 1.15, 0.0, 0.0, 0.65]),
    "sad": np.array([-0.7, 0.0, 0.9, 0.15, 0.9, 0.8]),
    "angry": np.array([-0.3, 0.0, 0.75, -0.85, -0.9, 0.55]),
    "ambiguous": np.array([-0.35, 0.0, 0.9, -0.4, 0.0, 0.85]),
    "astonished": np.array([0.0, 1.0, 0.55, 1.0, 0.0, 1.45]),
}

TEXT_GROUPS: tuple[str, ...] = ("neutral_utterance", "positive_exclaim", "negative_agitated", "negative_low")

# The voice (SynthEmoConfig.audio): a prosody family per class. It pairs the classes the face cannot tell
# apart differently from the text, so every pair of modalities leaves some class pairs open and the three
# together close all of them.
VOICE_FAMILIES: tuple[str, ...] = ("calm", "bright", "tense", "trembling")
_CLASS_VOICE = {"neutral": "calm", "sad": "calm", "happy": "bright", "surprised": "bright", "angry": "tense",
                "fearful": "trembling"}
# What a video of the audio variant carries: everything, no transcript (as many real clips), or no voice
# (muted, only background noise). Never both missing, so the three modalities together always suffice.
CONDITIONS: tuple[str, ...] = ("full", "no_text", "no_voice")


@dataclass
class SynthEmoConfig:
    num_train: int = 600
    num_val: int = 150
    num_test: int = 300
    size: int = 64            # frame width = height in px
    fps: float = 8.0
    duration: float = 4.0     # seconds per video
    window_min: float = 0.2   # expression window as a fraction of the video
    window_max: float = 0.4
    ambiguous_fraction: float = 0.4   # q: share of sad/angry videos drawn from the shared ambiguous expression
    happy_positive_text: float = 0.5  # a: share of happy videos whose transcript is positive-exclamation (else class-neutral)
    sad_specific_text: float = 0.5    # r: share of sad videos whose transcript is low-energy-negative (else class-neutral)
    seed: int = 0
    workers: int = 2
    # The audio variant: a voice-like sound track on every video, a share without transcript (only the voice
    # then tells surprised from fearful) and a share without voice (background noise only).
    audio: bool = False
    no_text_fraction: float = 0.6
    no_voice_fraction: float = 0.2

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.fps * self.duration)))

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}

    def validate(self) -> None:
        """Refuse values that would write an empty, broken or silently different benchmark."""
        problems = []
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if self.num_train + self.num_val + self.num_test == 0:
            problems.append("every split has 0 videos")
        if self.size < 16:
            problems.append(f"size={self.size}: frames must be at least 16 px to draw a face")
        if not self.fps > 0 or not self.duration > 0:
            problems.append(f"fps={self.fps} and duration={self.duration} must both be > 0")
        if not 0 < self.window_min <= self.window_max <= 1:
            problems.append(f"window_min={self.window_min}, window_max={self.window_max}: need "
                            "0 < window_min <= window_max <= 1")
        for name in ("ambiguous_fraction", "happy_positive_text", "sad_specific_text"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1]")
        if not (0 <= self.no_text_fraction and 0 <= self.no_voice_fraction
                and self.no_text_fraction + self.no_voice_fraction <= 1):
            problems.append(f"no_text_fraction={self.no_text_fraction} and no_voice_fraction={self.no_voice_fraction} "
                            "must be >= 0 with a sum <= 1")
        if self.workers < 1:
            problems.append(f"workers={self.workers} must be >= 1")
        if problems:
            from ..config.errors import UserError

            raise UserError("SynthEmo settings: " + "; ".join(problems))



# --------------------------------------------------------------------------
# Probability tables: the generator samples from them and ceilings() reads
# them, so the two can never disagree.

def visual_kind_table(cfg: SynthEmoConfig) -> np.ndarray:
    """P(visual kind | class): shape (len(EMOTIONS), len(VISUAL_KINDS))."""
    q = float(cfg.ambiguous_fraction)
    t = np.zeros((len(EMOTIONS), len(VISUAL_KINDS)))
    k = VISUAL_KINDS.index
    t[EMOTIONS.index("neutral"), k("neutral")] = 1.0
    t[EMOTIONS.index("happy"), k("happy")] = 1.0
    t[EMOTIONS.index("sad"), k("sad")] = 1.0 - q
    t[EMOTIONS.index("sad"), k("ambiguous")] = q
    t[EMOTIONS.index("angry"), k("angry")] = 1.0 - q
    t[EMOTIONS.index("angry"), k("ambiguous")] = q
    t[EMOTIONS.index("surprised"), k("astonished")] = 1.0
    t[EMOTIONS.index("fearful"), k("astonished")] = 1.0
    return t


def text_group_table(cfg: SynthEmoConfig) -> np.ndarray:
    """P(text group | class): shape (len(EMOTIONS), len(TEXT_GROUPS))."""
    a, r = float(cfg.happy_positive_text), float(cfg.sad_specific_text)
    t = np.zeros((len(EMOTIONS), len(TEXT_GROUPS)))
    g = TEXT_GROUPS.index
    t[EMOTIONS.index("neutral"), g("neutral_utterance")] = 1.0
    t[EMOTIONS.index("happy"), g("positive_exclaim")] = a
    t[EMOTIONS.index("happy"), g("neutral_utterance")] = 1.0 - a
    t[EMOTIONS.index("sad"), g("negative_low")] = r
    t[EMOTIONS.index("sad"), g("neutral_utterance")] = 1.0 - r
    t[EMOTIONS.index("angry"), g("negative_agitated")] = 1.0
    t[EMOTIONS.index("surprised"), g("positive_exclaim")] = 1.0
    t[EMOTIONS.index("fearful"), g("negative_agitated")] = 1.0
    return t


def voice_family_table(cfg: SynthEmoConfig) -> np.ndarray:
    """P(voice family | class): shape (len(EMOTIONS), len(VOICE_FAMILIES)); one family per class."""
    t = np.zeros((len(EMOTIONS), len(VOICE_FAMILIES)))
    for c, name in enumerate(EMOTIONS):
        t[c, VOICE_FAMILIES.index(_CLASS_VOICE[name])] = 1.0
    return t


def condition_probabilities(cfg: SynthEmoConfig) -> dict[str, float]:
    """P(condition), the same for every class; without the audio variant every video is "full"."""
    if not cfg.audio:
        return {"full": 1.0, "no_text": 0.0, "no_voice": 0.0}
    p, m = float(cfg.no_text_fraction), float(cfg.no_voice_fraction)
    return {"full": 1.0 - p - m, "no_text": p, "no_voice": m}


def _bayes_accuracy(likelihood: np.ndarray) -> float:
    # Uniform class prior: accuracy = mean over classes of the mass the
    # argmax rule assigns correctly = (1/C) * sum_o max_c P(o|c).
    return float(likelihood.max(axis=0).sum() / likelihood.shape[0])


MODALITY_SUBSETS = {"video_only": ("video",), "text_only": ("text",), "video_text": ("video", "text"),
                    "audio_only": ("audio",), "video_audio": ("video", "audio"), "text_audio": ("text", "audio"),
                    "video_text_audio": ("video", "text", "audio")}


def _subset_likelihood(cfg: SynthEmoConfig, modalities: tuple[str, ...]) -> np.ndarray:
    """P(observation | class) over what ``modalities`` show: the visual family, the text group ("none" without
    a transcript) and the voice family ("none" without a voice), summed over the rest."""
    v, t, a = visual_kind_table(cfg), text_group_table(cfg), voice_family_table(cfg)
    table: dict[tuple, np.ndarray] = {}
    for cond, pc in condition_probabilities(cfg).items():
        if pc == 0:
            continue
        for vi, vk in enumerate(VISUAL_KINDS):
            for ti, tg in enumerate(TEXT_GROUPS):
                for ai, af in enumerate(VOICE_FAMILIES):
                    obs = (vk if "video" in modalities else None,
                           (tg if cond != "no_text" else "none") if "text" in modalities else None,
                           (af if cond != "no_voice" else "none") if "audio" in modalities else None)
                    row = table.setdefault(obs, np.zeros(len(EMOTIONS)))
                    row += pc * v[:, vi] * t[:, ti] * a[:, ai]  # (C,)
    return np.stack(list(table.values()), axis=1)  # (C, observations)


def ceilings(cfg: SynthEmoConfig) -> dict[str, float]:
    """Best achievable held-out accuracy (Bayes ceiling) of each modality subset, derived from cfg's
    parameters: 'video_only', 'text_only', 'video_text', and with the audio variant also 'audio_only',
    'video_audio', 'text_audio', 'video_text_audio'."""
    names = list(MODALITY_SUBSETS) if cfg.audio else ["video_only", "text_only", "video_text"]
    return {name: _bayes_accuracy(_subset_likelihood(cfg, MODALITY_SUBSETS[name])) for name in names}
