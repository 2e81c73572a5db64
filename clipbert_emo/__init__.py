"""clipbert-emo: ClipBERT-style video+text emotion recognition.

Sparse clips at train time, dense clips at test time, one BERT fusing both.
"""

from .version import __version__  # noqa: E402

from .config import EMOTIONS, ExperimentConfig, load_config  # noqa: E402
from .predict import Predictor, predict  # noqa: E402

__all__ = ["EMOTIONS", "ExperimentConfig", "load_config", "Predictor", "predict", "__version__"]
