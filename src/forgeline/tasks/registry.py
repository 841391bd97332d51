"""The task registry: ``task:`` names to task classes. The only place task types are listed."""

from __future__ import annotations

from forgeline.errors import ConfigError
from forgeline.tasks.base import Task
from forgeline.tasks.chat import ChatModel
from forgeline.tasks.knowledge_qa import KnowledgeQA
from forgeline.tasks.tabular import TabularClassifier
from forgeline.tasks.text_classification import TextClassifier
from forgeline.tasks.token_classification import TokenClassifier

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (TextClassifier, TabularClassifier, ChatModel, TokenClassifier, KnowledgeQA)
}


def get_task(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(
            f"task: unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}"
        ) from None
