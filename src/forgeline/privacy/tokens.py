"""The tokens that stand for personal data: keyed pseudonyms and encrypted values, and
decrypting the latter back (``forgeline unredact``).

- A pseudonym, ``<PERSON_7f3a9c01d2e84b56>``, is the first 64 bits of an HMAC-SHA256 under the
  project's key of the type and the value. The value is compared in a canonical form (NFKC,
  case-folded; for numbers written in groups, such as cards and phones, spaces, dashes, dots
  and brackets dropped), so ``4111 1111 1111 1111`` and ``4111-1111-1111-1111`` get the same
  token, while ``10.0.0.1`` and ``100.0.1`` do not. Irreversible without the key.
- An encrypted value, ``<PERSON:base64url(nonce + AES-256-GCM ciphertext and tag)>``, binds
  its type in as associated data, so a token whose type was edited fails to decrypt like one
  made with another key.

Nothing here imports Presidio, which takes seconds to import (it imports transformers and
torch when they are installed): ``forgeline unredact`` needs only this and the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from forgeline.errors import ForgelineError
from forgeline.privacy.keys import PrivacyKey

_NONCE_BYTES = 12
_TAG_BYTES = 16
ENCRYPTED_TOKEN = re.compile(r"<([A-Z][A-Z0-9_]*):([A-Za-z0-9_-]{38,})>")
"""An encrypted value: its type, then nonce, ciphertext and tag (28 bytes at least) in
unpadded base64url."""


class TokenError(ForgelineError):
    """An encrypted token that cannot be decrypted (another key, or altered)."""


GROUPED_NUMBERS = frozenset(
    {"PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "CN_RESIDENT_ID", "US_BANK_NUMBER"}
)
"""Types whose values are one number however they are grouped (``4111 1111`` is
``4111-1111``); in others (an IP address, a date, an email) a dot or dash is part of the value."""
PSEUDONYM_HEX = 16
"""64 bits of the HMAC: a pseudonym must name one value; with 32, two of 77,000 different
values of one type already share a pseudonym with even odds."""


def _canonical(value: str, entity_type: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    if entity_type in GROUPED_NUMBERS:
        # Every space and dash the detector reads as a separator (NFKC keeps the en dash).
        return re.sub(r"[\s\-\u2010-\u2013\u2212.()]+", "", text)
    return " ".join(text.split())


def pseudonym(value: str, entity_type: str, key: bytes) -> str:
    message = f"{entity_type}\x00{_canonical(value, entity_type)}".encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
    return f"<{entity_type}_{digest}>"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encrypted_token(value: str, entity_type: str, key: bytes) -> str:
    nonce = os.urandom(_NONCE_BYTES)  # random per value: equal values give unequal tokens
    sealed = AESGCM(key).encrypt(nonce, value.encode("utf-8"), entity_type.encode("ascii"))
    return f"<{entity_type}:{_b64(nonce + sealed)}>"


def decrypted_value(entity_type: str, payload: str, key: bytes) -> str:
    """The value of a token's payload; :class:`cryptography.exceptions.InvalidTag` when the
    key is not the one it was made with or the token was changed."""
    sealed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if len(sealed) < _NONCE_BYTES + _TAG_BYTES:
        raise InvalidTag
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    plain = AESGCM(key).decrypt(nonce, ciphertext, entity_type.encode("ascii"))
    return plain.decode("utf-8")


def unredact(text: str, key: PrivacyKey) -> str:
    """``text`` with every encrypted token decrypted back to its value.

    Tokens are found by their pattern rather than by an analyzer, so ``re.sub`` does the
    offset bookkeeping here and knows where a token that fails to decrypt is. Pseudonyms and
    other tokens stay as they are: they cannot be reversed.
    """

    def restore(match: re.Match[str]) -> str:
        try:
            return decrypted_value(match[1], match[2], key.cipher_key)
        except (InvalidTag, ValueError):
            raise TokenError(
                f"cannot decrypt the <{match[1]}:...> token at character {match.start() + 1}: "
                "the key is not the one it was encrypted with, or the token was changed"
            ) from None

    return ENCRYPTED_TOKEN.sub(restore, text)
