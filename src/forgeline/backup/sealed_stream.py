"""An encrypted archive, written and read as a stream: AES-256-GCM over chunks of 1 MiB.

``cryptography`` seals whole messages only, and an archive holds every model version (hundreds
of MB), so it is cut into chunks as in the STREAM construction (Hoang, Reyhanitabar, Rogaway
and Vizár, 2015; what age and Tink's streaming AEAD do): each chunk's nonce is a random prefix,
the chunk's number and a flag marking the last one, so chunks that are reordered, dropped,
repeated or cut off after any chunk fail to open. The header (a magic string, the salt of the
key derivation and the nonce prefix) is bound into every chunk as associated data.

The key is derived from a secret of at least 32 characters with HKDF-SHA256 and the salt.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from forgeline.errors import ForgelineError

MAGIC = b"FORGELINE-BACKUP-AES256GCM-1\n"
CHUNK = 1 << 20
_SALT, _PREFIX, _TAG = 16, 7, 16
HEADER_BYTES = len(MAGIC) + _SALT + _PREFIX


class SealedStreamError(ForgelineError):
    """An encrypted archive that does not open: another key, altered, or cut short."""


def _cipher(secret: str, salt: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"forgeline backup v1")
    return AESGCM(key.derive(secret.encode("utf-8")))


def _nonce(prefix: bytes, number: int, last: bool) -> bytes:
    return prefix + struct.pack(">I?", number, last)


class SealingWriter:
    """A writable file object that encrypts into ``raw``; :meth:`close` seals the last chunk
    (without it the archive reads as cut short)."""

    def __init__(self, raw: BinaryIO, secret: str) -> None:
        salt, self._prefix = os.urandom(_SALT), os.urandom(_PREFIX)
        self._header = MAGIC + salt + self._prefix
        self._cipher = _cipher(secret, salt)
        self._raw = raw
        self._raw.write(self._header)
        self._buffer = bytearray()
        self._number = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        while (
            len(self._buffer) > CHUNK
        ):  # keep at least one byte back: the last chunk is sealed apart
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        nonce = _nonce(self._prefix, self._number, last)
        self._raw.write(self._cipher.encrypt(nonce, chunk, self._header))
        self._number += 1

    def close(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()

    def flush(self) -> None:
        return None


class OpeningReader:
    """A readable file object of what a :class:`SealingWriter` wrote to ``raw``."""

    def __init__(self, raw: BinaryIO, secret: str) -> None:
        header = raw.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
            raise SealedStreamError("not an encrypted Forgeline backup")
        self._header = header
        self._prefix = header[-_PREFIX:]
        self._cipher = _cipher(secret, header[len(MAGIC) : len(MAGIC) + _SALT])
        self._raw = raw
        self._number = 0
        self._plain = b""
        self._offset = 0
        self._ahead = raw.read(CHUNK + _TAG)
        self._done = False

    def _next_chunk(self) -> None:
        sealed, self._ahead = self._ahead, self._raw.read(CHUNK + _TAG)
        last = not self._ahead
        try:
            self._plain = self._cipher.decrypt(
                _nonce(self._prefix, self._number, last), sealed, self._header
            )
        except InvalidTag:
            if self._number == 0:
                what = "the key is not the one it was made with, or it was altered"
            else:
                start = HEADER_BYTES + self._number * (CHUNK + _TAG)
                what = f"from byte {start} on it was altered or cut short"
            raise SealedStreamError(f"the archive does not decrypt: {what}") from None
        self._offset = 0
        self._number += 1
        self._done = last

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        have = 0
        while wanted is None or have < wanted:
            if self._offset == len(self._plain):
                if self._done:
                    break
                self._next_chunk()
                continue
            end = len(self._plain) if wanted is None else self._offset + wanted - have
            take = self._plain[self._offset : end]
            self._offset += len(take)
            parts.append(take)
            have += len(take)
        return b"".join(parts)


def is_sealed_stream(head: bytes) -> bool:
    return head.startswith(MAGIC)
