"""The backup archive: a tar stream, zstandard-compressed, optionally encrypted
(:mod:`.sealed_stream`), with a manifest of every member's SHA-256 as its last member.

Reading never writes outside a fresh staging directory, and the caller gets the staged files
only once every member has matched the manifest: a corrupted or altered archive is refused
before anything of the project is touched. Members must be plain files under the names a
backup writes (``forgeline.yaml``, ``database/``, ``models/``); links, devices, absolute
paths and ``..`` are refused. (Without encryption, the manifest catches corruption but not a
forger who rewrites it too; an encrypted archive does not open once altered.)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

import zstandard

from forgeline import __version__
from forgeline.backup.sealed_stream import OpeningReader, SealingWriter, is_sealed_stream
from forgeline.errors import ForgelineError

MANIFEST = "MANIFEST.json"
FORMAT = "forgeline-backup"
FORMAT_VERSION = 1
MEMBER_ROOTS = ("forgeline.yaml", "database/", "models/")
_COPY_BLOCK = 1 << 20


class BackupError(ForgelineError):
    """A backup that cannot be made, or an archive that is refused."""


class _Hashing:
    """A file read through, its SHA-256 taken on the way (for tarfile.addfile)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        return data


class ArchiveWriter:
    """Adds files to the archive at ``path`` (written beside it and renamed when complete)."""

    def __init__(self, path: Path, secret: str | None) -> None:
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial")
        self._raw = self._partial.open("wb")
        self._sealing = SealingWriter(self._raw, secret) if secret is not None else None
        sink: BinaryIO = self._sealing if self._sealing is not None else self._raw  # type: ignore[assignment]
        self._compressed = zstandard.ZstdCompressor(level=3).stream_writer(sink, closefd=False)
        self._tar = tarfile.open(fileobj=self._compressed, mode="w|")  # noqa: SIM115
        self.files: dict[str, dict[str, Any]] = {}

    def add(self, name: str, source: Path) -> None:
        info = tarfile.TarInfo(name)
        info.size = source.stat().st_size
        info.mtime = int(source.stat().st_mtime)
        info.mode = 0o600
        with source.open("rb") as handle:
            hashing = _Hashing(handle)
            self._tar.addfile(info, hashing)
        self.files[name] = {"sha256": hashing.digest.hexdigest(), "bytes": info.size}

    def finish(self, about: dict[str, Any]) -> None:
        """Write the manifest (``about`` and every member's hash) and close the archive."""
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "forgeline": __version__,
            **about,
            "files": self.files,
        }
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o600
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._compressed.close()
        if self._sealing is not None:
            self._sealing.close()
        self._raw.close()
        os.replace(self._partial, self.path)

    def abandon(self) -> None:
        self._raw.close()
        self._partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive's files, staged under ``root`` and checked against its manifest."""

    root: Path
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.root / name

    def names(self, under: str) -> list[str]:
        return sorted(name for name in self.manifest["files"] if name.startswith(under))


def _checked_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name != str(path):
        raise BackupError(f"refused: the archive holds a member outside it ('{name}')")
    if name != MANIFEST and not any(
        name == root or (root.endswith("/") and name.startswith(root)) for root in MEMBER_ROOTS
    ):
        raise BackupError(f"refused: the archive holds a member a backup never writes ('{name}')")
    return name


@contextmanager
def verified_archive(path: Path, secret: str | None) -> Iterator[VerifiedArchive]:
    """The archive at ``path`` staged in a temporary directory (removed after the block),
    once every member matched the manifest; :class:`BackupError` otherwise."""
    with path.open("rb") as raw, tempfile.TemporaryDirectory(prefix="forgeline-restore-") as work:
        encrypted = is_sealed_stream(raw.read(64))
        raw.seek(0)
        if encrypted and secret is None:
            raise BackupError(
                f"{path.name} is encrypted: give its key (FORGELINE_BACKUP_KEY or --key-file)"
            )
        try:
            source: BinaryIO = OpeningReader(raw, secret) if encrypted else raw  # type: ignore[arg-type, assignment]
            hashes = _stage(source, Path(work))
        except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
            raise BackupError(f"refused: {path.name} is not a readable backup ({exc})") from None
        manifest = _manifest(Path(work), hashes, path.name)
        if manifest.get("encrypted", False) != encrypted:
            raise BackupError(f"refused: {path.name} was altered (its encryption differs)")
        yield VerifiedArchive(Path(work), manifest)


def _stage(source: BinaryIO, root: Path) -> dict[str, str]:
    """Every member written under ``root``; their SHA-256 by name."""
    hashes: dict[str, str] = {}
    stream = zstandard.ZstdDecompressor().stream_reader(source)
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            name = _checked_name(member.name)
            if not member.isfile():
                raise BackupError(f"refused: archive member '{name}' is not a plain file")
            if name in hashes:
                raise BackupError(f"refused: archive member '{name}' is there twice")
            extracted = tar.extractfile(member)
            assert extracted is not None
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with target.open("wb") as out:
                while block := extracted.read(_COPY_BLOCK):
                    digest.update(block)
                    out.write(block)
            hashes[name] = digest.hexdigest()
    return hashes


def _manifest(root: Path, hashes: dict[str, str], archive: str) -> dict[str, Any]:
    if MANIFEST not in hashes:
        raise BackupError(f"refused: {archive} has no {MANIFEST} (not a backup, or cut short)")
    try:
        manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        listed: dict[str, dict[str, Any]] = manifest["files"]
        if manifest["format"] != FORMAT:
            raise ValueError("format")
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"refused: {archive}'s {MANIFEST} is not a backup manifest") from None
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BackupError(
            f"{archive} was made by a newer Forgeline ({manifest.get('forgeline')}); "
            "upgrade to restore it"
        )
    members = set(hashes) - {MANIFEST}
    for name in sorted(members | set(listed)):
        if name not in listed:
            raise BackupError(
                f"refused: {archive} holds '{name}', which its manifest does not list"
            )
        if name not in members:
            raise BackupError(f"refused: {archive} lacks '{name}', which its manifest lists")
        if hashes[name] != listed[name].get("sha256"):
            raise BackupError(f"refused: '{name}' in {archive} is not what was backed up (SHA-256)")
    return manifest
