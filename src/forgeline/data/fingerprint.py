"""A content hash of the data a model was trained on, stored with the model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(files: Mapping[str, Path], settings: str = "") -> dict[str, object]:
    """Hash each file and the whole set (files plus the settings that shape the data)."""
    per_file = {role: file_sha256(path) for role, path in sorted(files.items())}
    combined = hashlib.sha256(settings.encode())
    for role, digest in per_file.items():
        combined.update(f"{role}:{digest}\n".encode())
    return {"sha256": combined.hexdigest(), "files": per_file}
