"""Encryption at rest: AES-256-GCM under a ring of named keys, the first of which seals.

A sealed value is text, ``fl1:<key id>:<base64url(nonce + ciphertext + tag)>``. The key id
lets keys rotate: put a new key first and keep the older ones for as long as what they sealed
is kept (stored replies: 24 hours), then delete them. Every value is sealed with a context
(associated data) that names where it is stored, so a sealed value copied into another row, or
another tenant's, does not open.

The keys come from an environment variable or a key file, one key per line as
``ID SECRET`` (``#`` starts a comment; in the variable, entries may also be separated by
commas). Each secret is at least 32 characters; the AES key is derived from it by HKDF-SHA256.
Where neither is there, a key file is made with a fresh random key (readable by its owner
only), so a new project encrypts from its first call.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from forgeline.credentials import SecretFileError, read_secret_file
from forgeline.errors import ConfigError, ForgelineError

SEALED_PREFIX = "fl1:"
KEY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}"
MIN_SECRET_CHARS = 32
_NONCE_BYTES = 12
_FILE_HEADER = (
    "# Forgeline data keys: one 'ID SECRET' per line. The first seals new data; the others\n"
    "# only open what they sealed. To rotate, add a new line at the top; delete an old line\n"
    "# once what it sealed has expired (stored replies: after 24 hours).\n"
)


class SealError(ForgelineError):
    """A sealed value that does not open: sealed with a key this ring lacks, or altered."""


def _derive(secret: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"forgeline data key v1"
    ).derive(secret.encode("utf-8"))


@dataclass(frozen=True, repr=False)
class KeyRing:
    """Named AES-256-GCM keys, the sealing one first (never printed: ``repr`` is off)."""

    keys: tuple[tuple[str, AESGCM], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")

    @classmethod
    def from_secrets(cls, entries: list[tuple[str, str]]) -> KeyRing:
        return cls(tuple((key_id, AESGCM(_derive(secret))) for key_id, secret in entries))

    @classmethod
    def ephemeral(cls) -> KeyRing:
        """A random key that lives as long as the process (what it seals dies with it)."""
        return cls.from_secrets([("ephemeral", secrets.token_urlsafe(32))])

    @property
    def sealing_key_id(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: bytes, context: bytes) -> str:
        key_id, cipher = self.keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + cipher.encrypt(nonce, plaintext, _bound(key_id, context))
        return f"{SEALED_PREFIX}{key_id}:{base64.urlsafe_b64encode(sealed).decode().rstrip('=')}"

    def open(self, sealed: str, context: bytes) -> bytes:
        """The plaintext of ``sealed``; raises :class:`SealError` if it does not open."""
        if not is_sealed(sealed):
            raise SealError("not a sealed value")
        key_id, _, payload = sealed[len(SEALED_PREFIX) :].partition(":")
        cipher = dict(self.keys).get(key_id)
        if cipher is None:
            raise SealError(
                f"sealed with key '{key_id}', which is not among this server's data keys"
            )
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _bound(key_id, context))
        except (InvalidTag, ValueError):
            raise SealError(f"a value sealed with key '{key_id}' was altered") from None

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(key_id for key_id, _ in self.keys)})"


def _bound(key_id: str, context: bytes) -> bytes:
    return key_id.encode() + b"\0" + context


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


def parse_key_ring(text: str, source: str) -> KeyRing:
    """The keys written in ``text`` (see the module's docstring); ``source`` names it in
    errors (never the secrets)."""
    entries: list[tuple[str, str]] = []
    lines = [part for line in text.splitlines() for part in line.split(",")]
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key_id, *rest = re.split(r"[\s:]+", line, maxsplit=1)
        secret = rest[0].strip() if rest else ""
        if re.fullmatch(KEY_ID_PATTERN, key_id) is None:
            raise ConfigError(
                f"{source}, entry {number}: write each key as 'ID SECRET', the id of letters, "
                "digits, '.', '_' or '-' (at most 32)"
            )
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"{source}, key '{key_id}': the secret has {len(secret)} characters; use at "
                f"least {MIN_SECRET_CHARS}"
            )
        if any(key_id == known for known, _ in entries):
            raise ConfigError(f"{source}: key id '{key_id}' is there twice")
        entries.append((key_id, secret))
    if not entries:
        raise ConfigError(f"{source} holds no key; write one 'ID SECRET' line")
    return KeyRing.from_secrets(entries)


def new_key_line(now: datetime | None = None) -> str:
    """A fresh ``ID SECRET`` line: the id says when the key was made."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"k{stamp}-{secrets.token_hex(2)} {secrets.token_urlsafe(32)}"


def load_key_ring(env: str, file: Path) -> tuple[KeyRing, str | None]:
    """The ring in ``$env``, else in ``file``, else a new ``file`` with one fresh key. The
    second value is a notice for the user when a file was made."""
    if os.environ.get(env, "").strip():
        return parse_key_ring(os.environ[env], f"${env}"), None
    if file.exists():
        try:
            text = read_secret_file(file, "data key")
        except SecretFileError as exc:
            raise ConfigError(str(exc)) from None
        return parse_key_ring(text, f"data key file '{file}'"), None
    line = new_key_line()
    # Written beside, then linked into place: a process starting at the same moment sees
    # either no file or the whole of it, and only one key wins.
    draft = file.with_name(f".{file.name}.{secrets.token_hex(4)}")
    try:
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(_FILE_HEADER + line + "\n")
        os.link(draft, file)
    except FileExistsError:  # another process made it first: use theirs
        return load_key_ring(env, file)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the data key file '{file}' ({exc.strerror}); set ${env} instead"
        ) from None
    finally:
        draft.unlink(missing_ok=True)
    notice = (
        f"made the data key file {file} (encrypts stored replies); keep it out of version "
        f"control, and keep a copy apart from database backups, or set ${env}"
    )
    return parse_key_ring(line, f"data key file '{file}'"), notice
