"""``model.fusion=face_expression``: the FER2013 expression CNN alone as a video classifier (the ready face model,
``clipbert-emo face-model``).

No transformer and no new weights: each sampled frame's face crop goes through the CNN, the clip's score for a label
is the log of the mean, over the clip's frames, of the CNN's probability of that label's FER class, and the clips are
aggregated as any model's (model.aggregation: the clip scores are log-probabilities, so mean, max and LogSumExp keep
their meaning). A benchmark's labels are matched to FER's 7 classes by name (``FER_SYNONYMS``: MELD's joy is FER's
happy, anger is angry, ...); a label that names none of them is refused when the model is built. With labels that
leave some FER class out (SynthEmo has no disgust), the probabilities are those of the classes kept, renormalised by
the softmax of the scores. Trained (``clipbert-emo finetune`` with this fusion), the CNN is fine-tuned with the task's
loss on those scores.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..config import ConfigError, ModelConfig
from .face_expression import FER_LABELS, FaceExpressionCNN
from .modalities import MODALITIES, modalities_named
from .scorer import ClipScorer, Refusal, ScoredClips

# A benchmark label (lower-case) -> the FER class it names. FER's own names first, then the other releases' words
# (MELD: anger, joy, sadness; SynthEmo: surprised, fearful; IEMOCAP: ang, hap, neu, sad; MOSEI: happy, anger, ...).
FER_SYNONYMS: dict[str, str] = {
    **{name: name for name in FER_LABELS},
    "anger": "angry", "ang": "angry", "mad": "angry",
    "disgusted": "disgust", "dis": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear",
    "joy": "happy", "happiness": "happy", "hap": "happy", "joyful": "happy",
    "sadness": "sad",
    "surprised": "surprise", "sur": "surprise",
    "neu": "neutral", "calm": "neutral",
}


def fer_classes(labels: list[str]) -> list[int]:
    """The FER class index each of ``labels`` reads; ConfigError naming the labels that match none."""
    unknown = [lab for lab in labels if lab.lower() not in FER_SYNONYMS]
    if unknown:
        raise ConfigError(f"model.fusion=face_expression predicts FER2013's classes ({', '.join(FER_LABELS)}); "
                          f"data.labels {unknown} name none of them (names it knows: {', '.join(sorted(FER_SYNONYMS))})"
                          f". Fine-tune a model with the face modality instead (--preset face)")
    indices = [FER_LABELS.index(FER_SYNONYMS[lab.lower()]) for lab in labels]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"data.labels {labels}: two labels name the same FER class")
    return indices


class _AllButSingleLabel(dict):
    """``refused_tasks`` for a strategy that classifies one label per video: every other task kind, even one
    registered later, is refused."""

    def get(self, task, default=None):
        if task == "single_label":
            return default
        return Refusal("the FER2013 expression CNN picks one emotion per video (data.task=single_label)")


class FrameExpressions(nn.Module):
    """(B, N, T, S, S) uint8 face crops -> (B, N, T, 7) the expression CNN's logits for every frame."""

    def __init__(self, cfg: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.cnn = FaceExpressionCNN(cfg.face_init or None, pretrained)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        b, n, t = faces.shape[:3]
        logits = self.cnn(faces.flatten(0, 2)).logits  # (B, N, T, S, S) -> (B*N*T, S, S) -> (B*N*T, 7)
        return logits.unflatten(0, (b, n, t))  # -> (B, N, T, 7)

    def enable_gradient_checkpointing(self) -> None:
        pass


class FaceExpressionScorer(ClipScorer):
    """The expression CNN's per-frame probabilities as per-clip log-probabilities of ``labels`` (see the module)."""

    reads = ("face",)
    task_head = False
    refused_tasks = _AllButSingleLabel()
    reads_labels = True  # build_model passes data.labels: the outputs are FER classes picked by name

    def __init__(self, cfg: ModelConfig, num_labels: int, vocab_size: int, pad_token_id: int = 0,
                 pretrained: bool = True, criterion: nn.Module | None = None, modalities=("face",),
                 use_text: bool = False, build_head=None, inference: bool = False, labels=None):
        super().__init__()
        labels = list(labels) if labels is not None else list(FER_LABELS[:num_labels])
        if len(labels) != num_labels:
            raise ConfigError(f"model.fusion=face_expression: {num_labels} outputs for {len(labels)} labels")
        self.register_buffer("classes", torch.tensor(fer_classes(labels)), persistent=False)
        self._setup(cfg, num_labels, vocab_size, criterion, use_text)
        self.modalities = modalities_named(["face"])
        for m in MODALITIES:  # the other modalities' encoder attributes exist, empty, as in every strategy
            setattr(self, m.encoder_attr, None)
        self.face_encoder = FrameExpressions(cfg, pretrained)

    def _score_clips(self, input_ids, attention_mask, inputs, features=None) -> ScoredClips:
        features, present, _ = self.encode_inputs(input_ids, inputs, features)
        frame_logp = features["face"].float().log_softmax(dim=-1)  # (B, N, T, 7)
        picked = frame_logp.index_select(-1, self.classes)  # -> (B, N, T, K): each label's FER class
        # log of the mean probability over the clip's T frames
        clip = torch.logsumexp(picked, dim=2) - math.log(picked.shape[2])  # -> (B, N, K)
        unseen = torch.full_like(clip, -math.log(clip.shape[-1]))  # no face in the video: an even guess
        clip = torch.where(present["face"].view(-1, 1, 1), clip, unseen)  # (B,) -> (B, 1, 1)
        return ScoredClips(clip, features, present)
