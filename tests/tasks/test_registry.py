"""The task registry names each task once, and imports a task only when it is looked up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forgeline.errors import ConfigError
from forgeline.tasks.registry import TASKS, get_task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_name_finds_the_task_of_that_name(name: str) -> None:
    assert get_task(name).name == name


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'ner'; known tasks: chat, knowledge-qa"):
        get_task("ner")


def test_commands_without_a_model_do_not_import_the_tasks() -> None:
    # `forgeline --help`, `keys` and `audit` must not wait for PyTorch, LightGBM or llama.cpp.
    probe = (
        "import sys, forgeline.cli.app; "
        "print(sorted(m for m in ('torch', 'lightgbm', 'llama_cpp', 'transformers') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
