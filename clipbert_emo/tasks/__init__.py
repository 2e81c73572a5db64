"""Task kinds: one object per kind (see :class:`Task`), looked up by ``data.task``.

    from clipbert_emo.tasks import Task, get_task, register_task

    class MyTask(Task):
        name = "my_task"
        ...
    register_task(MyTask())   # data.task=my_task now trains, evaluates and predicts
"""

from __future__ import annotations

from ..config import TASKS, ConfigError
from .base import LOWER_IS_BETTER, Task, TargetReader, TaskLoss
from .classification import MultiLabelTask, SingleLabelTask
from .multitask import MultitaskTask
from .qa import MultipleChoiceQATask, OpenQATask
from .regression import RegressionTask
from .retrieval import RetrievalTask

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make ``task`` available as ``data.task=<task.name>`` (config validation accepts the name from now on)."""
    if not task.name:
        raise ValueError(f"{type(task).__name__} has no name")
    _REGISTRY[task.name] = task
    if task.name not in TASKS:
        TASKS.append(task.name)
    return task


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"data.task={name!r}: expected one of {', '.join(_REGISTRY)}") from None


def load_split(data, split: str):
    """The samples of one split of ``data`` (a DataConfig), annotated as its task kind reads them: the
    manifests, or a public release read from data.root. With data.transcribe set, samples without text get
    the speech recognizer's transcript (data/transcribe.py; cached beside the manifest), unless the experiment
    does not use text at all."""
    from ..data.benchmarks import read_split

    task = get_task(data.task)
    manifest = read_split(data, split, task.target_reader(data))
    if data.transcribe and data.use_text:
        from ..data.transcribe import transcribe_samples, transcript_cache_path

        transcribe_samples(manifest.samples, data.transcribe, transcript_cache_path(manifest.path, data.transcribe))
    return manifest


for _task in (SingleLabelTask(), MultiLabelTask(), MultitaskTask(), RegressionTask(), RetrievalTask(), OpenQATask(),
              MultipleChoiceQATask()):
    register_task(_task)

__all__ = ["Task", "TaskLoss", "TargetReader", "LOWER_IS_BETTER", "get_task", "register_task", "load_split", "SingleLabelTask",
           "MultiLabelTask", "MultitaskTask", "RegressionTask", "RetrievalTask", "OpenQATask", "MultipleChoiceQATask"]
