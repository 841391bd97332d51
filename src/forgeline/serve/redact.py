"""``POST /v1/redact``: personal data found and replaced with the serving project's privacy
settings (``serve.redact: true``), keyed and metered like predict: one unit per text."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from forgeline.config.privacy import OperatorName
from forgeline.serve.errors import ApiError
from forgeline.serve.gateway import Gateway
from forgeline.serve.metering import Call, OpenCall
from forgeline.serve.predict import CALL_RESPONSES, ServedModels
from forgeline.serve.routing import api_route

ACTION = "redact"
RESPONSES: dict[int | str, dict[str, str]] = {
    **{status: answer for status, answer in CALL_RESPONSES.items() if status != 404},
    400: {
        "description": "The body is not valid JSON, a bad Idempotency-Key, or an operator "
        "that needs the privacy key this server was not given"
    },
}


class RedactRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(min_length=1, description="The texts to redact.")
    operator: OperatorName | None = Field(
        None,
        description="mask (****1111), replace (<PERSON>), pseudonymize (<PERSON_7f3a...>, keyed) "
        "or encrypt (reversible with the key); default: the server's privacy.operator.",
    )


class FoundEntity(BaseModel):
    type: str = Field(description="The entity, as Presidio names it: PERSON, PHONE_NUMBER, ...")
    start: int = Field(description="Where it starts in the text sent (characters).")
    end: int = Field(description="Where it ends in the text sent (exclusive).")
    score: float


class RedactedText(BaseModel):
    text: str = Field(description="The text with what was found replaced.")
    entities: list[FoundEntity] = Field(description="What was found, by its place in the input.")


class RedactResponse(BaseModel):
    operator: OperatorName
    redactions: list[RedactedText] = Field(description="One per input, in order.")


def redact_router(served: ServedModels, gateway: Gateway | None) -> APIRouter:
    privacy, limits = served.privacy, served.settings.limits
    router = APIRouter(prefix="/v1", tags=["privacy"], route_class=api_route(gateway))

    async def admitted(request: Request) -> Call:  # async: no thread hop (serve/predict.py)
        return OpenCall() if gateway is None else gateway.admit(request, None, ACTION)

    redact_call = Depends(admitted)

    @router.post(
        "/redact",
        response_model=RedactResponse,
        responses=RESPONSES,
        summary="Find personal data in texts and mask, replace, pseudonymize or encrypt it",
    )
    async def redact(body: RedactRequest, call: Call = redact_call) -> Response:
        served.require_ready()
        served.check_count(body.inputs)
        for index, text in enumerate(body.inputs):
            if len(text) > limits.max_input_chars:
                raise ApiError(
                    422,
                    "invalid_input",
                    f"inputs[{index}]: {len(text)} characters is over the limit "
                    f"max_input_chars={limits.max_input_chars}",
                )
        operator = body.operator or privacy.config.operator

        async def run() -> RedactResponse:
            redactions = await privacy.redact(body.inputs, operator)
            return RedactResponse(
                operator=operator,
                redactions=[
                    RedactedText(
                        text=redaction.text,
                        entities=[
                            FoundEntity(
                                type=s.entity_type,
                                start=s.start,
                                end=s.end,
                                score=round(s.score, 4),
                            )
                            for s in redaction.spans
                        ],
                    )
                    for redaction in redactions
                ],
            )

        return await call.respond(run, units=len(body.inputs), request=body)

    return router
