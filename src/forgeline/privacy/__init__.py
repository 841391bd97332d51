"""Finding personal data in text and redacting it (``forgeline redact``, ``forgeline unredact``).

    detector = PiiDetector.from_config(project.config.privacy, project.registry_dir)
    spans = detector.detect(["Call Maria Lopez on +44 20 7946 0958"])   # list[list[Span]]
    key = load_privacy_key(project.config.privacy, "encrypt")
    redacted = Redactor(detector, "encrypt", key).redact(texts)         # list[Redaction]
    original = unredact(redacted[0].text, key)

:mod:`.detector` sets Presidio's analyzer up from the config, :mod:`.recognizers` holds the
recognizers Forgeline adds (Chinese identifiers, long cards, phones by shape), :mod:`.ner`
the one backed by a token-classification model of the registry, :mod:`.operators` the ways
to replace what was found, :mod:`.tokens` pseudonyms and encrypted values, :mod:`.keys` the
project's key.

The names are imported when first used: Presidio takes seconds to import (it imports
transformers and torch when they are installed), which unredacting and key errors do not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgeline.privacy.detector import PiiDetector, Span
    from forgeline.privacy.keys import (
        KEYED_OPERATORS,
        PrivacyKey,
        PrivacyKeyError,
        load_privacy_key,
    )
    from forgeline.privacy.operators import Redaction, Redactor
    from forgeline.privacy.tokens import TokenError, unredact

_MODULE_OF = {
    "PiiDetector": "detector",
    "Span": "detector",
    "KEYED_OPERATORS": "keys",
    "PrivacyKey": "keys",
    "PrivacyKeyError": "keys",
    "load_privacy_key": "keys",
    "Redaction": "operators",
    "Redactor": "operators",
    "TokenError": "tokens",
    "unredact": "tokens",
}

__all__ = [
    "KEYED_OPERATORS",
    "PiiDetector",
    "PrivacyKey",
    "PrivacyKeyError",
    "Redaction",
    "Redactor",
    "Span",
    "TokenError",
    "load_privacy_key",
    "unredact",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"forgeline.privacy.{_MODULE_OF[name]}"), name)
