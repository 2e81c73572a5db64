"""``clipbert-emo finetune``: the recipe the task kind asks for, run by the engine.

Every labelled task kind (single- and multi-label, multitask, regression, question answering) trains with
``FinetuneRecipe`` (finetune_recipe.py); a task kind that ranks (data.task=retrieval) with ``RetrievalRecipe``
(retrieval.py), which builds on it.
"""

from __future__ import annotations

from typing import Sequence

from ..config import ExperimentConfig
from ..models.registry import check_fusion
from ..tasks import Recipe, get_task
from .engine import Engine
from .observers import RunObserver
from .finetune_recipe import FinetuneRecipe
from .retrieval import RetrievalRecipe

__all__ = ["finetune", "RECIPES"]

# The recipe class that trains each kind of task (Task.recipe).
RECIPES = {Recipe.FINETUNE: FinetuneRecipe, Recipe.RETRIEVAL: RetrievalRecipe}


def finetune(cfg: ExperimentConfig, progress: bool = True, observers: Sequence[RunObserver] = ()) -> dict:
    """Train, validate every epoch, keep the best checkpoint by the validation metric, test it.

    Returns the metrics dict (also written to ``train.output_dir``/metrics.json)."""
    check_fusion(cfg)  # a strategy that cannot run this task is refused before the run folder is touched
    recipe = RECIPES[Recipe(get_task(cfg.data.task).recipe)](cfg)
    return Engine(cfg, progress, observers).run(recipe)
