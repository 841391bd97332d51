"""The task registry: ``task:`` names to task classes. The only place task types are listed.

A task's module is imported when the task is first looked up, not with this module: each pulls
in its own heavy libraries (PyTorch and transformers, LightGBM, llama.cpp), and commands that
need no model (``forgeline keys``, ``audit``, ``--help``) should not wait for them.
"""

from __future__ import annotations

from importlib import import_module

from forgeline.errors import ConfigError
from forgeline.tasks.base import Task

TASKS: dict[str, str] = {
    "text-classification": "forgeline.tasks.text_classification:TextClassifier",
    "tabular-classification": "forgeline.tasks.tabular:TabularClassifier",
    "chat": "forgeline.tasks.chat:ChatModel",
    "token-classification": "forgeline.tasks.token_classification:TokenClassifier",
    "knowledge-qa": "forgeline.tasks.knowledge_qa:KnowledgeQA",
}
"""Each task's name and where its class is (``module:class``)."""


def get_task(name: str) -> type[Task]:
    try:
        module, _, attribute = TASKS[name].partition(":")
    except KeyError:
        raise ConfigError(
            f"task: unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}"
        ) from None
    task: type[Task] = getattr(import_module(module), attribute)
    return task
