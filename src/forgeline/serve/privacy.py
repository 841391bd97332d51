"""Personal data in a server: ``POST /v1/redact`` and the placeholders of chat models whose
config sets ``privacy.redact_inputs``.

One :class:`ServerPrivacy` per server holds the detectors (Presidio and, with ``ner_model``, a
token-classification model): the serving project's, for ``/v1/redact``, and each redacting chat
model's own, from its version's config. They are loaded with the models, before ``/readyz``
says ready, and run on one thread of their own (a detector is not thread-safe), at most
``max_queue`` calls waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from forgeline.config.privacy import OperatorName, PrivacyConfig
from forgeline.registry import LoadedModel
from forgeline.serve.batching import Lane, Overloaded
from forgeline.serve.errors import ApiError

if TYPE_CHECKING:
    from forgeline.privacy import PiiDetector, PrivacyKey, Redaction, Redactor
    from forgeline.privacy.placeholders import Placeholders

log = logging.getLogger("forgeline.serve")
_T = TypeVar("_T")


class ServerPrivacy:
    def __init__(
        self,
        config: PrivacyConfig,
        registry_dir: Path,
        root: Path,
        *,
        redact: bool,
        max_queue: int,
    ) -> None:
        """``config``: the serving project's privacy section; ``redact``: offer /v1/redact."""
        self.config = config
        self.offers_redact = redact
        self._registry_dir = registry_dir
        self._root = root
        self._lane = Lane(max_queue)
        self._detectors: dict[str, PiiDetector] = {}
        """By the JSON of the privacy config they were made from."""
        self._input_detectors: dict[str, PiiDetector] = {}
        """By the name of the chat model whose inputs they redact."""
        self._redactors: dict[OperatorName, Redactor] = {}
        self._key: PrivacyKey | None = None

    def load(self, models: Mapping[str, LoadedModel]) -> None:
        """Make the detectors the served models and /v1/redact need (the model loader's
        thread, before the server is ready)."""
        for name, loaded in models.items():
            config = PrivacyConfig.model_validate(loaded.version.config().get("privacy") or {})
            if config.redact_inputs and "generate" in loaded.model.capabilities:
                self._input_detectors[name] = self._detector(config)
                log.info("model %s: personal data in prompts is replaced by placeholders", name)
        if self.offers_redact:
            from forgeline.privacy import PrivacyKeyError, load_privacy_key

            self._detector(self.config)
            try:
                self._key = load_privacy_key(self.config, "/v1/redact", root=self._root)
            except PrivacyKeyError:
                self._key = None  # mask and replace still work; the keyed operators say why

    def _detector(self, config: PrivacyConfig) -> PiiDetector:
        from forgeline.privacy import PiiDetector

        signature = config.model_dump_json()
        if signature not in self._detectors:
            self._detectors[signature] = PiiDetector.from_config(config, self._registry_dir)
        return self._detectors[signature]

    async def hide(self, model: str, texts: list[str]) -> tuple[list[str], Placeholders | None]:
        """``texts`` (a request's messages or prompt) with their personal data replaced, and
        the placeholders to restore the reply with; as they are (and None) for a model that
        does not redact its inputs."""
        from forgeline.privacy.placeholders import Placeholders

        detector = self._input_detectors.get(model)
        if detector is None:
            return texts, None
        placeholders = Placeholders()
        hidden = await self._run(lambda: placeholders.hide_texts(texts, detector.detect))
        return hidden, placeholders

    async def redact(self, texts: Sequence[str], operator: OperatorName) -> list[Redaction]:
        redactor = self._redactor(operator)
        return await self._run(lambda: redactor.redact(texts))

    def _redactor(self, operator: OperatorName) -> Redactor:
        from forgeline.privacy import KEYED_OPERATORS, Redactor

        if operator in KEYED_OPERATORS and self._key is None:
            raise ApiError(
                400,
                "operator_unavailable",
                f"the operator '{operator}' needs the privacy key, which this server was "
                f"not given (${self.config.key_env} or privacy.key_file); use mask or replace",
                param="operator",
            )
        if operator not in self._redactors:
            self._redactors[operator] = Redactor(
                self._detector(self.config), operator, self._key, self.config.mask
            )
        return self._redactors[operator]

    async def _run(self, work: Callable[[], _T]) -> _T:
        try:
            result: _T = await self._lane.run(lambda _: work(), ())
            return result
        except Overloaded as exc:
            raise ApiError(
                503, "overloaded", f"server busy: {exc}; retry shortly", {"Retry-After": "1"}
            ) from None
