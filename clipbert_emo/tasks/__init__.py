"""Task kinds: one object per kind (see :class:`Task`), looked up by ``data.task``.

    from clipbert_emo.tasks import Task, get_task, register_task

    class MyTask(Task):
        name = "my_task"
        ...
    register_task(MyTask())   # data.task=my_task now trains, evaluates and predicts
"""

from __future__ import annotations

from ..config import TASK_KINDS
from .base import LOWER_IS_BETTER, Recipe, Task, TargetReader, TaskLoss
from .classification import MultiLabelTask, SingleLabelTask
from .multitask import MultitaskTask
from .qa import MultipleChoiceQATask, OpenQATask
from .regression import RegressionTask
from .retrieval import RetrievalTask

# The task kinds that ship with the library, registered once below; the registry itself is config.TASK_KINDS, which
# config validation reads, so data.task accepts exactly the kinds get_task finds.
BUILT_IN_TASKS = (SingleLabelTask, MultiLabelTask, MultitaskTask, RegressionTask, RetrievalTask, OpenQATask,
                  MultipleChoiceQATask)


def register_task(task: Task) -> Task:
    """Make ``task`` available as ``data.task=<task.name>`` (config validation accepts the name from now on)."""
    return TASK_KINDS.register(task.name, task)


def get_task(name: str) -> Task:
    """The task kind ``data.task`` names; ConfigError listing the registered kinds for any other name."""
    return TASK_KINDS[name]


def task_kinds() -> tuple[str, ...]:
    """The names data.task accepts, in registration order."""
    return TASK_KINDS.names()


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


for _kind in BUILT_IN_TASKS:
    register_task(_kind())

__all__ = ["Task", "TaskLoss", "TargetReader", "Recipe", "LOWER_IS_BETTER", "get_task", "register_task", "task_kinds",
           "load_split", "BUILT_IN_TASKS", "SingleLabelTask", "MultiLabelTask", "MultitaskTask", "RegressionTask",
           "RetrievalTask", "OpenQATask", "MultipleChoiceQATask"]
