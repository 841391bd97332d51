"""The project's privacy key: the secret behind pseudonyms and encrypted tokens.

One secret, read from an environment variable or a key file, gives two keys by HKDF-SHA256
with different labels: one for the HMAC of pseudonyms, one for AES-GCM. Neither key's output
tells anything about the other, and a project's pseudonyms stay the same across files,
machines and runs for as long as its secret does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from forgeline.config.privacy import OperatorName, PrivacyConfig
from forgeline.credentials import SecretFileError, read_secret_file
from forgeline.errors import ForgelineError

KEYED_OPERATORS: frozenset[OperatorName] = frozenset({"pseudonymize", "encrypt"})
"""The operators that need the key."""
MIN_SECRET_CHARS = 32
_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class PrivacyKeyError(ForgelineError):
    """The privacy key is missing, too short, or not the one a token was made with."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


@dataclass(frozen=True, repr=False)
class PrivacyKey:
    """The two keys derived from the project's secret (never printed: ``repr`` is off)."""

    pseudonym_key: bytes
    cipher_key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> PrivacyKey:
        material = secret.encode("utf-8")
        return cls(
            pseudonym_key=_derive(material, b"forgeline privacy: pseudonyms v1"),
            cipher_key=_derive(material, b"forgeline privacy: AES-GCM v1"),
        )

    def __repr__(self) -> str:
        return "PrivacyKey(...)"


def load_privacy_key(
    config: PrivacyConfig, purpose: str, key_file: Path | None = None, root: Path | None = None
) -> PrivacyKey:
    """The key from ``key_file`` (given on the command line), else from the environment
    variable ``config.key_env``, else from ``config.key_file`` (relative to ``root``, the
    project directory). ``purpose`` says in an error what needs the key."""
    if key_file is None and os.environ.get(config.key_env):
        return _checked(os.environ[config.key_env].strip(), f"${config.key_env}")
    path = key_file
    if path is None and config.key_file is not None:
        path = (
            config.key_file
            if root is None or config.key_file.is_absolute()
            else root / config.key_file
        )
    if path is None:
        raise PrivacyKeyError(
            f"{purpose} needs the project's privacy key: set the environment variable "
            f"{config.key_env}, or give a key file with privacy.key_file in forgeline.yaml or "
            f"--key-file. Make a key with `{_MAKE_ONE}` and keep it as you would a password: "
            "whoever holds it can recompute pseudonyms and decrypt encrypted values"
        )
    try:
        secret = read_secret_file(path, "privacy key")
    except SecretFileError as exc:
        raise PrivacyKeyError(str(exc)) from None
    return _checked(secret, f"key file '{path}'")


def _checked(secret: str, source: str) -> PrivacyKey:
    if len(secret) < MIN_SECRET_CHARS:
        raise PrivacyKeyError(
            f"the privacy key in {source} has {len(secret)} characters; use at least "
            f"{MIN_SECRET_CHARS} (make one with `{_MAKE_ONE}`)"
        )
    return PrivacyKey.from_secret(secret)
