"""The example clips the page scores with one click (serve/static/example-*.mp4), and how they are made:

    python -m clipbert_emo.serve.make_examples        # rewrites them (needs scikit-image)

Two SynthEmo videos (the drawn faces the demo models are trained on: one happy, one astonished) and one real face:
the astronaut portrait that ships in scikit-image (Eileen Collins, a NASA photograph in the public domain), panned
and zoomed over 2 s so that it moves like a face in front of a webcam. Together they stay under 300 KB, so the
package carries them. The browser test feeds the same moving portrait to Chromium's fake webcam.
"""

from __future__ import annotations

import numpy as np

# File name in serve/static -> what the page's button says.
EXAMPLES = {"example-synthemo-happy.mp4": "SynthEmo: happy",
            "example-synthemo-astonished.mp4": "SynthEmo: astonished",
            "example-real-face.mp4": "Real face (astronaut photo)"}
# Where the astronaut's face is in scikit-image's 512x512 portrait: its centre (x, y) and a square around it.
_FACE_CENTRE, _FACE_WINDOW = (225.0, 134.0), 220.0


def moving_portrait(num_frames: int, size: int) -> np.ndarray:
    """(num_frames, size, size, 3) uint8 frames of scikit-image's astronaut portrait, cut around the face by a
    square that drifts and breathes in size over the clip, as a head does in front of a camera."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    frames = []
    for i in range(num_frames):
        t = 2 * np.pi * i / max(1, num_frames)
        cx = _FACE_CENTRE[0] + 18 * np.sin(t)
        cy = _FACE_CENTRE[1] + 8 * np.sin(2 * t)
        half = (_FACE_WINDOW + 30 * np.cos(t)) / 2
        box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
        frames.append(np.asarray(photo.crop(box).resize((size, size), Image.BILINEAR)))
    return np.stack(frames)


def synthemo_frames(kind: str, seed: int, size: int = 64, num_frames: int = 32) -> np.ndarray:
    """A SynthEmo face of visual ``kind`` (its expression over the middle of the clip), as the benchmark draws it."""
    from ..synthemo.face import sample_face_params
    from ..synthemo.render import render_face_frames

    rng = np.random.default_rng(seed)
    params = sample_face_params(kind, (0.2, 0.9), rng)
    return render_face_frames(params, num_frames, size, rng)


def main(folder=None) -> None:
    from pathlib import Path

    from ..synthemo.media import write_mp4

    folder = Path(folder or Path(__file__).parent / "static")
    write_mp4(folder / "example-synthemo-happy.mp4", synthemo_frames("happy", seed=3), 8.0)
    write_mp4(folder / "example-synthemo-astonished.mp4", synthemo_frames("astonished", seed=5), 8.0)
    write_mp4(folder / "example-real-face.mp4", moving_portrait(20, 160), 10.0)
    for name in EXAMPLES:
        print(f"{folder / name}: {(folder / name).stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
