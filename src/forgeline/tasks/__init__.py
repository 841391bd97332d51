"""Tasks: one package per kind of model, all behind the :class:`~forgeline.tasks.base.Task` interface."""

from forgeline.tasks.base import DataSplits, Evaluation, Prediction, ReportSection, Task
from forgeline.tasks.registry import TASKS, get_task

__all__ = ["TASKS", "DataSplits", "Evaluation", "Prediction", "ReportSection", "Task", "get_task"]
