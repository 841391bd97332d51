"""Load ``forgeline.yaml``: parse, validate against the schema, resolve and check paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from forgeline.config.schema import PROJECT_CONFIG, AnyTaskConfig
from forgeline.errors import ConfigError

PROJECT_FILE = "forgeline.yaml"
_TASK_NAMES = frozenset(PROJECT_CONFIG.json_schema()["discriminator"]["mapping"])
ConfigT = TypeVar("ConfigT", bound=AnyTaskConfig)


@dataclass(frozen=True)
class Project:
    """A validated config and the directory its relative paths are resolved against."""

    config: AnyTaskConfig
    root: Path
    config_file: Path

    def config_for(self, kind: type[ConfigT]) -> ConfigT:
        """The config as the schema a task expects (tasks are only handed their own kind)."""
        if not isinstance(self.config, kind):
            raise ConfigError(
                f"{self.config_file}: task '{self.config.task}' has no {kind.__name__}"
            )
        return self.config

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.root / path)

    @property
    def registry_dir(self) -> Path:
        return self.resolve(self.config.registry)

    def data_files(self) -> dict[str, Path]:
        """The data files by config field, resolved against the project directory."""
        return {field: self.resolve(p) for field, p in self.written_data_files().items()}

    def written_data_files(self) -> dict[str, Path]:
        """The data files by config field, as written in the config."""
        data = self.config.data
        return data.files() if data is not None else {}


def find_project_file(config: Path | None = None) -> Path:
    """The config file given, or ``forgeline.yaml`` in the current directory."""
    path = config if config is not None else Path.cwd() / PROJECT_FILE
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.is_file():
        raise ConfigError(
            f"no such config file '{path}'. Run this inside a project made by "
            "`forgeline init`, or pass --config PATH"
        )
    return path


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def _is_union_member(part: int | str) -> bool:
    """Pydantic names the member of a union it tried (``float``, ``literal['auto']``) in
    error locations; those are not keys a user wrote."""
    return isinstance(part, str) and ("[" in part or part in _TYPE_NAMES)


_TYPE_NAMES = frozenset({"float", "int", "str", "bool", "list", "dict", "none"})


def _format_validation_error(error: ValidationError, source: Path) -> str:
    problems: dict[str, list[str]] = {}
    for item in error.errors():
        loc = tuple(item["loc"])
        # A discriminated union puts the task name first; drop it and union member names.
        if loc and loc[0] in _TASK_NAMES:
            loc = loc[1:]
        field = _format_location(tuple(part for part in loc if not _is_union_member(part)))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `forgeline config schema` lists keys)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            field, message = "task", f"choose one of {', '.join(sorted(_TASK_NAMES))}"
        else:
            message = message.removeprefix("Value error, ")
            value = item.get("input")
            if not isinstance(value, dict | list):
                message += f" (got {value!r})"
        problems.setdefault(field, [])
        if message not in problems[field]:
            problems[field].append(message)
    lines = [f"{source}: invalid config"]
    lines += [f"  {field}: {' or '.join(messages)}" for field, messages in problems.items()]
    return "\n".join(lines)


def parse_config(raw: Any, source: Path) -> AnyTaskConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level")
    try:
        return PROJECT_CONFIG.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def load_project(config: Path | None = None, *, check_files: bool = True) -> Project:
    """Read, validate and check a project config before any work starts."""
    path = find_project_file(config)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where} not valid YAML: {problem}") from None
    project = Project(config=parse_config(raw, path), root=path.parent.resolve(), config_file=path)
    data = project.config.data
    if check_files and data is not None:
        for field, file in project.data_files().items():
            shown = project.written_data_files()[field]
            if not file.is_file():
                raise ConfigError(f"{path}: data.{field}: no such file '{shown}'")
            if file.suffix.lower() not in data.suffixes:
                raise ConfigError(
                    f"{path}: data.{field}: unsupported file type '{file.suffix}' in '{shown}'; "
                    f"use one of {', '.join(data.suffixes)}"
                )
    return project
