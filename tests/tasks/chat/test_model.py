"""The chat model as a registered version: referenced or copied weights, checked by hash."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from forgeline.base_models import CATALOGUE
from forgeline.config.load import load_project
from forgeline.errors import ConfigError, RegistryError
from forgeline.registry import ModelRegistry
from forgeline.tasks.base import ChatMessage, generator
from forgeline.tasks.chat import ChatModel
from forgeline.tasks.chat.scoring import Scorer
from tests.conftest import write_project

CONFIG = """\
name: assistant
task: chat
base_model: {base}
system_prompt: You are a helpful support assistant.
generation: {{max_tokens: 64, temperature: 0}}
engine: {{context_tokens: 512, parallel: 2, threads: 2}}
"""


def _register(tmp_path: Path, base: str = "smollm2-135m") -> ModelRegistry:
    config = write_project(tmp_path, CONFIG.format(base=base))
    project = load_project(config)
    model = ChatModel.fit(project, ChatModel.prepare_data(project), lambda _: None)
    registry = ModelRegistry(project.registry_dir)
    registry.publish(
        "assistant",
        model,
        config=project.config.model_dump(mode="json"),
        data_fingerprint={"sha256": "", "files": {}},
        base_model=base,
    )
    return registry


def test_a_catalogue_model_is_referenced_by_path_and_hash_not_copied(tmp_path: Path) -> None:
    registry = _register(tmp_path)
    version = registry.root / "assistant" / "v1"
    assert not list(version.glob("*.gguf"))
    loaded = generator(registry.load("assistant").model)
    assert loaded.system_prompt == "You are a helpful support assistant."
    assert loaded.generation.max_tokens == 64 and loaded.engine_settings.parallel == 2
    assert "generate" in loaded.capabilities and "predict" not in loaded.capabilities


def test_a_local_gguf_is_copied_into_the_version(tmp_path: Path) -> None:
    local = tmp_path / "weights" / "my-model.gguf"
    local.parent.mkdir()
    shutil.copyfile(CATALOGUE["smollm2-135m"].path(), local)
    registry = _register(tmp_path, base="weights/my-model.gguf")
    version = registry.root / "assistant" / "v1"
    assert (version / "model.gguf").is_file()
    local.unlink()  # the version does not depend on the file it came from
    assert isinstance(registry.load("assistant").model, ChatModel)


def test_a_changed_base_model_file_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "base.gguf"
    shutil.copyfile(CATALOGUE["smollm2-135m"].path(), local)
    registry = _register(tmp_path)
    # The version references the package's file; point it at a copy, then change the copy.
    chat_file = registry.root / "assistant" / "v1" / "chat.json"
    text = chat_file.read_text().replace(str(CATALOGUE["smollm2-135m"].path()), str(local))
    chat_file.write_text(text)
    with local.open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(RegistryError):  # the manifest sees chat.json changed, too
        registry.load("assistant")
    with pytest.raises(RegistryError, match="contents changed since v1 was registered"):
        ChatModel.load(registry.root / "assistant" / "v1")


def test_an_encoder_is_not_a_chat_model(tmp_path: Path) -> None:
    config = write_project(tmp_path, CONFIG.format(base="minilm-l6"))
    project = load_project(config)
    with pytest.raises(ConfigError, match="is an encoder, not a chat model"):
        ChatModel.fit(project, ChatModel.prepare_data(project), lambda _: None)


def test_a_sensible_reply_is_likelier_than_nonsense() -> None:
    question = ChatMessage(role="user", content="What is the capital of France?")
    with Scorer(CATALOGUE["smollm2-135m"].path(), 512, threads=2) as scorer:
        tokens, spans = scorer.reply_spans([question, {"role": "assistant", "content": "Paris."}])
        assert len(spans) == 1 and spans[0].stop == len(tokens)
        good = scorer.score(
            [question, {"role": "assistant", "content": "The capital is Paris."}], "a"
        )
        bad = scorer.score(
            [question, ChatMessage(role="assistant", content="Purple elephants on Tuesdays.")], "b"
        )
    per_token = [s.negative_log_likelihood / s.tokens for s in (good, bad)]
    assert math.exp(per_token[0]) < math.exp(per_token[1]) / 10
