"""Personal data kept from a chat model for one request (``privacy.redact_inputs``).

Before the model sees a conversation, what the detector finds in it is replaced by numbered
placeholders, ``<PERSON_1>``, ``<PHONE_NUMBER_1>``: one per distinct value, the same each time
the value comes back in the conversation. The model answers in placeholders, and
:class:`Restorer` puts the values back into the reply as it streams, holding back the end of a
chunk while it may still be the beginning of a placeholder, so one split across chunks is
restored whole. The mapping lives in the :class:`Placeholders` of one request and nowhere
else: it is never stored, logged or sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forgeline.privacy.detector import Span  # Presidio: imported where detection runs

Detect = Callable[[Sequence[str]], list[list["Span"]]]
"""Finds personal data in texts (:meth:`PiiDetector.detect`)."""

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_([1-9][0-9]*)>")
_LONGEST = 64
"""Characters a placeholder has at most (a type name of 50 and a number): a held-back tail is
never longer, so the reply is never held up by more than that."""
_MAYBE_PLACEHOLDER = re.compile(r"<[A-Z0-9_]*$")
"""The end of a chunk that may be the start of a placeholder."""


class Placeholders:
    """One request's placeholders: which value each stands for."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._values)

    def hide(self, text: str, spans: Sequence[Span]) -> str:
        """``text`` with each span replaced by the placeholder of its value."""
        parts, last = [], 0
        for span in spans:
            parts += [
                text[last : span.start],
                self._name(span.entity_type, text[span.start : span.end]),
            ]
            last = span.end
        return "".join([*parts, text[last:]])

    def _name(self, entity_type: str, value: str) -> str:
        known = self._names.get((entity_type, value))
        if known is not None:
            return known
        self._counts[entity_type] = self._counts.get(entity_type, 0) + 1
        name = f"<{entity_type}_{self._counts[entity_type]}>"
        self._names[(entity_type, value)] = name
        self._values[name] = value
        return name

    def hide_texts(self, texts: Sequence[str], detect: Detect) -> list[str]:
        """Every text with its personal data replaced (a conversation's messages, a prompt)."""
        return [self.hide(text, spans) for text, spans in zip(texts, detect(texts), strict=True)]

    def restore(self, text: str) -> str:
        """``text`` with the placeholders of this request replaced by their values; any other
        ``<...>`` (one the model made up) is left as it is."""
        return PLACEHOLDER.sub(lambda match: self._values.get(match[0], match[0]), text)

    def restorer(self) -> Restorer:
        return Restorer(self)


class Restorer:
    """Restores one streamed reply: :meth:`feed` each chunk, then :meth:`flush` at its end."""

    def __init__(self, placeholders: Placeholders) -> None:
        self._placeholders = placeholders
        self._held = ""

    def feed(self, chunk: str) -> str:
        """What of the reply so far can be sent, with its placeholders restored."""
        text = self._held + chunk
        tail = _MAYBE_PLACEHOLDER.search(text[-_LONGEST:])
        cut = len(text) - len(tail[0]) if tail is not None else len(text)
        self._held = text[cut:]
        return self._placeholders.restore(text[:cut])

    def flush(self) -> str:
        """The rest, at the end of the reply."""
        rest, self._held = self._held, ""
        return self._placeholders.restore(rest)
