"""A synthetic voice for the audio variant: harmonics at a class-dependent pitch level and contour, loudness,
and tremor, spoken in syllable-like bursts, over background noise. Deterministic for a seed.

Families (what the voice tells, see spec.py): calm (neutral, sad): low, level, soft; bright (happy, surprised):
high and rising; tense (angry): mid, loud, falling, harsh (strong upper harmonics); trembling (fearful): high
with a 7 Hz tremor in pitch and loudness. Each video draws its own speaker offsets around its family's values,
small enough that the families never overlap.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000

# f0 (Hz), contour (semitones from start to end), loudness, tremor depth, harmonic roll-off exponent
_FAMILY = {
    "calm": (130.0, 0.0, 0.20, 0.0, 1.6),
    "bright": (290.0, 7.0, 0.45, 0.0, 1.2),
    "tense": (180.0, -5.0, 0.65, 0.0, 0.5),
    "trembling": (300.0, 0.0, 0.35, 0.35, 1.2),
}


def synthesize_voice(family: str | None, duration: float, rng: np.random.Generator,
                     sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(duration * sample_rate,) float32 in [-1, 1]; ``family`` None = no voice, background noise only."""
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    noise = 0.01 * rng.standard_normal(n)
    if family is None:
        return noise.astype(np.float32)
    f0, contour, loud, tremor, rolloff = _FAMILY[family]
    f0 *= float(np.exp(rng.uniform(-0.08, 0.08)))  # the speaker: +-8% around the family's level
    loud *= float(rng.uniform(0.85, 1.15))
    semis = contour * t / duration  # the contour, linear in semitones over the utterance
    wobble = 1.0 + tremor * 0.08 * np.sin(2 * np.pi * 7.0 * t)  # tremor in pitch...
    freq = f0 * 2.0 ** (semis / 12.0) * wobble
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    voice = sum(np.sin(k * phase) / k ** rolloff for k in range(1, 7))
    voice = voice * (1.0 - tremor * (0.5 + 0.5 * np.sin(2 * np.pi * 7.0 * t)))  # ...and in loudness
    # Syllables: ~4 per second, each a smooth burst, with short pauses between.
    envelope = np.zeros(n)
    start = rng.uniform(0.0, 0.15)
    while start < duration:
        length = rng.uniform(0.12, 0.22)
        a, b = int(start * sample_rate), min(n, int((start + length) * sample_rate))
        if b > a:
            envelope[a:b] = np.hanning(b - a)
        start += length + rng.uniform(0.04, 0.12)
    wave = loud * envelope * voice / 2.0 + noise
    return np.clip(wave, -1.0, 1.0).astype(np.float32)
