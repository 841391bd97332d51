"""Turning a stream of token bytes into safe text: UTF-8 reassembly and stop strings.

Both are pure Python and know nothing about the model, so they are unit-tested on their own
and the engine only has to feed them one token's bytes at a time.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass


class Utf8Stream:
    """Decodes token bytes to text without ever emitting half a multi-byte character.

    A byte-level BPE token can end in the middle of a character (an emoji is often split over
    two or three tokens), so a token's bytes cannot be decoded on their own. The standard
    library's incremental decoder keeps an incomplete tail until the next bytes complete it.
    Invalid bytes (which a sampled token sequence can produce) become U+FFFD instead of
    failing the whole request.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        """Return the text completed by ``data``; an incomplete character is kept back."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Return what is left at the end of generation (U+FFFD for a truncated character)."""
        return self._decoder.decode(b"", final=True)


@dataclass(frozen=True)
class StopCheck:
    """What may be sent to the client now, and whether a stop string was reached."""

    text: str
    stopped: bool


class StopMatcher:
    """Holds back text that might be the start of a stop string until it is decided.

    Text that matches a stop string is never emitted, even when the stop string arrives
    split over several tokens: the longest tail of the pending text that is a prefix of some
    stop string stays pending. Once a stop string is complete, everything before it is
    released and generation must end.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> StopCheck:
        """Add newly decoded text; return the part that can safely be emitted."""
        if self.stopped:
            raise RuntimeError("StopMatcher.feed called after a stop string was found")
        pending = self._pending + text
        first_stop = min(
            (index for index in (pending.find(stop) for stop in self._stops) if index >= 0),
            default=-1,
        )
        if first_stop >= 0:
            self._pending = ""
            self.stopped = True
            return StopCheck(pending[:first_stop], stopped=True)
        keep = self._longest_partial_stop(pending)
        self._pending = pending[len(pending) - keep :]
        return StopCheck(pending[: len(pending) - keep], stopped=False)

    def flush(self) -> str:
        """Release held-back text when generation ends for another reason than a stop string."""
        text, self._pending = self._pending, ""
        return text

    def _longest_partial_stop(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:length]):
                    longest = length
                    break
        return longest
