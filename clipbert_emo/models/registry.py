"""The fusion strategies by name (``model.fusion``): the one list of them.

``build_model`` builds the class registered under ``model.fusion``; ``check_fusion`` refuses, before anything is
built or trained, a name not registered and a task kind or modality the strategy does not declare it supports;
``clipbert-emo compare-fusion --strategies`` offers these names, and the docs point here. A new strategy is a
:class:`~clipbert_emo.models.scorer.ClipScorer` subclass and one ``register_fusion(name, cls)`` call (or, in the
library, one entry of the table below).
"""

from __future__ import annotations

from ..config import ConfigError, ExperimentConfig
from .clipbert import ClipBertForEmotion
from .face_scorer import FaceExpressionScorer
from .fusion_strategies import CrossAttentionForEmotion, HybridFusionForEmotion, LateFusionForEmotion
from .modalities import MODALITIES
from .scorer import ClipScorer

# In this order in compare-fusion's table. model.fusion's default is ModelConfig.fusion (early).
FUSION_STRATEGIES: dict[str, type[ClipScorer]] = {
    "early": ClipBertForEmotion,
    "late": LateFusionForEmotion,
    "cross_attention": CrossAttentionForEmotion,
    "hybrid": HybridFusionForEmotion,
    # Not a fusion: the face modality's expression CNN alone, the ready face model (clipbert-emo face-model).
    "face_expression": FaceExpressionScorer,
}


def register_fusion(name: str, cls: type[ClipScorer]) -> type[ClipScorer]:
    """Make ``cls`` available as ``model.fusion=<name>`` (build, check, compare-fusion's choices)."""
    if not (isinstance(cls, type) and issubclass(cls, ClipScorer)):
        raise TypeError(f"register_fusion({name!r}, {cls!r}): a fusion strategy is a ClipScorer subclass")
    if name in FUSION_STRATEGIES:
        raise ValueError(f"fusion strategy {name!r} is already registered ({FUSION_STRATEGIES[name].__name__})")
    FUSION_STRATEGIES[name] = cls
    return cls


def unregister_fusion(name: str) -> None:
    """Remove a strategy registered with :func:`register_fusion`."""
    del FUSION_STRATEGIES[name]


def fusion_names() -> list[str]:
    return list(FUSION_STRATEGIES)


def fusion_strategy(name: str) -> type[ClipScorer]:
    """The class registered as ``name``; a ConfigError listing the names otherwise."""
    try:
        return FUSION_STRATEGIES[name]
    except KeyError:
        raise ConfigError(f"model.fusion={name!r}: expected one of {', '.join(FUSION_STRATEGIES)}") from None


def config_modalities(cfg: ExperimentConfig) -> list[str]:
    """The modalities an experiment reads: text (data.use_text), then the per-clip ones (data.use_<name>)."""
    return (["text"] if cfg.data.use_text else []) + [m.name for m in MODALITIES
                                                     if getattr(cfg.data, f"use_{m.name}", False)]


def refusal(name: str, task: str, modalities: list[str]) -> str | None:
    """Why strategy ``name`` cannot run task kind ``task`` reading ``modalities`` (text included), from its own
    declarations; None when it can."""
    cls = fusion_strategy(name)
    if cls.reads is not None:
        unread = [m for m in modalities if m not in cls.reads]
        if unread:
            return (f"model.fusion={name} cannot read {' and '.join(unread)} (it reads {', '.join(cls.reads)}); "
                    f"set {' '.join(f'data.use_{m}=false' for m in unread)}")
    refused = cls.refused_tasks.get(task)
    if refused is not None and (not refused.clips_only or any(m != "text" for m in modalities)):
        return f"model.fusion={name} cannot be used with data.task={task}: {refused.why}"
    return None


def check_fusion(cfg: ExperimentConfig) -> type[ClipScorer]:
    """The strategy class of ``cfg.model.fusion`` once its declarations allow ``cfg``'s task kind, modalities and
    auxiliary losses; a ConfigError (a UserError: the CLI prints one line) naming both settings otherwise."""
    name, modalities = cfg.model.fusion, config_modalities(cfg)
    cls = fusion_strategy(name)
    why = refusal(name, cfg.data.task, modalities)
    if why is not None:
        others = [n for n in FUSION_STRATEGIES if n != name and refusal(n, cfg.data.task, modalities) is None]
        raise ConfigError(why + (f"; use model.fusion={_either(others)}" if others else ""))
    if cfg.model.contrastive_weight > 0 and not cls.contrastive:
        having = [n for n, c in FUSION_STRATEGIES.items() if c.contrastive]
        raise ConfigError(f"model.contrastive_weight={cfg.model.contrastive_weight}: model.fusion={name} has no "
                          f"video-text contrastive loss (model.fusion={_either(having)} has); set it to 0")
    return cls


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
