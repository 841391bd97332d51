"""Immutable model versions with a ``latest`` pointer, loaded only after verification.

Layout::

    models/<name>/LATEST                 the version `latest` points to (one line)
    models/<name>/v1/                    one immutable version
        forgeline-manifest.json          task, provenance and the SHA-256 of every file below
        model.safetensors, config.json   weights and architecture (task-specific files)
        forgeline.yaml                   the resolved config used to train, without the service
                                         sections (serve, billing, database, redis: credentials)
        metrics.json                     validation metrics measured during training
        MODEL_CARD.md
        evaluation/                      written by `forgeline evaluate`; not part of the model

A version is written to a temporary directory and renamed into place, so a crash never leaves a
half-written version, and an existing version is never overwritten. Loading refuses anything the
registry did not write: a directory without a manifest, a file that is not in the manifest, a
file whose hash changed, and any pickle-based file, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from forgeline.config.service import without_service_sections
from forgeline.data.fingerprint import file_sha256
from forgeline.errors import RegistryError
from forgeline.evaluate.metrics import metrics_json
from forgeline.registry.card import render_model_card
from forgeline.tasks.base import Generator, Task, generator
from forgeline.tasks.registry import get_task

MANIFEST = "forgeline-manifest.json"
MANIFEST_FORMAT = "forgeline-model/1"
LATEST = "LATEST"
CONFIG_FILE = "forgeline.yaml"
EVALUATION_DIR = "evaluation"
# Formats that unpickle on load (torch .bin/.pt, joblib, numpy object arrays, ...).
PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".dill"}
)
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def evaluation_dir(self) -> Path:
        return self.path / EVALUATION_DIR

    def config(self) -> dict[str, Any]:
        """The config this version was trained with (as written in it)."""
        loaded = yaml.safe_load((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    model: Task


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in ("forgeline", "torch", "transformers", "numpy", "scikit-learn", "pandas"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    import platform

    found["python"] = platform.python_version()
    return found


def _write_atomic(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        directory = self.root / name
        if not directory.is_dir():
            return []
        numbered = [
            (int(m.group(1)), p.name)
            for p in directory.iterdir()
            if p.is_dir() and (m := _VERSION.match(p.name))
        ]
        return [version for _, version in sorted(numbered)]

    def latest(self, name: str) -> str:
        pointer = self.root / name / LATEST
        if not pointer.is_file():
            raise RegistryError(
                f"no trained model '{name}' in {self.root}; run `forgeline train` first"
            )
        return pointer.read_text(encoding="utf-8").strip()

    def resolve(self, name: str, version: str = "latest") -> ModelVersion:
        chosen = self.latest(name) if version == "latest" else version
        path = self.root / name / chosen
        if not _VERSION.match(chosen) or not path.is_dir():
            known = ", ".join(self.versions(name)) or "none"
            raise RegistryError(f"model '{name}' has no version '{chosen}' (versions: {known})")
        return ModelVersion(name, chosen, path, self._verified_manifest(path))

    def load(
        self, name: str, version: str = "latest", loaded: dict[str, LoadedModel] | None = None
    ) -> LoadedModel:
        """The model, bound to the models it generates with (see :meth:`bind`)."""
        model = self._load_unbound(name, version)
        self.bind(name, model.model, loaded)
        return model

    def _load_unbound(self, name: str, version: str = "latest") -> LoadedModel:
        resolved = self.resolve(name, version)
        task = get_task(str(resolved.manifest["task"]))
        return LoadedModel(resolved, task.load(resolved.path))

    def bind(self, name: str, model: Task, loaded: dict[str, LoadedModel] | None = None) -> None:
        """Bind ``model`` (named ``name``) to the models it generates with, at their latest
        versions: taken from ``loaded`` when there, else loaded and added to it, so a process
        that serves several models starts one engine per chat model."""
        if "generate" not in model.capabilities:
            return
        using = generator(model)
        loaded = {} if loaded is None else loaded
        bound: dict[str, Generator] = {}
        for other in using.requires:
            if other not in loaded:
                if not self.versions(other):
                    raise RegistryError(
                        f"model '{name}' answers through the chat model '{other}', which is not "
                        f"in the registry {self.root}: train '{other}' first, with the same "
                        "`registry:` in its forgeline.yaml"
                    )
                # Not bound in turn: a model it answers through must need no other.
                loaded[other] = self._load_unbound(other)
            target = loaded[other].model
            if "generate" not in target.capabilities or generator(target).requires:
                raise RegistryError(
                    f"model '{name}' answers through '{other}', a {target.name} model; name a "
                    "chat model"
                )
            bound[other] = generator(target)
        using.bind(bound)

    def _verified_manifest(self, path: Path) -> dict[str, Any]:
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise RegistryError(
                f"{path}: not a Forgeline model (no {MANIFEST}); refusing to load files "
                "the registry did not write"
            )
        try:
            manifest: dict[str, Any] = json.loads(manifest_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{manifest_file}: unreadable manifest ({exc})") from None
        if manifest.get("format") != MANIFEST_FORMAT:
            raise RegistryError(
                f"{manifest_file}: unknown manifest format {manifest.get('format')!r}"
            )
        expected: dict[str, str] = manifest.get("files", {})
        for file in sorted(path.rglob("*")):
            if not file.is_file():
                continue
            relative = file.relative_to(path).as_posix()
            if file.suffix.lower() in PICKLE_SUFFIXES:
                raise RegistryError(
                    f"{file}: refusing to load a pickle-based file ({file.suffix}); Forgeline "
                    "models hold weights as safetensors"
                )
            if relative == MANIFEST or relative.startswith(f"{EVALUATION_DIR}/"):
                continue
            if relative not in expected:
                raise RegistryError(f"{file}: file not written by the Forgeline registry")
        for relative, digest in expected.items():
            file = path / relative
            if not file.is_file():
                raise RegistryError(f"{path}: missing model file '{relative}'")
            if file_sha256(file) != digest:
                raise RegistryError(f"{file}: contents changed since the model was registered")
        return manifest

    # -- writing -----------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        model: Task,
        *,
        config: dict[str, Any],
        data_fingerprint: dict[str, Any],
        base_model: str,
        derived_from: str | None = None,
        attachments: Mapping[str, bytes] | None = None,
    ) -> ModelVersion:
        """Save ``model`` as the next version of ``name`` and point ``latest`` at it.
        ``config`` is the resolved project config; its service sections are never written.
        ``attachments`` are more files of the version by relative path (e.g. a training
        report), hashed in the manifest like the model's own."""
        model_root = self.root / name
        model_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=model_root, prefix=".staging-"))
        try:
            model.save(staging)
            model_config = yaml.safe_dump(without_service_sections(config), sort_keys=False)
            (staging / CONFIG_FILE).write_text(model_config, encoding="utf-8")
            metrics = model.training_metrics
            (staging / "metrics.json").write_text(metrics_json(metrics), encoding="utf-8")
            existing = self.versions(name)
            version = f"v{int(existing[-1][1:]) + 1}" if existing else "v1"
            manifest: dict[str, Any] = {
                "format": MANIFEST_FORMAT,
                "name": name,
                "version": version,
                "task": model.name,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "base_model": base_model,
                "labels": model.labels,
                "data_fingerprint": data_fingerprint,
                "packages": _package_versions(),
            }
            if derived_from is not None:
                manifest["derived_from"] = derived_from
            card = render_model_card(manifest, metrics)
            (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")
            for relative, content in (attachments or {}).items():
                attached = staging / relative
                if (
                    Path(relative).is_absolute()
                    or ".." in Path(relative).parts
                    or attached.exists()
                ):
                    raise RegistryError(f"attachment '{relative}' would overwrite a model file")
                attached.parent.mkdir(parents=True, exist_ok=True)
                attached.write_bytes(content)
            manifest["files"] = {
                f.relative_to(staging).as_posix(): file_sha256(f)
                for f in sorted(staging.rglob("*"))
                if f.is_file()
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            target = model_root / version
            try:
                # rename() of a directory onto an existing non-empty one fails: versions are
                # never overwritten, even by two trainings finishing at the same moment.
                staging.rename(target)
            except OSError:
                raise RegistryError(f"{target} already exists; versions are immutable") from None
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        self.set_latest(name, version)
        return ModelVersion(name, version, target, manifest)

    def set_latest(self, name: str, version: str) -> None:
        """Point ``latest`` at an existing version (also how a rollback is done)."""
        self.resolve(name, version)
        _write_atomic(self.root / name / LATEST, version + "\n")
