"""The archive's own checks: encryption that does not open once altered, and members that
must match the manifest, be plain files and stay inside the archive."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from forgeline.backup.archive import ArchiveWriter, BackupError, verified_archive
from forgeline.backup.sealed_stream import (
    CHUNK,
    HEADER_BYTES,
    OpeningReader,
    SealedStreamError,
    SealingWriter,
)

SECRET = "s" * 40


def _sealed(data: bytes) -> bytes:
    raw = io.BytesIO()
    writer = SealingWriter(raw, SECRET)
    for start in range(0, len(data), 100_000):
        writer.write(data[start : start + 100_000])
    writer.close()
    return raw.getvalue()


def _opened(blob: bytes, secret: str = SECRET) -> bytes:
    reader = OpeningReader(io.BytesIO(blob), secret)
    parts = []
    while block := reader.read(10_240):
        parts.append(block)
    return b"".join(parts)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 3])
def test_a_sealed_stream_opens_to_what_was_written(size: int) -> None:
    data = os.urandom(size)
    assert _opened(_sealed(data)) == data


def test_a_sealed_stream_refuses_another_key_an_altered_byte_and_a_cut() -> None:
    blob = _sealed(os.urandom(2 * CHUNK + 3))
    with pytest.raises(SealedStreamError, match="key is not the one"):
        _opened(blob, "t" * 40)
    altered = bytearray(blob)
    altered[HEADER_BYTES + CHUNK + 100] ^= 1
    with pytest.raises(SealedStreamError, match="altered or cut short"):
        _opened(bytes(altered))
    for cut in (HEADER_BYTES + CHUNK + 16, HEADER_BYTES + 2 * (CHUNK + 16), len(blob) - 1):
        with pytest.raises(SealedStreamError):
            _opened(blob[:cut])  # cut at a chunk boundary too: the last chunk is marked
    with pytest.raises(SealedStreamError, match="not an encrypted"):
        _opened(b"plain tar bytes")


def _check(path: Path, secret: str | None) -> None:
    with verified_archive(path, secret):
        pass


def _archive(tmp_path: Path, secret: str | None = None) -> Path:
    source = tmp_path / "source"
    (source / "v1").mkdir(parents=True)
    (source / "v1" / "weights.bin").write_bytes(os.urandom(3000))
    (source / "forgeline.yaml").write_text("name: demo\n")
    writer = ArchiveWriter(tmp_path / "backup.tar.zst", secret)
    writer.add("forgeline.yaml", source / "forgeline.yaml")
    writer.add("models/demo/v1/weights.bin", source / "v1" / "weights.bin")
    writer.finish({"project": "demo", "database": "sqlite", "encrypted": secret is not None})
    return writer.path


def test_an_archive_is_staged_and_checked_whole(tmp_path: Path) -> None:
    path = _archive(tmp_path)
    assert not list(tmp_path.glob(".*partial"))
    with verified_archive(path, None) as staged:
        assert staged.manifest["project"] == "demo"
        assert staged.names("models/") == ["models/demo/v1/weights.bin"]
        weights = staged.path("models/demo/v1/weights.bin").read_bytes()
        assert weights == (tmp_path / "source/v1/weights.bin").read_bytes()
        root = staged.root
    assert not root.exists()  # the staging directory goes with the block


def test_an_encrypted_archive_needs_its_key(tmp_path: Path) -> None:
    path = _archive(tmp_path, SECRET)
    with verified_archive(path, SECRET) as staged:
        assert staged.manifest["encrypted"] is True
    with pytest.raises(BackupError, match="is encrypted: give its key"):
        _check(path, None)
    with pytest.raises(SealedStreamError):
        _check(path, "w" * 40)


def test_a_corrupted_archive_is_refused(tmp_path: Path) -> None:
    path = _archive(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(BackupError, match="refused"):
        _check(path, None)


def _raw_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    return path


def _manifest(files: dict[str, bytes]) -> bytes:
    import hashlib

    listed = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in files.items()
    }
    return json.dumps({"format": "forgeline-backup", "format_version": 1, "files": listed}).encode()


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.txt", tarfile.REGTYPE, "outside it"),
        ("/etc/passwd", tarfile.REGTYPE, "outside it"),
        ("notes/readme.txt", tarfile.REGTYPE, "a backup never writes"),
        ("models/demo/link", tarfile.SYMTYPE, "not a plain file"),
    ],
)
def test_members_outside_the_archive_or_not_plain_files_are_refused(
    tmp_path: Path, name: str, kind: bytes, message: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    path = _raw_archive(
        tmp_path / "evil.tar.zst", [(info, b"x" if kind != tarfile.SYMTYPE else b"")]
    )
    with pytest.raises(BackupError, match=message):
        _check(path, None)
    assert not (tmp_path / "escape.txt").exists()


def test_a_member_the_manifest_does_not_list_or_hash_is_refused(tmp_path: Path) -> None:
    config = (tarfile.TarInfo("forgeline.yaml"), b"name: demo\n")
    extra = (tarfile.TarInfo("models/demo/extra.bin"), b"added later")
    manifest = (tarfile.TarInfo("MANIFEST.json"), _manifest({"forgeline.yaml": b"name: demo\n"}))
    path = _raw_archive(tmp_path / "a.tar.zst", [config, extra, manifest])
    with pytest.raises(BackupError, match="which its manifest does not list"):
        _check(path, None)
    edited = (tarfile.TarInfo("forgeline.yaml"), b"name: other\n")
    path = _raw_archive(tmp_path / "b.tar.zst", [edited, manifest])
    with pytest.raises(BackupError, match="is not what was backed up"):
        _check(path, None)
    path = _raw_archive(tmp_path / "c.tar.zst", [config])
    with pytest.raises(BackupError, match=r"has no MANIFEST\.json"):
        _check(path, None)
